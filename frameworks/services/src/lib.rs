//! Agora's services framework: long-running apps kept at N healthy instances, rolled out
//! without downtime, behind Marathon's `/v2` REST API.
//!
//! - [`model`]: apps, versions, instances, groups, deployments in our own types.
//! - [`core`]: the deployment planner, a pure core (commands and master events in,
//!   launches, kills and records out).
//! - [`marathon`]: Marathon's JSON, parsed, validated and rendered; nothing else knows it.
//! - [`http`]: the REST API (axum), Marathon's `/v2` over the runtime's handle.
//! - [`runtime`]: the owner task, the SDK scheduler, leader election, the REST API's handle.
//! - [`cli`]: `agora services deploy|scale|list|…`, a client of the REST API.
//! - [`store`]: the crash-safe store of all that state (a redb file, or etcd).

pub mod cli;
pub mod core;
pub mod http;
pub mod marathon;
pub mod model;
pub mod runtime;
pub mod store;

pub use runtime::{RunError, ServicesConfig, ServicesHandle, run};
