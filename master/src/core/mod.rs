//! The master's pure core: agents, frameworks, offers, tasks and the allocator.
//!
//! Plain synchronous Rust. Every method takes the current time (`now_ms`, milliseconds on
//! any monotonic clock the caller chooses) and appends what must happen as a result to an
//! outbox of [`Output`]s, which the runtime drains with [`Master::drain_outputs`] and
//! executes in order. No sockets, no clocks, no threads: the same inputs always give the
//! same outputs, which is what the seeded simulation relies on.

mod agent_table;
mod agents;
mod allocator;
mod changes;
mod client_heap;
mod client_tree;
mod durable;
mod filter_slots;
mod frameworks;
mod invariants;
mod maintenance;
#[cfg(test)]
mod maintenance_tests;
mod master;
mod prefetch;
mod registry;
mod roles;
#[cfg(test)]
mod roles_tests;
#[cfg(test)]
mod tests;

pub use agents::MAX_REPORTED_TASKS;
pub use changes::{Changes, MAX_PENDING_ENDED};
pub use durable::{DurableAgent, Registry, RegistryOp};
pub use frameworks::{MAX_OFFERS_PER_CALL, MAX_RECONCILE_TASKS, MAX_ROLES_PER_FRAMEWORK};
pub use maintenance::{
    DEFAULT_KILL_GRACE_MS, DrainInfo, DrainState, InverseOfferAnswer, InverseOfferStatus, MAX_MAINTENANCE_MACHINES,
    MAX_MAINTENANCE_WINDOWS, MachineId, MachineMode, Maintenance, Unavailability, Window, machine_id,
};
pub use master::{MAX_GONE_AGENT_IDS, MAX_REMOVED_FRAMEWORK_IDS, Master};
pub use roles::{
    DEFAULT_WEIGHT_MILLI, MAX_POLICY_ROLES, MAX_WEIGHT_MILLI, OperatorError, OperatorErrorKind, Quota, RolePolicy,
    RoleView,
};

use agora_proto::model::{
    AgentId, AgentInfo, FrameworkId, FrameworkInfo, Offer, OfferId, Resources, Role, StreamId, TaskId, TaskInfo,
    TaskState, TaskStatus, TaskStatusReason, TaskStatusSource, UpdateId,
};

/// Identifies one network connection of an agent, chosen by the runtime. A message about
/// a connection that is no longer the agent's current one is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The default of `Config::max_offers_per_framework`.
pub const DEFAULT_MAX_OFFERS_PER_FRAMEWORK: usize = 100;

#[derive(Clone, Debug)]
pub struct Config {
    /// Prefix of every id this master hands out (agents, frameworks, offers).
    pub master_id: String,
    /// How often agents must send a heartbeat.
    pub agent_heartbeat_interval_ms: u64,
    /// An agent silent (or disconnected) this long becomes unreachable.
    pub agent_timeout_ms: u64,
    /// An agent unreachable this long is gone: its tasks are TASK_GONE and it must
    /// register afresh under a new id.
    pub agent_reregister_timeout_ms: u64,
    /// At most this many agents are declared gone per minute, so that a network blip
    /// cannot empty the cluster at once.
    pub agent_removals_per_minute: u32,
    /// An offer not answered within this time is rescinded; `None` keeps offers forever.
    pub offer_timeout_ms: Option<u64>,
    /// Most offers one framework holds at once; `None`: no bound. A framework at the bound
    /// is passed over until it answers some, so a framework that revives on a large idle
    /// cluster gets this many offers, not one per free agent.
    pub max_offers_per_framework: Option<usize>,
    /// How often the runtime sends HEARTBEAT events to frameworks (announced in SUBSCRIBED).
    pub framework_heartbeat_interval_ms: u64,
    /// Smallest resources worth offering: an agent with less free is not offered.
    pub min_allocatable_cpus_milli: u64,
    pub min_allocatable_mem_mib: u64,
    /// Bound on the tasks one ACCEPT may launch.
    pub max_tasks_per_accept: usize,
    /// Bound on completed frameworks and completed tasks kept for `/state`.
    pub max_completed_frameworks: usize,
    pub max_completed_tasks_per_framework: usize,
    /// The operator's ACLs (`--acls`): the core applies `run_tasks` to every launch;
    /// `None` allows everything.
    pub acls: Option<std::sync::Arc<agora_proto::acl::Acls>>,
    /// Most frameworks registered at once (connected, or disconnected within their
    /// failover timeout): one caller cannot grow the registry without bound.
    pub max_frameworks: usize,
    /// Longest text field of a framework's info (name, user, hostname, principal), in bytes.
    pub max_framework_field_bytes: usize,
    /// Longest failover timeout a framework may ask for: a framework that never comes
    /// back is forgotten after at most this long.
    pub max_failover_timeout_ms: u64,
    /// Most roles the operator may give a weight or a quota.
    pub max_roles: usize,
}

