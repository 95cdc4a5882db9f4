//! The master's read model: what `/state`, the operator API's reads and its SUBSCRIBE
//! stream show, kept off the owner task so that reading the cluster never slows it.
//!
//! How it stays current: after each batch (once its registry changes are committed), the
//! owner takes the core's [`Changes`] (the records that changed, copied once however often
//! they changed; see `core/changes.rs`) and hands them to this module's applier task over
//! a bounded channel. The owner only takes changes when the channel has room, and the
//! core keeps noting them meanwhile (as sets of ids), so a slow applier costs the owner
//! nothing and loses nothing: the next changes it gets are larger.
//!
//! The applier is the only writer of [`ReadState`]: records behind `Arc`s, by id, in
//! `BTreeMap`s (so every listing is in id order without sorting), with each framework's
//! live tasks, the bounded lists of ended tasks and removed frameworks, the `used`
//! resources of each framework summed as its tasks come and go, and per-state task counts.
//! Readers take the lock only to copy `Arc`s out ([`ReadModel::state`] is one pointer
//! copy per record, some milliseconds at 500,000 tasks) and render after letting go, on a
//! blocking thread when the answer is large; a std `RwLock` is right here because nothing
//! awaits while holding it and every hold is short.
//!
//! The applier also turns each change into the operator API's events (TASK_ADDED, …,
//! [`OperatorEvent`]) and offers them to every SUBSCRIBE stream's bounded queue. A
//! subscriber is registered under the write lock together with its copy of the state, so
//! it sees every event after its snapshot and none before. A subscriber whose queue is
//! full is dropped (its stream ends once it has read what was queued): a slow reader never
//! slows the applier, let alone the master. At most [`MAX_SUBSCRIBERS`] at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agora_proto::model::{AgentId, FrameworkId, Pool, RangeSet, Resources, Role, Scalars, TaskId, TaskState};
use tokio::sync::{mpsc, watch};

use crate::core::{AgentView, Changes, Counters, FrameworkView, Master, StatusEntry, TaskView};

/// Batches of changes waiting for the applier; the owner holds back (and the core keeps
/// noting) while it is full.
pub const FEED_LEN: usize = 64;
/// Operator SUBSCRIBE streams at once; more are refused (503).
pub const MAX_SUBSCRIBERS: usize = 128;
/// Events queued per subscriber; one that falls this far behind is disconnected.
pub const SUBSCRIBER_QUEUE_LEN: usize = 16 * 1024;

/// What a master is, for the read endpoints: fixed for its life.
#[derive(Clone, Debug)]
pub struct MasterFacts {
    pub master_id: String,
    pub advertise: String,
    /// Wall-clock start, milliseconds since the epoch.
    pub start_time_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub max_completed_tasks_per_framework: usize,
    pub max_completed_frameworks: usize,
    /// The master's settings by flag name (`/flags`, GET_FLAGS).
    pub flags: Vec<(String, String)>,
    /// Large answers (`/state`, GET_STATE, `/state-summary`, `/frameworks`) rendered at
    /// once; each holds a copy of the answer in memory while it is written.
    pub max_concurrent_renders: usize,
}

/// A framework as the read model holds it: its view without tasks, and its tasks.
#[derive(Clone, Debug)]
pub struct FrameworkCopy {
    pub view: Arc<FrameworkView>,
    /// What its live tasks hold.
    pub used: Resources,
    pub tasks: Vec<Arc<TaskView>>,
    pub completed_tasks: Vec<Arc<TaskView>>,
}

#[derive(Debug)]
struct FrameworkEntry {
    view: Arc<FrameworkView>,
    used: UsedTally,
    tasks: BTreeMap<TaskId, Arc<TaskView>>,
    completed: VecDeque<Arc<TaskView>>,
    tally: Tally<AgentId>,
}

impl FrameworkEntry {
    fn new(view: Arc<FrameworkView>) -> Self {
        Self {
            view,
            used: UsedTally::default(),
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            tally: Tally::default(),
        }
    }

    fn copy(&self) -> FrameworkCopy {
        FrameworkCopy {
            view: self.view.clone(),
            used: self.used.resources(),
            tasks: self.tasks.values().cloned().collect(),
            completed_tasks: self.completed.iter().cloned().collect(),
        }
    }
}

/// A consistent copy of the whole read model, made of shared records.
#[derive(Clone, Debug)]
pub struct StateCopy {
    pub facts: Arc<MasterFacts>,
    pub agents: Vec<Arc<AgentView>>,
    pub frameworks: Vec<FrameworkCopy>,
    pub completed_frameworks: Vec<Arc<FrameworkCopy>>,
    pub outstanding_offers: usize,
    pub counters: Counters,
}

