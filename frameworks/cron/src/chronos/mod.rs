//! Chronos' REST JSON: job definitions in (parsed, checked and defaulted as Chronos does),
//! jobs, statistics and graphs out in Chronos' names and shapes. Nothing else in the crate
//! knows camelCase or Chronos' quirks; a compatibility fix touches only this module.
//!
//! - [`job`]: job definitions in (`POST /v1/scheduler/iso8601` and `/dependency`).
//! - [`render`]: jobs with their counters, `job/stat`, `stats/{percentile}`, the graph.
//! - [`error`]: `{"status", "message", "details"}` errors and their status codes.

pub mod error;
pub mod job;
pub mod render;

pub use agora_sdk::json::Problems;
pub use error::{ApiError, Detail};
