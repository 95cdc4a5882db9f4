//! The driver against a fake master: an in-process gRPC server on 127.0.0.1:0 whose event
//! streams the test writes and whose received calls the test reads.

#[path = "../../../tests/common/etcd.rs"]
mod etcd_server;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_proto::model::{
    AgentId, DEFAULT_FAILOVER_TIMEOUT_MS, FrameworkId, FrameworkInfo, Offer, Resources, Role, TaskId, TaskStatus,
    UpdateId,
};
use agora_proto::pb;
use agora_proto::pb::scheduler_server::SchedulerServer;
use agora_sdk::{
    Acknowledgement, BackoffConfig, Driver, DriverConfig, DriverHandle, Error, Scheduler, TaskBuilder,
    TaskRequirements, carve,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

/// How long a test waits for something that should happen at once before failing.
const PATIENCE: Duration = Duration::from_secs(10);

type Log = Arc<Mutex<Vec<String>>>;

fn log_push(log: &Log, entry: String) {
    log.lock().expect("log lock").push(entry);
}

fn log_contains(log: &Log, entry: &str) -> bool {
    log.lock().expect("log lock").iter().any(|e| e == entry)
}

// ---- the fake master ----

/// One SUBSCRIBE the fake master received; dropping `events` ends that stream.
struct Subscription {
    request: pb::Subscribe,
    events: mpsc::Sender<Result<pb::Event, Status>>,
}

#[derive(Clone)]
struct FakeMaster {
    subscriptions: mpsc::Sender<Subscription>,
    calls: mpsc::Sender<pb::Call>,
    log: Log,
    /// Answers for the next calls of a kind (`"accept"`, …), instead of OK.
    call_failures: Arc<Mutex<VecDeque<(&'static str, Status)>>>,
    /// Answers for the next subscriptions, instead of a stream.
    subscribe_failures: Arc<Mutex<VecDeque<Status>>>,
    /// Calls wait for a read guard, so a test holding the write guard holds every answer.
    answers: Arc<tokio::sync::RwLock<()>>,
}

fn call_kind(call: &pb::Call) -> &'static str {
    use pb::call::Call as C;
    match &call.call {
        Some(C::Accept(_)) => "accept",
        Some(C::Decline(_)) => "decline",
        Some(C::Revive(_)) => "revive",
        Some(C::Suppress(_)) => "suppress",
        Some(C::Kill(_)) => "kill",
        Some(C::Acknowledge(_)) => "acknowledge",
        Some(C::AcknowledgeMany(_)) => "acknowledge_many",
        Some(C::Reconcile(_)) => "reconcile",
        Some(C::Message(_)) => "message",
        Some(C::Teardown(_)) => "teardown",
        None => "none",
    }
}

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for FakeMaster {
    type SubscribeStream = ReceiverStream<Result<pb::Event, Status>>;

    async fn subscribe(&self, request: Request<pb::Subscribe>) -> Result<Response<Self::SubscribeStream>, Status> {
        if let Some(status) = self.subscribe_failures.lock().expect("lock").pop_front() {
            return Err(status);
        }
        let (events, stream) = mpsc::channel(64);
        let subscription = Subscription { request: request.into_inner(), events };
        self.subscriptions.send(subscription).await.map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn call(&self, request: Request<pb::Call>) -> Result<Response<pb::CallResponse>, Status> {
        let _answering = self.answers.read().await;
        let call = request.into_inner();
        let kind = call_kind(&call);
        if let Some(pb::call::Call::Acknowledge(ack)) = &call.call {
            log_push(&self.log, format!("ack {}", ack.uuid));
        }
        self.calls.send(call).await.map_err(|_| Status::unavailable("test over"))?;
        let mut failures = self.call_failures.lock().expect("lock");
        if let Some(index) = failures.iter().position(|(k, _)| *k == kind) {
            let (_, status) = failures.remove(index).expect("index is valid");
            return Err(status);
        }
        Ok(Response::new(pb::CallResponse {}))
    }
}

struct Harness {
    address: String,
    subscriptions: mpsc::Receiver<Subscription>,
    calls: mpsc::Receiver<pb::Call>,
    log: Log,
    call_failures: Arc<Mutex<VecDeque<(&'static str, Status)>>>,
    subscribe_failures: Arc<Mutex<VecDeque<Status>>>,
    answers: Arc<tokio::sync::RwLock<()>>,
}

async fn start_fake_master() -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let (subscriptions_tx, subscriptions) = mpsc::channel(16);
    let (calls_tx, calls) = mpsc::channel(1024);
    let log = Log::default();
    let fake = FakeMaster {
        subscriptions: subscriptions_tx,
        calls: calls_tx,
        log: log.clone(),
        call_failures: Arc::default(),
        subscribe_failures: Arc::default(),
        answers: Arc::default(),
    };
    let (call_failures, subscribe_failures) = (fake.call_failures.clone(), fake.subscribe_failures.clone());
    let answers = fake.answers.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SchedulerServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Harness { address, subscriptions, calls, log, call_failures, subscribe_failures, answers }
}

impl Harness {
    async fn next_subscription(&mut self) -> Subscription {
        within(self.subscriptions.recv()).await.expect("the fake master is running")
    }

    async fn next_call(&mut self) -> pb::Call {
        within(self.calls.recv()).await.expect("the fake master is running")
    }

    /// Subscribes the next SUBSCRIBE as `framework_id` on `stream_id`.
    async fn accept_subscription(&mut self, framework_id: &str, stream_id: &str, heartbeat_ms: u64) -> Subscription {
        let subscription = self.next_subscription().await;
        send(&subscription, subscribed(framework_id, stream_id, heartbeat_ms)).await;
        subscription
    }

    fn fail_next_call(&self, kind: &'static str, status: Status) {
        self.call_failures.lock().expect("lock").push_back((kind, status));
    }
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future).await.expect("it happened within the test's patience")
}

async fn send(subscription: &Subscription, event: pb::event::Event) {
    subscription.events.send(Ok(pb::Event { event: Some(event) })).await.expect("the driver reads its stream");
}

fn subscribed(framework_id: &str, stream_id: &str, heartbeat_ms: u64) -> pb::event::Event {
    pb::event::Event::Subscribed(pb::Subscribed {
        framework_id: framework_id.into(),
        stream_id: stream_id.into(),
        heartbeat_interval_ms: heartbeat_ms,
        master_id: "fake".into(),
    })
}

fn offer(id: &str, resources: &str) -> pb::event::Event {
    let resources = Resources::parse(resources).expect("test resources");
    pb::event::Event::Offers(pb::Offers {
        offers: vec![pb::Offer {
            id: id.into(),
            framework_id: "fw-1".into(),
            agent_id: "agent-1".into(),
            hostname: "host-1".into(),
            resources: Some((&resources).into()),
            attributes: vec![],
            agent_url: "http://host-1:5051".into(),
            allocation_role: String::new(),
        }],
    })
}

fn update(task_id: &str, state: pb::TaskState, uuid: &str) -> pb::event::Event {
    pb::event::Event::Update(pb::Update {
        status: Some(pb::TaskStatus {
            task_id: task_id.into(),
            agent_id: "agent-1".into(),
            state: state as i32,
            source: pb::TaskStatusSource::SourceAgent as i32,
            uuid: uuid.into(),
            ..Default::default()
        }),
    })
}

// ---- a scheduler that records what it sees ----

#[derive(Debug)]
enum Seen {
    Subscribed {
        framework_id: FrameworkId,
        reconnected: bool,
    },
    Offers(Vec<Offer>),
    /// `acked_before` says whether the master had the acknowledgement before the callback.
    Update {
        status: TaskStatus,
        acked_before: bool,
    },
    Accepted(Result<(), Error>),
    Error(String),
    Disconnected,
    Shutdown,
}

struct Recorder {
    seen: mpsc::Sender<Seen>,
    log: Log,
    /// When set, every offer is carved into tasks of this size and accepted.
    launch: Option<TaskRequirements>,
    /// Tear down on the first terminal update.
    teardown_when_terminal: bool,
}

impl Recorder {
    async fn record(&self, seen: Seen) {
        // A full channel means the test stopped listening; the test fails elsewhere then.
        let _ = self.seen.send(seen).await;
    }
}

impl Scheduler for Recorder {
    async fn subscribed(&mut self, _driver: &DriverHandle, framework_id: &FrameworkId, reconnected: bool) {
        self.record(Seen::Subscribed { framework_id: framework_id.clone(), reconnected }).await;
    }

    async fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) {
        if let Some(requirements) = &self.launch {
            for offer in &offers {
                let carving = carve(&offer.resources, requirements, usize::MAX);
                let tasks = carving
                    .tasks
                    .into_iter()
                    .enumerate()
                    .map(|(i, resources)| {
                        TaskBuilder::shell(format!("task-{i}"), "true")
                            .build(&offer.agent_id, resources)
                            .expect("valid")
                    })
                    .collect();
                let result = driver.accept(vec![offer.id.clone()], tasks, Some(5.0)).await;
                self.record(Seen::Accepted(result)).await;
            }
        }
        self.record(Seen::Offers(offers)).await;
    }

    async fn update(&mut self, driver: &DriverHandle, status: TaskStatus) {
        let uuid = status.uuid.as_ref().map(ToString::to_string).unwrap_or_default();
        let acked_before = log_contains(&self.log, &format!("ack {uuid}"));
        let terminal = status.state.is_terminal();
        self.record(Seen::Update { status, acked_before }).await;
        if terminal && self.teardown_when_terminal {
            driver.teardown().await.expect("teardown succeeds");
        }
        log_push(&self.log, format!("update returned {uuid}"));
    }

    async fn error(&mut self, _driver: &DriverHandle, message: String) {
        self.record(Seen::Error(message)).await;
    }

    async fn disconnected(&mut self, _driver: &DriverHandle) {
        self.record(Seen::Disconnected).await;
    }

    async fn shutdown_requested(&mut self, driver: &DriverHandle) {
        self.record(Seen::Shutdown).await;
        driver.stop();
    }
}

