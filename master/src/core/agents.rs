//! Agent handlers: registration and re-registration (with the merge of reported tasks),
//! heartbeats, disconnection and status updates.

use std::collections::{BTreeMap, BTreeSet};

use agora_proto::model::{
    AgentId, AgentInfo, DEFAULT_FAILOVER_TIMEOUT_MS, FrameworkId, FrameworkInfo, Resources, Role, TaskId, TaskState,
    TaskStatus, TaskStatusReason,
};

use super::agent_table::AgentMut;
use super::master::{Master, sequence_of};
use super::registry::{AgentRecord, FrameworkRecord, TaskRecord};
use super::{ConnId, Output, ReportedTask, ToAgent};

/// Bound on the tasks one agent may report when it re-registers.
pub const MAX_REPORTED_TASKS: usize = 100_000;

impl Master {
    /// Registers an agent. Without `previous_id` it gets a new id. With a known id it is
    /// rebound to `conn`, its offers are rescinded and its reported tasks merged: tasks it
    /// no longer has become TASK_GONE, unreachable tasks it still runs come back (the
    /// framework hears TASK_RUNNING, reason RECONCILIATION), staging ones are killed. An
    /// id this master does not know (it restarted) is re-admitted with its tasks, and
    /// their frameworks get inactive placeholders until they re-subscribe. Tasks of
    /// removed frameworks are shut down instead. Emits `AgentRegistered` first (then any
    /// kills and updates), or only `AgentRefused` when the resources do not cover the
    /// reported tasks.
    pub fn register_agent(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        info: AgentInfo,
        previous_id: Option<AgentId>,
        tasks: Vec<ReportedTask>,
    ) {
        if let Some(id) = previous_id.as_ref().filter(|id| self.gone_agent_set.contains(*id)) {
            let reason = format!(
                "agent {id} is gone (unreachable past the re-register timeout, or removed by the operator); \
                 register afresh"
            );
            self.outbox.push(Output::AgentRefused { conn, reason });
            return;
        }
        if self.maintenance.is_down(&info.hostname) {
            let reason = format!("machine {} is down for maintenance until STOP_MAINTENANCE", info.hostname);
            self.outbox.push(Output::AgentRefused { conn, reason });
            return;
        }
        let removed = &self.removed_framework_set;
        let reported = match validate_registration(&info, tasks, |f| removed.contains(f)) {
            Ok(reported) => reported,
            Err(reason) => {
                self.outbox.push(Output::AgentRefused { conn, reason });
                return;
            }
        };
        // An empty id is how some clients say "none".
        let agent_id = match previous_id.filter(|id| !id.as_str().is_empty()) {
            Some(id) => id,
            None => {
                let id = AgentId::new(format!("{}-S{}", self.config.master_id, self.next_agent));
                self.next_agent = self.next_agent.saturating_add(1);
                id
            }
        };
        // A known agent coming back as it was changes nothing durable: no registry write,
        // which after a failover saves one per agent.
        let durable_unchanged = self.agents.get(&agent_id).is_some_and(|a| a.reachable && a.info == info);
        let unavailability = self.unavailability_of(&info.hostname);
        if self.agents.contains_key(&agent_id) {
            // Its resources may have changed: offers made from the old view are void.
            self.rescind_agent_offers(&agent_id);
            let Some(mut agent) = self.agents.get_mut(&agent_id) else { return };
            agent.set_unavailability(unavailability);
            agent.set_info(info);
            agent.conn = Some(conn);
            agent.reachable = true;
            agent.unreachable_since_ms = None;
            agent.last_seen_ms = now_ms;
        } else {
            // Unknown id: a previous master's agent. Mesos re-admits those after failover.
            let prefix = format!("{}-S", self.config.master_id);
            if let Some(n) = sequence_of(agent_id.as_str(), &prefix) {
                self.next_agent = self.next_agent.max(n.saturating_add(1));
            }
            let mut record = AgentRecord::new(agent_id.clone(), info, conn, now_ms);
            record.set_unavailability(unavailability);
            self.agents.insert(agent_id.clone(), record);
        }
        if !durable_unchanged {
            self.persist_agent(&agent_id);
        }
        self.apply_reservations(&agent_id);
        self.outbox.push(Output::AgentRegistered { conn, agent_id: agent_id.clone() });
        self.merge_reported_tasks(now_ms, &agent_id, reported);
        // A draining agent's tasks are killed again: kills sent while it was away were
        // lost, and tasks it reported may be new to this master.
        self.kill_draining_tasks(now_ms, &agent_id);
        if !self.maintenance.windows.is_empty() {
            self.send_inverse_offers(now_ms, std::slice::from_ref(&agent_id));
        }
        self.agent_changed(&agent_id);
    }

