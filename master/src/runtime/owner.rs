//! The single task that owns the master core. Handlers send it a [`Request`] over a
//! bounded channel (with a oneshot for any reply); it applies the request to the core,
//! runs an allocation round when something changed, and delivers the core's outputs to
//! the agents' and frameworks' streams. Nothing else touches the core, so it needs no lock.
//!
//! Two lanes, taken in turn: requests arrive on two bounded channels, decisions
//! (frameworks' subscriptions and calls, operator requests) and reports (agents'
//! registrations, heartbeats and status updates, frameworks' acknowledgements). The owner
//! takes them in batches (at most 512 requests and 16,384 core calls; one scheduler call
//! is one request however many acknowledgements it carries), alternating lanes, so an
//! ACCEPT never waits behind thousands of updates; within a lane the order is kept.
//!
//! Yielding: after a batch that held calls, after an allocation round, and whenever a
//! batch emptied the lanes, the owner yields, so the answers and OFFERS events it woke run
//! promptly on its worker rather than after a whole batch of reports (at 50,000 agents
//! that handed the owner's time to every agent stream). A round runs after a batch that
//! changed something, but a round that took `d` is followed by at least `d` of other
//! work: allocation gets at most half of the owner's time.
//!
//! Persisting: a request that changes nothing durable is answered and its outputs
//! delivered at once. From the first request of a batch with `Persist` records on, the
//! rest of the batch waits; the batch's records are committed in one transaction, and
//! only then do its outputs go to the per-stream bounded queues and its answers go out.
//! Outputs are queued as the core made them (`Event`, `AgentMail`); each stream's own task
//! encodes them into protobuf, so the owner, the master's one serial part, does not. Its
//! busy time, requests applied and queue lengths are exported on `/metrics`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agora_proto::model::{AgentId, AgentInfo, FrameworkId, FrameworkInfo, StreamId, TaskStatus};
use agora_proto::pb;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock::Clock;
use super::metrics::Histogram;
use super::read_model::Feed;
use super::{MasterOptions, REQUEST_QUEUE_LEN, wire};
use crate::core::{
    Call, CallError, ConnId, Event, Gauges, Master, Output, RegistryOp, ReportedTask, Snapshot, ToAgent,
};
use crate::store::{Store, StoreError};

/// Events buffered per framework stream; a framework that falls this far behind is
/// disconnected (it re-subscribes and reconciles) rather than letting the master grow.
/// Room for the answers to a whole reconciliation of tens of thousands of tasks: with
/// less, a framework re-subscribing with that many tasks was disconnected by its own
/// reconciliation, again and again. Events are boxed, so room costs nothing until used.
pub const FRAMEWORK_QUEUE_LEN: usize = 64 * 1024;
/// Messages buffered per agent stream, for the same reason.
pub const AGENT_QUEUE_LEN: usize = 4 * 1024;
/// Requests applied before an allocation round: allocation is batched over whatever
/// arrived together, and still runs promptly under a steady stream of requests.
const BATCH_LEN: usize = 512;
/// Core calls applied in one batch at most (an ACKNOWLEDGE_MANY is one request but up to
/// 10,000 calls), so that a batch stays within tens of milliseconds.
const MAX_BATCH_CALLS: usize = 16 * 1024;
/// After a round that took `d`, the next one waits until `d × ALLOCATION_GAP_FACTOR` has
/// passed, so that at most half of the owner's time goes to allocating, however often
/// requests change something: rounds still follow every change (a freed resource is
/// offered within one round's length), but a master with many agents and a stream of
/// small batches answers its calls and updates rather than allocating back to back.
const ALLOCATION_GAP_FACTOR: u32 = 1;
/// The shortest time between two rounds, however short the first: every round sums the
/// active agents (a pass over all of them), and under a stream of small changes, rounds
/// back to back after every batch spent a third of the owner's time on that pass at
/// 10,000 agents. A freed resource waits at most this long for its round.
const MIN_ALLOCATION_GAP: Duration = Duration::from_millis(5);

/// An agent's queue of messages. Boxed: a queue allocates room for 32 messages at once,
/// and 32 unboxed ones (400 bytes each) per agent were most of what 50,000 agents cost.
pub type AgentOutbox = mpsc::Sender<Box<AgentMail>>;