fn framework() -> FrameworkInfo {
    FrameworkInfo {
        id: None,
        name: "test".into(),
        user: "tester".into(),
        roles: vec![Role::unreserved()],
        failover_timeout_ms: DEFAULT_FAILOVER_TIMEOUT_MS,
        hostname: String::new(),
        principal: String::new(),
    }
}

fn config(masters: Vec<String>) -> DriverConfig {
    let mut config = DriverConfig::new(masters, framework());
    config.reconnect = BackoffConfig { initial_ms: 5, max_ms: 20, max_attempts: None };
    config.connect_timeout_ms = 2_000;
    config.seed = Some(42);
    config
}

struct Running {
    seen: mpsc::Receiver<Seen>,
    handle: DriverHandle,
    result: oneshot::Receiver<Result<(), Error>>,
}

impl Running {
    async fn next(&mut self) -> Seen {
        within(self.seen.recv()).await.expect("the scheduler is alive")
    }

    async fn finished(self) -> Result<(), Error> {
        within(self.result).await.expect("the driver task reports")
    }
}

fn run_driver(
    config: DriverConfig,
    log: &Log,
    launch: Option<TaskRequirements>,
    teardown_when_terminal: bool,
) -> Running {
    run_driver_until(config, log, launch, teardown_when_terminal, std::future::pending())
}

