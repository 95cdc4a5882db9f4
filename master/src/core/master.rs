//! The [`Master`] itself: its state, the bookkeeping every handler shares (offers,
//! filters, task transitions), time (`tick`), allocation rounds and snapshots. The
//! handlers for agents and frameworks live in `agents.rs` and `frameworks.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_proto::model::{
    AgentId, FrameworkId, Offer, OfferId, Resources, StreamId, TaskId, TaskInfo, TaskState, TaskStatus,
    TaskStatusReason,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::durable::RegistryOp;
use super::allocator::{self, MinAllocatable};
use super::registry::{AgentRecord, FrameworkRecord, OfferRecord};
use super::{AgentView, Config, Counters, Event, FrameworkView, Output, Snapshot, ToAgent};

/// Bound on the ids of removed frameworks the master remembers.
pub const MAX_REMOVED_FRAMEWORK_IDS: usize = 100_000;

/// How an offer left the outstanding set; each way has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OfferEnd {
    Accepted,
    Declined,
    /// Taken back by the master; `notify` says whether the framework is told (it is not
    /// when its stream is already gone).
    Rescinded {
        notify: bool,
    },
}

/// The master's pure core. See the module documentation of `core`.
#[derive(Debug)]
pub struct Master {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) agents: BTreeMap<AgentId, AgentRecord>,
    pub(crate) frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    /// Removed frameworks, oldest first, at most `max_completed_frameworks`.
    pub(crate) completed_frameworks: VecDeque<FrameworkView>,
    /// Ids of removed frameworks, oldest first, at most `MAX_REMOVED_FRAMEWORK_IDS`:
    /// many more than the views kept for `/state`, because an agent that was away may
    /// report such a framework's tasks much later, and they must be shut down, not adopted.
    pub(crate) removed_frameworks: VecDeque<FrameworkId>,
    pub(crate) removed_framework_set: BTreeSet<FrameworkId>,
    pub(crate) offers: BTreeMap<OfferId, OfferRecord>,
    /// Offers in creation order with their deadline, for the offer timeout. Entries of
    /// offers that already ended are skipped when they reach the front.
    pub(crate) offer_deadlines: VecDeque<(u64, OfferId)>,
    /// Every filter by expiry, so that `tick` finds expired ones without a full scan.
    pub(crate) filter_expiries: BTreeSet<(u64, FrameworkId, AgentId)>,
    pub(crate) next_agent: u64,
    pub(crate) next_framework: u64,
    pub(crate) next_offer: u64,
    pub(crate) next_stream: u64,
    pub(crate) outbox: Vec<Output>,
    /// Something an allocation round could act on changed since the last round.
    pub(crate) dirty: bool,
    pub(crate) counters: Counters,
}

impl Master {
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            removed_frameworks: VecDeque::new(),
            removed_framework_set: BTreeSet::new(),
            offers: BTreeMap::new(),
            offer_deadlines: VecDeque::new(),
            filter_expiries: BTreeSet::new(),
            next_agent: 1,
            next_framework: 1,
            next_offer: 1,
            next_stream: 1,
            outbox: Vec::new(),
            dirty: false,
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    pub fn needs_allocation(&self) -> bool {
        self.dirty
    }

    // ----- time -----

    /// Applies every timer due at `now_ms`: offer timeouts, filter expiry, agent health
    /// and framework failover timeouts.
    pub fn tick(&mut self, now_ms: u64) {
        self.expire_offers(now_ms);
        self.expire_filters(now_ms);
        self.mark_silent_agents_unreachable(now_ms);
        self.remove_failed_over_frameworks(now_ms);
    }

    fn expire_offers(&mut self, now_ms: u64) {
        while let Some((deadline_ms, offer_id)) = self.offer_deadlines.front() {
            if *deadline_ms > now_ms {
                break;
            }
            let offer_id = offer_id.clone();
            self.offer_deadlines.pop_front();
            if self.offers.contains_key(&offer_id) {
                self.end_offer(&offer_id, OfferEnd::Rescinded { notify: true });
            }
        }
    }

