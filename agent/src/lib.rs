//! The Agora agent: offers one host's resources to the master, runs tasks as processes in
//! sandboxes, and reports their states with reliable, acknowledged status updates.
//!
//! - [`core`]: the pure task lifecycle and update stream (inputs in, commands out).
//! - [`run`]: the runtime around it; it dials the master, supervises processes and serves
//!   `/health`, `/state` and the sandboxes (`/files/...`) over HTTP.
//! - [`detect_resources`], [`resolve_resources`], [`split_resources`]: what the host offers,
//!   and how `agora local` gives each of its agents a share.
//!
//! Sandboxes live in `<work_dir>/sandboxes/<framework_id>/<task_id>/`, holding the task's
//! `stdout` and `stderr`; a task id reused by its framework gets `<task_id>.run-2`, … .
//! The checkpoint lives in `<work_dir>/meta/`: an agent started on the work dir of one that
//! died takes back its id, its running tasks and its unacknowledged updates (see
//! `docs/agent.md`).

pub mod core;

mod config;
mod http;
mod resources;
mod runtime;

pub use config::{AgentConfig, CgroupsConfig, Isolation, Masters, default_hostname};
pub use resources::{DEFAULT_PORTS, detect_resources, resolve_resources, share_of, split_resources};
pub use runtime::{Shutdown, run};
