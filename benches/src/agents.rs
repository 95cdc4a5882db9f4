//! Emulated agents: each is one small tokio task holding one `Attach` stream to the master,
//! speaking the real agent protocol (register, heartbeats, reliable status updates) but
//! running no processes: a task "runs" for a seeded random duration and then finishes.
//!
//! [`Fleet::start`] is the entry point for any driver, not only `agora bench`: it starts N
//! agents against the masters of a [`Masters`] (one address or several) and leaves every
//! task's fate to the caller. A launched task goes TASK_STARTING then TASK_RUNNING; then
//! it finishes (TASK_FINISHED) after a duration drawn from [`FleetSpec::durations`], or,
//! with `None`, runs until killed through the master (TASK_KILLED). A task with a health
//! check turns healthy, and one with a readiness check ready, a seeded moment after it
//! runs (the check's own delay plus up to [`FleetSpec::check_ms`]): a RUNNING update
//! with `healthy: true` (or `ready: true`), as a real agent's first passing check gives;
//! later updates repeat both, as Mesos' do. [`Fleet::chaos`] fails one agent on demand:
//! [`Chaos::Disconnect`] keeps its tasks, [`Chaos::Restart`] ends them TASK_FAILED.
//! [`AgentCounters`] tell what the agents did; a [`LaunchLog`] given in the spec records
//! every launch an agent received, with when, for a driver that checks its own launches.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::pb;
use agora_proto::pb::agent_link_client::AgentLinkClient;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::masters::Masters;
use crate::stats::{AtomicHistogram, Durations};

/// Messages an agent may queue on its stream; an agent that falls this far behind drops
/// the stream and re-registers, as the master does with slow agents.
const OUTBOX_LEN: usize = 2 * 1024;
/// How long the master may take to answer a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before an unacknowledged status update is sent again; doubled per attempt.
/// Mesos' agent waits 10 s: shorter waits turn a loaded master's slow acknowledgements
/// into a storm of resends that loads it further.
const RESEND_FIRST: Duration = Duration::from_secs(10);
/// Longest wait between resends, so a lost acknowledgement costs at most this much.
const RESEND_MAX: Duration = Duration::from_secs(60);
/// Resends of one update before it is given up (the run is bounded anyway).
const MAX_RESENDS: u32 = 30;
/// How often unacknowledged updates are looked at.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Reconnection backoff after the stream fails, capped.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Most tasks one emulated agent holds; a launch beyond is answered TASK_FAILED, which
/// never happens while the master respects the agent's resources.
const MAX_TASKS_PER_AGENT: usize = 100_000;
/// Agents connected at once while starting up, so that registration is a ramp, not a
/// thundering herd.
const REGISTRATION_BATCH: usize = 500;
/// Chaos events one agent may have waiting; more are refused (`try_send` fails).
const CHAOS_QUEUE: usize = 4;

/// How to start a [`Fleet`] of emulated agents.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// How many agents, named `bench-agent-0` and onwards.
    pub count: usize,
    /// What each agent offers.
    pub resources: pb::Resources,
    /// Seeds every agent's task durations and reconnection jitter.
    pub seed: u64,
    /// How long each task runs before TASK_FINISHED; `None`: until killed.
    pub durations: Option<Durations>,
    /// Longest a health or readiness check takes to pass once its delay is over: each
    /// task's first passing check comes a seeded, uniform part of this after it.
    pub check_ms: u64,
    /// Agents sharing one HTTP/2 connection to each master: the [`Masters`] given to
    /// [`Fleet::start`] must have at least `count.div_ceil(agents_per_connection)` agent
    /// slots. Above 150, streams wait for the master's limit of 200 per connection.
    pub agents_per_connection: usize,
    /// Where every launch received is written down (`None`: nowhere).
    pub launches: Option<Arc<LaunchLog>>,
}

/// Every launch the agents received: the task id and the wall-clock millisecond it
/// arrived, in arrival order, up to a bound (launches beyond are counted, not kept).
#[derive(Debug)]
pub struct LaunchLog {
    limit: usize,
    entries: Mutex<Vec<(String, u64)>>,
    dropped: AtomicU64,
}

impl LaunchLog {
    pub fn new(limit: usize) -> Self {
        Self { limit, entries: Mutex::new(Vec::new()), dropped: AtomicU64::new(0) }
    }