impl StateCopy {
    /// Every task, live ones first, by framework then id.
    pub fn live_tasks(&self) -> impl Iterator<Item = &Arc<TaskView>> + '_ {
        self.frameworks.iter().flat_map(|f| &f.tasks)
    }

    pub fn completed_tasks(&self) -> impl Iterator<Item = &Arc<TaskView>> + '_ {
        let live = self.frameworks.iter().flat_map(|f| &f.completed_tasks);
        live.chain(self.completed_frameworks.iter().flat_map(|f| &f.completed_tasks))
    }
}

/// Tasks by state, in `TaskState::ALL` order.
pub type StateCounts = [usize; TaskState::ALL.len()];

fn state_index(state: TaskState) -> usize {
    TaskState::ALL.iter().position(|s| *s == state).unwrap_or(TaskState::ALL.len() - 1)
}

/// What `/state-summary` shows of an agent or a framework besides its own record: its
/// tasks by state, and the frameworks (of an agent) or agents (of a framework) of its
/// live tasks.
#[derive(Clone, Debug)]
pub struct Tally<K> {
    pub states: StateCounts,
    pub peers: BTreeMap<K, usize>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self { states: [0; TaskState::ALL.len()], peers: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> Tally<K> {
    fn count(&mut self, state: TaskState, peer: Option<&K>, up: bool) {
        if let Some(n) = self.states.get_mut(state_index(state)) {
            *n = if up { n.saturating_add(1) } else { n.saturating_sub(1) };
        }
        let Some(peer) = peer else { return };
        if up {
            *self.peers.entry(peer.clone()).or_default() += 1;
        } else if let Some(n) = self.peers.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.peers.remove(peer);
            }
        }
    }
}

/// Counts and sums kept as the tasks change, so that reading them costs the agents and
/// frameworks, not the tasks (`/state-summary`, metrics).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub facts: Option<Arc<MasterFacts>>,
    /// Each agent with its live tasks by state and their frameworks.
    pub agents: Vec<(Arc<AgentView>, Tally<FrameworkId>)>,
    /// Each framework, what it uses, its tasks by state (live and ended ones kept) and the
    /// agents of its live tasks.
    pub frameworks: Vec<(Arc<FrameworkView>, Resources, Tally<AgentId>)>,
    pub completed_frameworks: Vec<Arc<FrameworkView>>,
    /// Tasks by state, live and ended ones kept.
    pub task_states: BTreeMap<TaskState, usize>,
    pub outstanding_offers: usize,
    pub counters: Counters,
}

/// Which tasks `/tasks` lists (Mesos' query).
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    pub framework_id: Option<FrameworkId>,
    pub task_id: Option<TaskId>,
    /// Only tasks on this agent.
    pub agent_id: Option<AgentId>,
    /// Only tasks in one of these states; empty: any state.
    pub states: Vec<TaskState>,
    pub offset: usize,
    pub limit: usize,
    /// Oldest first; Mesos' default is newest first.
    pub ascending: bool,
}

/// One event of the operator API's SUBSCRIBE stream, as the read model saw it.
#[derive(Clone, Debug)]
pub enum OperatorEvent {
    TaskAdded(Arc<TaskView>),
    /// The task as it is now, and the status this event reports (its latest, or one it
    /// went through within the batch).
    TaskUpdated(Arc<TaskView>, StatusEntry),
    AgentAdded(Arc<AgentView>),
    AgentRemoved(AgentId),
    FrameworkAdded(FrameworkCopy),
    FrameworkUpdated(FrameworkCopy),
    FrameworkRemoved(Arc<FrameworkView>),
}

/// The read model's contents; see the module documentation.
#[derive(Debug)]
pub struct ReadState {
    facts: Arc<MasterFacts>,
    agents: BTreeMap<AgentId, Arc<AgentView>>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    completed_frameworks: VecDeque<Arc<FrameworkCopy>>,
    /// Live tasks and ended ones kept, by state.
    task_states: BTreeMap<TaskState, usize>,
    /// The agents' live tasks by state and framework.
    agent_tallies: BTreeMap<AgentId, Tally<FrameworkId>>,
    /// Every task shown (live, and ended ones kept), by when it started (the time of the
    /// first status it holds), for `/tasks`: a page costs its length, not a sort of every
    /// task. A task is filed under the key its record gives, and taken out under the key
    /// of the record it had, so no second map of keys is needed.
    by_start: BTreeMap<(u64, FrameworkId, TaskId), Arc<TaskView>>,
    outstanding_offers: usize,
    counters: Counters,
    subscribers: Vec<mpsc::Sender<Arc<OperatorEvent>>>,
    /// Subscribers dropped for falling behind, since the start.
    pub dropped_subscribers: u64,
}

