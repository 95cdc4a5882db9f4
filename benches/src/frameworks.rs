//! Emulated frameworks: each subscribes over the raw scheduler gRPC API, packs as many
//! of its short tasks into every offer as fit, acknowledges every update, relaunches what
//! the cluster lost, and keeps the books that decide `lost_tasks`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_proto::pb;
use agora_proto::pb::scheduler_client::SchedulerClient;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::masters::Masters;
use crate::stats::Samples;

/// Calls one framework may have in flight; more wait, which slows its event loop rather
/// than growing memory. Each framework has its own connection, and the master's HTTP/2
/// server takes 200 concurrent streams on one.
const MAX_CALLS_IN_FLIGHT: usize = 190;
/// Completed calls waiting for the event loop.
const COMPLETIONS_LEN: usize = 4 * 1024;
/// Most tasks in one ACCEPT (the master's own bound is 1,000).
const MAX_TASKS_PER_ACCEPT: u64 = 1_000;
/// Offer-to-launch samples kept per framework (reservoir beyond).
const MAX_SAMPLES: usize = 100_000;
/// Re-subscription backoff, capped.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);
/// How long leftover resources of an accepted or declined offer are not offered again:
/// Mesos' default filter. A REVIVE (sent when the framework has room again) lifts it.
/// With 1 s, every free agent went round every framework that was not suppressed once a
/// second: 3.4 offers made, sent, declined and recovered per task launched.
const REFUSE_SECONDS: f64 = 5.0;
/// How long an idle framework's declined offers stay away.
const IDLE_REFUSE_SECONDS: f64 = 30.0;
/// Acknowledgements that are sent without waiting for `ACK_DELAY`, and the longest one
/// waits for others to join it. One ACKNOWLEDGE_MANY is in flight at a time: what arrives
/// meanwhile goes in the next, so a slower master gets fewer, larger calls.
const ACK_BATCH: usize = 512;
/// Agents resend after 10 s, so waiting 20 ms costs nothing and gathers about ten times
/// as many acknowledgements per call as 2 ms did at 5,000 tasks/s.
const ACK_DELAY: Duration = Duration::from_millis(20);

/// How often a suppressed framework looks at its rising in-flight bound.
const RAMP_CHECK: Duration = Duration::from_millis(50);

/// What each task asks for: small, so that one agent holds many.
#[derive(Clone, Copy, Debug)]
pub struct TaskShape {
    pub cpus_milli: u64,
    pub mem_mib: u64,
}

/// Counters shared by every emulated framework, read by the progress line.
#[derive(Debug, Default)]
pub struct FrameworkCounters {
    pub subscribed: AtomicU64,
    pub tasks_launched: AtomicU64,
    /// When the latest ACCEPT with tasks went out (for the launch rate without the tail
    /// of the last tasks' durations).
    pub last_launch: std::sync::Mutex<Option<Instant>>,
    /// Work items done: the first terminal update of a task was TASK_FINISHED.
    pub tasks_finished: AtomicU64,
    pub relaunches: AtomicU64,
    pub frameworks_done: AtomicU64,
    /// Tasks heard RUNNING (once each).
    pub tasks_running: AtomicU64,
    /// Bumped by the bench just before it kills the leading master.
    pub failover_epoch: AtomicU64,
    /// Frameworks subscribed again since the latest failover epoch began.
    pub resubscribed: AtomicU64,
}

/// What one framework reports when the run ends.
#[derive(Debug)]
pub struct FrameworkReport {
    pub offer_to_launch_ms: Samples,
    /// Launched tasks with no terminal update (and not replaced after TASK_UNREACHABLE).
    pub unfinished_tasks: u64,
    /// Tasks that got two different terminal updates.
    pub double_terminal_tasks: u64,
    /// A terminal update after the master had answered a reconciliation with a terminal
    /// state (the agent's own update was still on its way): not a second ending.
    pub late_terminal_updates: u64,
    /// The same update delivered again (agent resend after a lost acknowledgement).
    pub redelivered_updates: u64,
    pub unreachable_tasks: u64,
    pub failed_calls: u64,
    pub offers_received: u64,
    pub offers_declined: u64,
    /// Why tasks were relaunched: the state (and reason) that ended or gave them up.
    pub relaunched_after: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug)]