    /// Reconciles the master's view of the agent's tasks with what the agent reports.
    fn merge_reported_tasks(
        &mut self,
        now_ms: u64,
        agent_id: &AgentId,
        reported: BTreeMap<(FrameworkId, TaskId), ReportedTask>,
    ) {
        // Tasks the master placed here that the agent no longer has are gone for good.
        let known: Vec<(FrameworkId, TaskId)> =
            self.agents.get(agent_id).map(|a| a.tasks.iter().cloned().collect()).unwrap_or_default();
        for (framework_id, task_id) in known {
            if reported.contains_key(&(framework_id.clone(), task_id.clone())) {
                continue;
            }
            let status = TaskStatus::from_master(
                task_id.clone(),
                Some(agent_id.clone()),
                TaskState::TaskGone,
                TaskStatusReason::Reconciliation,
                "the agent re-registered without this task",
                now_ms,
            );
            self.transition_task(&framework_id, &task_id, status, true);
        }

        let mut shutdown: BTreeSet<FrameworkId> = BTreeSet::new();
        for ((framework_id, task_id), report) in reported {
            if self.is_removed_framework(&framework_id) {
                shutdown.insert(framework_id);
                continue;
            }
            let known_on = self
                .frameworks
                .get(&framework_id)
                .and_then(|f| f.tasks.get(&task_id))
                .map(|t| (t.info.agent_id.clone(), t.state));
            match known_on {
                Some((on, state)) if &on == agent_id => {
                    self.merge_known_task(now_ms, agent_id, &framework_id, &task_id, state, &report);
                }
                Some(_) => {
                    // The framework's task of this id runs elsewhere; this copy must go.
                    // Its KILLED update is ignored because it names the wrong agent.
                    let message = ToAgent::KillTask { framework_id, task_id, grace_period_ms: None };
                    self.outbox.push(Output::ToAgent { agent_id: agent_id.clone(), message });
                }
                None if report.state.is_terminal() => self.remember_ended_task(now_ms, agent_id, framework_id, report),
                None => self.adopt_task(now_ms, agent_id, framework_id, report),
            }
        }
        for framework_id in shutdown {
            let message = ToAgent::ShutdownFramework { framework_id };
            self.outbox.push(Output::ToAgent { agent_id: agent_id.clone(), message });
        }
    }

    fn merge_known_task(
        &mut self,
        now_ms: u64,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        known: TaskState,
        report: &ReportedTask,
    ) {
        let reported = report.state;
        let was_unreachable = known == TaskState::TaskUnreachable;
        if was_unreachable && matches!(reported, TaskState::TaskStaging | TaskState::TaskStarting) {
            // A launch that never got going while the agent was away: the framework was
            // told it is unreachable and has likely replaced it, so it is killed.
            self.kill_task(framework_id, task_id);
            return;
        }
        if reported != known {
            let mut status = TaskStatus::from_master(
                task_id.clone(),
                Some(agent_id.clone()),
                reported,
                TaskStatusReason::Reconciliation,
                "reported by the agent on re-registration",
                now_ms,
            );
            (status.healthy, status.ready) = (report.healthy, report.ready);
            // The agent's own status updates bring other news to the framework; only a task
            // coming back from unreachable needs the master to speak up.
            let forward = was_unreachable && !reported.is_terminal();
            self.transition_task(framework_id, task_id, status, forward);
        }
        if self.frameworks.get(framework_id).and_then(|f| f.tasks.get(task_id)).is_some_and(|t| t.kill_pending) {
            self.kill_task(framework_id, task_id);
        }
    }

