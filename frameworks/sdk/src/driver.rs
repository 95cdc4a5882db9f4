//! The driver: subscribes to a master, hands events to a [`Scheduler`] one at a time,
//! acknowledges reliable updates after the scheduler has seen them (from a task of its own
//! that gathers the acknowledgements queued while a call is under way into one
//! ACKNOWLEDGE_MANY, so that the next event never waits for the master's answer to the
//! last acknowledgement; or leaves that to the scheduler, with
//! [`DriverConfig::explicit_acknowledgements`]), notices a dead stream by
//! missing heartbeats, and re-subscribes with the same framework id, with capped, jittered
//! backoff, trying each master in turn, or the leader the masters name in etcd.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agora_proto::convert::{id, optional_id};
use agora_proto::etcd_client::{Etcd, EtcdError};
use agora_proto::model::{
    AgentId, FrameworkId, FrameworkInfo, Offer, OfferId, StreamId, TaskId, TaskInfo, TaskStatus, UpdateId,
};
use agora_proto::pb;
use agora_proto::pb::scheduler_client::SchedulerClient;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::backoff::{Backoff, BackoffConfig};
use crate::{Error, Scheduler};

/// Mesos' rule: a stream that has carried nothing for this many heartbeat intervals is dead.
pub const DEFAULT_MISSED_HEARTBEATS: u32 = 5;
/// The interval assumed when the master names none (Mesos' default).
const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 15_000;
/// Bounds on the interval the master asks for, so that a bad value can neither make every
/// stream look dead at once nor let a dead one go unnoticed for hours.
const HEARTBEAT_INTERVAL_BOUNDS_MS: (u64, u64) = (10, 600_000);
/// The largest event or call accepted or sent. An OFFERS event for a big cluster is the
/// largest message; 16 MiB holds tens of thousands of offers.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Acknowledgements waiting for the call that carries them; the driver waits to queue more
/// (and so to hand over more events) while this many wait.
const ACKNOWLEDGE_QUEUE_LEN: usize = 10_000;
/// Rejected acknowledgements waiting to be told to the scheduler; more are only logged.
const ACKNOWLEDGE_ERRORS_LEN: usize = 16;
/// Most master addresses a driver takes.
const MAX_MASTERS: usize = 64;
/// HTTP/2 pings find a master that vanished without closing the connection (a host that
/// lost power) even between heartbeats.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How a [`Driver`] finds and talks to the master.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Master addresses, `host:port` or `http://host:port`; tried in turn until one accepts
    /// the subscription. Empty when `etcd` is given.
    pub masters: Vec<String>,
    /// Instead of `masters`: the endpoints (`host:port` or `http://host:port`) of the etcd
    /// cluster the masters elect their leader on. Before each attempt to subscribe the
    /// driver reads the leader's address there and dials it.
    pub etcd: Vec<String>,
    /// The framework to subscribe. Set `id` to fail over to an existing framework (a
    /// restarted scheduler that persisted its id); the driver fills it in after the first
    /// SUBSCRIBED and re-subscribes with it from then on.
    pub framework: FrameworkInfo,
    pub reconnect: BackoffConfig,
    /// How long opening a connection may take.
    pub connect_timeout_ms: u64,
    /// How long the master may take to answer a subscription with SUBSCRIBED.
    pub subscribe_timeout_ms: u64,
    /// How long one call (ACCEPT, DECLINE, ACKNOWLEDGE, …) may take.
    pub call_timeout_ms: u64,
    /// How many heartbeat intervals without any event make the stream count as dead.
    pub missed_heartbeats: u32,
    /// Seeds the backoff jitter, for reproducible tests; random when `None`.
    pub seed: Option<u64>,
    /// When true, the driver does not acknowledge reliable updates after
    /// [`Scheduler::update`] returns; the scheduler does, with
    /// [`DriverHandle::acknowledge`], once it has made the update's consequences durable
    /// (Mesos' `implicit_acknowledgements = false`). The callback can then return at once
    /// and the scheduler acknowledge many updates in one call, instead of the driver
    /// waiting for each update's callback and acknowledgement in turn. An update too
    /// malformed to hand to the scheduler is still acknowledged by the driver.
    pub explicit_acknowledgements: bool,
    /// The principal and secret the framework authenticates with, sent on every request
    /// (the master's `--authenticate-frameworks`). The framework's principal is then this
    /// one; `framework.principal` may be left empty.
    pub credential: Option<agora_proto::auth::Credential>,
    /// How the driver verifies the master (`--tls-ca`): with settings, bare `host:port`
    /// addresses mean `https://`; `https://` addresses without them are verified with the
    /// system's CA certificates. A master whose certificate is not trusted, or one that
    /// speaks TLS to a plain driver, ends the run with [`Error::Tls`].
    pub tls: Option<agora_proto::tls::ClientTls>,
}