/// Defaults of the registry's bounds (`agora master --max-frameworks` and its siblings).
pub const DEFAULT_MAX_FRAMEWORKS: usize = 1_000;
pub const DEFAULT_MAX_FRAMEWORK_FIELD_BYTES: usize = 1_024;
/// Four weeks: above the 1 week Marathon and Chronos ask for, Aurora's 3 weeks.
pub const DEFAULT_MAX_FAILOVER_TIMEOUT_MS: u64 = 28 * 24 * 3600 * 1000;
pub const DEFAULT_MAX_ROLES: usize = 1_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            master_id: "master".to_owned(),
            agent_heartbeat_interval_ms: 5_000,
            agent_timeout_ms: 75_000,
            agent_reregister_timeout_ms: 600_000,
            agent_removals_per_minute: 100,
            offer_timeout_ms: None,
            max_offers_per_framework: Some(DEFAULT_MAX_OFFERS_PER_FRAMEWORK),
            framework_heartbeat_interval_ms: 15_000,
            min_allocatable_cpus_milli: 10,
            min_allocatable_mem_mib: 32,
            max_tasks_per_accept: 1_000,
            max_completed_frameworks: 50,
            max_completed_tasks_per_framework: 1_000,
            acls: None,
            max_frameworks: DEFAULT_MAX_FRAMEWORKS,
            max_framework_field_bytes: DEFAULT_MAX_FRAMEWORK_FIELD_BYTES,
            max_failover_timeout_ms: DEFAULT_MAX_FAILOVER_TIMEOUT_MS,
            max_roles: DEFAULT_MAX_ROLES,
        }
    }
}

/// A task an agent reports when it re-registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedTask {
    pub framework_id: FrameworkId,
    pub task: TaskInfo,
    pub state: TaskState,
    /// Its latest health check result and readiness, as the agent knows them.
    pub healthy: Option<bool>,
    pub ready: Option<bool>,
}

/// A scheduler call other than SUBSCRIBE, already validated at the edge.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Accept {
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        refuse_ms: u64,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        refuse_ms: u64,
    },
    /// Empty roles mean every role of the framework.
    Revive {
        roles: Vec<Role>,
    },
    Suppress {
        roles: Vec<Role>,
    },
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    Acknowledge {
        agent_id: AgentId,
        task_id: TaskId,
        uuid: UpdateId,
    },
    /// Empty means implicit reconciliation: every task the master knows of the framework.
    Reconcile {
        tasks: Vec<(TaskId, Option<AgentId>)>,
    },
    Message {
        agent_id: AgentId,
        data: Vec<u8>,
    },
    Teardown,
    /// The framework's answer to inverse offers (Mesos' ACCEPT_INVERSE_OFFERS, `accept`,
    /// or DECLINE_INVERSE_OFFERS); ids the master does not know (any more) are ignored.
    AnswerInverseOffers {
        ids: Vec<OfferId>,
        accept: bool,
    },
    /// A new description of the subscribed framework (Mesos' UPDATE_FRAMEWORK): roles,
    /// name, failover timeout. Its id, user and principal cannot change.
    UpdateFramework {
        info: FrameworkInfo,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    Launch {
        tasks: Vec<TaskInfo>,
    },
    /// Reserve unreserved resources of the offers for the offers' role (`cpus(eng):1`).
    Reserve {
        resources: Resources,
    },
    /// Give dynamically reserved resources of the offers back to the unreserved pool.
    Unreserve {
        resources: Resources,
    },
}

/// Why a call was refused as a whole (the framework gets it as the call's error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("framework {0} is not subscribed")]
    UnknownFramework(FrameworkId),
    #[error("stream {0} is not the framework's current subscription")]
    StaleStream(StreamId),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The caller may not do this (another principal's framework, an ACL).
    #[error("{0}")]
    Forbidden(String),
    /// The master holds as much of this as the operator allows (`--max-frameworks`).
    #[error("{0}")]
    Exhausted(String),
}

/// An event for a framework's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Subscribed {
        framework_id: FrameworkId,
        stream_id: StreamId,
        heartbeat_interval_ms: u64,
    },
    Offers(Vec<Offer>),
    Rescind(OfferId),
    Update(TaskStatus),
    Message {
        agent_id: AgentId,
        data: Vec<u8>,
    },
    Failure {
        agent_id: AgentId,
    },
    Error(String),
    /// Mesos' inverse offers: give back what you hold on these agents, whose machines are
    /// scheduled for maintenance. Only the HTTP scheduler API delivers them.
    InverseOffers(Vec<InverseOffer>),
}

/// A request to a framework to give back what it holds on an agent before its machine's
/// unavailability (Mesos' `InverseOffer`, for maintenance: all the agent's resources).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InverseOffer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    /// The agent's `http://hostname:port`.
    pub agent_url: String,
    pub unavailability: Unavailability,
}