    /// Accounts a task the master did not know (it ran under a previous master). Its
    /// framework gets a placeholder record until it re-subscribes.
    /// A task the agent reports ended that this master never knew (it ended while the
    /// master failed over): kept among the framework's completed tasks, so that
    /// reconciliation answers its real end, not TASK_GONE, while the agent's own update
    /// of it is still on its way.
    fn remember_ended_task(
        &mut self,
        now_ms: u64,
        agent_id: &AgentId,
        framework_id: FrameworkId,
        report: ReportedTask,
    ) {
        self.ensure_framework(now_ms, &framework_id);
        let keep = self.config.max_completed_tasks_per_framework;
        let Some(framework) = self.frameworks.get_mut(&framework_id) else { return };
        if keep == 0 || framework.completed_tasks.iter().any(|t| t.info.task_id == report.task.task_id) {
            return;
        }
        let mut info = report.task;
        info.agent_id = agent_id.clone();
        let status = TaskStatus::from_master(
            info.task_id.clone(),
            Some(agent_id.clone()),
            report.state,
            TaskStatusReason::Reconciliation,
            "reported ended by the agent on re-registration",
            now_ms,
        );
        if framework.completed_tasks.len() >= keep {
            framework.completed_tasks.pop_front();
        }
        let view = TaskRecord::new(info, &status).view(&framework_id);
        self.changes.ended(|| view.clone());
        framework.completed_tasks.push_back(view);
    }

    /// A framework known only from its agents' tasks gets an inactive placeholder until it
    /// re-subscribes.
    fn ensure_framework(&mut self, now_ms: u64, framework_id: &FrameworkId) {
        if !self.frameworks.contains_key(framework_id) {
            let prefix = format!("{}-", self.config.master_id);
            if let Some(n) = sequence_of(framework_id.as_str(), &prefix) {
                self.next_framework = self.next_framework.max(n.saturating_add(1));
            }
            let info = FrameworkInfo {
                id: Some(framework_id.clone()),
                name: String::new(),
                user: String::new(),
                roles: vec![Role::unreserved()],
                failover_timeout_ms: DEFAULT_FAILOVER_TIMEOUT_MS,
                hostname: String::new(),
                principal: String::new(),
            };
            self.frameworks.insert(framework_id.clone(), FrameworkRecord::new(info, now_ms));
            self.changes.framework(framework_id);
        }
    }

    fn adopt_task(&mut self, now_ms: u64, agent_id: &AgentId, framework_id: FrameworkId, report: ReportedTask) {
        self.ensure_framework(now_ms, &framework_id);
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        let Some(framework) = self.frameworks.get_mut(&framework_id) else { return };
        let mut info = report.task;
        info.agent_id = agent_id.clone();
        // Checked on this side too: an adopted task never over-commits the agent. One
        // that does not fit (its resources were given to another task meanwhile) goes.
        let mut free = agent.info.resources.clone();
        if !(free.subtract(agent.used()) && free.contains(&info.resources)) {
            let message = ToAgent::KillTask { framework_id, task_id: info.task_id, grace_period_ms: None };
            self.outbox.push(Output::ToAgent { agent_id: agent_id.clone(), message });
            return;
        }
        // With the health the agent knows: a master that failed over shows it, and answers
        // reconciliation with it, without waiting for the next change.
        let mut status = TaskStatus::from_master(
            info.task_id.clone(),
            Some(agent_id.clone()),
            report.state,
            TaskStatusReason::Reconciliation,
            "reported by the agent on re-registration",
            now_ms,
        );
        (status.healthy, status.ready) = (report.healthy, report.ready);
        agent.add_used(&info.resources);
        agent.tasks.insert((framework_id.clone(), info.task_id.clone()));
        let scalars = info.resources.scalars();
        framework.used_scalars = framework.used_scalars.saturating_add(&scalars);
        let mut record = TaskRecord::new(info, &status);
        if record.role.is_unreserved() {
            record.role = framework.first_role();
        }
        framework.charge(&record.role, &scalars);
        let task_id = record.info.task_id.clone();
        framework.tasks.insert(task_id.clone(), Box::new(record));
        self.changes.task(&framework_id, &task_id);
    }

    pub fn agent_heartbeat(&mut self, now_ms: u64, agent_id: &AgentId) {
        // An unreachable agent must re-register; its heartbeats prove nothing about tasks.
        if let Some(mut agent) = self.reachable_agent(agent_id) {
            agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
        }
    }

