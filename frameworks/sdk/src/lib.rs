//! Agora's framework SDK: a [`Scheduler`] trait, a [`Driver`] that keeps a framework
//! subscribed to the master, and helpers to cut offers into tasks.
//!
//! A framework implements [`Scheduler`], builds a [`Driver`] from a [`DriverConfig`], and
//! awaits [`Driver::run`]. The driver subscribes (trying each master in turn), hands every
//! event to the scheduler one at a time, acknowledges reliable status updates once the
//! scheduler has seen them (or lets the scheduler acknowledge them itself, in batches, once
//! they are durable: [`DriverConfig::explicit_acknowledgements`]), and re-subscribes with the same framework id whenever the
//! stream is lost. Callbacks make calls through the [`DriverHandle`] they are given.
//!
//! [`election`] elects one leader among several processes of a framework on etcd, its
//! term fencing their writes; [`kv`] keeps a framework's state in tables, in a redb file
//! or in etcd fenced by that term; [`forward`] hands master events to a framework's
//! owner task with their acknowledgements.
//!
//! [`carve`] and [`TaskRequirements`] cut task-sized pieces out of an offer with exact
//! integer arithmetic and the lowest free ports; [`TaskBuilder`] turns a piece into a
//! [`TaskInfo`](agora_proto::model::TaskInfo).
//!
//! ```no_run
//! use agora_proto::model::{FrameworkInfo, Offer, DEFAULT_FAILOVER_TIMEOUT_MS, Role};
//! use agora_sdk::{Driver, DriverConfig, DriverHandle, Scheduler};
//!
//! struct Decliner;
//!
//! impl Scheduler for Decliner {
//!     async fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) {
//!         let ids = offers.into_iter().map(|o| o.id).collect();
//!         let _ = driver.decline(ids, Some(60.0)).await;
//!     }
//! }
//!
//! # async fn example() -> Result<(), agora_sdk::Error> {
//! let framework = FrameworkInfo {
//!     id: None,
//!     name: "decliner".into(),
//!     user: "nobody".into(),
//!     roles: vec![Role::unreserved()],
//!     failover_timeout_ms: DEFAULT_FAILOVER_TIMEOUT_MS,
//!     hostname: String::new(),
//!     principal: String::new(),
//! };
//! let driver = Driver::new(DriverConfig::new(vec!["127.0.0.1:5050".into()], framework))?;
//! driver.run(&mut Decliner).await
//! # }
//! ```

mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
mod driver;
pub mod election;
mod error;
pub mod forward;
pub mod json;
pub mod kv;
mod matcher;
mod scheduler;
mod task;

pub use backoff::BackoffConfig;
pub use driver::{
    Acknowledgement, DEFAULT_MISSED_HEARTBEATS, Driver, DriverConfig, DriverHandle, MAX_ACKNOWLEDGEMENTS_PER_CALL,
    MAX_MESSAGE_BYTES,
};
pub use error::Error;
pub use matcher::{Carving, MAX_TASKS_PER_CARVE, TaskRequirements, carve};
pub use scheduler::Scheduler;
pub use task::TaskBuilder;
