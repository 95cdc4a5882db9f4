//! The [`Master`] itself: its state, the bookkeeping every handler shares (offers,
//! filters, task transitions), time (`tick`), allocation rounds and snapshots. The
//! handlers for agents and frameworks live in `agents.rs` and `frameworks.rs`.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_proto::model::{
    AgentId, FrameworkId, Offer, OfferId, Resources, StreamId, TaskId, TaskInfo, TaskState, TaskStatus,
    TaskStatusReason,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::agent_table::AgentTable;
use super::allocator::{self, Grant, MinAllocatable, RoundInput};
use super::durable::RegistryOp;
use super::maintenance::{DrainState, InverseOffers, Maintenance};
use super::registry::{AgentRecord, FrameworkRecord, HeldOffer, OfferBook, OfferRecord, TaskRecord};
use super::roles::RolePolicy;
use super::{Config, Counters, Event, FrameworkView, Gauges, Output, Snapshot, ToAgent};

/// Bound on the ids of removed frameworks the master remembers.
pub const MAX_REMOVED_FRAMEWORK_IDS: usize = 100_000;
/// How many gone agent ids are remembered (and refused under their old id).
pub const MAX_GONE_AGENT_IDS: usize = 100_000;

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
    pub(crate) agents: AgentTable,
    pub(crate) frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    /// Removed frameworks, oldest first, at most `max_completed_frameworks`.
    pub(crate) completed_frameworks: VecDeque<FrameworkView>,
    /// Ids of removed frameworks, oldest first, at most `MAX_REMOVED_FRAMEWORK_IDS`:
    /// many more than the views kept for `/state`, because an agent that was away may
    /// report such a framework's tasks much later, and they must be shut down, not adopted.
    pub(crate) removed_frameworks: VecDeque<FrameworkId>,
    pub(crate) removed_framework_set: BTreeSet<FrameworkId>,
    /// Ids of agents declared gone, oldest first, at most `MAX_GONE_AGENT_IDS`: such an
    /// agent is refused if it tries to come back under its old id.
    pub(crate) gone_agents: VecDeque<AgentId>,
    pub(crate) gone_agent_set: BTreeSet<AgentId>,
    /// The rate limit on agent removals: removals in the minute starting at the given time.
    pub(crate) removal_window_start_ms: u64,
    pub(crate) removals_in_window: u32,
    pub(crate) offers: OfferBook,
    /// Offers (by number) in creation order with their deadline, for the offer timeout.
    /// Entries of offers that already ended are skipped when they reach the front.
    pub(crate) offer_deadlines: VecDeque<(u64, u64)>,
    /// Every filter by expiry, so that `tick` finds expired ones without a full scan.
    pub(crate) filter_expiries: BTreeSet<(u64, FrameworkId, AgentId)>,
    pub(crate) next_agent: u64,
    pub(crate) next_framework: u64,
    pub(crate) next_offer: u64,
    pub(crate) next_stream: u64,
    pub(crate) outbox: Vec<Output>,
    /// Something an allocation round could act on changed since the last round.
    pub(crate) dirty: bool,
    /// Moves on whenever clients may take agents they could not before; agents marked
    /// stuck at an older epoch are visited again.
    pub(crate) alloc_epoch: u64,
    /// The next framework filter slot (see `FrameworkRecord::filter_slot`).
    pub(crate) next_filter_slot: u64,
    /// Weights, quota and dynamic reservations, set by operators.
    pub(crate) policy: RolePolicy,
    /// The maintenance schedule and the machines that are down, set by operators.
    pub(crate) maintenance: Maintenance,
    /// Outstanding inverse offers and the frameworks' answers (see `maintenance.rs`).
    pub(crate) inverse: InverseOffers,
    pub(crate) counters: Counters,
    /// What changed since the read model last looked (`core/changes.rs`).
    pub(crate) changes: super::changes::ChangeLog,
}