fn run_driver_until(
    config: DriverConfig,
    log: &Log,
    launch: Option<TaskRequirements>,
    teardown_when_terminal: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Running {
    let (seen_tx, seen) = mpsc::channel(256);
    let mut recorder = Recorder { seen: seen_tx, log: log.clone(), launch, teardown_when_terminal };
    let driver = Driver::new(config).expect("valid config");
    let handle = driver.handle();
    let (result_tx, result) = oneshot::channel();
    // Spawning checks that the driver's future is `Send`.
    tokio::spawn(async move {
        let _ = result_tx.send(driver.run_until(&mut recorder, shutdown).await);
    });
    Running { seen, handle, result }
}

/// A loopback address nothing listens on.
async fn dead_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").to_string()
}

// ---- the tests ----

#[tokio::test]
async fn the_driver_subscribes_and_hands_offers_to_the_scheduler() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    let request = subscription.request.framework.clone().expect("framework info");
    assert_eq!(request.name, "test");
    assert_eq!(request.id, "", "a first subscription names no framework id");
    assert!(
        matches!(running.next().await, Seen::Subscribed { framework_id, reconnected: false } if framework_id.as_str() == "fw-1")
    );
    assert_eq!(running.handle.framework_id().map(FrameworkId::into_string).as_deref(), Some("fw-1"));

    send(&subscription, offer("o-1", "cpus:1;mem:128")).await;
    match running.next().await {
        Seen::Offers(offers) => {
            assert_eq!(offers.len(), 1);
            assert_eq!(offers[0].id.to_string(), "o-1");
            assert_eq!(offers[0].resources.scalars().cpus_milli, 1_000);
        }
        other => panic!("expected offers, saw {other:?}"),
    }
}