/// The shared, read-only handle on the read model.
#[derive(Clone, Debug)]
pub struct ReadModel {
    state: Arc<RwLock<ReadState>>,
    /// Batches the owner handed over, and those applied: a read waits until the second
    /// reaches what the first was when it began (see [`ReadModel::caught_up`]).
    published: Arc<AtomicU64>,
    applied: watch::Receiver<u64>,
    /// Turns to render a large answer (`MasterFacts::max_concurrent_renders`).
    renders: Arc<tokio::sync::Semaphore>,
}

/// The owner's end of the applier's channel.
#[derive(Debug)]
pub struct Feed {
    changes: mpsc::Sender<Box<Changes>>,
    published: Arc<AtomicU64>,
}

impl Feed {
    /// Hands what changed in the core to the applier, if anything did and the channel has
    /// room; otherwise the core keeps noting (see the module documentation).
    pub fn offer(&self, core: &mut Master) {
        if self.changes.capacity() == 0 || !core.has_changes() {
            return;
        }
        if self.changes.try_send(Box::new(core.take_changes())).is_ok() {
            self.published.fetch_add(1, Ordering::Release);
        }
    }
}

/// Longest a read waits for the applier to catch up before answering from what it has.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// Refusals of [`ReadModel::subscribe`].
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("{MAX_SUBSCRIBERS} operator subscribers already; try again later")]
    TooMany,
}

impl ReadModel {
    /// A read model and its applier task, which runs until every `Feed` is dropped.
    pub fn start(facts: MasterFacts) -> (ReadModel, Feed) {
        let (tx, mut changes) = mpsc::channel::<Box<Changes>>(FEED_LEN);
        let (applied_tx, applied) = watch::channel(0);
        let model = ReadModel { applied, ..ReadModel::new(facts) };
        let published = model.published.clone();
        let writer = model.clone();
        tokio::spawn(async move {
            let mut applied = 0u64;
            while let Some(batch) = changes.recv().await {
                writer.apply(*batch);
                applied += 1;
                applied_tx.send_replace(applied);
            }
            // The owner is gone (the master stops): the SUBSCRIBE streams end with it.
            writer.write().subscribers.clear();
        });
        (model, Feed { changes: tx, published })
    }

    /// A read model without an applier: whoever holds it applies changes itself
    /// ([`apply`](Self::apply)), as the simulation does.
    pub fn new(facts: MasterFacts) -> ReadModel {
        let renders = Arc::new(tokio::sync::Semaphore::new(facts.max_concurrent_renders.max(1)));
        ReadModel {
            renders,
            state: Arc::new(RwLock::new(ReadState::new(facts))),
            published: Arc::new(AtomicU64::new(0)),
            applied: watch::channel(0).1,
        }
    }

    /// The turns to render a large answer: a render holds one from before it copies the
    /// state until its bytes are written.
    pub fn render_permits(&self) -> Arc<tokio::sync::Semaphore> {
        self.renders.clone()
    }

    /// Waits until the applier has applied every batch the owner had handed over when
    /// this was called: a read that begins after the answer to a write sees the write
    /// (the owner hands a batch's changes over before its answers go out).
    pub async fn caught_up(&self) {
        let target = self.published.load(Ordering::Acquire);
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(CATCH_UP_TIMEOUT, applied.wait_for(|n| *n >= target)).await;
    }

