//! The master's side: status updates (states, health, readiness), tasks we do not know,
//! unreachable agents, reconciliation, and the periodic tick.

use agora_proto::model::{AgentId, FrameworkId, TaskId, TaskState, TaskStatus};

use super::{KILL_RETRY_MS, MAX_RECONCILE_BATCH, Output, Planner, ServiceEvent, StoreOp};
use crate::model::{Instance, TaskFailure, Timestamp, UnreachableStrategy};

impl Planner {
    pub(super) fn subscribed(&mut self, now_ms: u64, framework_id: FrameworkId) {
        if self.framework_id.as_ref() != Some(&framework_id) {
            self.persist(StoreOp::FrameworkId(framework_id.clone()));
            self.framework_id = Some(framework_id);
        }
        self.subscribed = true;
        self.offers_wanted = None;
        self.reconcile(now_ms);
        // Then implicitly: the master answers with every task it knows of ours, so tasks
        // we lost track of (launched just before a crash) are found and killed.
        self.outbox.push(Output::Reconcile(Vec::new()));
        self.dirty.extend(self.apps.keys().cloned());
    }

    /// Asks the master for the state of every instance we know.
    fn reconcile(&mut self, now_ms: u64) {
        self.last_reconcile_ms = Some(now_ms);
        let all: Vec<(TaskId, Option<AgentId>)> =
            self.instances.values().map(|i| (i.task_id.clone(), Some(i.agent_id.clone()))).collect();
        for batch in all.chunks(MAX_RECONCILE_BATCH) {
            self.outbox.push(Output::Reconcile(batch.to_vec()));
        }
    }

    pub(super) fn update(&mut self, now_ms: u64, status: TaskStatus) {
        let Some(mut instance) = self.instances.get(&status.task_id).cloned() else {
            // Not ours (or forgotten: expunged, wiped): it must not run.
            if !status.state.is_terminal() {
                self.outbox.push(Output::Kill { task_id: status.task_id.clone(), agent_id: status.agent_id.clone() });
            }
            return;
        };
        let app = instance.app_id.clone();
        self.dirty.insert(app.clone());
        instance.message.clone_from(&status.message);
        if let Some(agent_id) = &status.agent_id {
            instance.agent_id.clone_from(agent_id);
        }
        if let Some(healthy) = status.healthy
            && instance.healthy != Some(healthy)
        {
            instance.healthy = Some(healthy);
            self.emit(ServiceEvent::HealthChanged { instance: instance.clone(), healthy });
        }
        if status.ready == Some(true) {
            instance.ready = true;
        }
        // The master no longer knows the task (TASK_UNKNOWN, or LOST/GONE in answer to a
        // reconciliation): it is gone for good.
        let gone = status.state == TaskState::TaskUnknown;
        if status.state.is_terminal() || gone {
            instance.state = if gone { TaskState::TaskGone } else { status.state };
            self.finish(now_ms, instance, &status);
            return;
        }
        let was_inactive = self.is_inactive(&instance, now_ms);
        match status.state {
            TaskState::TaskUnreachable => {
                instance.state = TaskState::TaskUnreachable;
                instance.unreachable_since.get_or_insert(Timestamp(now_ms));
                self.unreachable.insert(instance.task_id.clone());
            }
            state => {
                instance.state = state;
                if state == TaskState::TaskRunning && instance.started_at.is_none() {
                    instance.started_at = Some(Timestamp(now_ms));
                }
                if instance.unreachable_since.take().is_some() {
                    self.unreachable.remove(&instance.task_id);
                }
            }
        }
        self.instances.insert(instance.task_id.clone(), instance.clone());
        self.retally(now_ms, &instance.task_id);
        self.persist(StoreOp::PutInstance(instance.clone()));
        self.emit(ServiceEvent::StatusUpdate { instance: instance.clone(), status });
        // Back from an unreachable agent after it was replaced: if the app now has more
        // instances than it wants, this one goes (its replacement is already serving).
        if was_inactive && instance.unreachable_since.is_none() && instance.killing_since.is_none() {
            let wanted = self.apps.get(&app).map_or(0, |r| r.spec.instances);
            // Counted afresh: other unreachable instances may have turned inactive since
            // the tally last looked.
            let active = self.view(now_ms, &app).counted.iter().filter(|c| !c.killing).count();
            if active > wanted as usize {
                self.kill(now_ms, &instance.task_id);
            }
        }
    }

