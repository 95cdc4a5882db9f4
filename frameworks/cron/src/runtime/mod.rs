//! The runtime around the core: the owner task that holds it, the SDK's forwarder that
//! feeds it the master's events, the store it commits to, leader election among several
//! processes (the SDK's), and the [`CronHandle`] the REST API uses.
//!
//! [`run`] wires them: the caller binds the listener (so tests bind port 0); the REST API
//! is served at once, by a follower too (it redirects to the leader); the process that
//! leads opens the store, recovers the core, subscribes with the stored framework id and
//! starts the owner.

mod handle;
mod owner;
mod serve;

use std::path::PathBuf;

use agora_proto::model::{DEFAULT_FAILOVER_TIMEOUT_MS, FrameworkInfo, Role as MesosRole};
use agora_sdk::election::EtcdConfig;
use tokio::sync::mpsc;

use crate::core::CoreConfig;

pub(crate) use handle::Request;
pub use handle::{CronHandle, Unavailable};
pub use owner::OwnerError;
pub use serve::{RunError, run};

/// Requests waiting for the owner task; handlers wait for room beyond.
const REQUEST_QUEUE_LEN: usize = 1024;
/// Master events waiting for the owner task; the driver waits for room beyond.
const INPUT_QUEUE_LEN: usize = 1024;
/// Where cron's processes meet in etcd: the leader key and the state live under it.
pub const ETCD_ROOT: &str = "/agora/cron";

/// How `agora cron` runs.
#[derive(Clone, Debug)]
pub struct CronConfig {
    /// Master addresses (`--master`); empty to find the leading master through `etcd`.
    pub masters: Vec<String>,
    /// `--etcd`: elect a leader among several processes and keep the state there (and
    /// find the master there when `masters` is empty).
    pub etcd: Option<EtcdConfig>,
    /// Where the state lives without etcd (`--work-dir`): `cron.redb` inside.
    pub work_dir: PathBuf,
    /// The `host:port` this process's REST API is reached at: what followers redirect to.
    pub advertise: String,
    /// The framework's name (`agora-cron`).
    pub name: String,
    /// The user tasks run as.
    pub user: String,
    /// How long the master keeps the framework's tasks while no scheduler is subscribed.
    pub failover_timeout_ms: u64,
    /// This machine's name, shown to the master.
    pub hostname: String,
    /// The core's settings, the framework's role (`--role`) among them.
    pub core: CoreConfig,
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

impl CronConfig {
    /// A configuration with the defaults: framework `agora-cron` on role `*`, a week of
    /// failover timeout, the core's defaults.
    pub fn new(masters: Vec<String>, work_dir: PathBuf, advertise: String) -> Self {
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "nobody".into());
        Self {
            masters,
            etcd: None,
            work_dir,
            advertise,
            name: "agora-cron".into(),
            user,
            failover_timeout_ms: DEFAULT_FAILOVER_TIMEOUT_MS,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            core: CoreConfig::default(),
            credential: None,
            http_gate: None,
            tls: None,
            master_tls: None,
        }
    }

    /// The framework as the master sees it; `id` is filled in from the store.
    pub(crate) fn framework(&self) -> Result<FrameworkInfo, RunError> {
        let role = MesosRole::parse(&self.core.role)
            .map_err(|e| RunError::Config(format!("--role {:?}: {e}", self.core.role)))?;
        Ok(FrameworkInfo {
            id: None,
            name: self.name.clone(),
            user: self.user.clone(),
            roles: vec![role],
            failover_timeout_ms: self.failover_timeout_ms,
            hostname: self.hostname.clone(),
            principal: String::new(),
        })
    }
}

/// The way to the owner task, made before the task exists: a process waiting to lead
/// serves its REST API around the handle and starts the owner once elected.
pub(crate) fn channel() -> (CronHandle, mpsc::Receiver<Request>) {
    let (requests, inbox) = mpsc::channel(REQUEST_QUEUE_LEN);
    (CronHandle::new(requests), inbox)
}