impl DriverConfig {
    /// A configuration with the defaults: unbounded reconnection attempts (backoff capped at
    /// 30 s), 5 s to connect, 10 s to subscribe and per call, 5 missed heartbeats.
    pub fn new(masters: Vec<String>, framework: FrameworkInfo) -> Self {
        Self {
            masters,
            etcd: Vec::new(),
            framework,
            reconnect: BackoffConfig::default(),
            connect_timeout_ms: 5_000,
            subscribe_timeout_ms: 10_000,
            call_timeout_ms: 10_000,
            missed_heartbeats: DEFAULT_MISSED_HEARTBEATS,
            seed: None,
            explicit_acknowledgements: false,
            credential: None,
            tls: None,
        }
    }

    /// A configuration that finds the leading master in etcd, with the defaults of [`new`](Self::new).
    pub fn with_etcd(endpoints: Vec<String>, framework: FrameworkInfo) -> Self {
        Self { etcd: endpoints, ..Self::new(Vec::new(), framework) }
    }

    fn validate(&self) -> Result<(), Error> {
        match (self.masters.is_empty(), self.etcd.is_empty()) {
            (true, true) => {
                return Err(Error::Config("masters: give at least one master address, or etcd endpoints".into()));
            }
            (false, false) => {
                return Err(Error::Config("etcd: give either masters or etcd endpoints, not both".into()));
            }
            (true, false) => {
                agora_proto::etcd_client::parse_endpoints(&self.etcd.join(",")).map_err(etcd_config_error)?;
            }
            (false, true) => {}
        }
        if self.masters.len() > MAX_MASTERS {
            return Err(Error::Config(format!("masters: at most {MAX_MASTERS} addresses")));
        }
        for master in &self.masters {
            Endpoint::from_shared(agora_proto::tls::url(master, self.tls.as_ref()))
                .map_err(|e| Error::Config(format!("masters: {master:?} is not a host:port address ({e})")))?;
        }
        // The master applies the same rules; checking here turns a refusal after connecting
        // into an error before it.
        agora_proto::model::FrameworkInfo::try_from(pb::FrameworkInfo::from(&self.framework))
            .map_err(|e| Error::Config(format!("framework.{e}")))?;
        if let Some(credential) = &self.credential {
            authorization(Some(credential)).map_err(Error::Config)?;
        }
        if self.missed_heartbeats == 0 {
            return Err(Error::Config("missed_heartbeats: must be at least 1".into()));
        }
        for (field, ms) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("subscribe_timeout_ms", self.subscribe_timeout_ms),
            ("call_timeout_ms", self.call_timeout_ms),
        ] {
            if ms == 0 {
                return Err(Error::Config(format!("{field}: must be more than zero")));
            }
        }
        Ok(())
    }
}

/// The `authorization` metadata presenting `credential` (HTTP Basic, as the master reads it).
fn authorization(credential: Option<&agora_proto::auth::Credential>) -> Result<Option<AsciiMetadataValue>, String> {
    credential
        .map(|credential| {
            AsciiMetadataValue::try_from(credential.basic())
                .map_err(|_| "credential: the principal and secret must be printable".to_owned())
        })
        .transpose()
}

/// A bad etcd endpoint, as an error naming the `etcd` field.
fn etcd_config_error(error: EtcdError) -> Error {
    match error {
        EtcdError::Endpoint { endpoint, reason } => Error::Config(format!("etcd: {endpoint:?}: {reason}")),
        EtcdError::NoEndpoint => Error::Config("etcd: give at least one endpoint".into()),
        other => Error::Config(format!("etcd: {other}")),
    }
}

/// Most acknowledgements the master takes in one call (its `AcknowledgeMany` bound).
pub const MAX_ACKNOWLEDGEMENTS_PER_CALL: usize = 10_000;

/// What acknowledging one reliable status update takes, for
/// [`DriverHandle::acknowledge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub agent_id: AgentId,
    pub task_id: TaskId,
    pub uuid: UpdateId,
}

impl Acknowledgement {
    /// The acknowledgement `status` expects; `None` for an update that expects none (no
    /// uuid: the master's own answers to reconciliation, say) or names no agent.
    pub fn of(status: &TaskStatus) -> Option<Self> {
        Some(Self { agent_id: status.agent_id.clone()?, task_id: status.task_id.clone(), uuid: status.uuid.clone()? })
    }
}

/// The live subscription, which calls are made on.
#[derive(Clone, Debug)]
struct Session {
    client: SchedulerClient<Channel>,
    framework_id: FrameworkId,
    stream_id: StreamId,
}