    fn expire_filters(&mut self, now_ms: u64) {
        while let Some(first) = self.filter_expiries.first() {
            if first.0 > now_ms {
                break;
            }
            let Some((until_ms, framework_id, agent_id)) = self.filter_expiries.pop_first() else { break };
            if let Some(framework) = self.frameworks.get_mut(&framework_id)
                && framework.filters.get(&agent_id) == Some(&until_ms)
            {
                framework.filters.remove(&agent_id);
                self.dirty = true;
            }
        }
    }

    fn mark_silent_agents_unreachable(&mut self, now_ms: u64) {
        let timeout_ms = self.config.agent_timeout_ms;
        let silent: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.reachable && now_ms.saturating_sub(a.last_seen_ms) >= timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for agent_id in silent {
            self.mark_unreachable(now_ms, &agent_id);
        }
    }

    /// The agent is presumed partitioned: its offers are rescinded and each framework is
    /// told TASK_UNREACHABLE for each of its tasks there. The tasks keep their resources
    /// because they may still be running; a re-registration brings them back.
    pub(crate) fn mark_unreachable(&mut self, now_ms: u64, agent_id: &AgentId) {
        self.rescind_agent_offers(agent_id);
        let Some(agent) = self.agents.get_mut(agent_id) else { return };
        // An agent that dropped its connection is "disconnected"; one that stayed
        // connected but went silent failed its health checks and is "removed".
        let reason =
            if agent.conn.is_some() { TaskStatusReason::AgentRemoved } else { TaskStatusReason::AgentDisconnected };
        agent.reachable = false;
        self.outbox.push(Output::Persist(super::durable::RegistryOp::PutAgent {
            agent_id: agent_id.clone(),
            agent: super::durable::DurableAgent { info: agent.info.clone(), reachable: false },
        }));
        // Close a connection that is still open: when the agent wakes up (it may only be
        // paused or cut off), it finds the stream gone and re-registers with its tasks.
        if agent.conn.take().is_some() {
            self.outbox.push(Output::ReconnectAgent { agent_id: agent_id.clone() });
        }
        let tasks: Vec<(FrameworkId, TaskId)> = agent.tasks.iter().cloned().collect();
        self.counters.agents_unreachable = self.counters.agents_unreachable.saturating_add(1);
        for (framework_id, task_id) in tasks {
            let status = TaskStatus::from_master(
                task_id.clone(),
                Some(agent_id.clone()),
                TaskState::TaskUnreachable,
                reason,
                "the agent is unreachable",
                now_ms,
            );
            self.transition_task(&framework_id, &task_id, status, true);
        }
    }