    fn record(&self, task_id: &str, at_ms: u64) {
        // A poisoned lock only means another agent panicked mid-push; the entries stand.
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() < self.limit {
            entries.push((task_id.to_owned(), at_ms));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What was recorded so far, and how many launches did not fit.
    pub fn snapshot(&self) -> (Vec<(String, u64)>, u64) {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        (entries, self.dropped.load(Ordering::Relaxed))
    }

    /// Launches recorded so far.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Emulated agents running on the current tokio runtime until the `stop` watch given to
/// [`Fleet::start`] turns true, following the leading master across failovers.
#[derive(Debug)]
pub struct Fleet {
    counters: Arc<AgentCounters>,
    chaos: Vec<mpsc::Sender<Chaos>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Spawns `spec.count` agents, in batches of [`REGISTRATION_BATCH`]: each batch gets up
    /// to 5 s to register before the next connects. Returns once all are spawned, not
    /// necessarily registered (see [`Fleet::wait_registered`]).
    pub async fn start(spec: FleetSpec, masters: Arc<Masters>, stop: watch::Receiver<bool>) -> Fleet {
        let counters = Arc::new(AgentCounters::default());
        let per_connection = spec.agents_per_connection.max(1);
        let mut chaos = Vec::with_capacity(spec.count);
        let mut tasks = Vec::with_capacity(spec.count);
        for index in 0..spec.count {
            let (chaos_tx, chaos_rx) = mpsc::channel(CHAOS_QUEUE);
            chaos.push(chaos_tx);
            let slot = index / per_connection;
            let agent_spec = AgentSpec {
                index,
                resources: spec.resources.clone(),
                seed: spec.seed,
                durations: spec.durations,
                check_ms: spec.check_ms,
                slot,
                launches: spec.launches.clone(),
            };
            let agent = Agent::new(agent_spec, counters.clone());
            tasks.push(tokio::spawn(agent.run(masters.clone(), chaos_rx, stop.clone())));
            if index % REGISTRATION_BATCH == REGISTRATION_BATCH - 1 {
                wait_registered(&counters, index as u64 + 1, Duration::from_secs(5)).await;
            }
        }
        Fleet { counters, chaos, tasks }
    }

    /// What the agents did so far, shared with them.
    pub fn counters(&self) -> &Arc<AgentCounters> {
        &self.counters
    }

    /// One sender per agent, by index, to inject a failure into it.
    pub fn chaos(&self) -> &[mpsc::Sender<Chaos>] {
        &self.chaos
    }

    /// Waits (at most `limit`) until `want` agents are registered; returns how many are.
    pub async fn wait_registered(&self, want: u64, limit: Duration) -> u64 {
        wait_registered(&self.counters, want, limit).await
    }

    /// Waits for the agents to end once `stop` was sent, each for at most `grace`.
    pub async fn join(self, grace: Duration) {
        for task in self.tasks {
            let _ = tokio::time::timeout(grace, task).await;
        }
    }
}

/// Waits (bounded) until `want` agents are registered; returns how many are.
async fn wait_registered(counters: &AgentCounters, want: u64, limit: Duration) -> u64 {
    let until = Instant::now() + limit;
    loop {
        let now = counters.registered.load(Ordering::Relaxed);
        if now >= want || Instant::now() >= until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A failure injected into one agent by the chaos driver.
#[derive(Clone, Copy, Debug)]
pub enum Chaos {
    /// Drop the stream, stay away `away_ms`, re-register with the same id and every task.
    Disconnect { away_ms: u64 },
    /// The agent process restarts: its running tasks die (TASK_FAILED, reason
    /// AGENT_RESTARTED); it re-registers with its id and its checkpointed updates.
    Restart,
}

/// Counters shared by every emulated agent, read by the progress line.
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Agents currently registered (connected and answered).
    pub registered: AtomicU64,
    pub registrations: AtomicU64,
    pub tasks_received: AtomicU64,
    pub updates_sent: AtomicU64,
    pub updates_resent: AtomicU64,
    pub updates_given_up: AtomicU64,
    /// Bumped by the bench just before it kills the leading master.
    pub failover_epoch: AtomicU64,
    /// Agents registered again since the latest failover epoch began.
    pub reregistered: AtomicU64,
    /// From sending a status update until its acknowledgement arrives: the master
    /// forwards it, the framework acknowledges, the master relays that to the agent. An
    /// agent sends a task's next update only then, so this paces every task's life.
    pub update_ack_ms: AtomicHistogram,
}

#[derive(Debug, Clone)]
struct AgentSpec {
    pub index: usize,
    pub resources: pb::Resources,
    pub seed: u64,
    /// How long tasks run; `None`: until killed (they never finish by themselves).
    pub durations: Option<Durations>,
    /// Longest a check takes to pass after its delay (see [`FleetSpec::check_ms`]).
    pub check_ms: u64,
    /// Agents with the same slot share a connection to each master.
    pub slot: usize,
    pub launches: Option<Arc<LaunchLog>>,
}

#[derive(Debug)]
struct EmulatedTask {
    framework_id: String,
    info: pb::TaskInfo,
    /// The latest state the "executor" produced.
    state: i32,
    /// Updates not yet acknowledged, oldest first; the head is the one on the wire.
    updates: VecDeque<pb::TaskStatus>,
    next_resend: Option<Instant>,
    resends: u32,
    /// When the head update last went out.
    head_sent: Option<Instant>,
    /// The latest health check result and readiness, repeated on every update.
    healthy: Option<bool>,
    ready: Option<bool>,
}

/// What an agent's timer does to a task when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// The task's time is up: TASK_FINISHED.
    Finish,
    /// Its health check passes for the first time.
    Healthy,
    /// Its readiness check passes.
    Ready,
}

struct Connection {
    outbox: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::MasterMessage>,
}

/// Why the message loop stopped.
enum Break {
    Stop,
    StreamLost,
    Chaos(Chaos),
}

struct Agent {
    spec: AgentSpec,
    hostname: String,
    id: String,
    rng: ChaCha8Rng,
    tasks: HashMap<String, EmulatedTask>,
    /// Finishes and check results to come, soonest first; a timer whose task has ended
    /// by then is dropped.
    timers: BinaryHeap<Reverse<(Instant, String, Due)>>,
    heartbeat: Duration,
    counters: Arc<AgentCounters>,
    /// For the end-of-run diagnosis of stuck tasks.
    last_received: Option<Instant>,
    received_on_stream: u64,
    /// The failover epoch of the latest registration.
    epoch: u64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("hostname", &self.hostname).field("id", &self.id).finish()
    }
}

impl Agent {
    pub fn new(spec: AgentSpec, counters: Arc<AgentCounters>) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(spec.seed ^ (spec.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self {
            hostname: format!("bench-agent-{}", spec.index),
            spec,
            id: String::new(),
            rng,
            tasks: HashMap::new(),
            timers: BinaryHeap::new(),
            heartbeat: Duration::from_secs(5),
            counters,
            last_received: None,
            received_on_stream: 0,
            epoch: 0,
        }
    }

    /// Runs until `stop` says so: connects to the leading master, serves the stream, obeys
    /// chaos, reconnects (to whichever master leads by then).
    pub async fn run(
        mut self,
        masters: Arc<Masters>,
        mut chaos: mpsc::Receiver<Chaos>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = RECONNECT_FIRST;
        let mut failures = 0usize;
        let mut elections = masters.elections();
        loop {
            if *stop.borrow() {
                return;
            }
            let (index, channel) = masters.channel(self.spec.slot);
            let mut client = AgentLinkClient::new(channel).max_decoding_message_size(64 << 20);
            let connection = tokio::select! {
                connection = self.connect(&mut client) => connection,
                _ = agora_master::runtime::stopped(&mut stop) => return,
            };
            let connection = match connection {
                Ok(connection) => connection,
                Err(status) => {
                    if masters.failed(index, status.as_ref()) {
                        continue;
                    }
                    // As a real agent does: the backoff grows after a whole round of the
                    // masters failed, so a new leader is found quickly.
                    failures += 1;
                    let wait = backoff.mul_f64(self.rng.random_range(0.5..1.0));
                    if failures.is_multiple_of(masters.addresses().len()) {
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                    }
                    let jitter = RECONNECT_FIRST.mul_f64(self.rng.random_range(0.0..1.0));
                    tokio::select! {
                        () = masters.pause(wait, &mut elections, jitter) => continue,
                        _ = agora_master::runtime::stopped(&mut stop) => return,
                    }
                }
            };
            backoff = RECONNECT_FIRST;
            failures = 0;
            self.counters.registered.fetch_add(1, Ordering::Relaxed);
            let outcome = self.serve(connection, &mut chaos, &mut stop).await;
            self.counters.registered.fetch_sub(1, Ordering::Relaxed);
            match outcome {
                Break::Stop => {
                    for (task_id, task) in self.tasks.iter().take(3) {
                        tracing::debug!(agent = %self.hostname, %task_id, state = task.state, queued = task.updates.len(), head = ?task.updates.front().map(|u| u.state), resends = task.resends, id = %self.id, received = self.received_on_stream, silent_ms = self.last_received.map(|t| t.elapsed().as_millis()), "task held at the end");
                    }
                    return;
                }
                Break::StreamLost => {
                    let wait = RECONNECT_FIRST.mul_f64(self.rng.random_range(0.5..1.5));
                    tokio::time::sleep(wait).await;
                }
                Break::Chaos(Chaos::Disconnect { away_ms }) => {
                    tokio::time::sleep(Duration::from_millis(away_ms)).await;
                }
                Break::Chaos(Chaos::Restart) => self.restart(),
            }
        }
    }

    /// Opens a stream and registers. An error when the master is unreachable, does not
    /// lead (the gRPC status names the leader) or refuses (a refused agent forgets its id
    /// and tasks, as a real one must).
    async fn connect(&mut self, client: &mut AgentLinkClient<Channel>) -> Result<Connection, Option<tonic::Status>> {
        let (outbox, rx) = mpsc::channel(OUTBOX_LEN);
        let register = pb::Register {
            info: Some(pb::AgentInfo {
                hostname: self.hostname.clone(),
                port: 5051,
                resources: Some(self.spec.resources.clone()),
                attributes: Vec::new(),
            }),
            agent_id: self.id.clone(),
            tasks: self
                .tasks
                .values()
                .map(|t| pb::AgentTask {
                    framework_id: t.framework_id.clone(),
                    task: Some(t.info.clone()),
                    state: t.state,
                    healthy: t.healthy,
                    ready: None,
                })
                .collect(),
        };
        let message = pb::AgentMessage { message: Some(pb::agent_message::Message::Register(register)) };
        outbox.try_send(message).map_err(|_| None)?;
        let response =
            tokio::time::timeout(REGISTER_TIMEOUT, client.attach(ReceiverStream::new(rx))).await.map_err(|_| None)?;
        let mut inbound = response.map_err(Some)?.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message()).await.map_err(|_| None)?;
        match first.map_err(Some)?.and_then(|m| m.message) {
            Some(pb::master_message::Message::Registered(registered)) => {
                self.id = registered.agent_id;
                self.heartbeat = Duration::from_millis(registered.heartbeat_interval_ms.clamp(100, 600_000));
                self.counters.registrations.fetch_add(1, Ordering::Relaxed);
                let epoch = self.counters.failover_epoch.load(Ordering::Relaxed);
                if epoch > self.epoch {
                    self.epoch = epoch;
                    self.counters.reregistered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Connection { outbox, inbound })
            }
            Some(pb::master_message::Message::Refused(refused)) => {
                tracing::debug!(agent = %self.hostname, reason = %refused.reason, "registration refused; starting afresh");
                self.id.clear();
                self.tasks.clear();
                self.timers.clear();
                Err(None)
            }
            _ => Err(None),
        }
    }

    async fn serve(
        &mut self,
        mut connection: Connection,
        chaos: &mut mpsc::Receiver<Chaos>,
        stop: &mut watch::Receiver<bool>,
    ) -> Break {
        // Every update still unacknowledged goes out again on the new stream.
        self.received_on_stream = 0;
        let now = Instant::now();
        let heads: Vec<String> =
            self.tasks.iter().filter(|(_, t)| !t.updates.is_empty()).map(|(id, _)| id.clone()).collect();
        for task_id in heads {
            if !self.send_head(&connection.outbox, &task_id, now, false) {
                return Break::StreamLost;
            }
        }
        // Heartbeats are spread over the interval so that thousands of agents do not beat
        // in step.
        let mut next_heartbeat = now + self.heartbeat.mul_f64(self.rng.random_range(0.1..1.0));
        let mut next_sweep = now + SWEEP_INTERVAL;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let wake =
                [Some(next_heartbeat), Some(next_sweep), next_timer].into_iter().flatten().min().unwrap_or(next_sweep);
            tokio::select! {
                message = connection.inbound.message() => {
                    let Ok(Some(message)) = message else { return Break::StreamLost };
                    self.last_received = Some(Instant::now());
                    self.received_on_stream += 1;
                    if !self.handle(&connection.outbox, message) {
                        return Break::StreamLost;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= next_heartbeat {
                        next_heartbeat = now + self.heartbeat;
                        let beat = pb::AgentMessage { message: Some(pb::agent_message::Message::Heartbeat(pb::Heartbeat {})) };
                        if connection.outbox.try_send(beat).is_err() {
                            return Break::StreamLost;
                        }
                    }
                    if !self.timers_due(&connection.outbox, now) {
                        return Break::StreamLost;
                    }
                    if now >= next_sweep {
                        next_sweep = now + SWEEP_INTERVAL;
                        if !self.resend_due(&connection.outbox, now) {
                            return Break::StreamLost;
                        }
                    }
                }
                event = chaos.recv() => {
                    if let Some(event) = event {
                        return Break::Chaos(event);
                    }
                }
                _ = agora_master::runtime::stopped(stop) => return Break::Stop,
            }
        }
    }

    /// Applies one message from the master; false when the stream can take no more.
    fn handle(&mut self, outbox: &mpsc::Sender<pb::AgentMessage>, message: pb::MasterMessage) -> bool {
        use pb::master_message::Message as M;
        let now = Instant::now();
        match message.message {
            Some(M::RunTask(run)) => {
                let Some(info) = run.task else { return true };
                self.counters.tasks_received.fetch_add(1, Ordering::Relaxed);
                let task_id = info.task_id.clone();
                if let Some(log) = &self.spec.launches {
                    log.record(&task_id, wall_ms());
                }
                if self.tasks.contains_key(&task_id) {
                    // A second launch of a live id: the master never does this; ignore it.
                    return true;
                }
                if self.tasks.len() >= MAX_TASKS_PER_AGENT {
                    tracing::warn!(agent = %self.hostname, "too many tasks; refusing a launch");
                    return true;
                }
                let task = EmulatedTask {
                    framework_id: run.framework_id,
                    info,
                    state: pb::TaskState::TaskStaging as i32,
                    updates: VecDeque::new(),
                    next_resend: None,
                    resends: 0,
                    head_sent: None,
                    healthy: None,
                    ready: None,
                };
                if let Some(durations) = &self.spec.durations {
                    let runs_ms = durations.sample_ms(&mut self.rng);
                    self.timers.push(Reverse((now + Duration::from_millis(runs_ms), task_id.clone(), Due::Finish)));
                }
                if let Some(check) = &task.info.health_check {
                    let after = Duration::from_millis(check.delay_ms) + self.check_time();
                    self.timers.push(Reverse((now + after, task_id.clone(), Due::Healthy)));
                }
                if task.info.readiness_check.is_some() {
                    let after = self.check_time();
                    self.timers.push(Reverse((now + after, task_id.clone(), Due::Ready)));
                }
                self.tasks.insert(task_id.clone(), task);
                self.report(outbox, &task_id, pb::TaskState::TaskStarting, now)
                    && self.report(outbox, &task_id, pb::TaskState::TaskRunning, now)
            }
            Some(M::KillTask(kill)) => self.kill(outbox, &kill.task_id, now),
            Some(M::ShutdownFramework(shutdown)) => {
                let ids: Vec<String> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.framework_id == shutdown.framework_id)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().all(|task_id| self.kill(outbox, task_id, now))
            }
            Some(M::Acknowledge(ack)) => {
                let Some(task) = self.tasks.get_mut(&ack.task_id) else { return true };
                if task.updates.front().is_none_or(|head| head.uuid != ack.uuid) {
                    return true;
                }
                task.updates.pop_front();
                if let Some(sent) = task.head_sent.take() {
                    self.counters.update_ack_ms.record(now.saturating_duration_since(sent).as_secs_f64() * 1e3);
                }
                task.next_resend = None;
                task.resends = 0;
                if task.updates.is_empty() {
                    if is_terminal(task.state) {
                        self.tasks.remove(&ack.task_id);
                    }
                    return true;
                }
                self.send_head(outbox, &ack.task_id, now, false)
            }
            Some(M::Registered(_)) | Some(M::Refused(_)) | None => true,
        }
    }

    fn kill(&mut self, outbox: &mpsc::Sender<pb::AgentMessage>, task_id: &str, now: Instant) -> bool {
        match self.tasks.get(task_id) {
            Some(task) if !is_terminal(task.state) => self.report(outbox, task_id, pb::TaskState::TaskKilled, now),
            _ => true,
        }
    }

    /// A seeded time for a check to pass once it may run.
    fn check_time(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(0..=self.spec.check_ms))
    }