    /// Applies one batch of changes and offers their events to the subscribers.
    pub fn apply(&self, changes: Changes) {
        let mut state = self.write();
        let mut events = Vec::new();
        state.apply(changes, &mut events);
        state.publish(events);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ReadState> {
        // A panic while applying leaves the maps as they were between two records; still
        // worth serving.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ReadState> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn facts(&self) -> Arc<MasterFacts> {
        self.read().facts.clone()
    }

    /// A copy of everything: one `Arc` per record.
    pub fn state(&self) -> StateCopy {
        self.read().copy()
    }

    /// The counts and sums, without the tasks.
    pub fn summary(&self) -> Summary {
        let state = self.read();
        Summary {
            facts: Some(state.facts.clone()),
            agents: state
                .agents
                .values()
                .map(|a| (a.clone(), state.agent_tallies.get(&a.id).cloned().unwrap_or_default()))
                .collect(),
            frameworks: state
                .frameworks
                .values()
                .map(|f| (f.view.clone(), f.used.resources(), f.tally.clone()))
                .collect(),
            completed_frameworks: state.completed_frameworks.iter().map(|f| f.view.clone()).collect(),
            task_states: state.task_states.clone(),
            outstanding_offers: state.outstanding_offers,
            counters: state.counters.clone(),
        }
    }

    /// A page of tasks, by when they started, as `/tasks` lists them.
    pub fn tasks(&self, query: &TaskQuery) -> Vec<Arc<TaskView>> {
        let state = self.read();
        let matches = |task: &&Arc<TaskView>| {
            query.framework_id.as_ref().is_none_or(|id| task.framework_id == *id)
                && query.task_id.as_ref().is_none_or(|id| task.info.task_id == *id)
                && query.agent_id.as_ref().is_none_or(|id| task.info.agent_id == *id)
                && (query.states.is_empty() || query.states.contains(&task.state))
        };
        let page = |tasks: &mut dyn Iterator<Item = &Arc<TaskView>>| -> Vec<Arc<TaskView>> {
            tasks.filter(matches).skip(query.offset).take(query.limit).cloned().collect()
        };
        if let (Some(framework_id), Some(task_id)) = (&query.framework_id, &query.task_id) {
            // The task itself (live, or among its framework's ended ones) gives its key.
            let live = state.frameworks.get(framework_id).and_then(|f| f.tasks.get(task_id));
            let ended = || {
                let completed = state.frameworks.get(framework_id).map(|f| f.completed.iter());
                let removed = state.completed_frameworks.iter().filter(|f| f.view.id == *framework_id);
                completed
                    .into_iter()
                    .flatten()
                    .chain(removed.flat_map(|f| f.completed_tasks.iter()))
                    .find(|t| t.info.task_id == *task_id)
            };
            let found = live.or_else(ended).and_then(|t| state.by_start.get(&start_key(t)));
            return page(&mut found.into_iter());
        }
        if query.ascending { page(&mut state.by_start.values()) } else { page(&mut state.by_start.values().rev()) }
    }

    /// Registers a SUBSCRIBE stream: the state now and every event after it.
    pub fn subscribe(&self) -> Result<(StateCopy, mpsc::Receiver<Arc<OperatorEvent>>), SubscribeError> {
        let mut state = self.write();
        state.subscribers.retain(|s| !s.is_closed());
        if state.subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(SubscribeError::TooMany);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE_LEN);
        state.subscribers.push(tx);
        Ok((state.copy(), rx))
    }

    /// Open SUBSCRIBE streams and those dropped for falling behind.
    pub fn subscribers(&self) -> (usize, u64) {
        let state = self.read();
        (state.subscribers.iter().filter(|s| !s.is_closed()).count(), state.dropped_subscribers)
    }
}

impl ReadState {
    fn new(facts: MasterFacts) -> Self {
        Self {
            facts: Arc::new(facts),
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            task_states: BTreeMap::new(),
            agent_tallies: BTreeMap::new(),
            by_start: BTreeMap::new(),
            outstanding_offers: 0,
            counters: Counters::default(),
            subscribers: Vec::new(),
            dropped_subscribers: 0,
        }
    }

    fn copy(&self) -> StateCopy {
        StateCopy {
            facts: self.facts.clone(),
            agents: self.agents.values().cloned().collect(),
            frameworks: self.frameworks.values().map(FrameworkEntry::copy).collect(),
            completed_frameworks: self.completed_frameworks.iter().cloned().collect(),
            outstanding_offers: self.outstanding_offers,
            counters: self.counters.clone(),
        }
    }

    /// Counts a task in (`up`) or out wherever it is counted: by state, in its
    /// framework's and (while live) its agent's tally, and in the `/tasks` index.
    fn tally(&mut self, task: &Arc<TaskView>, live: bool, up: bool) {
        let n = self.task_states.entry(task.state).or_default();
        *n = if up { n.saturating_add(1) } else { n.saturating_sub(1) };
        let agent_id = &task.info.agent_id;
        if let Some(entry) = self.frameworks.get_mut(&task.framework_id) {
            entry.tally.count(task.state, live.then_some(agent_id), up);
        }
        if live {
            let agent = self.agent_tallies.entry(agent_id.clone()).or_default();
            agent.count(task.state, Some(&task.framework_id), up);
            if !up && agent.peers.is_empty() {
                self.agent_tallies.remove(agent_id);
            }
        }
        let key = start_key(task);
        if up {
            self.by_start.insert(key, task.clone());
        } else {
            self.by_start.remove(&key);
        }
    }