pub struct FrameworkSpec {
    pub index: usize,
    /// Tasks that must finish.
    pub quota: u64,
    /// Most of its tasks launched and not yet ended at once: launches are paced to what the
    /// cluster finishes, instead of one burst that queues every update behind the others.
    pub max_in_flight: u64,
    /// How long after its first subscription the framework takes to raise its in-flight
    /// bound from a tenth to all of `max_in_flight` (zero: all at once).
    pub ramp: Duration,
    pub shape: TaskShape,
    pub seed: u64,
    /// Its connection to each master.
    pub slot: usize,
    /// Tasks are held running (they end only if something fails): unended ones are
    /// expected, not worth a warning.
    pub hold: bool,
}

#[derive(Debug, Default)]
struct Track {
    /// First terminal state and its uuid.
    terminal: Option<(i32, String)>,
    /// Given up after TASK_UNREACHABLE and replaced by a relaunch.
    replaced: bool,
    /// The latest state heard, for the report on unfinished tasks.
    last_state: i32,
    /// Where it was launched, for reconciliation.
    agent_id: String,
    /// Heard RUNNING at least once.
    running: bool,
}

/// A call's outcome, back to the event loop.
enum Completion {
    /// `took`: from the OFFERS event to the master's answer to the ACCEPT, taken when the
    /// answer arrives (not when the event loop gets round to the completion).
    Accept {
        took: Duration,
        task_ids: Vec<String>,
        ok: bool,
    },
    Other {
        ok: bool,
    },
    /// An ACKNOWLEDGE_MANY answered: the next may go.
    Acks {
        ok: bool,
    },
}

struct Session {
    framework_id: String,
    stream_id: String,
}

pub struct Framework {
    spec: FrameworkSpec,
    framework_id: String,
    /// Tasks still to launch: the quota plus relaunches, minus launches.
    pending: u64,
    /// Launched tasks not yet ended (terminal or given up).
    in_flight: u64,
    next_task: u64,
    finished: u64,
    suppressed: bool,
    tracks: HashMap<String, Track>,
    report: FrameworkReport,
    counters: Arc<FrameworkCounters>,
    rng: ChaCha8Rng,
    calls: Arc<Semaphore>,
    /// The failover epoch of the latest subscription.
    epoch: u64,
    /// Acknowledgements of handled updates not sent yet, and when the oldest was added.
    acks: Vec<pb::Acknowledge>,
    acks_since: Option<Instant>,
    /// An ACKNOWLEDGE_MANY is in flight.
    acks_in_flight: bool,
    /// When the framework first subscribed: its in-flight bound ramps up from then.
    started: Option<Instant>,
    /// The in-flight bound when it last suppressed offers.
    suppressed_at: u64,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framework").field("index", &self.spec.index).field("id", &self.framework_id).finish()
    }
}