/// What the driver and its handles share. Each field is a single-writer cell or a channel,
/// so no lock is ever held across an `.await`.
#[derive(Debug)]
struct Shared {
    /// Written by the driver only; read by every call.
    session: watch::Sender<Option<Session>>,
    /// The framework id, once known; outlives any one session.
    framework_id: watch::Sender<Option<FrameworkId>>,
    /// Turns true once; the driver then returns.
    stop: watch::Sender<bool>,
    /// A call learnt that this stream is stale; capacity one because one notice suffices.
    stale: mpsc::Sender<StreamId>,
    /// Set once TEARDOWN succeeded: acknowledging after it would only earn errors.
    torn_down: AtomicBool,
    call_timeout: Duration,
    /// The `authorization` metadata every call carries, if the framework authenticates.
    authorization: Option<AsciiMetadataValue>,
}

/// A cheap, cloneable handle for making calls to the master, from scheduler callbacks or
/// from any other task. Calls go straight to the master on the current subscription and
/// return its answer; none are queued while the driver is disconnected.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    shared: Arc<Shared>,
}

impl DriverHandle {
    /// The framework's id, once the master assigned it.
    pub fn framework_id(&self) -> Option<FrameworkId> {
        self.shared.framework_id.borrow().clone()
    }

    /// Whether a subscription is live right now.
    pub fn is_subscribed(&self) -> bool {
        self.shared.session.borrow().is_some()
    }

    /// Launches `tasks` on the resources of `offer_ids` (all on one agent). What the tasks
    /// leave unused is declined for `refuse_seconds` (the master's default of 5 s when `None`).
    /// Accepting with no tasks declines the offers.
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), Error> {
        let operations = if tasks.is_empty() {
            Vec::new()
        } else {
            let launch = pb::LaunchOperation { tasks: tasks.iter().map(pb::TaskInfo::from).collect() };
            vec![pb::Operation { operation: Some(pb::operation::Operation::Launch(launch)) }]
        };
        self.call(pb::call::Call::Accept(pb::Accept {
            offer_ids: offer_ids.into_iter().map(OfferId::into_string).collect(),
            operations,
            filters: Some(pb::Filters { refuse_seconds }),
        }))
        .await
    }

    /// Declines offers; their resources are not offered to this framework again for
    /// `refuse_seconds` (the master's default of 5 s when `None`).
    pub async fn decline(&self, offer_ids: Vec<OfferId>, refuse_seconds: Option<f64>) -> Result<(), Error> {
        self.call(pb::call::Call::Decline(pb::Decline {
            offer_ids: offer_ids.into_iter().map(OfferId::into_string).collect(),
            filters: Some(pb::Filters { refuse_seconds }),
        }))
        .await
    }

    /// Clears every decline filter and resumes offers for all of the framework's roles.
    pub async fn revive(&self) -> Result<(), Error> {
        self.call(pb::call::Call::Revive(pb::Revive { roles: Vec::new() })).await
    }

    /// Stops offers for all of the framework's roles until [`revive`](Self::revive).
    pub async fn suppress(&self) -> Result<(), Error> {
        self.call(pb::call::Call::Suppress(pb::Suppress { roles: Vec::new() })).await
    }

    /// Kills a task; its terminal state comes as an update.
    pub async fn kill(&self, task_id: &TaskId, agent_id: Option<&AgentId>) -> Result<(), Error> {
        self.call(pb::call::Call::Kill(pb::Kill {
            task_id: task_id.to_string(),
            agent_id: agent_id.map(ToString::to_string).unwrap_or_default(),
        }))
        .await
    }

    /// Asks for the latest state of the named tasks, or of every task the master knows of
    /// this framework when `tasks` is empty; the answers come as updates.
    pub async fn reconcile(&self, tasks: Vec<(TaskId, Option<AgentId>)>) -> Result<(), Error> {
        let tasks = tasks
            .into_iter()
            .map(|(task_id, agent_id)| pb::ReconcileTask {
                task_id: task_id.into_string(),
                agent_id: agent_id.map(AgentId::into_string).unwrap_or_default(),
            })
            .collect();
        self.call(pb::call::Call::Reconcile(pb::Reconcile { tasks })).await
    }

    /// Sends an opaque message to the framework's executor on `agent_id`.
    pub async fn send_message(&self, agent_id: &AgentId, data: Vec<u8>) -> Result<(), Error> {
        self.call(pb::call::Call::Message(pb::FrameworkMessage { agent_id: agent_id.to_string(), data })).await
    }

    /// Ends the framework: the master kills its tasks and forgets it. The driver stops once
    /// the master has confirmed.
    pub async fn teardown(&self) -> Result<(), Error> {
        self.call(pb::call::Call::Teardown(pb::Teardown {})).await?;
        self.shared.torn_down.store(true, Ordering::Release);
        self.stop();
        Ok(())
    }

    /// Stops the driver without tearing the framework down: its tasks keep running for the
    /// failover timeout, and a scheduler that subscribes with the same id takes them over.
    /// The driver returns once the current callback (if any) has returned.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Acknowledges reliable updates, as many as given, in as few calls as the master takes
    /// (`MAX_ACKNOWLEDGEMENTS_PER_CALL` each); for schedulers that set
    /// [`DriverConfig::explicit_acknowledgements`]. Stops at the first call that fails; the
    /// agents resend what was not acknowledged.
    pub async fn acknowledge(&self, acknowledgements: Vec<Acknowledgement>) -> Result<(), Error> {
        for chunk in acknowledgements.chunks(MAX_ACKNOWLEDGEMENTS_PER_CALL) {
            let acknowledgements = chunk
                .iter()
                .map(|ack| pb::Acknowledge {
                    agent_id: ack.agent_id.to_string(),
                    task_id: ack.task_id.to_string(),
                    uuid: ack.uuid.to_string(),
                })
                .collect();
            self.call(pb::call::Call::AcknowledgeMany(pb::AcknowledgeMany { acknowledgements })).await?;
        }
        Ok(())
    }

    async fn call(&self, call: pb::call::Call) -> Result<(), Error> {
        // Cloned out so that the borrow of the watch cell ends before the await.
        let session = self.shared.session.borrow().clone().ok_or(Error::NotSubscribed)?;
        let Session { mut client, framework_id, stream_id } = session;
        let mut request = tonic::Request::new(pb::Call {
            framework_id: framework_id.into_string(),
            stream_id: stream_id.to_string(),
            call: Some(call),
        });
        if let Some(value) = &self.shared.authorization {
            request.metadata_mut().insert(agora_proto::auth::AUTHORIZATION, value.clone());
        }
        match tokio::time::timeout(self.shared.call_timeout, client.call(request)).await {
            Err(_) => Err(Error::Unavailable(format!("no answer within {:?}", self.shared.call_timeout))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(self.call_error(status, stream_id)),
        }
    }

    fn call_error(&self, status: tonic::Status, stream_id: StreamId) -> Error {
        use tonic::Code;
        let message = status.message().to_owned();
        match status.code() {
            Code::NotFound | Code::FailedPrecondition => {
                // A full channel means a notice is already waiting; one is enough.
                let _ = self.shared.stale.try_send(stream_id);
                Error::StaleSubscription { message }
            }
            Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Aborted => Error::Unavailable(format!("{:?}: {message}", status.code())),
            code => Error::Rejected { code, message },
        }
    }
}

