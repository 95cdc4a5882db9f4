//! Marathon's `/v2` JSON: DTOs in Marathon's names and shapes, parsed and validated into
//! [`crate::model`] types, and rendered back. A compatibility fix touches only this module.
//!
//! - [`app`]: app definitions in (POST/PUT/PATCH bodies), with Marathon's defaults.
//! - [`group`]: group definitions in (a whole stack from one file), applied to a subtree.
//! - [`render`]: apps, tasks, deployments, groups, the queue, as Marathon shows them.
//! - [`events`]: the event stream's events.
//! - [`error`]: `{"message", "details"}` errors and their status codes.

pub mod app;
pub mod error;
pub mod events;
pub mod group;
pub mod render;
pub mod selector;

pub use agora_sdk::json::Problems;
pub use error::{ApiError, Detail};