    fn remove_failed_over_frameworks(&mut self, now_ms: u64) {
        let expired: Vec<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| {
                f.unregistered_at_ms.is_some_and(|at_ms| now_ms.saturating_sub(at_ms) >= f.info.failover_timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for framework_id in expired {
            self.remove_framework(now_ms, &framework_id);
        }
    }

    // ----- allocation -----

    /// One DRF round over every active agent; emits one OFFERS event per framework.
    pub fn allocate(&mut self, now_ms: u64) {
        self.dirty = false;
        self.counters.allocation_runs = self.counters.allocation_runs.saturating_add(1);
        let min = MinAllocatable {
            cpus_milli: self.config.min_allocatable_cpus_milli,
            mem_mib: self.config.min_allocatable_mem_mib,
        };
        let grants = allocator::allocate(&mut self.rng, &self.agents, &self.frameworks, min, now_ms);
        let mut batches: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for grant in grants {
            if let Some(offer) = self.create_offer(now_ms, &grant.agent_id, &grant.framework_id, grant.resources) {
                batches.entry(grant.framework_id).or_default().push(offer);
            }
        }
        for (framework_id, offers) in batches {
            self.outbox.push(Output::ToFramework { framework_id, event: Event::Offers(offers) });
        }
    }

    fn create_offer(
        &mut self,
        now_ms: u64,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: Resources,
    ) -> Option<Offer> {
        let agent = self.agents.get_mut(agent_id)?;
        let framework = self.frameworks.get_mut(framework_id)?;
        // Checked again on this side: an offer never holds what is not free.
        if !agent.is_active() || !framework.is_active() || !agent.free().contains(&resources) {
            return None;
        }
        let id = OfferId::new(format!("{}-O{}", self.config.master_id, self.next_offer));
        self.next_offer = self.next_offer.saturating_add(1);
        let offer = Offer {
            id: id.clone(),
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            hostname: agent.info.hostname.clone(),
            resources,
            attributes: agent.info.attributes.clone(),
            agent_url: agent.url(),
        };
        agent.offered.add(&offer.resources);
        agent.offers.insert(id.clone());
        framework.offered_scalars = framework.offered_scalars.saturating_add(&offer.resources.scalars());
        framework.offers.insert(id.clone());
        if let Some(timeout_ms) = self.config.offer_timeout_ms {
            self.offer_deadlines.push_back((now_ms.saturating_add(timeout_ms), id.clone()));
        }
        self.offers.insert(id, OfferRecord { offer: offer.clone() });
        self.counters.offers_sent = self.counters.offers_sent.saturating_add(1);
        Some(offer)
    }

    // ----- offers -----

    /// Removes an outstanding offer and returns its resources to the agent's free pool.
    pub(crate) fn end_offer(&mut self, offer_id: &OfferId, end: OfferEnd) -> Option<Offer> {
        let record = self.offers.remove(offer_id)?;
        let offer = record.offer;
        if let Some(agent) = self.agents.get_mut(&offer.agent_id) {
            agent.offered.subtract(&offer.resources);
            agent.offers.remove(offer_id);
        }
        let mut notify_framework = false;
        if let Some(framework) = self.frameworks.get_mut(&offer.framework_id) {
            framework.offered_scalars = framework.offered_scalars.saturating_sub(&offer.resources.scalars());
            framework.offers.remove(offer_id);
            notify_framework = framework.is_active();
        }
        let counter = match end {
            OfferEnd::Accepted => &mut self.counters.offers_accepted,
            OfferEnd::Declined => &mut self.counters.offers_declined,
            OfferEnd::Rescinded { notify } => {
                if notify && notify_framework {
                    self.outbox.push(Output::ToFramework {
                        framework_id: offer.framework_id.clone(),
                        event: Event::Rescind(offer_id.clone()),
                    });
                }
                &mut self.counters.offers_rescinded
            }
        };
        *counter = counter.saturating_add(1);
        self.dirty = true;
        Some(offer)
    }

    pub(crate) fn rescind_agent_offers(&mut self, agent_id: &AgentId) {
        let offer_ids: Vec<OfferId> =
            self.agents.get(agent_id).map(|a| a.offers.iter().cloned().collect()).unwrap_or_default();
        for offer_id in offer_ids {
            self.end_offer(&offer_id, OfferEnd::Rescinded { notify: true });
        }
    }

    /// Takes back a framework's offers without telling it: its stream is gone or replaced,
    /// and a new stream never saw them.
    pub(crate) fn withdraw_framework_offers(&mut self, framework_id: &FrameworkId) {
        let offer_ids: Vec<OfferId> =
            self.frameworks.get(framework_id).map(|f| f.offers.iter().cloned().collect()).unwrap_or_default();
        for offer_id in offer_ids {
            self.end_offer(&offer_id, OfferEnd::Rescinded { notify: false });
        }
    }

    // ----- filters -----

    pub(crate) fn set_filter(&mut self, framework_id: &FrameworkId, agent_id: &AgentId, now_ms: u64, refuse_ms: u64) {
        if refuse_ms == 0 {
            return;
        }
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let until_ms = now_ms.saturating_add(refuse_ms);
        if let Some(previous_ms) = framework.filters.insert(agent_id.clone(), until_ms) {
            self.filter_expiries.remove(&(previous_ms, framework_id.clone(), agent_id.clone()));
        }
        self.filter_expiries.insert((until_ms, framework_id.clone(), agent_id.clone()));
    }

    pub(crate) fn clear_filters(&mut self, framework_id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        for (agent_id, until_ms) in std::mem::take(&mut framework.filters) {
            self.filter_expiries.remove(&(until_ms, framework_id.clone(), agent_id));
        }
        self.dirty = true;
    }

    // ----- tasks -----

    /// Moves a known live task to `status.state` if the move is allowed; a terminal state
    /// frees its resources. `forward` sends the status to the framework (if connected).
    /// Returns whether the task moved.
    pub(crate) fn transition_task(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        status: TaskStatus,
        forward: bool,
    ) -> bool {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return false };
        let Some(task) = framework.tasks.get_mut(task_id) else { return false };
        if !task.state.may_become(status.state) {
            return false;
        }
        task.record(status.clone());
        let terminal = status.state.is_terminal();
        if forward && framework.is_active() {
            self.outbox.push(Output::ToFramework { framework_id: framework_id.clone(), event: Event::Update(status) });
        }
        if terminal {
            self.finish_task(framework_id, task_id);
        }
        true
    }

    /// Removes a task that reached a terminal state and frees what it held.
    fn finish_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let Some(task) = framework.tasks.remove(task_id) else { return };
        framework.used_scalars = framework.used_scalars.saturating_sub(&task.info.resources.scalars());
        if framework.completed_tasks.len() >= self.config.max_completed_tasks_per_framework {
            framework.completed_tasks.pop_front();
        }
        if self.config.max_completed_tasks_per_framework > 0 {
            framework.completed_tasks.push_back(task.view(framework_id));
        }
        if let Some(agent) = self.agents.get_mut(&task.info.agent_id) {
            agent.used.subtract(&task.info.resources);
            agent.tasks.remove(&(framework_id.clone(), task_id.clone()));
        }
        self.dirty = true;
    }

