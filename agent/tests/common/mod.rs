//! A fake master for the agent's integration tests: an in-process tonic `AgentLink` server
//! on an ephemeral port that records what agents send and lets the test answer, plus
//! helpers to start an agent against it and to wait on events with bounded timeouts.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_agent::{AgentConfig, Masters, Shutdown};
use agora_proto::model::{Resources, TaskState};
use agora_proto::pb;
use agora_proto::pb::agent_link_server::{AgentLink, AgentLinkServer};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);
pub const AGENT_ID: &str = "agent-1";
pub const FRAMEWORK: &str = "fw-1";

/// What the fake master saw.
#[derive(Debug)]
pub enum Seen {
    /// A new stream opened with this registration.
    Registered { conn: usize, register: pb::Register },
    /// A message after the registration.
    Message { conn: usize, message: pb::AgentMessage },
}

type Outgoing = mpsc::Sender<Result<pb::MasterMessage, Status>>;

#[derive(Debug)]
struct Shared {
    seen: mpsc::Sender<Seen>,
    /// The stream of the latest connection; dropping it ends that stream.
    current: Mutex<Option<Outgoing>>,
    connections: AtomicUsize,
    /// Registrations still to refuse.
    refuse: AtomicUsize,
    heartbeat_interval_ms: u64,
}

#[derive(Debug, Clone)]
struct Service(Arc<Shared>);

#[tonic::async_trait]
impl AgentLink for Service {
    type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("closed before registering"))?;
        let Some(pb::agent_message::Message::Register(register)) = first.message else {
            return Err(Status::invalid_argument("the first message must be register"));
        };
        let conn = self.0.connections.fetch_add(1, Ordering::SeqCst);
        let _ = self.0.seen.send(Seen::Registered { conn, register }).await;
        let (tx, rx) = mpsc::channel(64);
        let refuse = self.0.refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let answer = if refuse {
            pb::master_message::Message::Refused(pb::Refused { reason: "unknown agent".into() })
        } else {
            pb::master_message::Message::Registered(pb::Registered {
                agent_id: AGENT_ID.into(),
                heartbeat_interval_ms: self.0.heartbeat_interval_ms,
            })
        };
        tx.send(Ok(pb::MasterMessage { message: Some(answer) })).await.unwrap();
        if !refuse {
            *self.0.current.lock().unwrap() = Some(tx);
        }
        let shared = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if shared.seen.send(Seen::Message { conn, message }).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[derive(Debug)]
pub struct FakeMaster {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    seen: mpsc::Receiver<Seen>,
    /// Updates received while waiting for something else, in order.
    pending: std::collections::VecDeque<Seen>,
    /// The framework's user on the tasks it runs: `nobody`, whom a root agent may switch to.
    pub user: String,
}

impl FakeMaster {
    pub async fn start() -> Self {
        Self::start_with_heartbeat(60_000).await
    }

    pub async fn start_at(addr: SocketAddr) -> Self {
        Self::serve(tokio::net::TcpListener::bind(addr).await.unwrap(), 60_000)
    }