/// A message for an agent's stream.
// RUNTASK carries whole descriptions; boxing them would only add an allocation per
// launch, and outputs live just until the runtime drains them.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ToAgent {
    RunTask { framework: FrameworkInfo, task: TaskInfo },
    KillTask { framework_id: FrameworkId, task_id: TaskId, grace_period_ms: Option<u64> },
    Acknowledge { framework_id: FrameworkId, task_id: TaskId, uuid: UpdateId },
    ShutdownFramework { framework_id: FrameworkId },
}

/// What the runtime must do, in order.
// Large for the same reason as `ToAgent`, and just as short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Bind connection `conn` to `agent_id` and tell the agent it is registered.
    AgentRegistered {
        conn: ConnId,
        agent_id: AgentId,
    },
    /// Tell the agent on `conn` it may not (re-)register, and close the connection.
    AgentRefused {
        conn: ConnId,
        reason: String,
    },
    ToAgent {
        agent_id: AgentId,
        message: ToAgent,
    },
    /// Close the agent's connection without refusing it, so that it re-registers with the
    /// tasks it runs (an unreachable agent spoke again on its old connection).
    ReconnectAgent {
        agent_id: AgentId,
    },
    ToFramework {
        framework_id: FrameworkId,
        event: Event,
    },
    /// Close the framework's event stream (after TEARDOWN or failover timeout).
    CloseFramework {
        framework_id: FrameworkId,
    },
    /// Commit this change to the durable registry before delivering any output that
    /// follows it.
    Persist(RegistryOp),
}

/// The numbers `/metrics` shows, counted where they are: unlike a [`Snapshot`], nothing
/// is copied, so scraping a master that holds 500,000 tasks costs no memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Gauges {
    pub agents: usize,
    pub agents_active: usize,
    pub agents_unreachable: usize,
    pub frameworks: usize,
    pub frameworks_active: usize,
    pub frameworks_completed: usize,
    pub outstanding_offers: usize,
    /// Live tasks plus the ended ones kept, per state, in `TaskState::ALL` order.
    pub tasks: Vec<(TaskState, usize)>,
    pub counters: Counters,
}

/// A read-only copy of the registry for the operator API (`/state`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub master_id: String,
    pub agents: Vec<AgentView>,
    pub frameworks: Vec<FrameworkView>,
    pub completed_frameworks: Vec<FrameworkView>,
    pub outstanding_offers: usize,
    pub counters: Counters,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub id: AgentId,
    pub info: AgentInfo,
    /// Resources held by tasks.
    pub used: Resources,
    /// Resources in outstanding offers.
    pub offered: Resources,
    /// Connected and reachable.
    pub active: bool,
    pub reachable: bool,
    pub registered_at_ms: u64,
    /// Not offered by the operator's word (DEACTIVATE_AGENT or a drain).
    pub deactivated: bool,
    pub drain: Option<DrainInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FrameworkView {
    pub id: FrameworkId,
    pub info: FrameworkInfo,
    pub active: bool,
    pub used: Resources,
    pub offered: Resources,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
    pub registered_at_ms: u64,
    pub unregistered_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    /// The same description the registry holds, shared.
    pub info: std::sync::Arc<TaskInfo>,
    pub framework_id: FrameworkId,
    pub state: TaskState,
    /// Every status the task went through, oldest first (bounded).
    pub statuses: Vec<StatusEntry>,
}

/// One status of a task's history, as `/state` shows it and reconciliation restates it:
/// what the `TaskStatus` said, without the ids (the task's own) and the update's uuid
/// (acknowledgements go to the agent, which tracks them; the master never reads it again).
/// A task keeps up to 16 of these, so they hold no allocation but a non-empty message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEntry {
    pub timestamp_ms: u64,
    /// Most updates carry none, and an empty boxed `str` allocates nothing.
    pub message: Box<str>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub state: TaskState,
    pub reason: TaskStatusReason,
    pub source: TaskStatusSource,
    /// The task's health and readiness as of this status; a byte each, which fits in the
    /// padding after the three one-byte fields above, so an entry is no larger for them.
    pub healthy: Option<bool>,
    pub ready: Option<bool>,
}

impl From<&TaskStatus> for StatusEntry {
    fn from(status: &TaskStatus) -> Self {
        Self {
            timestamp_ms: status.timestamp_ms,
            message: status.message.as_str().into(),
            exit_code: status.exit_code,
            signal: status.signal,
            state: status.state,
            reason: status.reason,
            source: status.source,
            healthy: status.healthy,
            ready: status.ready,
        }
    }
}

/// Monotonic counters since the master started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub offers_sent: u64,
    pub offers_declined: u64,
    pub offers_accepted: u64,
    pub offers_rescinded: u64,
    pub tasks_launched: u64,
    pub tasks_dropped: u64,
    pub tasks_errored: u64,
    pub allocation_runs: u64,
    pub agents_unreachable: u64,
    pub agents_removed: u64,
}