impl Framework {
    pub fn new(spec: FrameworkSpec, counters: Arc<FrameworkCounters>) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0xF00D ^ spec.index as u64);
        Self {
            pending: spec.quota,
            in_flight: 0,
            spec,
            framework_id: String::new(),
            next_task: 0,
            finished: 0,
            suppressed: false,
            tracks: HashMap::new(),
            report: FrameworkReport {
                offer_to_launch_ms: Samples::new(MAX_SAMPLES),
                unfinished_tasks: 0,
                double_terminal_tasks: 0,
                late_terminal_updates: 0,
                redelivered_updates: 0,
                unreachable_tasks: 0,
                failed_calls: 0,
                offers_received: 0,
                offers_declined: 0,
                relaunched_after: Default::default(),
            },
            counters,
            rng,
            calls: Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            epoch: 0,
            acks: Vec::new(),
            acks_since: None,
            acks_in_flight: false,
            started: None,
            suppressed_at: 0,
        }
    }

    fn done(&self) -> bool {
        self.finished >= self.spec.quota
    }

    /// Subscribes (again after any break, to whichever master leads) and serves events
    /// until `stop`.
    pub async fn run(mut self, masters: Arc<Masters>, mut stop: watch::Receiver<bool>) -> FrameworkReport {
        let (completions_tx, mut completions) = mpsc::channel(COMPLETIONS_LEN);
        let mut backoff = RESUBSCRIBE_FIRST;
        let mut counted_done = false;
        let mut elections = masters.elections();
        'subscriptions: loop {
            let info = pb::FrameworkInfo {
                user: "bench".to_owned(),
                name: format!("bench-{}", self.spec.index),
                id: self.framework_id.clone(),
                roles: vec!["*".to_owned()],
                failover_timeout_ms: Some(3_600_000),
                hostname: String::new(),
                principal: String::new(),
            };
            let (index, channel) = masters.channel(self.spec.slot);
            let client = SchedulerClient::new(channel).max_decoding_message_size(256 << 20);
            let mut subscriber = client.clone();
            let subscribed = tokio::select! {
                result = subscriber.subscribe(pb::Subscribe { framework: Some(info) }) => result,
                _ = agora_master::runtime::stopped(&mut stop) => break 'subscriptions,
            };
            let mut events = match subscribed {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    if masters.failed(index, Some(&status)) {
                        continue;
                    }
                    tracing::debug!(framework = self.spec.index, %status, "subscription failed; retrying");
                    masters.pause(backoff, &mut elections, RESUBSCRIBE_FIRST).await;
                    backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                    continue;
                }
            };
            let mut session: Option<Session> = None;
            loop {
                tokio::select! {
                    event = events.message() => {
                        let Ok(Some(event)) = event else { break };
                        let Some(event) = event.event else { continue };
                        match event {
                            pb::event::Event::Subscribed(subscribed) => {
                                let again = !self.framework_id.is_empty();
                                self.framework_id = subscribed.framework_id.clone();
                                self.started.get_or_insert_with(Instant::now);
                                session = Some(Session { framework_id: subscribed.framework_id, stream_id: subscribed.stream_id });
                                self.counters.subscribed.fetch_add(1, Ordering::Relaxed);
                                let epoch = self.counters.failover_epoch.load(Ordering::Relaxed);
                                if epoch > self.epoch {
                                    self.epoch = epoch;
                                    self.counters.resubscribed.fetch_add(1, Ordering::Relaxed);
                                }
                                self.suppressed = false;
                                backoff = RESUBSCRIBE_FIRST;
                                if again && let Some(session) = &session {
                                    self.reconcile(&client, session, &completions_tx).await;
                                }
                            }
                            pb::event::Event::Offers(offers) => {
                                if let Some(session) = &session {
                                    let received = Instant::now();
                                    let mut declined = Vec::new();
                                    for offer in offers.offers {
                                        if let Some(offer_id) = self.offer(&client, session, offer, received, &completions_tx).await {
                                            declined.push(offer_id);
                                        }
                                    }
                                    self.decline(&client, session, declined, &completions_tx).await;
                                }
                            }
                            pb::event::Event::Update(update) => {
                                if let (Some(session), Some(status)) = (&session, update.status) {
                                    self.update(&client, session, status, &completions_tx).await;
                                }
                            }
                            pb::event::Event::Error(error) => {
                                tracing::warn!(framework = self.spec.index, message = %error.message, "ERROR event");
                            }
                            _ => {}
                        }
                    }
                    Some(completion) = completions.recv() => {
                        self.complete(completion);
                    }
                    () = tokio::time::sleep_until(self.ack_deadline()) => {}
                    // A suppressed framework whose bound rises revives without waiting for
                    // a task to end (with `--hold`, none does).
                    () = tokio::time::sleep(RAMP_CHECK), if self.suppressed && self.ramping() => {}
                    _ = agora_master::runtime::stopped(&mut stop) => break 'subscriptions,
                }
                if let Some(session) = &session {
                    self.send_acks(&client, session, &completions_tx, false).await;
                    self.suppress_or_revive(&client, session).await;
                }
                if self.done() && !counted_done {
                    counted_done = true;
                    self.counters.frameworks_done.fetch_add(1, Ordering::Relaxed);
                }
            }
            if session.is_some() {
                self.counters.subscribed.fetch_sub(1, Ordering::Relaxed);
            }
            tracing::info!(framework = self.spec.index, "event stream ended; subscribing again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
        }
        // Calls still in flight finish on their own; their outcome no longer matters.
        while let Ok(completion) = completions.try_recv() {
            self.complete(completion);
        }
        for (task_id, track) in &self.tracks {
            if track.terminal.is_none() && !track.replaced {
                self.report.unfinished_tasks += 1;
                // A few examples are enough to start an investigation.
                if self.report.unfinished_tasks <= 5 && !self.spec.hold {
                    let state = pb::TaskState::try_from(track.last_state).unwrap_or(pb::TaskState::Unspecified);
                    tracing::warn!(framework_id = %self.framework_id, %task_id, last_state = ?state, "task never reached a terminal state");
                }
            }
        }
        self.report
    }

    /// Packs pending tasks into the offer and accepts it; returns its id when nothing fits
    /// (to be declined with the event's other unused offers, in one call).
    async fn offer(
        &mut self,
        client: &SchedulerClient<Channel>,
        session: &Session,
        offer: pb::Offer,
        received: Instant,
        completions: &mpsc::Sender<Completion>,
    ) -> Option<String> {
        self.report.offers_received += 1;
        let fits = fits(&offer, self.spec.shape);
        let room = self.bound().saturating_sub(self.in_flight);
        let count = self.pending.min(fits).min(MAX_TASKS_PER_ACCEPT).min(room);
        if count == 0 {
            return Some(offer.id);
        }
        let mut tasks = Vec::with_capacity(count as usize);
        let mut task_ids = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let task_id = format!("f{}-t{}", self.spec.index, self.next_task);
            self.next_task += 1;
            tasks.push(task_info(&task_id, &offer.agent_id, self.spec.shape));
            self.tracks.insert(task_id.clone(), Track { agent_id: offer.agent_id.clone(), ..Track::default() });
            task_ids.push(task_id);
        }
        self.pending -= count;
        self.in_flight += count;
        self.counters.tasks_launched.fetch_add(count, Ordering::Relaxed);
        if let Ok(mut last) = self.counters.last_launch.lock() {
            *last = Some(Instant::now());
        }
        let accept = pb::call::Call::Accept(pb::Accept {
            offer_ids: vec![offer.id],
            operations: vec![pb::Operation {
                operation: Some(pb::operation::Operation::Launch(pb::LaunchOperation { tasks })),
            }],
            filters: Some(pb::Filters { refuse_seconds: Some(REFUSE_SECONDS) }),
        });
        self.spawn_call(client, session, accept, completions, move |ok| Completion::Accept {
            took: received.elapsed(),
            task_ids,
            ok,
        })
        .await;
        None
    }

    /// Declines the unused offers of one OFFERS event in one call (a framework at its
    /// in-flight bound gets about a hundred per round: a call each was most of its calls).
    async fn decline(
        &mut self,
        client: &SchedulerClient<Channel>,
        session: &Session,
        offer_ids: Vec<String>,
        completions: &mpsc::Sender<Completion>,
    ) {
        self.report.offers_declined += offer_ids.len() as u64;
        let refuse_seconds = if self.pending == 0 { IDLE_REFUSE_SECONDS } else { REFUSE_SECONDS };
        for chunk in offer_ids.chunks(agora_proto::convert::MAX_ENTRIES) {
            let filters = Some(pb::Filters { refuse_seconds: Some(refuse_seconds) });
            let decline = pb::call::Call::Decline(pb::Decline { offer_ids: chunk.to_vec(), filters });
            self.spawn_call(client, session, decline, completions, |ok| Completion::Other { ok }).await;
        }
    }

    /// Books a status update and acknowledges it.
    async fn update(
        &mut self,
        client: &SchedulerClient<Channel>,
        session: &Session,
        status: pb::TaskStatus,
        completions: &mpsc::Sender<Completion>,
    ) {
        if !status.uuid.is_empty() {
            let ack = pb::Acknowledge {
                agent_id: status.agent_id.clone(),
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone(),
            };
            self.acks.push(ack);
            self.acks_since.get_or_insert_with(Instant::now);
            self.send_acks(client, session, completions, false).await;
        }
        let Some(track) = self.tracks.get_mut(&status.task_id) else { return };
        let state = pb::TaskState::try_from(status.state).unwrap_or(pb::TaskState::Unspecified);
        track.last_state = status.state;
        if state == pb::TaskState::TaskRunning && !track.running {
            track.running = true;
            self.counters.tasks_running.fetch_add(1, Ordering::Relaxed);
        }
        if is_terminal(state) {
            match &track.terminal {
                None => {
                    track.terminal = Some((status.state, status.uuid.clone()));
                    if track.replaced {
                        return;
                    }
                    self.in_flight = self.in_flight.saturating_sub(1);
                    if state == pb::TaskState::TaskFinished {
                        self.finished += 1;
                        self.counters.tasks_finished.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.relaunch(&status);
                    }
                }
                Some((_, uuid)) if !uuid.is_empty() && *uuid == status.uuid => self.report.redelivered_updates += 1,
                Some((_, uuid)) if uuid.is_empty() && !status.uuid.is_empty() => self.report.late_terminal_updates += 1,
                Some(_) => {
                    tracing::warn!(task = %status.task_id, state = ?state, "a second terminal update");
                    self.report.double_terminal_tasks += 1;
                }
            }
        } else if state == pb::TaskState::TaskUnreachable && track.terminal.is_none() && !track.replaced {
            // As a partition-aware framework does: give the task up and run another.
            track.replaced = true;
            self.in_flight = self.in_flight.saturating_sub(1);
            self.report.unreachable_tasks += 1;
            self.relaunch(&status);
        }
    }

    /// After subscribing again, asks the master for every task not yet ended: updates the
    /// master produced while the framework was away (TASK_DROPPED, TASK_GONE, …) are not
    /// sent twice, so without this those tasks would never end here.
    async fn reconcile(
        &mut self,
        client: &SchedulerClient<Channel>,
        session: &Session,
        completions: &mpsc::Sender<Completion>,
    ) {
        /// Tasks per RECONCILE call, well below the master's bound.
        const CHUNK: usize = 5_000;
        let open: Vec<pb::ReconcileTask> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.terminal.is_none() && !t.replaced)
            .map(|(task_id, t)| pb::ReconcileTask { task_id: task_id.clone(), agent_id: t.agent_id.clone() })
            .collect();
        for chunk in open.chunks(CHUNK) {
            let call = pb::call::Call::Reconcile(pb::Reconcile { tasks: chunk.to_vec() });
            self.spawn_call(client, session, call, completions, |ok| Completion::Other { ok }).await;
        }
    }

    fn relaunch(&mut self, after: &pb::TaskStatus) {
        let state = pb::TaskState::try_from(after.state).map_or("unknown", |s| s.as_str_name());
        let reason = pb::TaskStatusReason::try_from(after.reason).map_or("unknown", |r| r.as_str_name());
        *self.report.relaunched_after.entry(format!("{state}/{reason}")).or_default() += 1;
        self.pending += 1;
        self.counters.relaunches.fetch_add(1, Ordering::Relaxed);
    }

    fn complete(&mut self, completion: Completion) {
        match completion {
            Completion::Accept { took, task_ids, ok } => {
                if ok {
                    let ms = took.as_secs_f64() * 1000.0;
                    self.report.offer_to_launch_ms.record(ms, &mut self.rng);
                    return;
                }
                // The call was refused as a whole: none of its tasks exists.
                self.report.failed_calls += 1;
                for task_id in task_ids {
                    if self.tracks.remove(&task_id).is_some() {
                        self.pending += 1;
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                }
            }
            Completion::Other { ok } => {
                if !ok {
                    self.report.failed_calls += 1;
                }
            }
            Completion::Acks { ok } => {
                // A failed call's updates are sent again by their agents and acknowledged
                // again then.
                self.acks_in_flight = false;
                if !ok {
                    self.report.failed_calls += 1;
                }
            }
        }
    }

    /// The in-flight bound now: a tenth of `max_in_flight` at the first subscription,
    /// rising linearly to all of it over `ramp` — a slow start, as frameworks that
    /// rate-limit their launches have, rather than every framework launching its whole
    /// share in the same round.
    fn bound(&self) -> u64 {
        let max = self.spec.max_in_flight;
        let Some(started) = self.started else { return max };
        if self.spec.ramp.is_zero() || started.elapsed() >= self.spec.ramp {
            return max;
        }
        let done = started.elapsed().as_secs_f64() / self.spec.ramp.as_secs_f64();
        ((max as f64 * (0.1 + 0.9 * done)) as u64).clamp(1, max)
    }

    /// Whether the in-flight bound is still rising.
    fn ramping(&self) -> bool {
        self.started.is_none_or(|started| started.elapsed() < self.spec.ramp)
    }

    /// Stops offers while nothing can be launched (nothing pending, or as many tasks in
    /// flight as allowed), and asks for them again once work can go out: when half of the
    /// bound it stopped at is free again (by tasks ending or the bound rising), or room
    /// for all that is pending, so that a framework at its bound does not revive on every
    /// finished task.
    async fn suppress_or_revive(&mut self, client: &SchedulerClient<Channel>, session: &Session) {
        let call = if self.suppressed {
            // Every REVIVE lifts the framework's filters and brings it offers (as many as
            // the master's per-framework bound), nearly all of which it declines:
            // reviving for half the bound rather than a quarter halves that flood.
            // Or when everything still to launch fits: with `--hold` no task ends, and a
            // framework stopped at its rising bound would wait for half of it for good.
            let room = self.bound().saturating_sub(self.in_flight);
            if self.pending == 0 || room < (self.suppressed_at / 2).min(self.pending).max(1) {
                return;
            }
            pb::call::Call::Revive(pb::Revive { roles: Vec::new() })
        } else {
            if self.pending > 0 && self.in_flight < self.bound() {
                return;
            }
            self.suppressed_at = self.bound();
            pb::call::Call::Suppress(pb::Suppress { roles: Vec::new() })
        };
        self.suppressed = !self.suppressed;
        // Awaited here, not spawned: a SUPPRESS and a REVIVE in flight together could
        // reach the master in the wrong order and leave the framework suppressed for good.
        let request = pb::Call {
            framework_id: session.framework_id.clone(),
            stream_id: session.stream_id.clone(),
            call: Some(call),
        };
        if let Err(status) = client.clone().call(request).await {
            tracing::debug!(%status, "suppress or revive failed");
            self.report.failed_calls += 1;
        }
    }

    /// When the acknowledgements gathered must go; none while one call is in flight (its
    /// answer wakes the loop).
    fn ack_deadline(&self) -> Instant {
        match self.acks_since {
            Some(since) if !self.acks_in_flight => since + ACK_DELAY,
            _ => far_future(),
        }
    }

    /// Sends the pending acknowledgements in one ACKNOWLEDGE_MANY once there are enough of
    /// them or the oldest has waited `ACK_DELAY` (or at once with `now`).
    async fn send_acks(
        &mut self,
        client: &SchedulerClient<Channel>,
        session: &Session,
        completions: &mpsc::Sender<Completion>,
        now: bool,
    ) {
        let due = self.acks_since.is_some_and(|t| t.elapsed() >= ACK_DELAY);
        if self.acks.is_empty() || self.acks_in_flight || !(now || due || self.acks.len() >= ACK_BATCH) {
            return;
        }
        let take = self.acks.len().min(agora_master::runtime::MAX_ACKNOWLEDGEMENTS);
        let acknowledgements: Vec<pb::Acknowledge> = self.acks.drain(..take).collect();
        self.acks_since = (!self.acks.is_empty()).then(Instant::now);
        self.acks_in_flight = true;
        let call = pb::call::Call::AcknowledgeMany(pb::AcknowledgeMany { acknowledgements });
        self.spawn_call(client, session, call, completions, |ok| Completion::Acks { ok }).await;
    }

    /// Sends a call on its own task, bounded by the in-flight semaphore, and reports the
    /// outcome on `completions`.
    async fn spawn_call(
        &mut self,
        client: &SchedulerClient<Channel>,
        session: &Session,
        call: pb::call::Call,
        completions: &mpsc::Sender<Completion>,
        outcome: impl FnOnce(bool) -> Completion + Send + 'static,
    ) {
        let Ok(permit) = self.calls.clone().acquire_owned().await else { return };
        let mut client = client.clone();
        let completions = completions.clone();
        let request = pb::Call {
            framework_id: session.framework_id.clone(),
            stream_id: session.stream_id.clone(),
            call: Some(call),
        };
        tokio::spawn(async move {
            let result = client.call(request).await;
            if let Err(status) = &result {
                tracing::debug!(%status, "call failed");
            }
            drop(permit);
            let _ = completions.send(outcome(result.is_ok())).await;
        });
    }
}

