//! Agora's cron framework: scheduled and dependent jobs, Chronos-like.
//!
//! For now this crate holds the framework's pure core, with no clock and no I/O:
//! [`schedule`] parses a job's `schedule` and `scheduleTimeZone` into a [`Schedule`] that
//! answers its next times, and [`evaluator`] decides, from the jobs' schedules, the last
//! scheduled time settled for each job and the current time, which runs are due, which
//! were missed and when to look again; [`model`] holds the jobs and runs every other part
//! speaks. The run store, retries, dependencies, the REST API
//! and the `agora cron` command are built on it.

pub mod chronos;
pub mod cli;
pub mod core;
pub mod evaluator;
pub mod http;
pub mod model;
pub mod runtime;
pub mod schedule;
pub mod store;

pub use evaluator::{Evaluation, JobName, JobSchedule, MissReason, MissedRun, MissedRunPolicy, Run, RunKind, evaluate};
pub use runtime::{CronConfig, CronHandle, RunError, run};
pub use schedule::{Schedule, ScheduleError};
