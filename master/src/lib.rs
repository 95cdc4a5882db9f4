//! The Agora master: the registry of agents, frameworks, offers and tasks, the allocator,
//! the scheduler and agent gRPC services, and the operator HTTP API.
//!
//! `core` is pure and synchronous; `runtime` owns one `core::Master` in a single task and
//! translates between it and the network.

pub mod cli;
pub mod core;
pub mod runtime;
pub mod scenarios;
pub mod store;