/// Runs one framework's subscription for as long as the framework lives.
#[derive(Debug)]
pub struct Driver {
    config: DriverConfig,
    handle: DriverHandle,
    stop: watch::Receiver<bool>,
    stale: mpsc::Receiver<StreamId>,
    rng: rand::rngs::StdRng,
    /// The shutdown future fired and the scheduler has not been told yet.
    shutdown_pending: bool,
}

/// How one subscription ended.
#[derive(Debug)]
enum Ended {
    /// The driver was asked to stop.
    Stopped,
    /// It had subscribed, then lost the stream.
    Lost(String),
    /// It never subscribed (no connection, refused for now, no SUBSCRIBED in time).
    Failed(String),
    /// A master that does not lead refused it, naming the leading master (`host:port`).
    NotLeader { why: String, leader: String },
    /// Nothing will get better by retrying.
    Fatal(Error),
    /// The shutdown future fired while subscribing; the scheduler is told before trying again.
    Interrupted,
}

/// A future the driver polls alongside everything else, at most once to completion.
struct Shutdown<'a> {
    future: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
}

impl Shutdown<'_> {
    /// Completes when the shutdown future does, the first time only; pending for ever after.
    async fn fired(&mut self) {
        match self.future.as_mut() {
            Some(future) => {
                future.await;
                self.future = None;
            }
            None => std::future::pending().await,
        }
    }
}

impl Driver {
    /// Checks the configuration; nothing connects until [`run`](Self::run).
    pub fn new(config: DriverConfig) -> Result<Self, Error> {
        config.validate()?;
        let (session, _) = watch::channel(None);
        let (framework_id, _) = watch::channel(config.framework.id.clone());
        let (stop_tx, stop) = watch::channel(false);
        let (stale_tx, stale) = mpsc::channel(1);
        let shared = Shared {
            session,
            framework_id,
            stop: stop_tx,
            stale: stale_tx,
            torn_down: AtomicBool::new(false),
            call_timeout: Duration::from_millis(config.call_timeout_ms),
            authorization: authorization(config.credential.as_ref()).map_err(Error::Config)?,
        };
        let rng = match config.seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        Ok(Self {
            config,
            handle: DriverHandle { shared: Arc::new(shared) },
            stop,
            stale,
            rng,
            shutdown_pending: false,
        })
    }

