//! Plain domain types shared by master, agent and frameworks; no wire types here.

mod ids;
mod info;
mod resources;
mod task;

pub use ids::{AgentId, FrameworkId, OfferId, StreamId, TaskId, UpdateId};
pub use info::{
    AgentDescription, AgentInfo, Archive, Attribute, CommandInfo, DEFAULT_FAILOVER_TIMEOUT_MS, FetchUri, FrameworkInfo,
    HealthCheck, HealthCheckKind, HttpScheme, MAX_FETCH_URI_LEN, MAX_FETCH_URIS, MAX_OUTPUT_FILE_LEN, Offer,
    ReadinessCheck, TaskInfo, Unavailability,
};
pub use resources::{ParseResourcesError, Pool, RangeSet, Resources, Role, Scalars, cpus_to_milli, format_cpus};
pub use task::{TaskState, TaskStatus, TaskStatusReason, TaskStatusSource};