/// How many tasks of `shape` the offer's resources hold.
pub fn fits(offer: &pb::Offer, shape: TaskShape) -> u64 {
    let (cpus, mem) = offer
        .resources
        .iter()
        .flat_map(|r| &r.pools)
        .filter(|p| p.role.is_empty() || p.role == "*")
        .fold((0u64, 0u64), |(c, m), p| (c.saturating_add(p.cpus_milli), m.saturating_add(p.mem_mib)));
    (cpus / shape.cpus_milli.max(1)).min(mem / shape.mem_mib.max(1))
}

fn task_info(task_id: &str, agent_id: &str, shape: TaskShape) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: task_id.to_owned(),
        name: "bench".to_owned(),
        agent_id: agent_id.to_owned(),
        resources: Some(pb::Resources {
            pools: vec![pb::ResourcePool {
                role: "*".to_owned(),
                cpus_milli: shape.cpus_milli,
                mem_mib: shape.mem_mib,
                disk_mib: 0,
                ports: Vec::new(),
            }],
        }),
        command: Some(pb::CommandInfo { shell: "true".to_owned(), ..Default::default() }),
        labels: Vec::new(),
        kill_grace_period_ms: 0,
        health_check: None,
        readiness_check: None,
    }
}

/// A deadline that never comes, for a timer branch with nothing to wait for.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

fn is_terminal(state: pb::TaskState) -> bool {
    agora_proto::model::TaskState::try_from(state).is_ok_and(agora_proto::model::TaskState::is_terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_hold_as_many_tasks_as_the_scarcest_resource_allows() {
        let offer = pb::Offer {
            resources: Some(pb::Resources {
                pools: vec![pb::ResourcePool {
                    role: "*".to_owned(),
                    cpus_milli: 24_000,
                    mem_mib: 4_096,
                    disk_mib: 0,
                    ports: vec![],
                }],
            }),
            ..Default::default()
        };
        assert_eq!(fits(&offer, TaskShape { cpus_milli: 100, mem_mib: 32 }), 128);
        assert_eq!(fits(&offer, TaskShape { cpus_milli: 1_000, mem_mib: 32 }), 24);
        assert_eq!(fits(&pb::Offer::default(), TaskShape { cpus_milli: 100, mem_mib: 32 }), 0);
    }
}