    /// A handle for calls from outside the scheduler's callbacks (and for [`DriverHandle::stop`]).
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Subscribes and dispatches events to `scheduler` until the driver is stopped
    /// ([`DriverHandle::stop`] or [`DriverHandle::teardown`]), the master refuses the
    /// framework for good, or the reconnection attempts run out.
    pub async fn run<S: Scheduler>(self, scheduler: &mut S) -> Result<(), Error> {
        self.run_until(scheduler, std::future::pending()).await
    }

    /// [`run`](Self::run), and when `shutdown` completes, call
    /// [`Scheduler::shutdown_requested`] (once), which by default stops the driver.
    pub async fn run_until<S: Scheduler>(
        mut self,
        scheduler: &mut S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let mut shutdown = Shutdown { future: Some(Box::pin(shutdown)) };
        let mut backoff = Backoff::new(self.config.reconnect);
        let mut failures: u32 = 0;
        let mut master_index: usize = 0;
        // The leader a follower named, dialled next instead of the next master in the list.
        let mut leader: Option<String> = None;
        let etcd = if self.config.etcd.is_empty() {
            None
        } else {
            Some(Etcd::connect(&self.config.etcd).map_err(etcd_config_error)?)
        };
        loop {
            // With several masters the backoff grows once per round of the list (or per
            // redirect), so finding a new leader among live masters stays quick.
            let mut grow = true;
            let target = match (leader.take(), &etcd) {
                (Some(named), _) => Ok(named),
                (None, Some(etcd)) => leader_in_etcd(etcd).await,
                (None, None) => Ok(self.config.masters[master_index % self.config.masters.len()].clone()),
            };
            let (master, ended) = match target {
                Ok(master) => {
                    let ended = self.session(scheduler, &master, &mut shutdown).await;
                    (master, ended)
                }
                Err(why) => ("etcd".to_owned(), Ended::Failed(why)),
            };
            self.handle.shared.session.send_replace(None);
            match ended {
                Ended::Stopped => return Ok(()),
                Ended::Fatal(error) => return Err(error),
                Ended::Interrupted => {
                    self.tell_shutdown(scheduler).await;
                    continue;
                }
                Ended::Lost(why) => {
                    tracing::warn!(%master, %why, "lost the subscription; re-subscribing");
                    backoff.reset();
                    failures = 0;
                    scheduler.disconnected(&self.handle).await;
                }
                Ended::Failed(why) => {
                    failures = failures.saturating_add(1);
                    tracing::info!(%master, %why, failures, "could not subscribe");
                    if self.config.reconnect.max_attempts.is_some_and(|max| failures >= max) {
                        return Err(Error::GaveUp { attempts: failures, last: format!("{master}: {why}") });
                    }
                    // The next attempt goes to the next master: this one may be down or
                    // no longer the leader.
                    if etcd.is_none() {
                        master_index = master_index.wrapping_add(1);
                        grow = master_index.is_multiple_of(self.config.masters.len());
                    }
                }
                Ended::NotLeader { why, leader: named } => {
                    failures = failures.saturating_add(1);
                    tracing::info!(%master, leader = %named, %why, "following the leading master");
                    if self.config.reconnect.max_attempts.is_some_and(|max| failures >= max) {
                        return Err(Error::GaveUp { attempts: failures, last: format!("{master}: {why}") });
                    }
                    leader = Some(named);
                }
            }
            let pause = if grow { backoff.next_delay(&mut self.rng) } else { backoff.current_delay(&mut self.rng) };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.stop.wait_for(|stopped| *stopped) => return Ok(()),
                _ = shutdown.fired() => self.shutdown_pending = true,
            }
            self.tell_shutdown(scheduler).await;
        }
    }

    async fn tell_shutdown<S: Scheduler>(&mut self, scheduler: &mut S) {
        if std::mem::take(&mut self.shutdown_pending) {
            scheduler.shutdown_requested(&self.handle).await;
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// One subscription: connect, subscribe, then dispatch events until the stream ends.
    async fn session<S: Scheduler>(&mut self, scheduler: &mut S, master: &str, shutdown: &mut Shutdown<'_>) -> Ended {
        if self.stopped() {
            return Ended::Stopped;
        }
        let resubscribing = self.config.framework.id.is_some();
        let mut stop = self.stop.clone();
        let subscribed = tokio::select! {
            subscribed = subscribe(&self.config, master) => subscribed,
            _ = stop.wait_for(|stopped| *stopped) => return Ended::Stopped,
            // Connecting may take seconds; a Ctrl-C should not wait for it.
            _ = shutdown.fired() => {
                self.shutdown_pending = true;
                return Ended::Interrupted;
            }
        };
        let (client, mut stream, subscribed) = match subscribed {
            Ok(subscribed) => subscribed,
            Err(ended) => return ended,
        };
        let Ok(framework_id) = id::<FrameworkId>("subscribed.framework_id", &subscribed.framework_id) else {
            return Ended::Failed(format!("SUBSCRIBED with a bad framework id {:?}", subscribed.framework_id));
        };
        let Ok(stream_id) = id::<StreamId>("subscribed.stream_id", &subscribed.stream_id) else {
            return Ended::Failed(format!("SUBSCRIBED with a bad stream id {:?}", subscribed.stream_id));
        };
        if let Some(previous) = self.config.framework.id.as_ref().filter(|previous| **previous != framework_id) {
            tracing::warn!(%previous, %framework_id, "the master assigned a different framework id");
        }
        self.config.framework.id = Some(framework_id.clone());
        self.handle.shared.framework_id.send_replace(Some(framework_id.clone()));
        self.handle.shared.session.send_replace(Some(Session {
            client,
            framework_id: framework_id.clone(),
            stream_id: stream_id.clone(),
        }));
        // Notices about streams before this one are stale themselves.
        while self.stale.try_recv().is_ok() {}
        tracing::debug!(%master, %framework_id, %stream_id, resubscribing, "subscribed");

        let interval_ms = match subscribed.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL_MS,
            ms => ms.clamp(HEARTBEAT_INTERVAL_BOUNDS_MS.0, HEARTBEAT_INTERVAL_BOUNDS_MS.1),
        };
        let silence_limit = Duration::from_millis(interval_ms.saturating_mul(u64::from(self.config.missed_heartbeats)));
        // Acknowledgements go out from a task of their own, which ends with this session.
        let (acks, queued) = mpsc::channel(ACKNOWLEDGE_QUEUE_LEN);
        let (rejected_tx, mut rejected) = mpsc::channel(ACKNOWLEDGE_ERRORS_LEN);
        let acknowledger = tokio::spawn(acknowledge(self.handle.clone(), queued, rejected_tx));
        let _acknowledger = AbortOnDrop(acknowledger.abort_handle());

        scheduler.subscribed(&self.handle, &framework_id, resubscribing).await;
        loop {
            self.tell_shutdown(scheduler).await;
            if self.stopped() {
                return Ended::Stopped;
            }
            // Any event proves the stream alive, not only HEARTBEAT: a master busy sending
            // offers is not dead.
            let next = tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return Ended::Stopped,
                notice = self.stale.recv() => match notice {
                    Some(stale) if stale == stream_id => return Ended::Lost("the master says the stream is stale".into()),
                    _ => continue,
                },
                _ = shutdown.fired() => {
                    self.shutdown_pending = true;
                    continue;
                }
                Some(error) = rejected.recv() => Err(error),
                next = tokio::time::timeout(silence_limit, stream.message()) => Ok(next),
            };
            // Told outside the `select!`, whose other branches' values must not be held
            // across an await.
            let next = match next {
                Ok(next) => next,
                Err(rejection) => {
                    scheduler.error(&self.handle, rejection).await;
                    continue;
                }
            };
            let event = match next {
                Err(_) => {
                    return Ended::Lost(format!(
                        "no event for {} heartbeat intervals ({silence_limit:?})",
                        self.config.missed_heartbeats
                    ));
                }
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => return Ended::Lost("the master closed the stream".into()),
                Ok(Err(status)) => return Ended::Lost(format!("stream broke: {status}")),
            };
            if let Some(fatal) = self.dispatch(scheduler, event, &acks).await {
                return Ended::Fatal(fatal);
            }
        }
    }

    /// Hands one event to the scheduler; returns an error when the driver must stop.
    async fn dispatch<S: Scheduler>(
        &self,
        scheduler: &mut S,
        event: pb::Event,
        acks: &mpsc::Sender<pb::Acknowledge>,
    ) -> Option<Error> {
        use pb::event::Event as E;
        let driver = &self.handle;
        match event.event? {
            E::Heartbeat(_) => {}
            E::Subscribed(_) => tracing::warn!("ignored a second SUBSCRIBED on the same stream"),
            E::Offers(offers) => {
                let (valid, invalid) = parse_offers(offers.offers);
                if !invalid.is_empty() {
                    // Declined so that their resources are not held until they are rescinded.
                    if let Err(error) = driver.decline(invalid, None).await {
                        tracing::warn!(%error, "could not decline malformed offers");
                    }
                }
                if !valid.is_empty() {
                    scheduler.offers(driver, valid).await;
                }
            }
            E::Rescind(rescind) => match id::<OfferId>("rescind.offer_id", &rescind.offer_id) {
                Ok(offer_id) => scheduler.rescinded(driver, offer_id).await,
                Err(error) => tracing::warn!(%error, "ignored a malformed RESCIND"),
            },
            E::Update(update) => self.update(scheduler, update.status.unwrap_or_default(), acks).await,
            E::Message(message) => match id::<AgentId>("message.agent_id", &message.agent_id) {
                Ok(agent_id) => scheduler.message(driver, agent_id, message.data).await,
                Err(error) => tracing::warn!(%error, "ignored a malformed MESSAGE"),
            },
            E::Failure(failure) => match id::<AgentId>("failure.agent_id", &failure.agent_id) {
                Ok(agent_id) => scheduler.failure(driver, agent_id, failure.status).await,
                Err(error) => tracing::warn!(%error, "ignored a malformed FAILURE"),
            },
            E::Error(error) => {
                tracing::error!(message = %error.message, "the master sent ERROR; stopping");
                scheduler.error(driver, error.message.clone()).await;
                return Some(Error::Refused(error.message));
            }
        }
        None
    }

    /// Delivers an update, then queues its acknowledgement if it is reliable (unless the
    /// scheduler acknowledges itself). Acknowledging after the callback makes delivery
    /// at-least-once: a scheduler that dies inside the callback gets the update again from
    /// the agent's retries.
    async fn update<S: Scheduler>(&self, scheduler: &mut S, raw: pb::TaskStatus, acks: &mpsc::Sender<pb::Acknowledge>) {
        let driver = &self.handle;
        let (agent_id, task_id, uuid) = (raw.agent_id.clone(), raw.task_id.clone(), raw.uuid.clone());
        match TaskStatus::try_from(raw) {
            // The scheduler acknowledges it when it has made it durable.
            Ok(status) if self.config.explicit_acknowledgements => return scheduler.update(driver, status).await,
            Ok(status) => scheduler.update(driver, status).await,
            Err(error) => {
                // Acknowledged all the same: it will never become valid, and without an
                // acknowledgement the agent would resend it for ever.
                tracing::warn!(%error, "malformed UPDATE");
                scheduler.error(driver, format!("malformed status update: {error}")).await;
            }
        }
        if uuid.is_empty() || driver.shared.torn_down.load(Ordering::Acquire) {
            return;
        }
        if optional_id::<AgentId>("agent_id", &agent_id).ok().flatten().is_none() {
            tracing::warn!(%task_id, %uuid, "cannot acknowledge an update without an agent id");
            return;
        }
        // Fails only once the acknowledger is gone, with the session: the agent resends.
        let _ = acks.send(pb::Acknowledge { agent_id, task_id, uuid }).await;
    }
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends the acknowledgements queued by one session, in order: one call at a time, each
/// carrying everything queued while the previous one was under way (ACKNOWLEDGE for one,
/// ACKNOWLEDGE_MANY for more). Rejections go to `rejected` for the scheduler to hear of;
/// acknowledgements that did not get through are only logged, since the agent resends what
/// was not acknowledged.
async fn acknowledge(
    driver: DriverHandle,
    mut queued: mpsc::Receiver<pb::Acknowledge>,
    rejected: mpsc::Sender<String>,
) {
    let mut batch = Vec::new();
    while queued.recv_many(&mut batch, MAX_ACKNOWLEDGEMENTS_PER_CALL).await > 0 {
        if driver.shared.torn_down.load(Ordering::Acquire) {
            // Acknowledging after TEARDOWN would only earn errors.
            batch.clear();
            continue;
        }
        send_acknowledgements(&driver, std::mem::take(&mut batch), &rejected).await;
    }
}

