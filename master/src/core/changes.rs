//! What changed in the registry since the runtime last asked: the feed of the master's
//! read model (`runtime/read_model.rs`), so that `/state` and the operator API never ask
//! the owner to copy the world.
//!
//! The core notes *which* agents, frameworks and tasks changed as it changes them (ids in
//! sets, so a record changed a thousand times in a batch is copied once), and
//! [`Master::take_changes`] copies just those records into a [`Changes`]. Agents are noted
//! by the agent table itself (every change to an agent goes through its guard or a round),
//! frameworks and tasks where the core changes them. Two kinds of record are copied when
//! they happen rather than when taken, because the core lets go of them: a task's view
//! when it ends (it moves to the framework's bounded completed list) and a framework's
//! view when it is removed.
//!
//! Nothing is noted until the runtime turns the log on ([`Master::track_changes`]), so
//! tests and the simulation that never take changes keep nothing. The sets are bounded by
//! what the registry holds, however long the runtime waits before taking them; the two
//! lists of ended records are bounded by [`MAX_PENDING_ENDED`].

use std::collections::BTreeSet;

use agora_proto::model::{AgentId, FrameworkId, TaskId};

use super::registry::AgentRecord;
use super::{AgentView, Counters, FrameworkView, Master, TaskView};

/// Ended tasks (and removed frameworks) kept for the read model while it does not take
/// them; past this the oldest go, as the core's own completed lists would drop them.
pub const MAX_PENDING_ENDED: usize = 256 * 1024;

/// What the core noted since the last `take_changes`.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    pub enabled: bool,
    /// Frameworks whose description, connection or offers changed.
    pub frameworks: BTreeSet<FrameworkId>,
    /// Live tasks added or changed (a task that ended since is in `ended_tasks` instead).
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    pub ended_tasks: Vec<TaskView>,
    pub removed_frameworks: Vec<FrameworkView>,
    /// Everything is new to the reader: the next `take_changes` copies every record.
    pub everything: bool,
}

impl ChangeLog {
    pub fn framework(&mut self, framework_id: &FrameworkId) {
        if self.enabled {
            self.frameworks.insert(framework_id.clone());
        }
    }

    pub fn task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        if self.enabled {
            self.tasks.insert((framework_id.clone(), task_id.clone()));
        }
    }

    pub fn ended(&mut self, view: impl FnOnce() -> TaskView) {
        if self.enabled {
            bounded_push(&mut self.ended_tasks, view());
        }
    }

    pub fn removed(&mut self, view: FrameworkView) {
        if self.enabled {
            bounded_push(&mut self.removed_frameworks, view);
        }
    }
}

fn bounded_push<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= MAX_PENDING_ENDED {
        list.remove(0);
    }
    list.push(item);
}

/// The records that changed, as of the end of a batch. Framework views here carry neither
/// tasks nor `used` resources: the reader keeps the tasks (`tasks`, `ended_tasks`) and
/// sums them, since summing a framework's 100,000 tasks per change would be the owner's
/// time. A removed framework's view is whole (its ended tasks included).
#[derive(Debug, Default)]
pub struct Changes {
    /// Every record follows: the reader drops what it held (the first changes it gets).
    pub reset: bool,
    /// Agents added or changed, and the ids of those removed (an id removed and added
    /// again in one batch is in both: removals apply first).
    pub agents: Vec<AgentView>,
    pub removed_agents: Vec<AgentId>,
    pub frameworks: Vec<FrameworkView>,
    pub removed_frameworks: Vec<FrameworkView>,
    /// Live tasks added or changed, then tasks that ended (each with its final status).
    pub tasks: Vec<TaskView>,
    pub ended_tasks: Vec<TaskView>,
    pub outstanding_offers: usize,
    pub counters: Counters,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.agents.is_empty()
            && self.removed_agents.is_empty()
            && self.frameworks.is_empty()
            && self.removed_frameworks.is_empty()
            && self.tasks.is_empty()
            && self.ended_tasks.is_empty()
    }
}