impl Master {
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            offers: OfferBook::new(&config.master_id),
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            agents: AgentTable::default(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            removed_frameworks: VecDeque::new(),
            removed_framework_set: BTreeSet::new(),
            gone_agents: VecDeque::new(),
            gone_agent_set: BTreeSet::new(),
            removal_window_start_ms: 0,
            removals_in_window: 0,
            offer_deadlines: VecDeque::new(),
            filter_expiries: BTreeSet::new(),
            next_agent: 1,
            next_framework: 1,
            next_offer: 1,
            next_stream: 1,
            outbox: Vec::new(),
            dirty: false,
            alloc_epoch: 0,
            next_filter_slot: 0,
            policy: RolePolicy::default(),
            maintenance: Maintenance::default(),
            inverse: InverseOffers::default(),
            counters: Counters::default(),
            changes: Default::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// Moves the outputs so far to the end of `into`. The core keeps its buffer, so a
    /// runtime draining after every request does not allocate a new one each time.
    pub fn drain_outputs_into(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.outbox);
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
        self.remove_gone_agents(now_ms);
        self.remove_failed_over_frameworks(now_ms);
    }

    fn expire_offers(&mut self, now_ms: u64) {
        while let Some(&(deadline_ms, n)) = self.offer_deadlines.front() {
            if deadline_ms > now_ms {
                break;
            }
            self.offer_deadlines.pop_front();
            self.end_offer_number(n, OfferEnd::Rescinded { notify: true });
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
                let slot = framework.filter_slot;
                self.unfilter(&agent_id, slot);
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
        let Some(mut agent) = self.agents.get_mut(agent_id) else { return };
        // An agent that dropped its connection is "disconnected"; one that stayed
        // connected but went silent failed its health checks and is "removed".
        let reason =
            if agent.conn.is_some() { TaskStatusReason::AgentRemoved } else { TaskStatusReason::AgentDisconnected };
        agent.reachable = false;
        agent.unreachable_since_ms = Some(now_ms);
        let durable = super::durable::DurableAgent::of(&agent);
        self.outbox.push(Output::Persist(RegistryOp::PutAgent { agent_id: agent_id.clone(), agent: durable }));
        // Close a connection that is still open: when the agent wakes up (it may only be
        // paused or cut off), it finds the stream gone and re-registers with its tasks.
        if agent.conn.take().is_some() {
            self.outbox.push(Output::ReconnectAgent { agent_id: agent_id.clone() });
        }
        let tasks: Vec<(FrameworkId, TaskId)> = agent.tasks.iter().cloned().collect();
        drop(agent);
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

    /// Agents unreachable for longer than the re-register timeout are gone, oldest first,
    /// at most `agent_removals_per_minute` in any minute.
    fn remove_gone_agents(&mut self, now_ms: u64) {
        let timeout_ms = self.config.agent_reregister_timeout_ms;
        let mut due: Vec<(u64, AgentId)> = self
            .agents
            .iter()
            .filter_map(|(id, a)| a.unreachable_since_ms.map(|since| (since, id.clone())))
            .filter(|(since, _)| now_ms.saturating_sub(*since) >= timeout_ms)
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort();
        if now_ms.saturating_sub(self.removal_window_start_ms) >= 60_000 {
            self.removal_window_start_ms = now_ms;
            self.removals_in_window = 0;
        }
        for (_, agent_id) in due {
            if self.removals_in_window >= self.config.agent_removals_per_minute {
                break;
            }
            self.removals_in_window = self.removals_in_window.saturating_add(1);
            self.remove_agent(now_ms, &agent_id);
        }
    }

    /// Declares an unreachable agent gone: every task it had is TASK_GONE (its resources
    /// are free), and the agent may only come back under a new id.
    fn remove_agent(&mut self, now_ms: u64, agent_id: &AgentId) {
        let Some(agent) = self.agents.remove(agent_id) else { return };
        for (framework_id, task_id) in agent.tasks {
            let status = TaskStatus::from_master(
                task_id.clone(),
                Some(agent_id.clone()),
                TaskState::TaskGone,
                TaskStatusReason::AgentRemoved,
                "the agent was unreachable for longer than the re-register timeout",
                now_ms,
            );
            self.transition_task(&framework_id, &task_id, status, true);
        }
        self.remember_gone_agent(agent_id.clone());
        self.counters.agents_removed = self.counters.agents_removed.saturating_add(1);
        self.outbox.push(Output::Persist(RegistryOp::RemoveAgent { agent_id: agent_id.clone() }));
        self.dirty = true;
    }

    pub(crate) fn remember_gone_agent(&mut self, agent_id: AgentId) {
        if !self.gone_agent_set.insert(agent_id.clone()) {
            return;
        }
        self.gone_agents.push_back(agent_id);
        if self.gone_agents.len() > MAX_GONE_AGENT_IDS
            && let Some(oldest) = self.gone_agents.pop_front()
        {
            self.gone_agent_set.remove(&oldest);
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

    /// One DRF round over the agents worth a look (see `AgentTable::round`); emits one
    /// OFFERS event per framework.
    pub fn allocate(&mut self, now_ms: u64) {
        // Filters that ran out count as lifted even if no tick came since.
        self.expire_filters(now_ms);
        self.dirty = false;
        self.counters.allocation_runs = self.counters.allocation_runs.saturating_add(1);
        let min = self.min_allocatable();
        let epoch = self.alloc_epoch;
        // The round works on the records themselves, by position: the agents worth visiting
        // and every framework, each borrowed once, so that turning grants into offers looks
        // nothing up by id.
        let mut round = self.agents.round(epoch);
        if round.order.is_empty() {
            return;
        }
        let mut frameworks: Vec<(&FrameworkId, &mut FrameworkRecord)> = self.frameworks.iter_mut().collect();
        let max_offers = self.config.max_offers_per_framework;
        let input = RoundInput { policy: &self.policy, min, max_offers_per_framework: max_offers };
        let mut sink = OfferSink {
            offers: &mut self.offers,
            deadlines: &mut self.offer_deadlines,
            next_offer: &mut self.next_offer,
            counters: &mut self.counters,
            deadline_ms: self.config.offer_timeout_ms.map(|timeout_ms| now_ms.saturating_add(timeout_ms)),
        };
        // One OFFERS event per framework, in framework order, each with its offers in the
        // order they were granted.
        let mut batches: Vec<Vec<Offer>> = Vec::new();
        batches.resize_with(frameworks.len(), Vec::new);
        // Room for twice the mean share of the agents, or what the framework may still be
        // offered, so that few batches grow during the round (a reallocation is a copy
        // and, after the declines of a busy cluster, often glibc's slow path).
        let expected = 2 * round.order.len() / frameworks.len().max(1) + 1;
        let end = allocator::allocate(&mut self.rng, &mut round, &mut frameworks, input, epoch, |grant| {
            let room = max_offers.map_or(usize::MAX, |max| max.saturating_sub(grant.framework_record.offers.len()));
            if let Some(batch) = batches.get_mut(grant.framework as usize) {
                sink.create(grant, batch, expected.min(room.max(1)));
            }
        });
        self.agents.finish_round(epoch, &end);
        for f in end.capped {
            if let Some((_, framework)) = frameworks.get_mut(f as usize) {
                framework.offer_capped = true;
            }
        }
        // One allocation for the round's events rather than a doubling series of copies.
        self.outbox.reserve(batches.iter().filter(|offers| !offers.is_empty()).count());
        for ((framework_id, _), offers) in frameworks.iter().zip(batches) {
            if !offers.is_empty() {
                self.changes.framework(framework_id);
                let framework_id = (*framework_id).clone();
                self.outbox.push(Output::ToFramework { framework_id, event: Event::Offers(offers) });
            }
        }
    }

    /// The smallest offer worth making, as configured.
    pub(crate) fn min_allocatable(&self) -> MinAllocatable {
        MinAllocatable {
            cpus_milli: self.config.min_allocatable_cpus_milli,
            mem_mib: self.config.min_allocatable_mem_mib,
        }
    }

    // ----- offers -----

    /// Removes an outstanding offer and returns its resources to the agent's free pool.
    pub(crate) fn end_offer(&mut self, offer_id: &OfferId, end: OfferEnd) -> Option<HeldOffer> {
        let n = self.offers.key(offer_id)?;
        self.end_offer_number(n, end)
    }

    /// `end_offer` by the offer's number.
    pub(crate) fn end_offer_number(&mut self, n: u64, end: OfferEnd) -> Option<HeldOffer> {
        let record = self.offers.remove(n)?;
        let offer = record.offer;
        let scalars = offer.resources.scalars();
        if let Some(mut agent) = self.agents.get_mut(&offer.agent_id) {
            agent.remove_offered(&offer.resources);
            if let Some(at) = agent.offers.iter().position(|&o| o == n) {
                agent.offers.remove(at);
            }
            // `agent_changed` without looking the agent up again.
            agent.stuck_epoch = None;
        }
        let mut notify_framework = false;
        if let Some(framework) = self.frameworks.get_mut(&offer.framework_id) {
            framework.offered_scalars = framework.offered_scalars.saturating_sub(&scalars);
            framework.refund(&record.role, &scalars);
            framework.offers.remove(n);
            notify_framework = framework.is_active();
            self.changes.framework(&offer.framework_id);
            if std::mem::take(&mut framework.offer_capped) {
                // Agents no client could take while it was passed over may be its now.
                self.alloc_epoch = self.alloc_epoch.saturating_add(1);
            }
        }
        let counter = match end {
            OfferEnd::Accepted => &mut self.counters.offers_accepted,
            OfferEnd::Declined => &mut self.counters.offers_declined,
            OfferEnd::Rescinded { notify } => {
                if notify && notify_framework {
                    self.outbox.push(Output::ToFramework {
                        framework_id: offer.framework_id.clone(),
                        event: Event::Rescind(self.offers.id(n)),
                    });
                }
                &mut self.counters.offers_rescinded
            }
        };
        *counter = counter.saturating_add(1);
        self.allocation_changed();
        Some(offer)
    }

    /// The given offers, ordered by id (the order their rescinds are sent in).
    fn by_offer_id(&self, numbers: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut ids: Vec<(OfferId, u64)> =
            numbers.filter(|&n| self.offers.by_key(n).is_some()).map(|n| (self.offers.id(n), n)).collect();
        ids.sort();
        ids.into_iter().map(|(_, n)| n).collect()
    }

    pub(crate) fn rescind_agent_offers(&mut self, agent_id: &AgentId) {
        let numbers = self.agents.get(agent_id).map(|a| self.by_offer_id(a.offers.iter().copied())).unwrap_or_default();
        for n in numbers {
            self.end_offer_number(n, OfferEnd::Rescinded { notify: true });
        }
    }

    /// Takes back a framework's offers without telling it: its stream is gone or replaced,
    /// and a new stream never saw them.
    pub(crate) fn withdraw_framework_offers(&mut self, framework_id: &FrameworkId) {
        let numbers = self.frameworks.get(framework_id).map(|f| self.by_offer_id(f.offers.iter())).unwrap_or_default();
        for n in numbers {
            self.end_offer_number(n, OfferEnd::Rescinded { notify: false });
        }
    }

    /// Takes back a framework's offers and tells it (its stream stays, so it must learn
    /// that they are void).
    pub(crate) fn rescind_framework_offers(&mut self, framework_id: &FrameworkId) {
        let numbers = self.frameworks.get(framework_id).map(|f| self.by_offer_id(f.offers.iter())).unwrap_or_default();
        for n in numbers {
            self.end_offer_number(n, OfferEnd::Rescinded { notify: true });
        }
    }

    // ----- filters -----

    pub(crate) fn set_filter(&mut self, framework_id: &FrameworkId, agent_id: &AgentId, now_ms: u64, refuse_ms: u64) {
        if refuse_ms == 0 {
            return;
        }
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let slot = match framework.filter_slot {
            Some(slot) => slot,
            None => {
                let slot = self.next_filter_slot;
                self.next_filter_slot = self.next_filter_slot.saturating_add(1);
                framework.filter_slot = Some(slot);
                slot
            }
        };
        let until_ms = now_ms.saturating_add(refuse_ms);
        if let Some(previous_ms) = framework.filters.insert(agent_id.clone(), until_ms) {
            self.filter_expiries.remove(&(previous_ms, framework_id.clone(), agent_id.clone()));
        }
        self.filter_expiries.insert((until_ms, framework_id.clone(), agent_id.clone()));
        if let Some(mut agent) = self.agents.get_mut(agent_id) {
            agent.filtered_by.insert(slot);
        }
    }

    /// Lifts one framework's filter from the agent's index.
    fn unfilter(&mut self, agent_id: &AgentId, slot: Option<u64>) {
        if let Some(mut agent) = self.agents.get_mut(agent_id)
            && let Some(slot) = slot
        {
            agent.filtered_by.remove(slot);
        }
        self.agent_changed(agent_id);
    }

    pub(crate) fn clear_filters(&mut self, framework_id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let slot = framework.filter_slot;
        for (agent_id, until_ms) in std::mem::take(&mut framework.filters) {
            self.filter_expiries.remove(&(until_ms, framework_id.clone(), agent_id.clone()));
            if let Some(mut agent) = self.agents.get_mut(&agent_id)
                && let Some(slot) = slot
            {
                agent.filtered_by.remove(slot);
            }
        }
        self.frameworks_changed();
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
        self.try_transition_task(framework_id, task_id, None, status, forward).is_ok()
    }

    /// `transition_task` of a task on agent `on_agent` (any when `None`), handing the
    /// status back when the task does not move, so that a caller with more to do with it
    /// need not copy it first.
    pub(crate) fn try_transition_task(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        on_agent: Option<&AgentId>,
        status: TaskStatus,
        forward: bool,
    ) -> Result<(), TaskStatus> {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return Err(status) };
        let active = framework.is_active();
        // Through the entry, a task that ends is removed without looking it up again.
        let Entry::Occupied(mut entry) = framework.tasks.entry(task_id.clone()) else { return Err(status) };
        let task = entry.get_mut();
        if on_agent.is_some_and(|agent_id| *agent_id != task.info.agent_id) || !task.state.may_become(status.state) {
            return Err(status);
        }
        task.record(&status);
        self.changes.task(framework_id, task_id);
        let terminal = status.state.is_terminal();
        let task = terminal.then(|| entry.remove());
        if forward && active {
            self.outbox.push(Output::ToFramework { framework_id: framework_id.clone(), event: Event::Update(status) });
        }
        if let Some(task) = task {
            self.finish_task(framework_id, *task);
        }
        Ok(())
    }

    /// Frees what a task that reached a terminal state held, once it is out of its
    /// framework's tasks, and keeps it among the framework's completed tasks.
    fn finish_task(&mut self, framework_id: &FrameworkId, task: TaskRecord) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            let scalars = task.info.resources.scalars();
            framework.used_scalars = framework.used_scalars.saturating_sub(&scalars);
            framework.refund(&task.role, &scalars);
            if framework.completed_tasks.len() >= self.config.max_completed_tasks_per_framework {
                framework.completed_tasks.pop_front();
            }
            if self.config.max_completed_tasks_per_framework > 0 {
                framework.completed_tasks.push_back(task.view(framework_id));
            }
            self.changes.ended(|| task.view(framework_id));
        }
        let mut drained = false;
        if let Some(mut agent) = self.agents.get_mut(&task.info.agent_id) {
            agent.remove_used(&task.info.resources);
            agent.tasks.remove(&(framework_id.clone(), task.info.task_id.clone()));
            // `agent_changed` without looking the agent up again.
            agent.stuck_epoch = None;
            drained = agent.tasks.is_empty() && agent.drain.as_ref().is_some_and(|d| d.state == DrainState::Draining);
        }
        self.allocation_changed();
        if drained {
            self.finish_drain(&task.info.agent_id);
        }
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
        self.changes.removed(view.clone());
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

    /// The principal a framework subscribed as (empty when none), for the ACLs.
    pub fn framework_principal(&self, framework_id: &FrameworkId) -> Option<&str> {
        self.frameworks.get(framework_id).map(|f| f.info.principal.as_str())
    }

    /// An agent's hostname, for the ACLs on agents.
    pub fn agent_hostname(&self, agent_id: &AgentId) -> Option<&str> {
        self.agents.get(agent_id).map(|a| a.info.hostname.as_str())
    }

    /// The counters alone, without the cost of a snapshot.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Every outstanding offer, oldest first, as its framework was sent it.
    pub fn outstanding_offers(&self) -> impl Iterator<Item = Offer> + '_ {
        self.offers.iter().filter_map(|(n, record)| {
            let agent = self.agents.get(&record.offer.agent_id)?;
            let held = &record.offer;
            Some(Offer {
                id: self.offers.id(n),
                framework_id: held.framework_id.clone(),
                agent_id: held.agent_id.clone(),
                resources: held.resources.clone(),
                agent: agent.description.clone(),
                allocation_role: record.role.clone(),
            })
        })
    }

    /// Every live task with its framework and state, by framework then task id.
    pub fn live_tasks(&self) -> impl Iterator<Item = (&FrameworkId, &TaskInfo, TaskState)> + '_ {
        self.frameworks.iter().flat_map(|(id, f)| f.tasks.values().map(move |t| (id, &*t.info, t.state)))
    }

