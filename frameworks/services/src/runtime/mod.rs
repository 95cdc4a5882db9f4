//! The runtime around the planner: the owner task that holds it, the SDK scheduler that
//! feeds it the master's events, the store it commits to, and the handle the REST API uses.

mod handle;

pub(crate) use handle::Request;
pub use handle::{Published, ServicesHandle, StampedEvent, TEST_EVENT_CAPACITY, Unavailable, spawn_for_tests};