    /// A terminal update: the instance is forgotten, recorded as the app's last failure
    /// unless we killed it or it finished, and its app's launches back off unless we
    /// killed it.
    fn finish(&mut self, now_ms: u64, instance: Instance, status: &TaskStatus) {
        let ours = instance.killing_since.is_some();
        if !ours && status.state == TaskState::TaskKilled && status.healthy == Some(false) {
            self.emit(ServiceEvent::UnhealthyKilled { instance: instance.clone(), message: status.message.clone() });
        }
        self.emit(ServiceEvent::StatusUpdate { instance: instance.clone(), status: status.clone() });
        self.forget(&instance.task_id);
        if !ours && self.apps.contains_key(&instance.app_id) {
            if instance.state != TaskState::TaskFinished {
                let failure = TaskFailure {
                    app_id: instance.app_id.clone(),
                    task_id: instance.task_id.clone(),
                    host: instance.host.clone(),
                    state: instance.state,
                    message: status.message.clone(),
                    timestamp: Timestamp(now_ms),
                    version: instance.app_version,
                };
                self.task_failures.insert(failure.app_id.clone(), failure.clone());
                self.persist(StoreOp::PutTaskFailure(failure));
            }
            self.delay_launches(now_ms, &instance.app_id);
        }
    }

    /// Drops an instance from every index and from the store.
    pub(super) fn forget(&mut self, task_id: &TaskId) {
        let Some(instance) = self.instances.remove(task_id) else { return };
        self.untally(task_id);
        if let Some(ids) = self.by_app.get_mut(&instance.app_id) {
            ids.remove(task_id);
            if ids.is_empty() {
                self.by_app.remove(&instance.app_id);
            }
        }
        self.unreachable.remove(task_id);
        self.killing.remove(task_id);
        self.dirty.insert(instance.app_id.clone());
        self.persist(StoreOp::DeleteInstance(task_id.clone()));
    }

    /// Time passed: unreachable instances become inactive or are expunged, kills are
    /// retried, tasks are reconciled now and then, deployments time out.
    pub(super) fn tick(&mut self, now_ms: u64) {
        let unreachable: Vec<TaskId> = self.unreachable.iter().cloned().collect();
        for task_id in unreachable {
            let Some(instance) = self.instances.get(&task_id) else { continue };
            self.dirty.insert(instance.app_id.clone());
            let expunge_at = match self.spec_of(instance).map(|s| s.unreachable_strategy) {
                Some(UnreachableStrategy::Enabled { expunge_after_ms, .. }) => {
                    instance.unreachable_since.map(|t| t.ms().saturating_add(expunge_after_ms))
                }
                // Disabled: replaced at once, forgotten when the master declares it lost.
                _ => None,
            };
            if expunge_at.is_some_and(|at| now_ms >= at) {
                let agent_id = Some(instance.agent_id.clone());
                self.outbox.push(Output::Kill { task_id: task_id.clone(), agent_id });
                self.forget(&task_id);
            }
        }
        let retry: Vec<TaskId> = self
            .killing
            .iter()
            .filter(|(_, sent)| now_ms >= sent.saturating_add(KILL_RETRY_MS))
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in retry {
            if let Some(instance) = self.instances.get(&task_id) {
                let agent_id = Some(instance.agent_id.clone());
                self.outbox.push(Output::Kill { task_id: task_id.clone(), agent_id });
                self.killing.insert(task_id, now_ms);
            }
        }
        if self.subscribed
            && self.last_reconcile_ms.is_none_or(|at| now_ms >= at.saturating_add(self.config.reconcile_interval_ms))
        {
            self.reconcile(now_ms);
        }
        self.check_deadlines(now_ms);
        // Steps whose completion depends on time (unreachable instances turning inactive)
        // and apps whose backoff ended are looked at again.
        let held: Vec<_> = self.locks.keys().cloned().collect();
        self.dirty.extend(held);
        let delayed: Vec<_> = self.delays.keys().filter(|a| self.pending.contains_key(*a)).cloned().collect();
        self.dirty.extend(delayed);
    }
}
