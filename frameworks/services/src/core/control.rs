//! Per app, what to do now: launch how many, kill which. The app's mode decides: kept at
//! `instances` (self-healing, or a deployment's scale), rolled to a new version, stopped,
//! or frozen while its deployment step waits for dependencies.

use std::sync::Arc;

use agora_proto::model::{TaskId, TaskState};

use super::rolling::{self, RollingState};
use super::{Output, Pending, Planner, StoreOp};
use crate::model::{ActionKind, AppId, AppSpec, Instance, KillSelection, Timestamp, UnreachableStrategy};

/// How the planner drives an app right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// No deployment holds it: keep `instances` active instances.
    Heal,
    /// Its deployment's current step acts on it.
    Action(ActionKind),
    /// Its deployment holds it but its step has not come yet.
    Frozen,
}

/// One instance as counted by the controller.
#[derive(Clone, Debug)]
pub(super) struct Counted {
    pub task_id: TaskId,
    pub staged_at: Timestamp,
    pub current_version: bool,
    pub healthy: bool,
    pub killing: bool,
}

/// The instances of an app that count: every instance that exists, except unreachable
/// ones past their `inactive_after` (they have been replaced).
#[derive(Clone, Debug, Default)]
pub(super) struct AppView {
    pub counted: Vec<Counted>,
    /// Instances that count but are not being killed.
    pub active: u32,
    /// Active instances that are healthy (and ready).
    pub healthy: u32,
}

impl Planner {
    pub(super) fn mode_of(&self, app: &AppId) -> Mode {
        let Some(deployment) = self.locks.get(app).and_then(|id| self.deployments.get(id)) else {
            return Mode::Heal;
        };
        match deployment.steps.get(deployment.current_step) {
            Some(step) => match step.actions.iter().find(|a| &a.app == app) {
                Some(action) => Mode::Action(action.kind),
                None => Mode::Frozen,
            },
            None => Mode::Heal,
        }
    }

    /// The spec an instance was launched from: its version if still kept, else the app's.
    pub(super) fn spec_of(&self, instance: &Instance) -> Option<&Arc<AppSpec>> {
        self.versions
            .get(&instance.app_id)
            .and_then(|v| v.get(&instance.app_version))
            .or_else(|| self.apps.get(&instance.app_id).map(|r| &r.spec))
    }

    /// Running, not being killed, reachable, healthy if its spec has health checks, and
    /// ready: an instance that serves.
    pub(super) fn is_healthy(&self, instance: &Instance) -> bool {
        let checked = self.spec_of(instance).is_some_and(|s| !s.health_checks.is_empty());
        instance.state == TaskState::TaskRunning
            && instance.killing_since.is_none()
            && instance.unreachable_since.is_none()
            && (!checked || instance.healthy == Some(true))
            && instance.ready
    }

    /// Whether an unreachable instance no longer counts (it is to be replaced).
    pub(super) fn is_inactive(&self, instance: &Instance, now_ms: u64) -> bool {
        let Some(since) = instance.unreachable_since else { return false };
        match self.spec_of(instance).map(|s| s.unreachable_strategy) {
            None | Some(UnreachableStrategy::Disabled) => true,
            Some(UnreachableStrategy::Enabled { inactive_after_ms, .. }) => {
                now_ms >= since.ms().saturating_add(inactive_after_ms)
            }
        }
    }

    pub(super) fn view(&self, now_ms: u64, app: &AppId) -> AppView {
        let current = self.apps.get(app).map(|r| r.last_config_change_at);
        let mut view = AppView::default();
        for instance in self.instances_of(app) {
            if self.is_inactive(instance, now_ms) {
                continue;
            }
            let killing = instance.killing_since.is_some();
            let healthy = self.is_healthy(instance);
            if !killing {
                view.active += 1;
                view.healthy += u32::from(healthy);
            }
            view.counted.push(Counted {
                task_id: instance.task_id.clone(),
                staged_at: instance.staged_at,
                current_version: Some(instance.app_version) == current,
                healthy,
                killing,
            });
        }
        view
    }

