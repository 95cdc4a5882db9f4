//! What every Agora HTTP server (master, agent, services, cron) puts between the network
//! and its handlers against hostile or careless callers: one JSON error shape for every
//! refusal, axum's own included (`errors`); changes only from same-origin or
//! authenticated callers with a JSON (or protobuf) body (`cross_site`); who the caller is
//! on the frameworks' REST APIs (`authenticate`); per-caller rate limits (`rate`).
//!
//! How the layers stack (outermost first): authentication (inserts [`Authenticated`]),
//! then [`cross_site::guard_changes`], then [`errors::json_errors`], then the routes.

pub mod authenticate;
pub mod conn;
pub mod cross_site;
pub mod errors;
pub mod rate;

pub use errors::{error_response, json_errors};

/// Put in a request's extensions by the authentication layer once it has proven who the
/// caller is. A caller so marked may send changes from any origin (it proved itself with
/// a credential, not with an ambient cookie), and rate limits count by its principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: String,
}