/// One call for `acks`; when the master rejects several at once, each is sent again alone,
/// so that one bad acknowledgement does not hold back the others.
async fn send_acknowledgements(driver: &DriverHandle, mut acks: Vec<pb::Acknowledge>, rejected: &mpsc::Sender<String>) {
    if acks.len() > 1 {
        let many = pb::call::Call::AcknowledgeMany(pb::AcknowledgeMany { acknowledgements: acks.clone() });
        match driver.call(many).await {
            Ok(()) => return,
            Err(Error::Rejected { .. }) => {}
            Err(error) => {
                tracing::info!(count = acks.len(), %error, "acknowledgements not delivered");
                return;
            }
        }
    }
    for ack in acks.drain(..) {
        let (task_id, uuid) = (ack.task_id.clone(), ack.uuid.clone());
        match driver.call(pb::call::Call::Acknowledge(ack)).await {
            Ok(()) => {}
            Err(error @ Error::Rejected { .. }) => {
                if rejected.try_send(format!("acknowledging {task_id} ({uuid}): {error}")).is_err() {
                    tracing::warn!(%task_id, %uuid, %error, "acknowledgement rejected");
                }
            }
            Err(error) => tracing::info!(%task_id, %uuid, %error, "acknowledgement not delivered"),
        }
    }
}