    /// What `/metrics` shows, counted in place.
    pub fn gauges(&self) -> Gauges {
        let mut tasks: BTreeMap<TaskState, usize> = BTreeMap::new();
        for task in self.frameworks.values().flat_map(|f| f.tasks.values()) {
            *tasks.entry(task.state).or_default() += 1;
        }
        let completed = self.frameworks.values().flat_map(|f| &f.completed_tasks);
        for task in completed.chain(self.completed_frameworks.iter().flat_map(|f| &f.completed_tasks)) {
            *tasks.entry(task.state).or_default() += 1;
        }
        Gauges {
            agents: self.agents.len(),
            agents_active: self.agents.values().filter(|a| a.is_active()).count(),
            agents_unreachable: self.agents.values().filter(|a| !a.reachable).count(),
            frameworks: self.frameworks.len(),
            frameworks_active: self.frameworks.values().filter(|f| f.is_active()).count(),
            frameworks_completed: self.completed_frameworks.len(),
            outstanding_offers: self.offers.len(),
            tasks: TaskState::ALL.iter().map(|state| (*state, tasks.get(state).copied().unwrap_or(0))).collect(),
            counters: self.counters.clone(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            master_id: self.config.master_id.clone(),
            agents: self.agents.iter().map(|(id, a)| super::changes::agent_view(id, a)).collect(),
            frameworks: self.frameworks.iter().map(|(id, f)| framework_view(id, f, &self.offers)).collect(),
            completed_frameworks: self.completed_frameworks.iter().cloned().collect(),
            outstanding_offers: self.offers.len(),
            counters: self.counters.clone(),
        }
    }
}

/// Turns grants into offers: what `Master::allocate` needs of the master besides the
/// agents and frameworks it holds borrowed.
struct OfferSink<'m> {
    offers: &'m mut OfferBook,
    deadlines: &'m mut VecDeque<(u64, u64)>,
    next_offer: &'m mut u64,
    counters: &'m mut Counters,
    /// When offers made now time out, if they do.
    deadline_ms: Option<u64>,
}

