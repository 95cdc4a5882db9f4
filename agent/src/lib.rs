//! The Agora agent: offers one host's resources to the master, runs tasks as processes in
//! sandboxes, and reports their states with reliable, acknowledged status updates.
//!
//! `core` is the pure task lifecycle and update stream; the runtime around it dials the
//! master, supervises processes and serves the sandboxes over HTTP.

pub mod core;