impl Master {
    /// Starts noting changes for [`take_changes`](Self::take_changes); the first changes
    /// taken hold every record (the reader starts from nothing).
    pub fn track_changes(&mut self) {
        self.changes.enabled = true;
        self.changes.everything = true;
        self.agents.track_changes(true);
    }

    /// Whether anything was noted since the last `take_changes`.
    pub fn has_changes(&self) -> bool {
        let log = &self.changes;
        log.everything
            || !log.frameworks.is_empty()
            || !log.tasks.is_empty()
            || !log.ended_tasks.is_empty()
            || !log.removed_frameworks.is_empty()
            || self.agents.has_changes()
    }

    /// Copies the records noted since the last call (see the module documentation).
    /// Costs the changed records, not the registry, except the first time.
    pub fn take_changes(&mut self) -> Changes {
        let log = std::mem::take(&mut self.changes);
        self.changes.enabled = log.enabled;
        let (changed_agents, removed_agents) = self.agents.take_changes();
        let mut changes = Changes {
            reset: log.everything,
            removed_agents,
            ended_tasks: log.ended_tasks,
            removed_frameworks: log.removed_frameworks,
            outstanding_offers: self.offers.len(),
            counters: self.counters.clone(),
            ..Changes::default()
        };
        if log.everything {
            changes.removed_agents.clear();
            changes.agents = self.agents.iter().map(|(id, a)| agent_view(id, a)).collect();
            changes.frameworks = self.frameworks.keys().filter_map(|id| self.framework_header(id)).collect();
            changes.tasks = self.frameworks.iter().flat_map(|(id, f)| f.tasks.values().map(|t| t.view(id))).collect();
            changes.ended_tasks = self
                .frameworks
                .values()
                .flat_map(|f| f.completed_tasks.iter().cloned())
                .chain(changes.ended_tasks.drain(..))
                .collect();
            changes.removed_frameworks = self.completed_frameworks.iter().cloned().collect();
            return changes;
        }
        changes.agents =
            changed_agents.iter().filter_map(|id| self.agents.get(id).map(|a| agent_view(id, a))).collect();
        changes.frameworks = log.frameworks.iter().filter_map(|id| self.framework_header(id)).collect();
        changes.tasks = log
            .tasks
            .iter()
            .filter_map(|(fid, tid)| self.frameworks.get(fid)?.tasks.get(tid).map(|t| t.view(fid)))
            .collect();
        changes
    }

    /// A framework's view without its tasks (see [`Changes`]).
    fn framework_header(&self, framework_id: &FrameworkId) -> Option<FrameworkView> {
        let framework = self.frameworks.get(framework_id)?;
        let mut offered = agora_proto::model::Resources::new();
        for n in framework.offers.iter() {
            if let Some(record) = self.offers.by_key(n) {
                offered.add(&record.offer.resources);
            }
        }
        Some(FrameworkView {
            id: framework_id.clone(),
            info: framework.info.clone(),
            active: framework.is_active(),
            used: agora_proto::model::Resources::new(),
            offered,
            tasks: Vec::new(),
            completed_tasks: Vec::new(),
            registered_at_ms: framework.registered_at_ms,
            unregistered_at_ms: framework.unregistered_at_ms,
        })
    }
}

/// The operator's view of one agent record, as `/state` and the read model show it.
pub(crate) fn agent_view(id: &AgentId, agent: &AgentRecord) -> AgentView {
    AgentView {
        id: id.clone(),
        info: agent.info.clone(),
        used: agent.used().clone(),
        offered: agent.offered().clone(),
        active: agent.is_active(),
        reachable: agent.reachable,
        registered_at_ms: agent.registered_at_ms,
        deactivated: agent.deactivated,
        drain: agent.drain.clone(),
    }
}