    fn apply(&mut self, changes: Changes, events: &mut Vec<OperatorEvent>) {
        let Changes {
            reset,
            agents,
            removed_agents,
            frameworks,
            removed_frameworks,
            tasks,
            ended_tasks,
            outstanding_offers,
            counters,
        } = changes;
        if reset {
            self.agents.clear();
            self.frameworks.clear();
            self.completed_frameworks.clear();
            self.task_states.clear();
            self.agent_tallies.clear();
            self.by_start.clear();
        }
        // A reset is the state to start from, not news: it makes no events.
        let mut news = |event: OperatorEvent| {
            if !reset {
                events.push(event);
            }
        };
        // As in Mesos, an agent that becomes unreachable is removed for subscribers (and
        // added again when it comes back), though GET_AGENTS still lists it, inactive.
        for agent_id in removed_agents {
            if self.agents.remove(&agent_id).is_some_and(|a| a.reachable) {
                news(OperatorEvent::AgentRemoved(agent_id));
            }
        }
        for agent in agents {
            let agent = Arc::new(agent);
            let was_reachable = self.agents.insert(agent.id.clone(), agent.clone()).map(|before| before.reachable);
            match (was_reachable, agent.reachable) {
                (None | Some(false), true) => news(OperatorEvent::AgentAdded(agent)),
                (Some(true), false) => news(OperatorEvent::AgentRemoved(agent.id.clone())),
                _ => {}
            }
        }
        for view in frameworks {
            let view = Arc::new(view);
            match self.frameworks.get_mut(&view.id) {
                Some(entry) => {
                    let before = &entry.view;
                    let changed = before.info != view.info
                        || before.active != view.active
                        || before.unregistered_at_ms != view.unregistered_at_ms;
                    entry.view = view;
                    if changed {
                        news(OperatorEvent::FrameworkUpdated(entry.copy_header()));
                    }
                }
                None => {
                    let entry = FrameworkEntry::new(view.clone());
                    news(OperatorEvent::FrameworkAdded(entry.copy_header()));
                    self.frameworks.insert(view.id.clone(), entry);
                }
            }
        }
        for task in tasks {
            self.apply_live(Arc::new(task), &mut news);
        }
        let keep = self.facts.max_completed_tasks_per_framework;
        for task in ended_tasks {
            let task = Arc::new(task);
            let Some(entry) = self.frameworks.get_mut(&task.framework_id) else { continue };
            let before = entry.tasks.remove(&task.info.task_id);
            if let Some(before) = &before {
                entry.used.remove(&before.info.resources);
            }
            let dropped = if entry.completed.len() >= keep { entry.completed.pop_front() } else { None };
            if keep > 0 {
                entry.completed.push_back(task.clone());
            }
            if let Some(before) = &before {
                self.tally(before, true, false);
            }
            if let Some(dropped) = &dropped {
                self.tally(dropped, false, false);
            }
            if keep > 0 {
                self.tally(&task, false, true);
            }
            updates(before.as_deref(), &task, &mut news);
        }
        for view in removed_frameworks {
            // The core ends a framework's live tasks before removing it; its ended ones
            // stay counted (and listed) while the removed framework is kept.
            let completed_tasks: Vec<Arc<TaskView>> = match self.frameworks.get(&view.id) {
                Some(entry) => {
                    let live: Vec<Arc<TaskView>> = entry.tasks.values().cloned().collect();
                    let completed = entry.completed.iter().cloned().collect();
                    for task in &live {
                        self.tally(task, true, false);
                    }
                    completed
                }
                None => {
                    let tasks: Vec<Arc<TaskView>> = view.completed_tasks.iter().cloned().map(Arc::new).collect();
                    for task in &tasks {
                        self.tally(task, false, true);
                    }
                    tasks
                }
            };
            let known = self.frameworks.remove(&view.id).is_some();
            let mut header = view;
            header.tasks = Vec::new();
            header.completed_tasks = Vec::new();
            let used = std::mem::take(&mut header.used);
            let header = Arc::new(header);
            if self.completed_frameworks.len() >= self.facts.max_completed_frameworks
                && let Some(oldest) = self.completed_frameworks.pop_front()
            {
                for task in &oldest.completed_tasks {
                    self.tally(task, false, false);
                }
            }
            if self.facts.max_completed_frameworks > 0 {
                let copy = FrameworkCopy { view: header.clone(), used, tasks: Vec::new(), completed_tasks };
                self.completed_frameworks.push_back(Arc::new(copy));
            } else {
                for task in &completed_tasks {
                    self.tally(task, false, false);
                }
            }
            if known {
                news(OperatorEvent::FrameworkRemoved(header));
            }
        }
        self.outstanding_offers = outstanding_offers;
        self.counters = counters;
    }

