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

/// An instance's part in its app's [`Tally`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Part {
    /// Not an unreachable instance past its `inactive_after`.
    counted: bool,
    /// Counted and not being killed.
    active: bool,
    /// Counted, serving (running, reachable, healthy and ready), not being killed.
    healthy: bool,
    /// Of the app's current config version.
    current: bool,
    /// Inactive (replaced) and not being killed.
    idle: bool,
}

/// The counts the controller decides from, per app: all instances, and those of the
/// current version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub counted: u32,
    pub active: u32,
    pub healthy: u32,
    pub current_counted: u32,
    pub current_active: u32,
    pub current_healthy: u32,
    pub idle: u32,
}

impl Tally {
    fn apply(&mut self, part: Part, add: bool) {
        let step = |field: &mut u32, on: bool| {
            if on {
                *field = if add { *field + 1 } else { field.saturating_sub(1) };
            }
        };
        step(&mut self.counted, part.counted);
        step(&mut self.active, part.active);
        step(&mut self.healthy, part.healthy);
        step(&mut self.current_counted, part.counted && part.current);
        step(&mut self.current_active, part.active && part.current);
        step(&mut self.current_healthy, part.healthy && part.current);
        step(&mut self.idle, part.idle);
    }
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

    /// Whether an unreachable instance no longer counts (it is to be replaced).
    pub(super) fn is_inactive(&self, instance: &Instance, now_ms: u64) -> bool {
        inactive(instance, self.spec_of(instance), now_ms)
    }

    fn part_of(&self, instance: &Instance, now_ms: u64) -> Part {
        let spec = self.spec_of(instance);
        let counted = !inactive(instance, spec, now_ms);
        let killing = instance.killing_since.is_some();
        Part {
            counted,
            active: counted && !killing,
            healthy: counted && healthy(instance, spec),
            current: self.apps.get(&instance.app_id).map(|r| r.last_config_change_at) == Some(instance.app_version),
            idle: !counted && !killing,
        }
    }

    /// Counts an instance again after it changed (or went: then it no longer counts).
    pub(super) fn retally(&mut self, now_ms: u64, task_id: &TaskId) {
        if let Some((app, old)) = self.parts.remove(task_id)
            && let Some(tally) = self.tallies.get_mut(&app)
        {
            tally.apply(old, false);
        }
        if let Some(instance) = self.instances.get(task_id) {
            let part = self.part_of(instance, now_ms);
            let app = instance.app_id.clone();
            self.tallies.entry(app.clone()).or_default().apply(part, true);
            self.parts.insert(task_id.clone(), (app, part));
        }
    }

    /// Stops counting an instance that is gone.
    pub(super) fn untally(&mut self, task_id: &TaskId) {
        if let Some((app, old)) = self.parts.remove(task_id)
            && let Some(tally) = self.tallies.get_mut(&app)
        {
            tally.apply(old, false);
        }
    }

    /// Counts every instance of an app again: its version changed, or it was recovered.
    pub(super) fn retally_app(&mut self, now_ms: u64, app: &AppId) {
        let mut tally = Tally::default();
        let parts: Vec<(TaskId, Part)> =
            self.instances_of(app).map(|i| (i.task_id.clone(), self.part_of(i, now_ms))).collect();
        for (task_id, part) in parts {
            tally.apply(part, true);
            self.parts.insert(task_id, (app.clone(), part));
        }
        if tally == Tally::default() && !self.by_app.contains_key(app) {
            self.tallies.remove(app);
        } else {
            self.tallies.insert(app.clone(), tally);
        }
    }

    /// The app's tally; in debug builds checked against a full count.
    pub(super) fn tally(&self, now_ms: u64, app: &AppId) -> Tally {
        let tally = self.tallies.get(app).copied().unwrap_or_default();
        if cfg!(debug_assertions) {
            let mut full = Tally::default();
            for instance in self.instances_of(app) {
                full.apply(self.part_of(instance, now_ms), true);
            }
            debug_assert_eq!(tally, full, "the tally of {app} drifted from its instances");
        }
        tally
    }