#[tokio::test]
async fn a_reliable_update_is_acknowledged_only_after_the_update_callback_returns() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    send(&subscription, update("t-1", pb::TaskState::TaskRunning, "u-1")).await;
    match running.next().await {
        Seen::Update { status, acked_before } => {
            assert_eq!(status.task_id.as_str(), "t-1");
            assert!(!acked_before, "the acknowledgement must wait for the callback");
        }
        other => panic!("expected an update, saw {other:?}"),
    }
    let call = master.next_call().await;
    assert_eq!((call.framework_id.as_str(), call.stream_id.as_str()), ("fw-1", "s-1"));
    match call.call {
        Some(pb::call::Call::Acknowledge(ack)) => {
            assert_eq!((ack.agent_id.as_str(), ack.task_id.as_str(), ack.uuid.as_str()), ("agent-1", "t-1", "u-1"));
        }
        other => panic!("expected ACKNOWLEDGE, got {other:?}"),
    }
    let log = master.log.lock().expect("log").clone();
    let returned = log.iter().position(|e| e == "update returned u-1").expect("callback returned");
    let acked = log.iter().position(|e| e == "ack u-1").expect("acknowledged");
    assert!(returned < acked, "callback returned before the ack: {log:?}");
}

#[tokio::test]
async fn updates_keep_coming_while_an_acknowledgement_is_unanswered_and_those_queued_meanwhile_share_a_call() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    let held = master.answers.clone().write_owned().await;
    for i in 1..=4 {
        send(&subscription, update(&format!("t-{i}"), pb::TaskState::TaskRunning, &format!("u-{i}"))).await;
    }
    for i in 1..=4 {
        match running.next().await {
            Seen::Update { status, .. } => assert_eq!(status.task_id.as_str(), format!("t-{i}")),
            other => panic!("expected an update, saw {other:?}"),
        }
    }
    // The first acknowledgement is still unanswered, and t-2's and t-3's are queued behind
    // it (t-4's was handed over before t-4's update was delivered).
    drop(held);
    let (mut acked, mut largest) = (Vec::new(), 0);
    while acked.len() < 4 {
        let uuids: Vec<String> = match master.next_call().await.call {
            Some(pb::call::Call::Acknowledge(ack)) => vec![ack.uuid],
            Some(pb::call::Call::AcknowledgeMany(many)) => many.acknowledgements.into_iter().map(|a| a.uuid).collect(),
            other => panic!("expected acknowledgements, got {other:?}"),
        };
        largest = largest.max(uuids.len());
        acked.extend(uuids);
    }
    assert_eq!(acked, ["u-1", "u-2", "u-3", "u-4"], "acknowledged once each, in order");
    assert!(largest >= 2, "the acknowledgements queued while a call was under way share one call");
}