    fn apply_live(&mut self, task: Arc<TaskView>, news: &mut impl FnMut(OperatorEvent)) {
        let framework_id = task.framework_id.clone();
        let entry = self.frameworks.entry(framework_id.clone()).or_insert_with(|| {
            // The core notes a framework with its first task; this is only for safety.
            FrameworkEntry::new(Arc::new(placeholder_framework(framework_id)))
        });
        let before = entry.tasks.insert(task.info.task_id.clone(), task.clone());
        if before.is_none() {
            entry.used.add(&task.info.resources);
        }
        if let Some(before) = &before {
            self.tally(before, true, false);
        }
        self.tally(&task, true, true);
        updates(before.as_deref(), &task, news);
    }
    /// Offers the events to every subscriber; drops those that are gone or full.
    fn publish(&mut self, events: Vec<OperatorEvent>) {
        if events.is_empty() || self.subscribers.is_empty() {
            return;
        }
        let mut dropped = 0;
        for event in events {
            let event = Arc::new(event);
            self.subscribers.retain(|subscriber| match subscriber.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        if dropped > 0 {
            tracing::warn!(dropped, "operator subscribers fell behind; disconnecting them");
            self.dropped_subscribers = self.dropped_subscribers.saturating_add(dropped);
        }
    }
}

impl FrameworkEntry {
    /// The framework with its `used` resources but without copies of its tasks: what a
    /// FRAMEWORK_ADDED or FRAMEWORK_UPDATED event carries.
    fn copy_header(&self) -> FrameworkCopy {
        FrameworkCopy {
            view: self.view.clone(),
            used: self.used.resources(),
            tasks: Vec::new(),
            completed_tasks: Vec::new(),
        }
    }
}

/// Where a task is filed in the `/tasks` index.
fn start_key(task: &TaskView) -> (u64, FrameworkId, TaskId) {
    let start = task.statuses.first().map_or(0, |s| s.timestamp_ms);
    (start, task.framework_id.clone(), task.info.task_id.clone())
}

/// What a framework's live tasks hold, kept as they come and go: scalars summed by role,
/// and port ranges counted, since the same port of two agents is one port in a sum and
/// must stay in it until both tasks end.
#[derive(Debug, Default)]
struct UsedTally {
    scalars: BTreeMap<Role, Scalars>,
    ports: BTreeMap<(Role, u64, u64), u32>,
}

impl UsedTally {
    fn add(&mut self, resources: &Resources) {
        for (role, pool) in resources.pools() {
            let sum = self.scalars.entry(role.clone()).or_default();
            *sum = sum.saturating_add(&pool.scalars);
            for &(begin, end) in pool.ports.ranges() {
                *self.ports.entry((role.clone(), begin, end)).or_default() += 1;
            }
        }
    }

    fn remove(&mut self, resources: &Resources) {
        for (role, pool) in resources.pools() {
            if let Some(sum) = self.scalars.get_mut(role) {
                *sum = sum.saturating_sub(&pool.scalars);
                if sum.is_zero() {
                    self.scalars.remove(role);
                }
            }
            for &(begin, end) in pool.ports.ranges() {
                let key = (role.clone(), begin, end);
                if let Some(n) = self.ports.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.ports.remove(&key);
                    }
                }
            }
        }
    }

    fn resources(&self) -> Resources {
        let mut out = Resources::new();
        for (role, scalars) in &self.scalars {
            out.add_pool(role.clone(), Pool { scalars: *scalars, ports: RangeSet::new() });
        }
        for (role, begin, end) in self.ports.keys() {
            if let Ok(ports) = RangeSet::from_ranges([(*begin, *end)]) {
                out.add_pool(role.clone(), Pool { scalars: Scalars::ZERO, ports });
            }
        }
        out
    }
}