    /// Timers that are due fire: tasks whose time is up finish, checks pass (unless
    /// something ended the task before).
    fn timers_due(&mut self, outbox: &mpsc::Sender<pb::AgentMessage>, now: Instant) -> bool {
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, task_id, due))) = self.timers.pop() else { break };
            let live = self.tasks.get(&task_id).is_some_and(|t| !is_terminal(t.state));
            if !live {
                continue;
            }
            let sent = match due {
                Due::Finish => self.report(outbox, &task_id, pb::TaskState::TaskFinished, now),
                Due::Healthy => self.checked(outbox, &task_id, Due::Healthy, now),
                Due::Ready => self.checked(outbox, &task_id, Due::Ready, now),
            };
            if !sent {
                return false;
            }
        }
        true
    }

    /// A check of a running task passed: as the real agent does, the news rewrites a
    /// RUNNING update still waiting behind the one on the wire, and otherwise goes out as
    /// a RUNNING update of its own (reason TASK_HEALTH_CHECK_STATUS_UPDATED for health,
    /// TASK_CHECK_STATUS_UPDATED for readiness). False when the stream can take no more.
    fn checked(&mut self, outbox: &mpsc::Sender<pb::AgentMessage>, task_id: &str, due: Due, now: Instant) -> bool {
        let Some(task) = self.tasks.get_mut(task_id) else { return true };
        let reason = match due {
            Due::Healthy => {
                task.healthy = Some(true);
                pb::TaskStatusReason::ReasonTaskHealthCheckStatusUpdated
            }
            Due::Ready => {
                task.ready = Some(true);
                pb::TaskStatusReason::ReasonTaskCheckStatusUpdated
            }
            Due::Finish => return true,
        };
        let (healthy, ready) = (task.healthy, task.ready);
        let running = pb::TaskState::TaskRunning as i32;
        if task.updates.len() > 1
            && let Some(waiting) = task.updates.back_mut()
            && waiting.state == running
        {
            waiting.healthy = healthy;
            waiting.ready = ready;
            return true;
        }
        if task.state != running {
            return true;
        }
        self.report_with(outbox, task_id, pb::TaskState::TaskRunning, reason, now)
    }

    fn resend_due(&mut self, outbox: &mpsc::Sender<pb::AgentMessage>, now: Instant) -> bool {
        let due: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.next_resend.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in due {
            if !self.send_head(outbox, &task_id, now, true) {
                return false;
            }
        }
        true
    }

    /// The executor produced `state`: queue a reliable update with a fresh uuid, and send
    /// it now if nothing else of this task is waiting for an acknowledgement.
    fn report(
        &mut self,
        outbox: &mpsc::Sender<pb::AgentMessage>,
        task_id: &str,
        state: pb::TaskState,
        now: Instant,
    ) -> bool {
        let reason = match state {
            pb::TaskState::TaskFinished => pb::TaskStatusReason::ReasonCommandExited,
            pb::TaskState::TaskKilled => pb::TaskStatusReason::ReasonTaskKilled,
            _ => pb::TaskStatusReason::ReasonUnspecified,
        };
        self.report_with(outbox, task_id, state, reason, now)
    }

    /// [`Agent::report`] with the reason given.
    fn report_with(
        &mut self,
        outbox: &mpsc::Sender<pb::AgentMessage>,
        task_id: &str,
        state: pb::TaskState,
        reason: pb::TaskStatusReason,
        now: Instant,
    ) -> bool {
        if !self.enqueue(task_id, state, reason) {
            return true;
        }
        self.send_head(outbox, task_id, now, false)
    }

    /// Queues a reliable update; true when it is the only one, so it may go out now.
    fn enqueue(&mut self, task_id: &str, state: pb::TaskState, reason: pb::TaskStatusReason) -> bool {
        let uuid = hex_uuid(self.rng.random::<u128>());
        let Some(task) = self.tasks.get_mut(task_id) else { return false };
        task.state = state as i32;
        task.updates.push_back(pb::TaskStatus {
            task_id: task_id.to_owned(),
            agent_id: self.id.clone(),
            state: state as i32,
            reason: reason as i32,
            source: pb::TaskStatusSource::SourceExecutor as i32,
            message: String::new(),
            timestamp_ms: wall_ms(),
            uuid,
            exit_code: (state == pb::TaskState::TaskFinished).then_some(0),
            signal: None,
            healthy: task.healthy,
            ready: task.ready,
        });
        task.updates.len() == 1
    }

    /// The agent process restarted: its tasks died with it, but its status updates were
    /// checkpointed (as a real agent's are), so every task it ran is reported again and
    /// the live ones end TASK_FAILED. A restart that forgot acknowledged-less updates
    /// would leave the framework never hearing of tasks the master already closed.
    fn restart(&mut self) {
        self.timers.clear();
        let live: Vec<String> =
            self.tasks.iter().filter(|(_, t)| !is_terminal(t.state)).map(|(id, _)| id.clone()).collect();
        for task_id in live {
            self.enqueue(&task_id, pb::TaskState::TaskFailed, pb::TaskStatusReason::ReasonAgentRestarted);
        }
    }

    /// Puts the task's oldest unacknowledged update on the wire. False when the stream is
    /// full or closed.
    fn send_head(
        &mut self,
        outbox: &mpsc::Sender<pb::AgentMessage>,
        task_id: &str,
        now: Instant,
        resend: bool,
    ) -> bool {
        let Some(task) = self.tasks.get_mut(task_id) else { return true };
        let Some(head) = task.updates.front() else { return true };
        if resend {
            if task.resends >= MAX_RESENDS {
                // Given up: the run's accounting will show the task as lost.
                self.counters.updates_given_up.fetch_add(1, Ordering::Relaxed);
                task.next_resend = None;
                return true;
            }
            task.resends += 1;
            self.counters.updates_resent.fetch_add(1, Ordering::Relaxed);
        }
        let wait = RESEND_FIRST.saturating_mul(1 << task.resends.min(4)).min(RESEND_MAX);
        task.next_resend = Some(now + wait);
        task.head_sent = Some(now);
        let update = pb::StatusUpdate { framework_id: task.framework_id.clone(), status: Some(head.clone()) };
        let message = pb::AgentMessage { message: Some(pb::agent_message::Message::StatusUpdate(update)) };
        self.counters.updates_sent.fetch_add(1, Ordering::Relaxed);
        outbox.try_send(message).is_ok()
    }
}

