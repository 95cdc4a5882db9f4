//! The runtime around the planner: the owner task that holds it, the SDK's forwarder that
//! feeds it the master's events, the store it commits to, leader election among several
//! processes, and the handle the REST API uses.
//!
//! [`run`](crate::run) wires them: the caller binds the listener (so tests bind port 0);
//! the REST API is served at once, by a follower too (it redirects to the leader); the
//! process that leads opens the store, recovers the planner, subscribes with the stored
//! framework id and starts the owner.

mod callbacks;
/// Leader election, shared with the other frameworks through the SDK.
pub use agora_sdk::election;
mod handle;
mod leader;
mod owner;
mod serve;
mod view;

use std::path::PathBuf;

use agora_proto::model::{DEFAULT_FAILOVER_TIMEOUT_MS, FrameworkInfo, Role as MesosRole};
use tokio::sync::{broadcast, mpsc};

use crate::core::PlannerConfig;

pub(crate) use handle::Request;
pub use handle::{Published, ServicesHandle, StampedEvent, TEST_EVENT_CAPACITY, Unavailable, spawn_for_tests};
pub use leader::follow_leader;
pub use owner::OwnerError;
pub use serve::{RunError, run};
pub use view::CommittedView;

/// Requests waiting for the owner task; handlers wait for room beyond.
const REQUEST_QUEUE_LEN: usize = 1024;
/// Master events waiting for the owner task; the driver waits for room beyond.
const INPUT_QUEUE_LEN: usize = 1024;
/// Events kept for `/v2/events` subscribers that fall behind; one that falls further
/// behind is dropped (it reconnects).
const EVENT_BUFFER: usize = 4096;

/// How `agora services` runs.
#[derive(Clone, Debug)]
pub struct ServicesConfig {
    /// Master addresses (`--master`); empty to find the leading master through `etcd`.
    pub masters: Vec<String>,
    /// `--etcd`: elect a leader among several processes and keep the state there (and
    /// find the master there when `masters` is empty).
    pub etcd: Option<election::EtcdConfig>,
    /// Where the state lives without etcd (`--work-dir`): `services.redb` inside.
    pub work_dir: PathBuf,
    /// The `host:port` this process's REST API is reached at: what followers redirect to
    /// and `/v2/leader` shows.
    pub advertise: String,
    /// The framework's name (`--name`, `agora-services`).
    pub name: String,
    /// The framework's role (`--role`, `*`).
    pub role: String,
    /// How long the master keeps the framework's tasks while no scheduler is subscribed.
    pub failover_timeout_ms: u64,
    /// This machine's name, shown to the master.
    pub hostname: String,
    pub planner: PlannerConfig,
    /// How often the planner is ticked (deadlines, backoff, periodic reconciliation).
    pub tick_ms: u64,
    /// `--event-subscriber http_callback`: `/v2/eventSubscriptions` is served and events
    /// are POSTed to the subscribed URLs.
    pub http_callbacks: bool,
    /// The principal and secret the framework authenticates to the master with
    /// (`--principal`, `--secret-file`).
    pub credential: Option<agora_proto::auth::Credential>,
    /// Who may call the REST API (`--credentials`, `--authenticate-http`); `None`: anyone.
    pub http_gate: Option<std::sync::Arc<agora_proto::edge::authenticate::HttpGate>>,
    /// TLS on the REST API (`--tls-cert`, `--tls-key`); `None` serves plain text.
    pub tls: Option<agora_proto::tls::ServerTls>,
    /// How the driver verifies the master (`--tls-ca`); `None` dials in plain text.
    pub master_tls: Option<agora_proto::tls::ClientTls>,
}

impl ServicesConfig {
    /// A configuration with the defaults: framework `agora-services` on role `*`, a week of
    /// failover timeout, the planner's defaults, a tick a second.
    pub fn new(masters: Vec<String>, work_dir: PathBuf, advertise: String) -> Self {
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "nobody".into());
        Self {
            masters,
            etcd: None,
            work_dir,
            advertise,
            name: "agora-services".into(),
            role: "*".into(),
            failover_timeout_ms: DEFAULT_FAILOVER_TIMEOUT_MS,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            planner: PlannerConfig { default_user: user, ..PlannerConfig::default() },
            tick_ms: 1_000,
            http_callbacks: false,
            credential: None,
            http_gate: None,
            tls: None,
            master_tls: None,
        }
    }

    /// The framework as the master sees it; `id` is filled in from the store.
    pub(crate) fn framework(&self) -> Result<FrameworkInfo, RunError> {
        let role =
            MesosRole::parse(&self.role).map_err(|e| RunError::Config(format!("--role {:?}: {e}", self.role)))?;
        Ok(FrameworkInfo {
            id: None,
            name: self.name.clone(),
            user: self.planner.default_user.clone(),
            roles: vec![role],
            failover_timeout_ms: self.failover_timeout_ms,
            hostname: self.hostname.clone(),
            principal: String::new(),
        })
    }

    /// What `/v2/info` shows of the master: the addresses given, or where they are found.
    pub(crate) fn master_description(&self) -> String {
        match (&self.masters[..], &self.etcd) {
            ([], Some(etcd)) => format!("etcd://{}", etcd.endpoints.join(",")),
            (masters, _) => masters.join(","),
        }
    }
}

/// The way to the owner task, made before the task exists: a process waiting to lead
/// serves its REST API around the handle and starts the owner once elected.
pub(crate) fn channel() -> (ServicesHandle, mpsc::Receiver<Request>) {
    let (requests, inbox) = mpsc::channel(REQUEST_QUEUE_LEN);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    (ServicesHandle::new(requests, events, view::Views::default()), inbox)
}