    /// Sends a kill to the task's agent now, or remembers it for when the agent returns.
    pub(crate) fn kill_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        let Some(task) = self.frameworks.get_mut(framework_id).and_then(|f| f.tasks.get_mut(task_id)) else {
            return;
        };
        let agent_id = task.info.agent_id.clone();
        if self.agents.get(&agent_id).is_some_and(AgentRecord::is_active) {
            task.kill_pending = false;
            let message = ToAgent::KillTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                grace_period_ms: task.info.kill_grace_period_ms,
            };
            self.outbox.push(Output::ToAgent { agent_id, message });
        } else {
            task.kill_pending = true;
        }
    }

    // ----- frameworks -----

    /// Removes a framework for good (TEARDOWN or failover timeout): its offers go back,
    /// its tasks are killed on their agents and count as KILLED at once (as in Mesos,
    /// their resources are free again), and its stream is closed.
    pub(crate) fn remove_framework(&mut self, now_ms: u64, framework_id: &FrameworkId) {
        if !self.frameworks.contains_key(framework_id) {
            return;
        }
        self.withdraw_framework_offers(framework_id);
        self.clear_filters(framework_id);
        let task_ids: Vec<(TaskId, AgentId)> = self
            .frameworks
            .get(framework_id)
            .map(|f| f.tasks.iter().map(|(id, t)| (id.clone(), t.info.agent_id.clone())).collect())
            .unwrap_or_default();
        let mut agents: BTreeSet<AgentId> = BTreeSet::new();
        for (task_id, agent_id) in task_ids {
            let status = TaskStatus::from_master(
                task_id.clone(),
                Some(agent_id.clone()),
                TaskState::TaskKilled,
                TaskStatusReason::FrameworkRemoved,
                "the framework was removed",
                now_ms,
            );
            self.transition_task(framework_id, &task_id, status, false);
            agents.insert(agent_id);
        }
        for agent_id in agents {
            if self.agents.get(&agent_id).is_some_and(AgentRecord::is_active) {
                let message = ToAgent::ShutdownFramework { framework_id: framework_id.clone() };
                self.outbox.push(Output::ToAgent { agent_id, message });
            }
        }
        let Some(framework) = self.frameworks.remove(framework_id) else { return };
        let mut view = framework_view(framework_id, &framework, &self.offers);
        view.active = false;
        view.unregistered_at_ms = Some(now_ms);
        if self.config.max_completed_frameworks > 0 {
            if self.completed_frameworks.len() >= self.config.max_completed_frameworks {
                self.completed_frameworks.pop_front();
            }
            self.completed_frameworks.push_back(view);
        }
        self.remember_removed_framework(framework_id.clone());
        self.outbox.push(Output::Persist(RegistryOp::RemoveFramework { framework_id: framework_id.clone() }));
        self.outbox.push(Output::CloseFramework { framework_id: framework_id.clone() });
        self.dirty = true;
    }

    pub(crate) fn remember_removed_framework(&mut self, framework_id: FrameworkId) {
        if self.removed_framework_set.contains(&framework_id) {
            return;
        }
        if self.removed_frameworks.len() >= MAX_REMOVED_FRAMEWORK_IDS
            && let Some(oldest) = self.removed_frameworks.pop_front()
        {
            self.removed_framework_set.remove(&oldest);
        }
        self.removed_frameworks.push_back(framework_id.clone());
        self.removed_framework_set.insert(framework_id);
    }

    pub(crate) fn is_removed_framework(&self, framework_id: &FrameworkId) -> bool {
        self.removed_framework_set.contains(framework_id)
    }

    pub(crate) fn new_stream_id(&mut self) -> StreamId {
        let id = StreamId::new(format!("{}-stream-{}", self.config.master_id, self.next_stream));
        self.next_stream = self.next_stream.saturating_add(1);
        id
    }

    // ----- reading -----

    /// The counters alone, without the cost of a snapshot.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Every outstanding offer, by offer id.
    pub fn outstanding_offers(&self) -> impl Iterator<Item = &Offer> + '_ {
        self.offers.values().map(|record| &record.offer)
    }

    /// Every live task with its framework and state, by framework then task id.
    pub fn live_tasks(&self) -> impl Iterator<Item = (&FrameworkId, &TaskInfo, TaskState)> + '_ {
        self.frameworks.iter().flat_map(|(id, f)| f.tasks.values().map(move |t| (id, &t.info, t.state)))
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            master_id: self.config.master_id.clone(),
            agents: self
                .agents
                .iter()
                .map(|(id, a)| AgentView {
                    id: id.clone(),
                    info: a.info.clone(),
                    used: a.used.clone(),
                    offered: a.offered.clone(),
                    active: a.is_active(),
                    reachable: a.reachable,
                    registered_at_ms: a.registered_at_ms,
                })
                .collect(),
            frameworks: self.frameworks.iter().map(|(id, f)| framework_view(id, f, &self.offers)).collect(),
            completed_frameworks: self.completed_frameworks.iter().cloned().collect(),
            outstanding_offers: self.offers.len(),
            counters: self.counters.clone(),
        }
    }
}

fn framework_view(
    id: &FrameworkId,
    framework: &FrameworkRecord,
    offers: &BTreeMap<OfferId, OfferRecord>,
) -> FrameworkView {
    let mut used = Resources::new();
    for task in framework.tasks.values() {
        used.add(&task.info.resources);
    }
    let mut offered = Resources::new();
    for offer_id in &framework.offers {
        if let Some(record) = offers.get(offer_id) {
            offered.add(&record.offer.resources);
        }
    }
    FrameworkView {
        id: id.clone(),
        info: framework.info.clone(),
        active: framework.is_active(),
        used,
        offered,
        tasks: framework.tasks.values().map(|t| t.view(id)).collect(),
        completed_tasks: framework.completed_tasks.iter().cloned().collect(),
        registered_at_ms: framework.registered_at_ms,
        unregistered_at_ms: framework.unregistered_at_ms,
    }
}

/// The number in an id the master minted as `{prefix}{n}`, so that a re-admitted id
/// (after a master restart) is never handed out again.
pub(crate) fn sequence_of(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.parse().ok()
}