/// Splits offers into valid ones and the ids of malformed ones (skipping those without an
/// id, which cannot even be declined).
fn parse_offers(offers: Vec<pb::Offer>) -> (Vec<Offer>, Vec<OfferId>) {
    let mut valid = Vec::with_capacity(offers.len());
    let mut invalid = Vec::new();
    for offer in offers {
        let raw_id = offer.id.clone();
        match Offer::try_from(offer) {
            Ok(offer) => valid.push(offer),
            Err(error) => {
                tracing::warn!(offer_id = %raw_id, %error, "malformed offer");
                if let Ok(offer_id) = id::<OfferId>("offer.id", &raw_id) {
                    invalid.push(offer_id);
                }
            }
        }
    }
    (valid, invalid)
}

/// The leading master's address as etcd names it, or why there is none to dial.
async fn leader_in_etcd(etcd: &Etcd) -> Result<String, String> {
    match etcd.leader().await {
        Ok((Some(leader), _)) => Ok(leader),
        Ok((None, _)) => Err("etcd names no leading master yet".to_owned()),
        Err(error) => Err(format!("reading the leader from etcd: {error}")),
    }
}

/// Connects to `master`, subscribes, and waits for SUBSCRIBED.
async fn subscribe(
    config: &DriverConfig,
    master: &str,
) -> Result<(SchedulerClient<Channel>, tonic::Streaming<pb::Event>, pb::Subscribed), Ended> {
    let endpoint = agora_proto::tls::endpoint(master, config.tls.as_ref())
        .map_err(|e| Ended::Fatal(Error::Config(format!("masters: {e}"))))?
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    // A TLS failure (an untrusted certificate, a master that does not speak TLS) will not
    // mend by retrying: it ends the run with the reason instead of a minute of retries.
    let channel = endpoint.connect().await.map_err(|e| match agora_proto::tls::tls_failure(&e) {
        Some(why) => Ended::Fatal(Error::Tls(format!("{master}: {why}"))),
        None => Ended::Failed(format!("connect: {}", agora_proto::tls::chain(&e))),
    })?;
    let mut client = SchedulerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut request =
        tonic::Request::new(pb::Subscribe { framework: Some(pb::FrameworkInfo::from(&config.framework)) });
    if let Some(value) = authorization(config.credential.as_ref()).map_err(|e| Ended::Fatal(Error::Config(e)))? {
        request.metadata_mut().insert(agora_proto::auth::AUTHORIZATION, value);
    }
    let resubscribing = config.framework.id.is_some();
    let subscribing = async {
        let mut stream = client.subscribe(request).await.map_err(|s| subscribe_error(s, resubscribing))?.into_inner();
        let first = stream.message().await.map_err(|s| subscribe_error(s, resubscribing))?;
        match first.and_then(|event| event.event) {
            Some(pb::event::Event::Subscribed(subscribed)) => Ok((stream, subscribed)),
            Some(pb::event::Event::Error(error)) => Err(Ended::Fatal(Error::Refused(error.message))),
            Some(other) => Err(Ended::Failed(format!("the first event was not SUBSCRIBED but {other:?}"))),
            None => Err(Ended::Failed("the stream ended before SUBSCRIBED".into())),
        }
    };
    let timeout = Duration::from_millis(config.subscribe_timeout_ms);
    let (stream, subscribed) = tokio::time::timeout(timeout, subscribing)
        .await
        .map_err(|_| Ended::Failed(format!("no SUBSCRIBED within {timeout:?}")))??;
    Ok((client, stream, subscribed))
}