    pub(super) fn view(&self, now_ms: u64, app: &AppId) -> AppView {
        let current = self.apps.get(app).map(|r| r.last_config_change_at);
        let mut view = AppView::default();
        // The spec of each version met, looked up once: an app's instances share a few.
        let mut specs: Vec<(Timestamp, Option<&Arc<AppSpec>>)> = Vec::new();
        for instance in self.instances_of(app) {
            let spec = match specs.iter().find(|(v, _)| *v == instance.app_version) {
                Some((_, spec)) => *spec,
                None => {
                    let spec = self.spec_of(instance);
                    specs.push((instance.app_version, spec));
                    spec
                }
            };
            if inactive(instance, spec, now_ms) {
                continue;
            }
            let killing = instance.killing_since.is_some();
            let healthy = healthy(instance, spec);
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

    /// Decides the app's launches and kills for now. The tally answers the common case
    /// (nothing to kill) without looking at the instances; only a kill scans them, to
    /// choose which.
    pub(super) fn plan_app(&mut self, now_ms: u64, app: &AppId) {
        let Some(record) = self.apps.get(app) else {
            self.pending.remove(app);
            return;
        };
        let spec = Arc::clone(&record.spec);
        let record_version = record.last_config_change_at;
        let n = spec.instances;
        let tally = self.tally(now_ms, app);
        let (kills, launch) = match self.mode_of(app) {
            Mode::Frozen | Mode::Action(ActionKind::StartApplication | ActionKind::ResolveArtifacts) => (Vec::new(), 0),
            Mode::Action(ActionKind::StopApplication) => {
                if tally.active == 0 && tally.idle == 0 {
                    (Vec::new(), 0)
                } else {
                    // Replaced unreachable instances are killed too, should they come back.
                    let kills = self
                        .instances_of(app)
                        .filter(|i| i.killing_since.is_none())
                        .map(|i| i.task_id.clone())
                        .collect();
                    (kills, 0)
                }
            }
            Mode::Heal | Mode::Action(ActionKind::ScaleApplication) => {
                if tally.active > n {
                    let view = self.view(now_ms, app);
                    let candidates: Vec<&Counted> = view.counted.iter().filter(|c| !c.killing).collect();
                    (kill_order(candidates, spec.kill_selection, (tally.active - n) as usize), 0)
                } else {
                    (Vec::new(), n - tally.active)
                }
            }
            Mode::Action(ActionKind::RestartApplication) => {
                let bounds = rolling::bounds(n, &spec.upgrade_strategy);
                let old_active = tally.active - tally.current_active;
                let old_healthy = tally.healthy - tally.current_healthy;
                let missing = n.saturating_sub(tally.current_active);
                let launch = missing.min(bounds.ceiling.saturating_sub(tally.counted));
                if tally.current_active > n || old_active > old_healthy {
                    // Extra new instances, or old ones that do not serve: look at all.
                    self.rolling_kills(now_ms, app, &spec, bounds)
                } else if old_healthy > 0 && tally.healthy > bounds.floor {
                    // The usual step: as many healthy old instances as the floor allows.
                    let allowed = (tally.healthy - bounds.floor) as usize;
                    (self.next_old_healthy(now_ms, app, record_version, spec.kill_selection, allowed), launch)
                } else {
                    (Vec::new(), launch)
                }
            }
        };
        if !matches!(self.mode_of(app), Mode::Action(ActionKind::RestartApplication)) {
            self.kill_queues.remove(app);
        }
        for task_id in kills {
            self.kill(now_ms, &task_id);
        }
        self.set_pending(now_ms, app, launch);
    }

    /// The next `count` healthy old instances in kill order. The order is computed once
    /// per upgrade and kept (old instances never join an upgrade, and their staging
    /// times do not change); each is checked to still be old, healthy and alive when its
    /// turn comes. Without it, every new healthy instance would cost a scan of the app,
    /// and an upgrade of n instances n².
    fn next_old_healthy(
        &mut self,
        now_ms: u64,
        app: &AppId,
        version: Timestamp,
        selection: KillSelection,
        count: usize,
    ) -> Vec<TaskId> {
        let mut chosen = Vec::new();
        for rebuilt in [false, true] {
            let fresh = self.kill_queues.get(app).is_some_and(|q| q.0 == version);
            if rebuilt || !fresh {
                let view = self.view(now_ms, app);
                let old: Vec<&Counted> =
                    view.counted.iter().filter(|c| !c.killing && !c.current_version && c.healthy).collect();
                let order = kill_order(old.clone(), selection, old.len());
                self.kill_queues.insert(app.clone(), (version, order.into()));
            }
            while chosen.len() < count {
                let Some(task_id) = self.kill_queues.get_mut(app).and_then(|q| q.1.pop_front()) else { break };
                let still = self.parts.get(&task_id).is_some_and(|(_, p)| p.healthy && !p.current);
                if still {
                    chosen.push(task_id);
                }
            }
            if chosen.len() == count {
                break;
            }
        }
        chosen
    }

    /// A rolling upgrade's step when something is to be killed: which ones, and how many
    /// new instances go meanwhile.
    fn rolling_kills(&self, now_ms: u64, app: &AppId, spec: &AppSpec, bounds: rolling::Bounds) -> (Vec<TaskId>, u32) {
        let n = spec.instances;
        let view = self.view(now_ms, app);
        let alive: Vec<&Counted> = view.counted.iter().filter(|c| !c.killing).collect();
        let (new, old): (Vec<&Counted>, Vec<&Counted>) = alive.into_iter().partition(|c| c.current_version);
        let (old_healthy, old_unhealthy): (Vec<&Counted>, Vec<&Counted>) = old.into_iter().partition(|c| c.healthy);
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
        let step = rolling::step(&state, bounds);
        kills.extend(step.kill);
        (kills, step.launch)
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
        self.retally(now_ms, task_id);
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
        let tally = self.tally(now_ms, app);
        let settled = tally.counted == n && tally.active == n && tally.healthy == n;
        match kind {
            ActionKind::StartApplication | ActionKind::ResolveArtifacts => true,
            ActionKind::StopApplication => tally.counted == 0,
            ActionKind::ScaleApplication => settled,
            ActionKind::RestartApplication => settled && tally.current_counted == n,
        }
    }
}

/// Running, not being killed, reachable, healthy if its spec has health checks, and
/// ready: an instance that serves.
fn healthy(instance: &Instance, spec: Option<&Arc<AppSpec>>) -> bool {
    let checked = spec.is_some_and(|s| !s.health_checks.is_empty());
    instance.state == TaskState::TaskRunning
        && instance.killing_since.is_none()
        && instance.unreachable_since.is_none()
        && (!checked || instance.healthy == Some(true))
        && instance.ready
}

/// Whether an unreachable instance no longer counts: with `Disabled` at once, else after
/// `inactive_after`.
fn inactive(instance: &Instance, spec: Option<&Arc<AppSpec>>, now_ms: u64) -> bool {
    let Some(since) = instance.unreachable_since else { return false };
    match spec.map(|s| s.unreachable_strategy) {
        None | Some(UnreachableStrategy::Disabled) => true,
        Some(UnreachableStrategy::Enabled { inactive_after_ms, .. }) => {
            now_ms >= since.ms().saturating_add(inactive_after_ms)
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
