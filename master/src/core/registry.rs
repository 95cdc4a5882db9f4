//! The master's records of agents, frameworks, tasks and offers, and the bookkeeping
//! that keeps their resource sums consistent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_proto::model::{
    AgentId, AgentInfo, FrameworkId, FrameworkInfo, Offer, OfferId, Resources, Role, Scalars, StreamId, TaskId,
    TaskInfo, TaskState, TaskStatus,
};

use super::{ConnId, TaskView};

/// Statuses kept per task for `/state`; older ones are dropped first.
pub(crate) const MAX_STATUSES_PER_TASK: usize = 16;

#[derive(Clone, Debug)]
pub(crate) struct AgentRecord {
    pub info: AgentInfo,
    /// The agent's current connection; `None` while it is disconnected.
    pub conn: Option<ConnId>,
    /// False once the agent missed its heartbeats for `agent_timeout_ms`; only a
    /// re-registration makes it reachable again.
    pub reachable: bool,
    pub last_seen_ms: u64,
    pub registered_at_ms: u64,
    /// Resources held by the agent's live tasks (unreachable ones included: they may run).
    pub used: Resources,
    /// Resources in outstanding offers.
    pub offered: Resources,
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    pub offers: BTreeSet<OfferId>,
}

impl AgentRecord {
    pub fn new(info: AgentInfo, conn: ConnId, now_ms: u64) -> Self {
        Self {
            info,
            conn: Some(conn),
            reachable: true,
            last_seen_ms: now_ms,
            registered_at_ms: now_ms,
            used: Resources::new(),
            offered: Resources::new(),
            tasks: BTreeSet::new(),
            offers: BTreeSet::new(),
        }
    }

    /// Connected and reachable: the only state in which the agent is offered.
    pub fn is_active(&self) -> bool {
        self.reachable && self.conn.is_some()
    }

    /// Resources neither used nor offered. Empty if the sums are inconsistent, so that a
    /// bookkeeping bug can never turn into an over-commitment.
    pub fn free(&self) -> Resources {
        let mut free = self.info.resources.clone();
        if free.subtract(&self.used) && free.subtract(&self.offered) { free } else { Resources::new() }
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.info.hostname, self.info.port)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TaskRecord {
    pub info: TaskInfo,
    pub state: TaskState,
    pub statuses: VecDeque<TaskStatus>,
    /// The framework asked to kill the task while its agent could not be told; the kill
    /// is sent when the agent re-registers.
    pub kill_pending: bool,
}

impl TaskRecord {
    pub fn new(info: TaskInfo, status: TaskStatus) -> Self {
        let state = status.state;
        Self { info, state, statuses: VecDeque::from([status]), kill_pending: false }
    }

    pub fn record(&mut self, status: TaskStatus) {
        self.state = status.state;
        if self.statuses.len() >= MAX_STATUSES_PER_TASK {
            self.statuses.pop_front();
        }
        self.statuses.push_back(status);
    }

    pub fn latest(&self) -> Option<&TaskStatus> {
        self.statuses.back()
    }

    pub fn view(&self, framework_id: &FrameworkId) -> TaskView {
        TaskView {
            info: self.info.clone(),
            framework_id: framework_id.clone(),
            state: self.state,
            statuses: self.statuses.iter().cloned().collect(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FrameworkRecord {
    pub info: FrameworkInfo,
    /// The current subscription; `None` while disconnected (or never subscribed to this
    /// master, for a framework known only from its agents' tasks).
    pub stream: Option<StreamId>,
    pub registered_at_ms: u64,
    /// When the framework disconnected; its failover timeout counts from here.
    pub unregistered_at_ms: Option<u64>,
    pub suppressed: BTreeSet<Role>,
    /// Agents this framework declined, until when (exclusive).
    pub filters: BTreeMap<AgentId, u64>,
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    pub completed_tasks: VecDeque<TaskView>,
    pub offers: BTreeSet<OfferId>,
    /// Totals over the framework's live tasks and outstanding offers. Only scalars: port
    /// numbers of different agents cannot be summed, and DRF needs only the scalars.
    pub used_scalars: Scalars,
    pub offered_scalars: Scalars,
}

impl FrameworkRecord {
    pub fn new(info: FrameworkInfo, now_ms: u64) -> Self {
        Self {
            info,
            stream: None,
            registered_at_ms: now_ms,
            unregistered_at_ms: Some(now_ms),
            suppressed: BTreeSet::new(),
            filters: BTreeMap::new(),
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            offers: BTreeSet::new(),
            used_scalars: Scalars::ZERO,
            offered_scalars: Scalars::ZERO,
        }
    }

    pub fn is_active(&self) -> bool {
        self.stream.is_some()
    }

    /// The role the allocator offers this framework resources for. Multi-role frameworks
    /// are offered for their first role until the hierarchical allocator lands.
    pub fn allocation_role(&self) -> Role {
        self.info.roles.first().cloned().unwrap_or_else(Role::unreserved)
    }

    /// Whether the allocator may offer to this framework at all.
    pub fn wants_offers(&self) -> bool {
        self.is_active() && !self.suppressed.contains(&self.allocation_role())
    }

    pub fn is_filtered(&self, agent_id: &AgentId, now_ms: u64) -> bool {
        self.filters.get(agent_id).is_some_and(|until_ms| *until_ms > now_ms)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OfferRecord {
    pub offer: Offer,
}