    pub async fn start_with_heartbeat(heartbeat_interval_ms: u64) -> Self {
        Self::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), heartbeat_interval_ms)
    }

    fn serve(listener: tokio::net::TcpListener, heartbeat_interval_ms: u64) -> Self {
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            seen: seen_tx,
            current: Mutex::new(None),
            connections: AtomicUsize::new(0),
            refuse: AtomicUsize::new(0),
            heartbeat_interval_ms,
        });
        let service = AgentLinkServer::new(Service(shared.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Self { addr, shared, seen, pending: Default::default(), user: "nobody".to_owned() }
    }

    /// The next thing the master saw, heartbeats included.
    pub async fn next(&mut self) -> Seen {
        if let Some(seen) = self.pending.pop_front() {
            return seen;
        }
        tokio::time::timeout(WAIT, self.seen.recv()).await.expect("the agent said nothing in time").expect("open")
    }

    /// The next registration, skipping any other message.
    pub async fn next_registration(&mut self) -> pb::Register {
        loop {
            if let Seen::Registered { register, .. } = self.next().await {
                return register;
            }
        }
    }

    /// The next status update, skipping heartbeats.
    pub async fn next_update(&mut self) -> pb::StatusUpdate {
        loop {
            match self.next().await {
                Seen::Message {
                    message: pb::AgentMessage { message: Some(pb::agent_message::Message::StatusUpdate(u)) },
                    ..
                } => {
                    return u;
                }
                Seen::Message { .. } => continue,
                Seen::Registered { register, .. } => {
                    panic!("unexpected registration while waiting for an update: {register:?}")
                }
            }
        }
    }

    /// Receives updates of `task_id`, acknowledging each, until one is in `final_state`;
    /// returns them all.
    pub async fn updates_until(&mut self, task_id: &str, final_state: TaskState) -> Vec<pb::TaskStatus> {
        let mut statuses = Vec::new();
        loop {
            let update = self.next_update().await;
            let status = update.status.clone().expect("a status");
            assert_eq!(status.task_id, task_id, "an update of another task: {status:?}");
            self.ack(&update);
            let done = status.state == pb::TaskState::from(final_state) as i32;
            statuses.push(status);
            if done {
                return statuses;
            }
            assert!(statuses.len() < 10, "too many updates: {statuses:?}");
        }
    }

    pub fn send(&self, message: pb::master_message::Message) {
        let current = self.shared.current.lock().unwrap().clone().expect("an agent is connected");
        current.try_send(Ok(pb::MasterMessage { message: Some(message) })).expect("room in the stream");
    }

    pub fn ack(&self, update: &pb::StatusUpdate) {
        let status = update.status.as_ref().expect("a status");
        assert!(!status.uuid.is_empty(), "a reliable update has a uuid");
        self.send(pb::master_message::Message::Acknowledge(pb::AcknowledgeUpdate {
            framework_id: update.framework_id.clone(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
        }));
    }

    pub fn run_task(&self, task: pb::TaskInfo) {
        self.send(pb::master_message::Message::RunTask(pb::RunTask {
            framework_id: FRAMEWORK.into(),
            framework: Some(pb::FrameworkInfo { name: "test".into(), user: self.user.clone(), ..Default::default() }),
            task: Some(task),
        }));
    }

    pub fn kill_task(&self, task_id: &str, grace_period_ms: u64) {
        self.send(pb::master_message::Message::KillTask(pb::KillTask {
            framework_id: FRAMEWORK.into(),
            task_id: task_id.into(),
            grace_period_ms,
        }));
    }

    /// Ends the current stream, as a master that restarts or fails over would.
    pub fn drop_stream(&self) {
        self.shared.current.lock().unwrap().take();
    }

    /// Refuses the next `n` registrations.
    pub fn refuse_next(&self, n: usize) {
        self.shared.refuse.store(n, Ordering::SeqCst);
    }
}

/// A task running `shell` under `/bin/sh -c`.
pub fn shell_task(task_id: &str, shell: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: task_id.into(),
        name: task_id.into(),
        agent_id: AGENT_ID.into(),
        resources: Some((&Resources::parse("cpus:0.1;mem:16").unwrap()).into()),
        command: Some(pb::CommandInfo { shell: shell.into(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn state_of(status: &pb::TaskStatus) -> TaskState {
    agora_proto::convert::task_state("state", status.state).unwrap()
}

#[derive(Debug)]
pub struct TestAgent {
    pub http: SocketAddr,
    pub work_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<Shutdown>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestAgent {
    /// Starts an agent against `master` with short retry delays; `tweak` adjusts the config.
    pub async fn start(master: &FakeMaster, tweak: impl FnOnce(&mut AgentConfig)) -> Self {
        Self::start_in(master, tempfile::tempdir().unwrap(), tweak).await
    }

    /// Starts an agent on an existing work dir, as a restarted agent process would.
    pub async fn start_in(
        master: &FakeMaster,
        work_dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Self {
        let resources = Resources::parse("cpus:2;mem:1024;disk:1024;ports:[31000-31010]").unwrap();
        let mut config = AgentConfig::new(Masters::one(master.addr.to_string()), work_dir.path(), resources);
        config.seed = 7;
        config.update_retry_initial_ms = 200;
        config.update_retry_max_ms = 1_000;
        config.reconnect_initial_ms = 20;
        config.reconnect_max_ms = 200;
        config.kill_grace_period_ms = 1_000;
        config.drain_updates_timeout_ms = 300;
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<Shutdown>();
        let handle = tokio::spawn(agora_agent::run(config, listener, async move {
            // A dropped sender (a test that ended) drains, so no test leaves a task behind.
            stopped.await.unwrap_or(Shutdown::Drain)
        }));
        Self { http, work_dir, stop: Some(stop), handle: Some(handle) }
    }

    /// `<work_dir>/sandboxes/<framework>/<path>`.
    pub fn sandbox(&self, path: &str) -> PathBuf {
        self.work_dir.path().join("sandboxes").join(FRAMEWORK).join(path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Drops the running agent without letting it stop, as SIGKILL would end an agent
    /// process: its tasks are not killed and its checkpoint stays. Returns its work dir, to
    /// start the next agent on.
    pub async fn crash(mut self) -> tempfile::TempDir {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = tokio::time::timeout(WAIT, handle).await.expect("the agent was dropped in time");
        }
        // Dropping the sender would complete the shutdown future; the agent is gone already.
        std::mem::forget(self.stop.take());
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.work_dir, dir)
    }

    /// Drains the agent (kills its tasks) and waits for `run` to return.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shut_down(Shutdown::Drain).await
    }

    /// Stops the agent as `how` says and waits for `run` to return.
    pub async fn shut_down(&mut self, how: Shutdown) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        match self.handle.take() {
            Some(handle) => tokio::time::timeout(WAIT, handle).await.expect("the agent stopped in time").unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // Draining kills the agent's tasks, so no test leaves a process behind.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Shutdown::Drain);
        }
    }
}

/// Waits until `condition` holds, checking every few milliseconds, for at most [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True when no process `pid` runs: it does not exist, or it is a zombie waiting for a
/// parent that does not reap it.
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}