#[tokio::test]
async fn with_explicit_acknowledgements_the_scheduler_acknowledges_many_updates_in_one_call() {
    let mut master = start_fake_master().await;
    let mut config = config(vec![master.address.clone()]);
    config.explicit_acknowledgements = true;
    let mut running = run_driver(config, &master.log, None, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    send(&subscription, update("t-1", pb::TaskState::TaskRunning, "u-1")).await;
    send(&subscription, update("t-2", pb::TaskState::TaskRunning, "u-2")).await;
    send(&subscription, offer("o-1", "cpus:1;mem:128")).await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        match running.next().await {
            Seen::Update { status, .. } => statuses.push(status),
            other => panic!("expected an update, saw {other:?}"),
        }
    }
    // The offer comes after both updates were handled in full: a driver acknowledging
    // them itself would have made its calls by now.
    assert!(matches!(running.next().await, Seen::Offers(_)));
    let acknowledgements: Vec<Acknowledgement> = statuses.iter().filter_map(Acknowledgement::of).collect();
    assert_eq!(acknowledgements.len(), 2);
    running.handle.acknowledge(acknowledgements).await.expect("acknowledged");
    let call = master.next_call().await;
    match call.call {
        Some(pb::call::Call::AcknowledgeMany(many)) => {
            let acks: Vec<(&str, &str, &str)> = many
                .acknowledgements
                .iter()
                .map(|a| (a.agent_id.as_str(), a.task_id.as_str(), a.uuid.as_str()))
                .collect();
            assert_eq!(acks, [("agent-1", "t-1", "u-1"), ("agent-1", "t-2", "u-2")]);
        }
        other => panic!("expected one ACKNOWLEDGE_MANY, got {other:?}"),
    }
}

#[test]
fn an_update_without_a_uuid_or_an_agent_needs_no_acknowledgement() {
    let status = |agent: Option<&str>, uuid: Option<&str>| TaskStatus {
        agent_id: agent.map(AgentId::new),
        uuid: uuid.map(UpdateId::new),
        ..TaskStatus::from_master(
            TaskId::new("t-1"),
            None,
            agora_proto::model::TaskState::TaskRunning,
            agora_proto::model::TaskStatusReason::Unspecified,
            "",
            0,
        )
    };
    assert!(Acknowledgement::of(&status(Some("a-1"), Some("u-1"))).is_some());
    assert_eq!(Acknowledgement::of(&status(None, Some("u-1"))), None);
    assert_eq!(Acknowledgement::of(&status(Some("a-1"), None)), None);
}

#[tokio::test]
async fn an_update_without_a_uuid_is_delivered_but_not_acknowledged() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    send(&subscription, update("t-1", pb::TaskState::TaskLost, "")).await;
    send(&subscription, update("t-2", pb::TaskState::TaskRunning, "u-2")).await;
    assert!(matches!(running.next().await, Seen::Update { status, .. } if status.task_id.as_str() == "t-1"));
    assert!(matches!(running.next().await, Seen::Update { status, .. } if status.task_id.as_str() == "t-2"));
    // Calls are made in event order, so the first call being t-2's acknowledgement shows
    // that t-1's update was not acknowledged.
    match master.next_call().await.call {
        Some(pb::call::Call::Acknowledge(ack)) => assert_eq!(ack.task_id, "t-2"),
        other => panic!("expected ACKNOWLEDGE of t-2, got {other:?}"),
    }
}

#[tokio::test]
async fn the_driver_resubscribes_with_the_same_framework_id_after_the_master_drops_the_stream() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let first = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { reconnected: false, .. }));

    drop(first);
    assert!(matches!(running.next().await, Seen::Disconnected));
    let second = master.accept_subscription("fw-1", "s-2", 1_000).await;
    assert_eq!(second.request.framework.as_ref().map(|f| f.id.as_str()), Some("fw-1"));
    assert!(
        matches!(running.next().await, Seen::Subscribed { reconnected: true, framework_id } if framework_id.as_str() == "fw-1")
    );

    // Calls now name the new stream.
    send(&second, update("t-1", pb::TaskState::TaskRunning, "u-1")).await;
    assert!(matches!(running.next().await, Seen::Update { .. }));
    assert_eq!(master.next_call().await.stream_id, "s-2");
}