/// `value` as 32 lowercase hex digits, as `format!("{value:032x}")` writes it but without
/// the formatter's padding path (one call per digit): the emulated agents make a uuid per
/// status update, 30,000 a second at 10,000 agents, on the cores the master needs.
fn hex_uuid(value: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..32).rev().map(|i| char::from(DIGITS[((value >> (4 * i)) & 0xf) as usize])).collect()
}

fn is_terminal(state: i32) -> bool {
    agora_proto::convert::task_state("state", state).is_ok_and(agora_proto::model::TaskState::is_terminal)
}

pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(check_ms: u64) -> Agent {
        let spec = AgentSpec {
            index: 0,
            resources: pb::Resources::default(),
            seed: 7,
            durations: None,
            check_ms,
            slot: 0,
            launches: None,
        };
        let mut agent = Agent::new(spec, Arc::new(AgentCounters::default()));
        agent.id = "agent-0".into();
        agent
    }

    fn launch(health_delay_ms: Option<u64>, readiness: bool) -> pb::MasterMessage {
        let health_check = health_delay_ms.map(|delay_ms| pb::HealthCheck {
            kind: Some(pb::health_check::Kind::Command(pb::CommandHealthCheck { shell: "true".into() })),
            grace_period_ms: 300_000,
            interval_ms: 60_000,
            timeout_ms: 20_000,
            max_consecutive_failures: 3,
            delay_ms,
        });
        let readiness_check = readiness.then(|| pb::ReadinessCheck {
            scheme: pb::HttpScheme::Http as i32,
            port: 31_000,
            path: "/ready".into(),
            interval_ms: 30_000,
            timeout_ms: 10_000,
            ready_status_codes: vec![200],
        });
        let task = pb::TaskInfo {
            task_id: "t1".into(),
            name: "t1".into(),
            agent_id: "agent-0".into(),
            health_check,
            readiness_check,
            ..pb::TaskInfo::default()
        };
        let run = pb::RunTask { framework_id: "f1".into(), task: Some(task), ..pb::RunTask::default() };
        pb::MasterMessage { message: Some(pb::master_message::Message::RunTask(run)) }
    }

    /// The next status update the agent put on its stream, if any.
    fn sent(rx: &mut mpsc::Receiver<pb::AgentMessage>) -> Option<pb::TaskStatus> {
        match rx.try_recv().ok()?.message {
            Some(pb::agent_message::Message::StatusUpdate(update)) => update.status,
            other => panic!("not a status update: {other:?}"),
        }
    }

    fn ack(agent: &mut Agent, tx: &mpsc::Sender<pb::AgentMessage>, status: &pb::TaskStatus) {
        let ack =
            pb::AcknowledgeUpdate { task_id: status.task_id.clone(), uuid: status.uuid.clone(), ..Default::default() };
        let message = pb::MasterMessage { message: Some(pb::master_message::Message::Acknowledge(ack)) };
        assert!(agent.handle(tx, message));
    }

    #[test]
    fn a_task_with_checks_turns_healthy_then_ready_and_its_kill_repeats_both() {
        let mut agent = agent(100);
        let (tx, mut rx) = mpsc::channel(64);
        let launched = Instant::now();
        assert!(agent.handle(&tx, launch(Some(2_000), true)));
        for state in [pb::TaskState::TaskStarting, pb::TaskState::TaskRunning] {
            let status = sent(&mut rx).expect("an update");
            assert_eq!((status.state, status.healthy, status.ready), (state as i32, None, None));
            ack(&mut agent, &tx, &status);
        }
        // Readiness passes within check_ms; health waits for the check's delay first.
        assert!(agent.timers_due(&tx, launched + Duration::from_millis(100)));
        let ready = sent(&mut rx).expect("the readiness update");
        assert_eq!(ready.state, pb::TaskState::TaskRunning as i32);
        assert_eq!(ready.reason, pb::TaskStatusReason::ReasonTaskCheckStatusUpdated as i32);
        assert_eq!((ready.healthy, ready.ready), (None, Some(true)));
        ack(&mut agent, &tx, &ready);
        assert!(agent.timers_due(&tx, launched + Duration::from_millis(1_999)));
        assert!(sent(&mut rx).is_none(), "healthy before the check's delay");
        assert!(agent.timers_due(&tx, launched + Duration::from_millis(2_100)));
        let healthy = sent(&mut rx).expect("the health update");
        assert_eq!(healthy.reason, pb::TaskStatusReason::ReasonTaskHealthCheckStatusUpdated as i32);
        assert_eq!(
            (healthy.state, healthy.healthy, healthy.ready),
            (pb::TaskState::TaskRunning as i32, Some(true), Some(true))
        );
        ack(&mut agent, &tx, &healthy);
        let kill = pb::KillTask { task_id: "t1".into(), ..Default::default() };
        assert!(agent.handle(&tx, pb::MasterMessage { message: Some(pb::master_message::Message::KillTask(kill)) }));
        let killed = sent(&mut rx).expect("the kill's update, at once");
        assert_eq!(
            (killed.state, killed.healthy, killed.ready),
            (pb::TaskState::TaskKilled as i32, Some(true), Some(true))
        );
    }

    #[test]
    fn a_check_passing_behind_an_unacknowledged_update_rewrites_the_waiting_running_update() {
        let mut agent = agent(0);
        let (tx, mut rx) = mpsc::channel(64);
        assert!(agent.handle(&tx, launch(Some(0), false)));
        let starting = sent(&mut rx).expect("STARTING");
        assert!(agent.timers_due(&tx, Instant::now()));
        assert!(sent(&mut rx).is_none(), "RUNNING waits for STARTING's acknowledgement");
        ack(&mut agent, &tx, &starting);
        let running = sent(&mut rx).expect("RUNNING");
        assert_eq!((running.state, running.healthy), (pb::TaskState::TaskRunning as i32, Some(true)));
        ack(&mut agent, &tx, &running);
        assert!(sent(&mut rx).is_none(), "no third update: the news rode on RUNNING");
    }

    #[test]
    fn a_task_without_checks_reports_no_health() {
        let mut agent = agent(0);
        let (tx, mut rx) = mpsc::channel(64);
        assert!(agent.handle(&tx, launch(None, false)));
        let starting = sent(&mut rx).expect("STARTING");
        ack(&mut agent, &tx, &starting);
        let running = sent(&mut rx).expect("RUNNING");
        ack(&mut agent, &tx, &running);
        assert!(agent.timers_due(&tx, Instant::now() + Duration::from_secs(3600)));
        assert!(sent(&mut rx).is_none());
        assert!(agent.timers.is_empty());
    }

    #[test]
    fn uuids_are_written_as_the_formatter_writes_them() {
        for value in [0, 1, 0xabc, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(hex_uuid(value), format!("{value:032x}"));
        }
    }
}