/// A message on its way to an agent's stream. The core's messages travel as the core made
/// them and are encoded by the stream's own task: the owner is the master's one serial
/// part, and building protobuf messages there (with their copies of every id) was a tenth
/// of its time at 10,000 agents, work the streams' tasks do in parallel on the other
/// cores.
#[derive(Debug)]
pub enum AgentMail {
    Core(ToAgent),
    /// Messages of the link itself (registered, refused), made in protobuf already.
    Wire(pb::MasterMessage),
}

impl AgentMail {
    pub fn into_pb(self) -> pb::MasterMessage {
        match self {
            AgentMail::Core(message) => wire::to_agent_to_pb(&message),
            AgentMail::Wire(message) => message,
        }
    }
}

#[derive(Debug)]
pub struct Subscription {
    pub framework_id: FrameworkId,
    pub stream_id: StreamId,
    pub heartbeat_interval_ms: u64,
    /// The core's events, encoded by the stream's task (see `AgentMail` for why).
    pub events: mpsc::Receiver<Box<Event>>,
}

/// What `/metrics` reads: the core's gauges plus the runtime's own measurements.
#[derive(Debug)]
pub struct MetricsReport {
    pub gauges: Gauges,
    pub allocation_latency: Histogram,
    pub owner: OwnerLoad,
    pub start_time_ms: u64,
    pub now_ms: u64,
}

/// How loaded the owner task is: it is the master's one serial part, so its busy time
/// (against the wall clock) says how close the master is to what it can take, and its
/// queues say how long a request waits before it is applied.
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnerLoad {
    /// Time spent applying requests, allocating and delivering outputs.
    pub busy: Duration,
    /// Requests applied, each core call of an ACKNOWLEDGE_MANY counted.
    pub requests: u64,
    /// Requests waiting in the calls' and the reports' lane when the latest batch began.
    pub queued_calls: usize,
    pub queued_reports: usize,
}

/// What the operator API reads: the core's snapshot plus the runtime's own measurements.
#[derive(Debug)]
pub struct StateReport {
    pub snapshot: Snapshot,
    pub allocation_latency: Histogram,
    pub start_time_ms: u64,
    pub now_ms: u64,
    pub advertise: String,
}

#[derive(Debug)]
pub enum Request {
    AgentAttach {
        conn: ConnId,
        info: AgentInfo,
        previous_id: Option<AgentId>,
        tasks: Vec<ReportedTask>,
        outbox: AgentOutbox,
        registered: oneshot::Sender<Result<AgentId, String>>,
    },
    AgentHeartbeat {
        agent_id: AgentId,
    },
    AgentStatus {
        agent_id: AgentId,
        framework_id: FrameworkId,
        status: TaskStatus,
    },
    AgentGone {
        agent_id: AgentId,
        conn: ConnId,
    },
    Subscribe {
        info: FrameworkInfo,
        reply: oneshot::Sender<Result<Subscription, CallError>>,
    },
    FrameworkGone {
        framework_id: FrameworkId,
        stream_id: StreamId,
    },
    /// The core calls of one scheduler call (several for an ACKNOWLEDGE_MANY), applied in
    /// order; the answer is the first error, if any.
    Calls {
        framework_id: FrameworkId,
        stream_id: StreamId,
        calls: Vec<Call>,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    State {
        reply: oneshot::Sender<StateReport>,
    },
    Metrics {
        reply: oneshot::Sender<MetricsReport>,
    },
    /// An operator call (weights, quota, reservations, `/roles`): runs on the core and
    /// returns its reply, sent once the batch is durable, so operator endpoints need no
    /// variant each.
    Operator(CoreFn),
}

impl Request {
    /// How much of a batch the request takes: one per core call.
    fn weight(&self) -> usize {
        match self {
            Request::Calls { calls, .. } => calls.len().max(1),
            _ => 1,
        }
    }
}

/// An answer held back until the registry changes of its batch are committed.
pub type Reply = Box<dyn FnOnce() + Send>;

/// A closure run on the core by the owner task; what it returns is sent after the commit.
pub struct CoreFn(pub Box<dyn FnOnce(&mut Master) -> Reply + Send>);

impl std::fmt::Debug for CoreFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreFn")
    }
}