#[tokio::test]
async fn a_stream_silent_for_five_heartbeat_intervals_counts_as_dead_and_is_replaced() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let started = Instant::now();
    // The fake keeps this stream open but sends nothing after SUBSCRIBED.
    let _silent = master.accept_subscription("fw-1", "s-1", 20).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    assert!(matches!(running.next().await, Seen::Disconnected));
    assert!(started.elapsed() >= Duration::from_millis(5 * 20), "gave up after {:?}", started.elapsed());
    let second = master.next_subscription().await;
    assert_eq!(second.request.framework.as_ref().map(|f| f.id.as_str()), Some("fw-1"));
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_stream_alive() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    // 100 ms intervals: the stream would count as dead after 500 ms without events. The
    // heartbeats come every 20 ms for 800 ms, so only a stall of a quarter second or more in
    // the test itself could make this fail.
    let subscription = master.accept_subscription("fw-1", "s-1", 100).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));
    for _ in 0..40 {
        send(&subscription, pb::event::Event::Heartbeat(pb::HeartbeatEvent {})).await;
        // Paces the heartbeats; not a synchronisation.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.seen.try_recv().is_err(), "nothing happened: no disconnection");
    assert!(master.subscriptions.try_recv().is_err(), "no second subscription");
}

#[tokio::test]
async fn a_call_rejected_with_invalid_argument_is_reported_to_the_scheduler() {
    let mut master = start_fake_master().await;
    let launch = Some(TaskRequirements::new(500, 64));
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, launch, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    master.fail_next_call("accept", Status::invalid_argument("operations[0].tasks[0].resources: exceed the offer"));
    send(&subscription, offer("o-1", "cpus:1;mem:128")).await;
    match running.next().await {
        Seen::Accepted(Err(Error::Rejected { code, message })) => {
            assert_eq!(code, tonic::Code::InvalidArgument);
            assert!(message.contains("exceed the offer"), "{message}");
        }
        other => panic!("expected a rejected accept, saw {other:?}"),
    }
    assert!(matches!(running.next().await, Seen::Offers(_)));
    // A rejected call is the framework's mistake, not a broken subscription.
    assert!(running.handle.is_subscribed());
    assert!(master.subscriptions.try_recv().is_err(), "no re-subscription");
}

#[tokio::test]
async fn a_call_answered_with_a_stale_stream_error_makes_the_driver_resubscribe() {
    let mut master = start_fake_master().await;
    let launch = Some(TaskRequirements::new(500, 64));
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, launch, false);
    let _first = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    master.fail_next_call(
        "accept",
        Status::failed_precondition("stream s-1 is not the framework's current subscription"),
    );
    send(&_first, offer("o-1", "cpus:1;mem:128")).await;
    assert!(matches!(running.next().await, Seen::Accepted(Err(Error::StaleSubscription { .. }))));
    assert!(matches!(running.next().await, Seen::Offers(_)));
    assert!(matches!(running.next().await, Seen::Disconnected));
    let second = master.next_subscription().await;
    assert_eq!(second.request.framework.as_ref().map(|f| f.id.as_str()), Some("fw-1"));
}

#[tokio::test]
async fn the_matching_helper_packs_an_offer_exactly_and_assigns_the_lowest_ports() {
    let mut master = start_fake_master().await;
    let launch = Some(TaskRequirements { ports: 2, ..TaskRequirements::new(250, 64) });
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, launch, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));

    send(&subscription, offer("o-1", "cpus:1;mem:300;ports:[31000-31009]")).await;
    assert!(matches!(running.next().await, Seen::Accepted(Ok(()))));
    let accept = match master.next_call().await.call {
        Some(pb::call::Call::Accept(accept)) => accept,
        other => panic!("expected ACCEPT, got {other:?}"),
    };
    assert_eq!(accept.offer_ids, vec!["o-1"]);
    assert_eq!(accept.filters.and_then(|f| f.refuse_seconds), Some(5.0));
    let tasks = match accept.operations.as_slice() {
        [pb::Operation { operation: Some(pb::operation::Operation::Launch(launch)) }] => launch.tasks.clone(),
        other => panic!("expected one LAUNCH, got {other:?}"),
    };
    let resources: Vec<String> = tasks
        .into_iter()
        .map(|t| Resources::try_from(t.resources.expect("resources")).expect("valid").to_string())
        .collect();
    assert_eq!(
        resources,
        vec![
            "cpus:0.25;mem:64;ports:[31000-31001]",
            "cpus:0.25;mem:64;ports:[31002-31003]",
            "cpus:0.25;mem:64;ports:[31004-31005]",
            "cpus:0.25;mem:64;ports:[31006-31007]",
        ]
    );
}

