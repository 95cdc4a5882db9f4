//! The agent's settings, filled by `agora agent` from its flags or by `agora local`.

use std::net::IpAddr;
use std::path::PathBuf;

use agora_proto::model::{Attribute, Resources};

pub use crate::runtime::cgroups::{CgroupsConfig, Isolation};

/// Everything [`crate::run`] needs to know. Build one with [`AgentConfig::new`] and adjust
/// the public fields.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// How the agent finds the master to register with.
    pub masters: Masters,
    /// The agent's directory: sandboxes live in `<work_dir>/sandboxes/`, the checkpoint a
    /// restarted agent recovers from in `<work_dir>/meta/`. Locked while the agent runs, so
    /// two agents never share one.
    pub work_dir: PathBuf,
    /// What the agent offers (see [`crate::resolve_resources`] and [`crate::detect_resources`]).
    pub resources: Resources,
    pub attributes: Vec<Attribute>,
    /// The name under which frameworks and operators reach this agent.
    pub hostname: String,
    /// The HTTP port to advertise; `None` means the port of the listener `run` was given.
    pub advertise_port: Option<u16>,
    /// Time between SIGTERM and SIGKILL when neither the kill nor the task names one.
    pub kill_grace_period_ms: u64,
    /// First delay before an unacknowledged status update is resent; doubles up to the max.
    pub update_retry_initial_ms: u64,
    pub update_retry_max_ms: u64,
    /// First delay before reconnecting to the master; doubles up to the max.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// How long connecting and registering may take before the agent tries again.
    pub register_timeout_ms: u64,
    /// Most tasks held at once.
    pub max_tasks: usize,
    /// Decides update ids and every jitter; random unless a test fixes it.
    pub seed: u64,
    /// How long a draining agent ([`crate::Shutdown::Drain`]) waits, once its tasks'
    /// processes have ended, for the master to acknowledge their last updates. What is
    /// still unacknowledged then stays in the checkpoint, for the next agent on the work dir.
    pub drain_updates_timeout_ms: u64,
    /// How tasks are isolated: cgroups (the default where the agent can write them) or
    /// processes only.
    pub isolation: Isolation,
    /// What the cgroups enforce: a hard CPU quota, swap, the pids limit.
    pub cgroups: CgroupsConfig,
    /// End a task whose sandbox outgrows its `disk` (TASK_FAILED,
    /// REASON_CONTAINER_LIMITATION_DISK); without it sandboxes are only measured.
    pub enforce_container_disk_quota: bool,
    /// How often the sandboxes of running tasks are measured.
    pub disk_watch_interval_ms: u64,
    /// An agent running as root runs tasks as root only with this (`--allow-root-tasks`);
    /// otherwise it refuses them, or runs them as [`Self::root_tasks_as`].
    pub allow_root_tasks: bool,
    /// The user a root agent runs root tasks as instead of refusing them (`agora local`
    /// started as root: `nobody`).
    pub root_tasks_as: Option<String>,
    /// Most HTTP connections open at once; more clients wait to be accepted.
    pub http_max_connections: usize,
    /// An HTTP connection on which nothing moves for this long is closed.
    pub http_idle_timeout_ms: u64,
    /// The principal and secret the agent authenticates to the master with (`--credential`;
    /// the master's `--authenticate-agents`).
    pub credential: Option<agora_proto::auth::Credential>,
    /// Who may call the agent's HTTP API (`--credentials`, `--authenticate-http`); `None`:
    /// anyone.
    pub http_gate: Option<std::sync::Arc<agora_proto::edge::authenticate::HttpGate>>,
    /// The operator's ACLs (`--acls`): the agent applies `access_sandboxes`.
    pub acls: Option<std::sync::Arc<agora_proto::acl::Acls>>,
    /// How the link verifies the master (`--tls-ca`) and the certificate it presents to a
    /// master that requires one (`--tls-cert`, `--tls-key`); `None` dials in plain text.
    pub master_tls: Option<agora_proto::tls::ClientTls>,
    /// TLS on the agent's HTTP port (`--tls-cert`, `--tls-key`); `None` serves plain text.
    pub http_tls: Option<agora_proto::tls::ServerTls>,
}

/// Where the master is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Masters {
    /// Master addresses, `host:port` (an `http://` prefix is accepted too). With several
    /// masters the agent dials them in turn and follows the leader a follower names.
    List(Vec<String>),
    /// The endpoints of the etcd cluster the masters elect their leader on: the agent
    /// reads the leader's address from the leader key, and reads it again whenever it
    /// loses the master.
    Etcd(Vec<String>),
}

impl Masters {
    /// One master at `address`.
    pub fn one(address: impl Into<String>) -> Self {
        Masters::List(vec![address.into()])
    }
}

impl std::fmt::Display for Masters {
    /// `host:port,host:port`, or `etcd://host:port,host:port`: for logs, `/state` and the
    /// checkpoint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Masters::List(masters) => write!(f, "{}", masters.join(",")),
            Masters::Etcd(endpoints) => write!(f, "etcd://{}", endpoints.join(",")),
        }
    }
}

impl AgentConfig {
    /// Defaults: hostname `127.0.0.1`, a 3 s kill grace period, updates retried from 1 s up
    /// to 60 s, reconnection from 100 ms up to 10 s, a drain waiting 10 s for
    /// acknowledgements; cgroups where writable (shares, memory, 4,096 pids, no CFS quota),
    /// sandboxes measured every 15 s and not enforced; root tasks refused.
    pub fn new(masters: Masters, work_dir: impl Into<PathBuf>, resources: Resources) -> Self {
        Self {
            masters,
            work_dir: work_dir.into(),
            resources,
            attributes: Vec::new(),
            hostname: "127.0.0.1".to_owned(),
            advertise_port: None,
            kill_grace_period_ms: 3_000,
            update_retry_initial_ms: 1_000,
            update_retry_max_ms: 60_000,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 10_000,
            register_timeout_ms: 15_000,
            max_tasks: 10_000,
            seed: rand::random(),
            drain_updates_timeout_ms: 10_000,
            isolation: Isolation::Auto,
            cgroups: CgroupsConfig::default(),
            enforce_container_disk_quota: false,
            disk_watch_interval_ms: 15_000,
            allow_root_tasks: false,
            root_tasks_as: None,
            http_max_connections: 512,
            http_idle_timeout_ms: 30_000,
            credential: None,
            http_gate: None,
            acls: None,
            master_tls: None,
            http_tls: None,
        }
    }
}

/// The name to advertise when none is given: the machine's hostname when the agent listens
/// on every interface (`0.0.0.0`, `::`), else the address it listens on, since that is the
/// one address where its HTTP endpoint is sure to answer (a hostname may resolve to
/// `127.0.1.1` or to another interface).
pub fn default_hostname(listen: IpAddr) -> String {
    if !listen.is_unspecified() {
        return listen.to_string();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