/// A cloneable way to reach the owner task. Requests travel in two lanes: decisions
/// (frameworks' subscriptions and calls, operator requests) and the flow of reports
/// (agents' registrations, heartbeats, status updates and disconnections, and frameworks'
/// acknowledgements of updates). The owner takes from the two in turn, so an ACCEPT does
/// not queue behind thousands of status updates, and a burst of calls does not hold the
/// updates back. Each lane keeps its own order; a framework's acknowledgements may
/// overtake its other calls or be overtaken by them, as calls in flight together on
/// separate HTTP/2 streams may anyway. (A third lane of their own for acknowledgements
/// was tried: at 10,000 agents it took turns from the updates and cost a tenth of the
/// throughput.)
#[derive(Clone, Debug)]
pub struct Handle {
    lanes: [mpsc::Sender<Request>; LANES],
    next_conn: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The lanes, in the order `Inbox::recv` prefers them when both hold requests.
const LANES: usize = 2;
const CALLS: usize = 0;
const REPORTS: usize = 1;

/// The owner task's end of the lanes.
#[derive(Debug)]
pub struct Inbox {
    lanes: [mpsc::Receiver<Request>; LANES],
    /// The lane `try_recv` looks at first: the one after the latest turn's.
    next: usize,
    /// A request came from the calls' lane since `took_calls` was last asked.
    took_calls: bool,
}

impl Inbox {
    /// Waits for the next request, from the first lane (in `LANES` order) that has one.
    async fn recv(&mut self) -> Option<Request> {
        let [calls, reports] = &mut self.lanes;
        let (request, lane) = tokio::select! {
            biased;
            Some(request) = calls.recv() => (request, CALLS),
            Some(request) = reports.recv() => (request, REPORTS),
            else => return None,
        };
        self.next = (lane + 1) % LANES;
        self.took_calls |= lane == CALLS;
        Some(request)
    }

    /// A request already waiting, from each lane in turn.
    fn try_recv(&mut self) -> Option<Request> {
        for i in 0..LANES {
            let lane = (self.next + i) % LANES;
            if let Some(request) = self.lanes.get_mut(lane).and_then(|rx| rx.try_recv().ok()) {
                self.next = (lane + 1) % LANES;
                self.took_calls |= lane == CALLS;
                return Some(request);
            }
        }
        None
    }

    /// Whether a request came from the calls' lane since the last time this was asked.
    fn took_calls(&mut self) -> bool {
        std::mem::take(&mut self.took_calls)
    }
}

/// The owner task has stopped (the master is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the master is shutting down")]
pub struct Stopped;

impl Handle {
    pub async fn send(&self, request: Request) -> Result<(), Stopped> {
        let lane = match &request {
            Request::AgentAttach { .. }
            | Request::AgentHeartbeat { .. }
            | Request::AgentStatus { .. }
            | Request::AgentGone { .. } => REPORTS,
            Request::Calls { calls, .. } if calls.iter().all(|c| matches!(c, Call::Acknowledge { .. })) => REPORTS,
            Request::Subscribe { .. }
            | Request::FrameworkGone { .. }
            | Request::Calls { .. }
            | Request::State { .. }
            | Request::Metrics { .. }
            | Request::Operator(_) => CALLS,
        };
        let Some(lane) = self.lanes.get(lane) else { return Err(Stopped) };
        lane.send(request).await.map_err(|_| Stopped)
    }

    /// Sends a request built around a reply channel and waits for the reply.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply)).await?;
        answer.await.map_err(|_| Stopped)
    }