/// Which refusals of a subscription are final. Bad framework info stays bad; a framework id
/// the master does not know was removed (torn down, or its failover timeout passed) and may
/// not come back, as in Mesos. Anything else may be a master that is starting, stopping or
/// not the leader, so the driver tries again (on the next master).
fn subscribe_error(status: tonic::Status, resubscribing: bool) -> Ended {
    use tonic::Code;
    if status.metadata().contains_key(agora_proto::tls::TLS_REQUIRED_HEADER) {
        return Ended::Fatal(Error::Tls(format!("TLS: {}", status.message())));
    }
    match status.code() {
        Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated => {
            Ended::Fatal(Error::Refused(format!("{:?}: {}", status.code(), status.message())))
        }
        Code::NotFound if resubscribing => Ended::Fatal(Error::Refused(format!(
            "the master does not know this framework id any more: {}",
            status.message()
        ))),
        Code::Unavailable if named_leader(&status).is_some() => {
            Ended::NotLeader { why: status.message().to_owned(), leader: named_leader(&status).unwrap_or_default() }
        }
        code => Ended::Failed(format!("subscribe: {code:?}: {}", status.message())),
    }
}

/// The gRPC metadata key in which a master that does not lead names the leader.
const LEADER_METADATA: &str = "agora-leader";

fn named_leader(status: &tonic::Status) -> Option<String> {
    let leader = status.metadata().get(LEADER_METADATA)?.to_str().ok()?.trim();
    (!leader.is_empty()).then(|| leader.to_owned())
}