#[tokio::test]
async fn teardown_from_a_callback_sends_teardown_and_stops_the_driver_without_acknowledging() {
    let mut master = start_fake_master().await;
    let running = run_driver(config(vec![master.address.clone()]), &master.log, None, true);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    send(&subscription, update("t-1", pb::TaskState::TaskFinished, "u-1")).await;
    assert_eq!(call_kind(&master.next_call().await), "teardown");
    assert_eq!(running.finished().await, Ok(()));
    assert!(master.calls.try_recv().is_err(), "nothing after TEARDOWN: {:?}", master.calls.try_recv());
}

#[tokio::test]
async fn an_error_event_is_reported_to_the_scheduler_and_stops_the_driver() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));
    send(&subscription, pb::event::Event::Error(pb::Error { message: "framework removed".into() })).await;
    assert!(matches!(running.next().await, Seen::Error(m) if m == "framework removed"));
    assert_eq!(running.finished().await, Err(Error::Refused("framework removed".into())));
}

#[tokio::test]
async fn the_driver_moves_on_to_the_next_master_when_one_is_down() {
    let mut master = start_fake_master().await;
    let masters = vec![dead_address().await, master.address.clone()];
    let mut running = run_driver(config(masters), &master.log, None, false);
    master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));
}

#[tokio::test]
async fn the_driver_gives_up_after_the_configured_number_of_attempts() {
    let log = Log::default();
    let mut config = config(vec![dead_address().await, dead_address().await]);
    config.reconnect.max_attempts = Some(3);
    let running = run_driver(config, &log, None, false);
    match running.finished().await {
        Err(Error::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected to give up, got {other:?}"),
    }
}

#[tokio::test]
async fn resubscribing_with_a_framework_id_the_master_does_not_know_is_final() {
    let mut master = start_fake_master().await;
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    let first = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));
    master.subscribe_failures.lock().expect("lock").push_back(Status::not_found("framework fw-1 is not known"));
    drop(first);
    assert!(matches!(running.next().await, Seen::Disconnected));
    assert!(matches!(running.finished().await, Err(Error::Refused(m)) if m.contains("fw-1 is not known")));
}

#[tokio::test]
async fn a_master_that_is_not_ready_is_retried() {
    let mut master = start_fake_master().await;
    master.subscribe_failures.lock().expect("lock").push_back(Status::unavailable("starting"));
    let mut running = run_driver(config(vec![master.address.clone()]), &master.log, None, false);
    master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { reconnected: false, .. }));
}

#[tokio::test]
async fn the_shutdown_signal_reaches_the_scheduler_which_may_stop_the_driver() {
    let mut master = start_fake_master().await;
    let (fire, signal) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = signal.await;
    };
    let mut running = run_driver_until(config(vec![master.address.clone()]), &master.log, None, false, shutdown);
    let _subscription = master.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { .. }));
    fire.send(()).expect("driver listens");
    assert!(matches!(running.next().await, Seen::Shutdown));
    assert_eq!(running.finished().await, Ok(()));
}

#[tokio::test]
async fn calls_before_the_first_subscription_fail_with_not_subscribed() {
    let driver = Driver::new(config(vec![dead_address().await])).expect("valid config");
    let handle = driver.handle();
    assert_eq!(handle.revive().await, Err(Error::NotSubscribed));
}

#[test]
fn a_configuration_without_masters_or_with_a_bad_address_is_refused() {
    let no_masters = Driver::new(config(vec![]));
    assert!(matches!(&no_masters, Err(Error::Config(m)) if m.starts_with("masters")), "{no_masters:?}");
    let bad = Driver::new(config(vec!["not a url".into()]));
    assert!(matches!(&bad, Err(Error::Config(m)) if m.starts_with("masters")), "{bad:?}");
    let mut unnamed = config(vec!["127.0.0.1:5050".into()]);
    unnamed.framework.name.clear();
    assert!(matches!(Driver::new(unnamed), Err(Error::Config(m)) if m.contains("framework.name")));
}