    pub fn next_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// The way to the owner task, made before the task exists: a master waiting to lead
/// builds its services around the handle and starts the owner once elected.
pub fn channel() -> (Handle, Inbox) {
    let [calls, reports] = std::array::from_fn(|_| mpsc::channel(REQUEST_QUEUE_LEN));
    (
        Handle { lanes: [calls.0, reports.0], next_conn: Default::default() },
        Inbox { lanes: [calls.1, reports.1], next: CALLS, took_calls: false },
    )
}

/// Takes back what `store` holds and starts the owner task on `rx`.
pub fn start(
    options: MasterOptions,
    mut store: Option<Store>,
    rx: Inbox,
    feed: Feed,
    stop: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let clock = Clock::new();
    let mut core = Master::new(options.core.clone(), options.seed);
    if let Some(store) = &mut store {
        let registry = store.load()?;
        tracing::info!(
            agents = registry.agents.len(),
            frameworks = registry.frameworks.len(),
            "recovered the registry"
        );
        core.recover(clock.now_ms(), registry);
    }
    core.track_changes();
    let owner = Owner {
        core,
        store,
        clock,
        agents: HashMap::new(),
        pending_agents: HashMap::new(),
        held: Vec::new(),
        frameworks: HashMap::new(),
        allocation_latency: Histogram::allocation_ms(),
        load: OwnerLoad::default(),
        advertise: options.advertise.clone(),
        feed,
    };
    tokio::spawn(owner.run(rx, Duration::from_millis(options.tick_interval_ms.max(1)), stop));
    Ok(())
}

struct Owner {
    core: Master,
    /// The durable registry; `None` for a master that keeps nothing (tests, benches).
    store: Option<Store>,
    clock: Clock,
    /// The current connection of each registered agent.
    agents: HashMap<AgentId, (ConnId, AgentOutbox)>,
    /// Connections waiting for the core to accept or refuse their registration.
    pending_agents: HashMap<ConnId, (AgentOutbox, oneshot::Sender<Result<AgentId, String>>)>,
    /// Outputs taken from the core and waiting for the batch's registry commit.
    held: Vec<Output>,
    /// The current event stream of each subscribed framework.
    frameworks: HashMap<FrameworkId, (StreamId, mpsc::Sender<Box<Event>>)>,
    allocation_latency: Histogram,
    load: OwnerLoad,
    advertise: String,
    /// The read model's feed: what changed, after each commit (see `read_model.rs`).
    feed: Feed,
}

impl Owner {
    async fn run(mut self, mut rx: Inbox, tick: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_allocation = tokio::time::Instant::now();
        loop {
            // The lanes were emptied by this turn's batch: the owner has slack.
            let mut drained = false;
            let allocation_due = self.core.needs_allocation();
            tokio::select! {
                () = tokio::time::sleep_until(next_allocation), if allocation_due => {}
                request = rx.recv() => {
                    let Some(request) = request else { break };
                    let started = Instant::now();
                    [self.load.queued_calls, self.load.queued_reports] = rx.lanes.each_ref().map(|lane| lane.len());
                    // Batch whatever else is already waiting. Requests that change nothing
                    // durable are answered at once; from the first one that does, the
                    // rest of the batch waits for one registry commit covering them all.
                    let mut replies = Vec::new();
                    // Core calls are counted too, so that a batch is never 512
                    // ACKNOWLEDGE_MANY calls of 10,000 acknowledgements each.
                    let mut calls = request.weight();
                    self.apply(request, &mut replies);
                    self.answer_unless_durable(&mut replies);
                    for _ in 1..BATCH_LEN {
                        if calls >= MAX_BATCH_CALLS {
                            break;
                        }
                        let Some(request) = rx.try_recv() else {
                            drained = true;
                            break;
                        };
                        calls += request.weight();
                        self.apply(request, &mut replies);
                        self.answer_unless_durable(&mut replies);
                    }
                    self.deliver();
                    self.feed.offer(&mut self.core);
                    for reply in replies {
                        reply();
                    }
                    self.load.requests += calls as u64;
                    self.load.busy += started.elapsed();
                }
                _ = ticker.tick() => {
                    let started = Instant::now();
                    self.core.tick(self.clock.now_ms());
                    self.deliver();
                    self.feed.offer(&mut self.core);
                    self.load.busy += started.elapsed();
                }
                _ = stop.changed() => break,
            }
            let mut allocated = false;
            if self.core.needs_allocation() && tokio::time::Instant::now() >= next_allocation {
                allocated = true;
                let started = Instant::now();
                self.core.allocate(self.clock.now_ms());
                let took = started.elapsed();
                self.allocation_latency.observe(took);
                next_allocation = tokio::time::Instant::now() + (took * ALLOCATION_GAP_FACTOR).max(MIN_ALLOCATION_GAP);
                self.deliver();
                self.feed.offer(&mut self.core);
                self.load.busy += started.elapsed();
            }
            // The answers to a batch's calls, a round's OFFERS events and whatever else the
            // owner woke wait on this worker's queue, which the other workers rarely steal
            // from while they are busy; without a turn for them here, the owner — whose
            // lanes are seldom empty under load — ran up to 128 batches before tokio's
            // budget made it yield, and ACCEPTs waited for their answers behind them. It
            // yields after calls, after a round, and whenever it emptied its lanes; not
            // after a full batch of reports alone: at 50,000 agents yielding then gave the
            // owner's turn to every agent stream the batch woke and halved its throughput
            // (a launch burst's acknowledgements fell behind the agents' 10 s resend).
            if rx.took_calls() || allocated || drained {
                tokio::task::yield_now().await;
            }
        }
        tracing::info!("master owner task stopped; closing every stream");
    }