    /// The agent a report comes from, unless the master does not know it or declared it
    /// unreachable. An unreachable agent talking again on its old connection was paused or
    /// cut off, and does not know: closing that connection makes it re-register with the
    /// tasks it runs, which brings them back; until then what it says is not trusted.
    fn reachable_agent(&mut self, agent_id: &AgentId) -> Option<AgentMut<'_>> {
        let mut agent = self.agents.get_mut(agent_id)?;
        if !agent.reachable {
            let connected = agent.conn.take().is_some();
            drop(agent);
            if connected {
                self.outbox.push(Output::ReconnectAgent { agent_id: agent_id.clone() });
            }
            return None;
        }
        Some(agent)
    }

    /// The agent's connection `conn` closed. Its offers are rescinded; its tasks stay
    /// until it re-registers or `agent_timeout_ms` makes it unreachable.
    pub fn agent_disconnected(&mut self, _now_ms: u64, agent_id: &AgentId, conn: ConnId) {
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        if agent.conn != Some(conn) {
            return;
        }
        agent.conn = None;
        drop(agent);
        self.rescind_agent_offers(agent_id);
    }

    /// A status update from an agent. The task moves if the move is allowed; the update
    /// is forwarded to a connected framework either way, so that the framework's
    /// acknowledgement stops the agent's retries. An update of a removed framework is
    /// answered with SHUTDOWN of that framework, which stops them instead.
    pub fn status_update(
        &mut self,
        now_ms: u64,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        mut status: TaskStatus,
    ) {
        // An unreachable agent resends the update once it has re-registered.
        let Some(mut agent) = self.reachable_agent(agent_id) else { return };
        agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
        let agent_active = agent.is_active();
        let going = agent.drain.as_ref().is_some_and(|d| d.mark_gone && d.state == super::DrainState::Draining);
        drop(agent);
        // A task ended by a drain that removes its agent ends TASK_GONE_BY_OPERATOR, as
        // Mesos reports it: the framework learns the agent is not coming back.
        if going && status.state.is_terminal() {
            status.state = TaskState::TaskGoneByOperator;
        }
        if status.agent_id.is_none() {
            status.agent_id = Some(agent_id.clone());
        }
        if !self.frameworks.contains_key(framework_id) {
            if agent_active && self.is_removed_framework(framework_id) {
                // No one will acknowledge it, and the agent resends it until someone does:
                // the framework tore down before acknowledging its last update, or was
                // removed while the agent held only ended tasks of it (which the removal's
                // SHUTDOWN does not reach). The agent drops the framework's updates and tasks.
                let message = ToAgent::ShutdownFramework { framework_id: framework_id.clone() };
                self.outbox.push(Output::ToAgent { agent_id: agent_id.clone(), message });
            }
            return;
        }
        let task_id = status.task_id.clone();
        // Moved and forwarded, or handed back: not this agent's task (any more), or a move
        // its state does not allow — forwarded all the same.
        let Err(status) = self.try_transition_task(framework_id, &task_id, Some(agent_id), status, true) else {
            return;
        };
        if self.frameworks.get(framework_id).is_some_and(|f| f.is_active()) {
            self.outbox
                .push(Output::ToFramework { framework_id: framework_id.clone(), event: super::Event::Update(status) });
        }
    }
}

/// Checks a registration before anything changes: bounded, no duplicate tasks, and
/// resources that cover every live reported task.
/// Tasks of removed frameworks are not counted: the master freed their resources when it
/// removed the framework, and the agent is about to be told to shut them down.
fn validate_registration(
    info: &AgentInfo,
    tasks: Vec<ReportedTask>,
    is_removed: impl Fn(&FrameworkId) -> bool,
) -> Result<BTreeMap<(FrameworkId, TaskId), ReportedTask>, String> {
    if info.hostname.is_empty() {
        return Err("hostname: must not be empty".to_owned());
    }
    if tasks.len() > MAX_REPORTED_TASKS {
        return Err(format!("tasks: {} reported, at most {MAX_REPORTED_TASKS} allowed", tasks.len()));
    }
    let mut needed = Resources::new();
    let mut reported = BTreeMap::new();
    for task in tasks {
        if !task.state.is_terminal() && !is_removed(&task.framework_id) {
            needed.add(&task.task.resources);
        }
        let key = (task.framework_id.clone(), task.task.task_id.clone());
        if reported.insert(key, task).is_some() {
            return Err("tasks: the same task is reported twice".to_owned());
        }
    }
    if !info.resources.contains(&needed) {
        return Err(format!("resources {} do not cover the reported tasks ({needed})", info.resources));
    }
    Ok(reported)
}