#[test]
fn etcd_endpoints_replace_the_masters_and_a_bad_one_is_refused_naming_the_field() {
    let mut both = config(vec!["127.0.0.1:5050".into()]);
    both.etcd = vec!["127.0.0.1:2379".into()];
    assert!(matches!(Driver::new(both), Err(Error::Config(m)) if m.starts_with("etcd")));
    for bad in ["etcd", "etcd:0", "https://etcd:2379", " "] {
        let config = DriverConfig::with_etcd(vec![bad.into()], framework());
        let refused = Driver::new(config);
        assert!(matches!(&refused, Err(Error::Config(m)) if m.starts_with("etcd: ")), "{bad:?}: {refused:?}");
    }
    assert!(Driver::new(DriverConfig::with_etcd(vec!["127.0.0.1:2379".into()], framework())).is_ok());
}

/// Writes `address` into the leader key, as an elected master does.
async fn elect(etcd: &etcd_server::Etcd, address: &str) {
    let mut kv = agora_proto::etcd::kv_client::KvClient::connect(etcd.url.clone()).await.expect("dial etcd");
    let put = agora_proto::etcd::PutRequest {
        key: agora_proto::etcd_client::LEADER_KEY.into(),
        value: address.into(),
        lease: 0,
    };
    kv.put(put).await.expect("put the leader key");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_given_etcd_subscribes_to_the_leader_named_there_and_follows_the_next_one() {
    let etcd = tokio::task::spawn_blocking(etcd_server::Etcd::start).await.expect("etcd started");
    let mut first = start_fake_master().await;
    let mut second = start_fake_master().await;
    let mut etcd_config = config(Vec::new());
    etcd_config.etcd = vec![etcd.url.clone()];
    // No master leads yet: the driver keeps asking etcd until one does.
    let mut running = run_driver(etcd_config, &first.log, None, false);
    elect(&etcd, &first.address).await;
    let subscription = first.accept_subscription("fw-1", "s-1", 1_000).await;
    assert!(matches!(running.next().await, Seen::Subscribed { reconnected: false, .. }));

    // A failover: another master leads, and the old one's stream ends.
    elect(&etcd, &second.address).await;
    drop(subscription);
    assert!(matches!(running.next().await, Seen::Disconnected));
    let again = second.accept_subscription("fw-1", "s-2", 1_000).await;
    assert_eq!(again.request.framework.as_ref().map(|f| f.id.as_str()), Some("fw-1"));
    assert!(matches!(running.next().await, Seen::Subscribed { reconnected: true, .. }));
}

#[tokio::test]
async fn a_shutdown_while_the_master_has_not_answered_yet_is_not_held_up() {
    let mut master = start_fake_master().await;
    let (fire, signal) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = signal.await;
    };
    let mut running = run_driver_until(config(vec![master.address.clone()]), &master.log, None, false, shutdown);
    // The fake takes the subscription but never answers it with SUBSCRIBED.
    let _unanswered = master.next_subscription().await;
    fire.send(()).expect("driver listens");
    assert!(matches!(running.next().await, Seen::Shutdown));
    assert_eq!(running.finished().await, Ok(()));
}

#[tokio::test]
async fn a_restarted_scheduler_fails_over_with_the_framework_id_it_persisted() {
    let mut master = start_fake_master().await;
    let mut config = config(vec![master.address.clone()]);
    config.framework.id = Some(FrameworkId::new("fw-7"));
    let mut running = run_driver(config, &master.log, None, false);
    let subscription = master.accept_subscription("fw-7", "s-1", 1_000).await;
    assert_eq!(subscription.request.framework.as_ref().map(|f| f.id.as_str()), Some("fw-7"));
    assert!(matches!(running.next().await, Seen::Subscribed { reconnected: true, .. }));
}
