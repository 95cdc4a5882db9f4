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
    /// When the agent became unreachable; its re-register timeout counts from here.
    pub unreachable_since_ms: Option<u64>,
    pub last_seen_ms: u64,
    pub registered_at_ms: u64,
    /// Resources held by the agent's live tasks (unreachable ones included: they may run).
    pub used: Resources,
    /// Resources in outstanding offers.
    pub offered: Resources,
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    pub offers: BTreeSet<OfferId>,
    /// Filter slots of the frameworks that filter this agent, sorted: the allocator
    /// checks a filter with a binary search over integers instead of a map of strings.
    pub filtered_by: Vec<u64>,
    /// The allocation epoch at which a round found free resources here that no client
    /// could take; the allocator skips the agent until the epoch moves on or something
    /// changes on the agent (which resets this to `None`).
    pub stuck_epoch: Option<u64>,
}

impl AgentRecord {
    pub fn new(info: AgentInfo, conn: ConnId, now_ms: u64) -> Self {
        Self {
            info,
            conn: Some(conn),
            reachable: true,
            unreachable_since_ms: None,
            last_seen_ms: now_ms,
            registered_at_ms: now_ms,
            used: Resources::new(),
            offered: Resources::new(),
            tasks: BTreeSet::new(),
            offers: BTreeSet::new(),
            filtered_by: Vec::new(),
            stuck_epoch: None,
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

    /// Whether `resources` are free here, as `free().contains(..)` says, without building
    /// the free resources: the allocator's grants are checked this way once per offer.
    pub fn has_free(&self, resources: &Resources) -> bool {
        resources.pools().all(|(role, pool)| {
            if pool.is_empty() {
                return true;
            }
            let Some(total) = self.info.resources.pool(role) else { return false };
            let taken = |r: &Resources| r.pool(role).map_or(Scalars::ZERO, |p| p.scalars);
            let needed = pool.scalars.saturating_add(&taken(&self.used)).saturating_add(&taken(&self.offered));
            let overlaps = |r: &Resources| r.pool(role).is_some_and(|p| ranges_overlap(p.ports.ranges(), pool.ports.ranges()));
            total.scalars.contains(&needed)
                && total.ports.contains(&pool.ports)
                && !overlaps(&self.used)
                && !overlaps(&self.offered)
        })
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
    /// The role the task's resources are accounted to (its offer's allocation role).
    pub role: Role,
}

impl TaskRecord {
    /// A task accounted to the role its resources are reserved for, else to `*`; a
    /// launch from an offer sets the offer's role instead.
    pub fn new(info: TaskInfo, status: TaskStatus) -> Self {
        let state = status.state;
        let role = info.resources.pools().map(|(r, _)| r).find(|r| !r.is_unreserved()).cloned();
        let role = role.unwrap_or_else(Role::unreserved);
        Self { info, state, statuses: VecDeque::from([status]), kill_pending: false, role }
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
    /// Used + offered by role, for the allocator's per-role shares. No zero entries.
    pub allocated: BTreeMap<Role, Scalars>,
    /// The framework's number in agents' `filtered_by`, given when it first filters one.
    pub filter_slot: Option<u64>,
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
            allocated: BTreeMap::new(),
            filter_slot: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.stream.is_some()
    }

    /// The framework's first role: what tasks adopted from agents are accounted to.
    pub fn first_role(&self) -> Role {
        self.info.roles.first().cloned().unwrap_or_else(Role::unreserved)
    }

    /// Accounts resources taken (offered or used) for `role`.
    pub fn charge(&mut self, role: &Role, scalars: &Scalars) {
        if scalars.is_zero() {
            return;
        }
        let entry = self.allocated.entry(role.clone()).or_insert(Scalars::ZERO);
        *entry = entry.saturating_add(scalars);
    }

    /// Gives back resources accounted to `role`.
    pub fn refund(&mut self, role: &Role, scalars: &Scalars) {
        if let Some(entry) = self.allocated.get_mut(role) {
            *entry = entry.saturating_sub(scalars);
            if entry.is_zero() {
                self.allocated.remove(role);
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OfferRecord {
    pub offer: Offer,
    /// The framework role the offer was made for.
    pub role: Role,
}

/// Whether two sorted range lists share a number.
fn ranges_overlap(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while let (Some(&(ab, ae)), Some(&(bb, be))) = (a.get(i), b.get(j)) {
        if ab <= be && bb <= ae {
            return true;
        }
        if ae < be {
            i += 1;
        } else {
            j += 1;
        }
    }
    false
}