    /// Decides the app's launches and kills for now.
    pub(super) fn plan_app(&mut self, now_ms: u64, app: &AppId) {
        let Some(record) = self.apps.get(app) else {
            self.pending.remove(app);
            return;
        };
        let spec = Arc::clone(&record.spec);
        let n = spec.instances;
        let view = self.view(now_ms, app);
        let (kills, launch) = match self.mode_of(app) {
            Mode::Frozen | Mode::Action(ActionKind::StartApplication | ActionKind::ResolveArtifacts) => (Vec::new(), 0),
            Mode::Action(ActionKind::StopApplication) => {
                let mut kills: Vec<TaskId> =
                    view.counted.iter().filter(|c| !c.killing).map(|c| c.task_id.clone()).collect();
                // Replaced unreachable instances are killed too, should they come back.
                kills.extend(
                    self.instances_of(app)
                        .filter(|i| i.killing_since.is_none() && self.is_inactive(i, now_ms))
                        .map(|i| i.task_id.clone()),
                );
                (kills, 0)
            }
            Mode::Heal | Mode::Action(ActionKind::ScaleApplication) => {
                if view.active > n {
                    let candidates: Vec<&Counted> = view.counted.iter().filter(|c| !c.killing).collect();
                    (kill_order(candidates, spec.kill_selection, (view.active - n) as usize), 0)
                } else {
                    (Vec::new(), n - view.active)
                }
            }
            Mode::Action(ActionKind::RestartApplication) => {
                let alive: Vec<&Counted> = view.counted.iter().filter(|c| !c.killing).collect();
                let (new, old): (Vec<&Counted>, Vec<&Counted>) = alive.into_iter().partition(|c| c.current_version);
                let (old_healthy, old_unhealthy): (Vec<&Counted>, Vec<&Counted>) =
                    old.into_iter().partition(|c| c.healthy);
                let new_alive = new.len() as u32;
                let mut kills = Vec::new();
                if new_alive > n {
                    kills = kill_order(new.clone(), spec.kill_selection, (new_alive - n) as usize);
                }
                let state = RollingState {
                    n,
                    old_healthy: kill_order(old_healthy.clone(), spec.kill_selection, old_healthy.len()),
                    old_unhealthy: old_unhealthy.iter().map(|c| c.task_id.clone()).collect(),
                    new_alive: new_alive.min(n),
                    new_healthy: new.iter().filter(|c| c.healthy).count() as u32,
                    existing: view.counted.len() as u32,
                };
                let step = rolling::step(&state, rolling::bounds(n, &spec.upgrade_strategy));
                kills.extend(step.kill);
                (kills, step.launch)
            }
        };
        for task_id in kills {
            self.kill(now_ms, &task_id);
        }
        self.set_pending(now_ms, app, launch);
    }

    pub(super) fn set_pending(&mut self, now_ms: u64, app: &AppId, count: u32) {
        if count == 0 {
            self.pending.remove(app);
            return;
        }
        let since_ms = self.pending.get(app).map_or(now_ms, |p| p.since_ms);
        self.pending.insert(app.clone(), Pending { count, since_ms });
    }

    /// Asks the master to kill an instance, recording that we did (a kill we asked for is
    /// not a failure).
    pub(super) fn kill(&mut self, now_ms: u64, task_id: &TaskId) {
        let Some(instance) = self.instances.get_mut(task_id) else { return };
        if instance.killing_since.is_none() {
            instance.killing_since = Some(Timestamp(now_ms));
        }
        let record = instance.clone();
        self.killing.insert(task_id.clone(), now_ms);
        self.dirty.insert(record.app_id.clone());
        let agent_id = Some(record.agent_id.clone());
        self.persist(StoreOp::PutInstance(record));
        self.outbox.push(Output::Kill { task_id: task_id.clone(), agent_id });
    }

    /// Whether an action of a deployment's current step is complete.
    pub(super) fn action_done(&self, now_ms: u64, kind: ActionKind, app: &AppId) -> bool {
        let Some(record) = self.apps.get(app) else {
            // Only a stop removes an app; any other action on a missing app has nothing
            // left to do.
            return true;
        };
        let n = record.spec.instances;
        let view = self.view(now_ms, app);
        match kind {
            ActionKind::StartApplication | ActionKind::ResolveArtifacts => true,
            ActionKind::StopApplication => view.counted.is_empty(),
            ActionKind::ScaleApplication => view.counted.len() as u32 == n && view.active == n && view.healthy == n,
            ActionKind::RestartApplication => {
                view.counted.len() as u32 == n
                    && view.active == n
                    && view.healthy == n
                    && view.counted.iter().all(|c| c.current_version)
            }
        }
    }
}

/// The first `count` of `candidates` in the order they should be killed: instances not
/// yet healthy first (they serve nothing), then by the app's kill selection (youngest or
/// oldest by staging time), then by task id so that the order is total.
pub(super) fn kill_order(mut candidates: Vec<&Counted>, selection: KillSelection, count: usize) -> Vec<TaskId> {
    candidates.sort_by(|a, b| {
        let by_age = match selection {
            KillSelection::YoungestFirst => b.staged_at.cmp(&a.staged_at),
            KillSelection::OldestFirst => a.staged_at.cmp(&b.staged_at),
        };
        a.healthy.cmp(&b.healthy).then(by_age).then_with(|| a.task_id.cmp(&b.task_id))
    });
    candidates.into_iter().take(count).map(|c| c.task_id.clone()).collect()
}