    /// Applies one request to the core. Its outputs are delivered with the batch's (after
    /// the batch's commit); its answer goes to `replies`, sent after that too.
    fn apply(&mut self, request: Request, replies: &mut Vec<Reply>) {
        let now_ms = self.clock.now_ms();
        match request {
            Request::AgentAttach { conn, info, previous_id, tasks, outbox, registered } => {
                self.pending_agents.insert(conn, (outbox, registered));
                self.core.register_agent(now_ms, conn, info, previous_id, tasks);
            }
            Request::AgentHeartbeat { agent_id } => self.core.agent_heartbeat(now_ms, &agent_id),
            Request::AgentStatus { agent_id, framework_id, status } => {
                self.core.status_update(now_ms, &agent_id, &framework_id, status);
            }
            Request::AgentGone { agent_id, conn } => {
                if self.agents.get(&agent_id).is_some_and(|(current, _)| *current == conn) {
                    self.agents.remove(&agent_id);
                }
                self.core.agent_disconnected(now_ms, &agent_id, conn);
            }
            Request::Subscribe { info, reply } => {
                // Earlier outputs go to the streams they were meant for before this
                // subscription may replace one of them.
                self.deliver();
                let result = self.core.subscribe(now_ms, info).map(|(framework_id, stream_id)| {
                    let (tx, events) = mpsc::channel(FRAMEWORK_QUEUE_LEN);
                    // Replacing the sender closes the previous stream of this framework.
                    self.frameworks.insert(framework_id.clone(), (stream_id.clone(), tx));
                    let heartbeat_interval_ms = self.core.config().framework_heartbeat_interval_ms;
                    Subscription { framework_id, stream_id, heartbeat_interval_ms, events }
                });
                // The SUBSCRIBED event is queued on the new stream before it is handed out.
                self.deliver();
                replies.push(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Request::FrameworkGone { framework_id, stream_id } => {
                if self.frameworks.get(&framework_id).is_some_and(|(current, _)| *current == stream_id) {
                    self.frameworks.remove(&framework_id);
                }
                self.core.framework_disconnected(now_ms, &framework_id, &stream_id);
            }
            Request::Calls { framework_id, stream_id, calls, reply } => {
                let mut result = Ok(());
                for call in calls {
                    let outcome = self.core.call(now_ms, &framework_id, &stream_id, call);
                    if result.is_ok() {
                        result = outcome;
                    }
                }
                replies.push(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Request::Operator(CoreFn(run)) => replies.push(run(&mut self.core)),
            Request::Metrics { reply } => {
                let _ = reply.send(MetricsReport {
                    gauges: self.core.gauges(),
                    allocation_latency: self.allocation_latency.clone(),
                    owner: self.load,
                    start_time_ms: self.clock.start_wall_ms(),
                    now_ms,
                });
            }
            Request::State { reply } => {
                let _ = reply.send(StateReport {
                    snapshot: self.core.snapshot(),
                    allocation_latency: self.allocation_latency.clone(),
                    start_time_ms: self.clock.start_wall_ms(),
                    now_ms,
                    advertise: self.advertise.clone(),
                });
            }
        }
    }

    /// Delivers the outputs and answers so far, unless a registry change is waiting for
    /// the batch's commit: then everything after it waits too, so that nothing overtakes
    /// it. Answering at once keeps a framework's calls flowing (its calls in flight are
    /// bounded); committing once per batch keeps registration storms to a few writes.
    fn answer_unless_durable(&mut self, replies: &mut Vec<Reply>) {
        self.core.drain_outputs_into(&mut self.held);
        let durable = self.store.is_some() && self.held.iter().any(|o| matches!(o, Output::Persist(_)));
        if durable {
            return;
        }
        self.deliver();
        if !replies.is_empty() {
            // What the answers acknowledge is in the read model's hands before they go.
            self.feed.offer(&mut self.core);
        }
        for reply in replies.drain(..) {
            reply();
        }
    }

    /// Executes the core's outputs. A stream that is gone or too far behind is dropped and
    /// the core told, which may produce more outputs; the loop is bounded because each
    /// round removes a stream.
    fn deliver(&mut self) {
        for _ in 0..1024 {
            let mut outputs = std::mem::take(&mut self.held);
            self.core.drain_outputs_into(&mut outputs);
            if outputs.is_empty() {
                return;
            }
            self.persist(&outputs);
            let mut lost_agents = Vec::new();
            let mut lost_frameworks = Vec::new();
            for output in outputs.drain(..) {
                match output {
                    Output::AgentRegistered { conn, agent_id } => self.bind_agent(conn, agent_id),
                    Output::AgentRefused { conn, reason } => {
                        if let Some((outbox, registered)) = self.pending_agents.remove(&conn) {
                            let refused = pb::master_message::Message::Refused(pb::Refused { reason: reason.clone() });
                            let _ = outbox
                                .try_send(Box::new(AgentMail::Wire(pb::MasterMessage { message: Some(refused) })));
                            let _ = registered.send(Err(reason));
                        }
                    }
                    Output::ToAgent { agent_id, message } => {
                        let Some((conn, outbox)) = self.agents.get(&agent_id) else {
                            tracing::debug!(%agent_id, "message for an agent that is not connected dropped");
                            continue;
                        };
                        if outbox.try_send(Box::new(AgentMail::Core(message))).is_err() {
                            tracing::warn!(%agent_id, "agent stream closed or full; disconnecting it");
                            lost_agents.push((agent_id.clone(), *conn));
                        }
                    }
                    Output::ReconnectAgent { agent_id } => {
                        // Dropping the outbox ends the stream; the agent dials again.
                        self.agents.remove(&agent_id);
                    }
                    Output::ToFramework { framework_id, event } => {
                        let Some((stream_id, events)) = self.frameworks.get(&framework_id) else {
                            continue;
                        };
                        if events.try_send(Box::new(event)).is_err() {
                            tracing::warn!(%framework_id, "framework stream closed or full; disconnecting it");
                            lost_frameworks.push((framework_id.clone(), stream_id.clone()));
                        }
                    }
                    Output::CloseFramework { framework_id } => {
                        self.frameworks.remove(&framework_id);
                    }
                    Output::Persist(_) => {}
                }
            }
            // The emptied buffer is kept for the next batch's outputs (`held` stays empty
            // while outputs are delivered: only `answer_unless_durable` adds to it).
            if self.held.is_empty() {
                self.held = outputs;
            }
            let now_ms = self.clock.now_ms();
            for (agent_id, conn) in lost_agents {
                // Only the connection that failed is dropped, never a newer one.
                if self.agents.get(&agent_id).is_some_and(|(current, _)| *current == conn) {
                    self.agents.remove(&agent_id);
                }
                self.core.agent_disconnected(now_ms, &agent_id, conn);
            }
            for (framework_id, stream_id) in lost_frameworks {
                self.frameworks.remove(&framework_id);
                self.core.framework_disconnected(now_ms, &framework_id, &stream_id);
            }
        }
        tracing::error!("outputs kept coming after 1024 delivery rounds; leaving the rest for the next request");
    }

    /// Commits the round's registry changes before any of its outputs leaves the master:
    /// what the master acknowledges is durable first. A master that cannot write its
    /// registry stops (fail-stop, as Mesos does) rather than acknowledge what it might
    /// forget; a restart recovers the last committed state.
    fn persist(&mut self, outputs: &[Output]) {
        let Some(store) = &mut self.store else { return };
        let ops: Vec<RegistryOp> =
            outputs.iter().filter_map(|o| if let Output::Persist(op) = o { Some(op.clone()) } else { None }).collect();
        if let Err(error) = store.apply(&ops) {
            tracing::error!(%error, "cannot write the registry; stopping the master");
            eprintln!("agora master: cannot write the registry: {error}");
            std::process::exit(1);
        }
    }

    fn bind_agent(&mut self, conn: ConnId, agent_id: AgentId) {
        let Some((outbox, registered)) = self.pending_agents.remove(&conn) else {
            tracing::warn!(%agent_id, "registration for a connection that is gone");
            return;
        };
        let message = pb::master_message::Message::Registered(pb::Registered {
            agent_id: agent_id.to_string(),
            heartbeat_interval_ms: self.core.config().agent_heartbeat_interval_ms,
        });
        let _ = outbox.try_send(Box::new(AgentMail::Wire(pb::MasterMessage { message: Some(message) })));
        let _ = registered.send(Ok(agent_id.clone()));
        // Replacing the outbox drops the previous connection's stream, if any.
        self.agents.insert(agent_id, (conn, outbox));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(agent: &str) -> Request {
        Request::AgentHeartbeat { agent_id: AgentId::from(agent) }
    }

    fn gone(framework: &str) -> Request {
        Request::FrameworkGone { framework_id: FrameworkId::from(framework), stream_id: StreamId::from("s") }
    }

    fn name(request: &Request) -> String {
        match request {
            Request::AgentHeartbeat { agent_id } => agent_id.to_string(),
            Request::FrameworkGone { framework_id, .. } => framework_id.to_string(),
            other => panic!("unexpected request {other:?}"),
        }
    }

    fn calls(framework: &str, calls: Vec<Call>) -> Request {
        let (reply, _) = oneshot::channel();
        Request::Calls { framework_id: FrameworkId::from(framework), stream_id: StreamId::from("s"), calls, reply }
    }

    fn ack(task: &str) -> Call {
        Call::Acknowledge { agent_id: AgentId::from("a1"), task_id: task.into(), uuid: "u".into() }
    }

    fn label(request: Request) -> String {
        match request {
            Request::Calls { framework_id, .. } => framework_id.to_string(),
            other => name(&other),
        }
    }

    #[tokio::test]
    async fn the_owner_takes_the_lanes_in_turn_each_in_its_own_order() {
        let (handle, mut inbox) = channel();
        for agent in ["a1", "a2", "a3", "a4"] {
            handle.send(heartbeat(agent)).await.expect("owner lanes open");
        }
        handle.send(calls("k1", vec![ack("t1")])).await.expect("owner lanes open");
        for framework in ["f1", "f2"] {
            handle.send(gone(framework)).await.expect("owner lanes open");
        }
        // A call waiting is taken before the updates and acknowledgements queued ahead of it.
        let first = inbox.recv().await.expect("a request");
        let mut taken = vec![label(first)];
        taken.extend(std::iter::from_fn(|| inbox.try_recv()).map(label));
        assert_eq!(taken, ["f1", "a1", "f2", "a2", "a3", "a4", "k1"]);
    }

    #[tokio::test]
    async fn acknowledgements_travel_with_the_reports() {
        let (handle, mut inbox) = channel();
        handle.send(heartbeat("a1")).await.expect("owner lanes open");
        handle.send(calls("acks", vec![ack("t1"), ack("t2")])).await.expect("owner lanes open");
        handle.send(calls("revive", vec![Call::Revive { roles: vec![] }])).await.expect("owner lanes open");
        // An acknowledgement batched with anything else is a decision's call.
        handle.send(calls("mixed", vec![ack("t3"), Call::Suppress { roles: vec![] }])).await.expect("owner lanes open");
        let lengths: Vec<usize> = inbox.lanes.iter().map(|lane| lane.len()).collect();
        assert_eq!(lengths, [2, 2], "calls (revive, mixed), reports (a1, acks)");
        let taken: Vec<String> = std::iter::from_fn(|| inbox.try_recv()).map(label).collect();
        assert_eq!(taken, ["revive", "a1", "mixed", "acks"]);
    }

    #[tokio::test]
    async fn the_inbox_ends_when_every_handle_is_gone() {
        let (handle, mut inbox) = channel();
        handle.send(heartbeat("a1")).await.expect("owner lanes open");
        drop(handle);
        assert!(inbox.recv().await.is_some());
        assert!(inbox.recv().await.is_none());
    }
}