/// TASK_ADDED for a task not seen before, then TASK_UPDATED for each status newer than
/// the last one seen (every status after the first, for a new task).
fn updates(before: Option<&TaskView>, task: &Arc<TaskView>, news: &mut impl FnMut(OperatorEvent)) {
    let fresh = match before.and_then(|b| b.statuses.last()) {
        None => {
            news(OperatorEvent::TaskAdded(task.clone()));
            task.statuses.get(1..).unwrap_or_default()
        }
        Some(last) => match task.statuses.iter().rposition(|s| s == last) {
            Some(at) => task.statuses.get(at + 1..).unwrap_or_default(),
            // The last status seen fell out of the bounded history: the latest is news.
            None => task.statuses.len().checked_sub(1).and_then(|at| task.statuses.get(at..)).unwrap_or_default(),
        },
    };
    for status in fresh {
        news(OperatorEvent::TaskUpdated(task.clone(), status.clone()));
    }
}

fn placeholder_framework(id: FrameworkId) -> FrameworkView {
    FrameworkView {
        info: agora_proto::model::FrameworkInfo {
            id: Some(id.clone()),
            name: String::new(),
            user: String::new(),
            roles: Vec::new(),
            failover_timeout_ms: 0,
            hostname: String::new(),
            principal: String::new(),
        },
        id,
        active: false,
        used: Resources::new(),
        offered: Resources::new(),
        tasks: Vec::new(),
        completed_tasks: Vec::new(),
        registered_at_ms: 0,
        unregistered_at_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use agora_proto::model::{CommandInfo, FrameworkInfo, TaskInfo, TaskStatusReason, TaskStatusSource};

    use super::*;

    fn facts() -> MasterFacts {
        MasterFacts {
            master_id: "m".to_owned(),
            advertise: "m:5050".to_owned(),
            start_time_ms: 0,
            heartbeat_interval_ms: 15_000,
            max_completed_tasks_per_framework: 10,
            max_completed_frameworks: 10,
            flags: Vec::new(),
            max_concurrent_renders: 2,
        }
    }

    fn framework(id: &str, active: bool) -> FrameworkView {
        let mut view = placeholder_framework(FrameworkId::from(id));
        view.info = FrameworkInfo { name: id.to_owned(), ..view.info };
        view.active = active;
        view
    }

    fn entry(state: TaskState, at_ms: u64) -> StatusEntry {
        StatusEntry {
            timestamp_ms: at_ms,
            message: "".into(),
            exit_code: None,
            signal: None,
            state,
            reason: TaskStatusReason::Unspecified,
            source: TaskStatusSource::Agent,
            healthy: None,
            ready: None,
        }
    }

    fn task(framework: &str, id: &str, states: &[TaskState]) -> TaskView {
        TaskView {
            info: Arc::new(TaskInfo {
                task_id: TaskId::from(id),
                name: id.to_owned(),
                agent_id: AgentId::from("a1"),
                resources: Resources::parse("cpus:1;mem:32").expect("valid resources"),
                command: CommandInfo::default(),
                labels: Vec::new(),
                kill_grace_period_ms: None,
                health_check: None,
                readiness_check: None,
            }),
            framework_id: FrameworkId::from(framework),
            state: *states.last().expect("a state"),
            statuses: states.iter().enumerate().map(|(i, s)| entry(*s, i as u64)).collect(),
        }
    }

    fn names(rx: &mut mpsc::Receiver<Arc<OperatorEvent>>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|event| match &*event {
                OperatorEvent::TaskAdded(t) => format!("TASK_ADDED {}", t.info.task_id),
                OperatorEvent::TaskUpdated(t, s) => format!("TASK_UPDATED {} {:?}", t.info.task_id, s.state),
                OperatorEvent::AgentAdded(a) => format!("AGENT_ADDED {}", a.id),
                OperatorEvent::AgentRemoved(id) => format!("AGENT_REMOVED {id}"),
                OperatorEvent::FrameworkAdded(f) => format!("FRAMEWORK_ADDED {}", f.view.id),
                OperatorEvent::FrameworkUpdated(f) => format!("FRAMEWORK_UPDATED {}", f.view.id),
                OperatorEvent::FrameworkRemoved(f) => format!("FRAMEWORK_REMOVED {}", f.id),
            })
            .collect()
    }

    #[test]
    fn changes_become_events_in_order_and_every_status_between_two_batches_is_reported() {
        let model = ReadModel::new(facts());
        let (copy, mut rx) = model.subscribe().expect("room for a subscriber");
        assert!(copy.frameworks.is_empty());
        use TaskState::*;
        model.apply(Changes {
            frameworks: vec![framework("f1", true)],
            tasks: vec![task("f1", "t1", &[TaskStaging])],
            ..Changes::default()
        });
        // Two statuses in one batch are two updates; the task's end moves it to completed.
        model.apply(Changes {
            ended_tasks: vec![task("f1", "t1", &[TaskStaging, TaskRunning, TaskFinished])],
            ..Changes::default()
        });
        // Launched and ended within one batch: added, then each update.
        model.apply(Changes {
            ended_tasks: vec![task("f1", "t2", &[TaskStaging, TaskFailed])],
            frameworks: vec![framework("f1", false)],
            ..Changes::default()
        });
        model.apply(Changes { removed_frameworks: vec![framework("f1", false)], ..Changes::default() });
        assert_eq!(
            names(&mut rx),
            [
                "FRAMEWORK_ADDED f1",
                "TASK_ADDED t1",
                "TASK_UPDATED t1 TaskRunning",
                "TASK_UPDATED t1 TaskFinished",
                "FRAMEWORK_UPDATED f1",
                "TASK_ADDED t2",
                "TASK_UPDATED t2 TaskFailed",
                "FRAMEWORK_REMOVED f1",
            ]
        );
        let copy = model.state();
        assert!(copy.frameworks.is_empty());
        let removed = copy.completed_frameworks.first().expect("the removed framework is kept");
        let ended: Vec<&str> = removed.completed_tasks.iter().map(|t| t.info.task_id.as_str()).collect();
        assert_eq!(ended, ["t1", "t2"]);
        assert_eq!(model.summary().task_states.get(&TaskFinished), Some(&1));
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_dropped_and_its_stream_ends_after_what_was_queued() {
        let model = ReadModel::new(facts());
        let (_, mut slow) = model.subscribe().expect("room for a subscriber");
        let (_, mut keeping_up) = model.subscribe().expect("room for a subscriber");
        model.apply(Changes { frameworks: vec![framework("f1", true)], ..Changes::default() });
        let mut read = names(&mut keeping_up).len();
        // More events than a queue holds, in batches the second subscriber keeps up with.
        for batch in 0..(SUBSCRIBER_QUEUE_LEN / 100 + 1) {
            let tasks = (0..100).map(|i| task("f1", &format!("t{batch}-{i}"), &[TaskState::TaskStaging])).collect();
            model.apply(Changes { tasks, ..Changes::default() });
            read += names(&mut keeping_up).len();
        }
        assert_eq!(read, 1 + 100 * (SUBSCRIBER_QUEUE_LEN / 100 + 1), "the reader that keeps up misses nothing");
        assert_eq!(model.subscribers(), (1, 1), "one subscriber left, one dropped");
        // The slow one gets what was queued, then the end of its stream.
        assert_eq!(names(&mut slow).len(), SUBSCRIBER_QUEUE_LEN);
        assert!(matches!(slow.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }

    #[test]
    fn subscribers_are_limited() {
        let model = ReadModel::new(facts());
        let held: Vec<_> = (0..MAX_SUBSCRIBERS).map(|_| model.subscribe().expect("room")).collect();
        assert!(matches!(model.subscribe(), Err(SubscribeError::TooMany)));
        drop(held);
        assert!(model.subscribe().is_ok(), "closed streams make room");
    }

    #[test]
    fn an_agent_that_becomes_unreachable_is_removed_for_subscribers_and_added_when_it_returns() {
        let model = ReadModel::new(facts());
        let (_, mut rx) = model.subscribe().expect("room for a subscriber");
        let mut core = Master::new(crate::core::Config::default(), 1);
        core.track_changes();
        let info = agora_proto::model::AgentInfo {
            hostname: "h".to_owned(),
            port: 5051,
            resources: Resources::parse("cpus:2;mem:1024").expect("valid resources"),
            attributes: Vec::new(),
        };
        core.register_agent(0, crate::core::ConnId(1), info.clone(), None, Vec::new());
        model.apply(core.take_changes());
        let agent_id = model.state().agents.first().expect("registered").id.clone();
        core.tick(core.config().agent_timeout_ms + 1);
        model.apply(core.take_changes());
        let again = core.config().agent_timeout_ms + 2;
        core.register_agent(again, crate::core::ConnId(2), info, Some(agent_id.clone()), Vec::new());
        model.apply(core.take_changes());
        assert_eq!(names(&mut rx), [format!("AGENT_REMOVED {agent_id}"), format!("AGENT_ADDED {agent_id}")]);
        assert!(model.state().agents.iter().all(|a| a.reachable));
    }
}