impl OfferSink<'_> {
    /// Makes an offer of the grant: files it in the book and pushes what its framework is
    /// sent onto `batch`, which gets room for `expected` offers when it has none. The book's
    /// record and the event hold copies of the same ids, resources and role, each copy a
    /// reference count; the event is built in place, never cloned from the record.
    fn create(&mut self, grant: Grant<'_>, batch: &mut Vec<Offer>, expected: usize) {
        let Grant { agent, framework_id, framework_record: framework, role, resources, scalars, .. } = grant;
        // Checked again on this side: an offer never holds what is not free.
        if !agent.is_offerable() || !framework.is_active() || !agent.has_free(&resources) {
            return;
        }
        let n = *self.next_offer;
        *self.next_offer = n.saturating_add(1);
        debug_assert_eq!(scalars, resources.scalars());
        agent.add_offered(&resources);
        agent.offers.push(n);
        framework.offered_scalars = framework.offered_scalars.saturating_add(&scalars);
        framework.charge(&role, &scalars);
        framework.offers.insert(n);
        if let Some(deadline_ms) = self.deadline_ms {
            self.deadlines.push_back((deadline_ms, n));
        }
        let held =
            HeldOffer { framework_id: framework_id.clone(), agent_id: agent.id.clone(), resources: resources.clone() };
        self.offers.insert(n, OfferRecord { offer: held, role: role.clone() });
        self.counters.offers_sent = self.counters.offers_sent.saturating_add(1);
        if batch.capacity() == 0 {
            batch.reserve(expected);
        }
        batch.push(Offer {
            id: self.offers.id(n),
            framework_id: framework_id.clone(),
            agent_id: agent.id.clone(),
            resources,
            agent: agent.description.clone(),
            allocation_role: role,
        });
    }
}

fn framework_view(id: &FrameworkId, framework: &FrameworkRecord, offers: &OfferBook) -> FrameworkView {
    let mut used = Resources::new();
    for task in framework.tasks.values() {
        used.add(&task.info.resources);
    }
    let mut offered = Resources::new();
    for n in framework.offers.iter() {
        if let Some(record) = offers.by_key(n) {
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
