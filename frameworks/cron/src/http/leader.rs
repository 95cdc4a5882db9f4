//! What a follower answers: every request but `/ping` and `/leader` gets a 307 to the
//! leader with the same method, path and query, or a 503 while no leader is elected. On
//! the leader the layer lets everything through.
//!
//! The redirect has no body: chronos-python (httplib2) follows a 307 only for GET and
//! HEAD, and takes any other answer with a body and a status under 400 as success; with
//! no body it reports the server as failed and tries the next one it was given.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiInfo;
use crate::chronos::ApiError;

/// Who leads, as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This process, reachable at `address` (`host:port`).
    Leader { address: String },
    /// Another process (`host:port`), or none elected yet.
    Follower { leader: Option<String> },
}

/// Asked on every request: the runtime's current view of leadership.
pub type LeadershipFn = Arc<dyn Fn() -> Leadership + Send + Sync>;

/// The axum middleware.
pub async fn follow_leader(State(info): State<Arc<ApiInfo>>, request: Request, next: Next) -> Response {
    let leader = match (info.leadership)() {
        Leadership::Leader { .. } => return next.run(request).await,
        Leadership::Follower { leader } => leader,
    };
    let path = request.uri().path();
    if path == "/ping" || path == "/leader" || path.ends_with("/scheduler/leader") {
        return next.run(request).await;
    }
    match leader {
        Some(leader) => {
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("http://{leader}{target}"))]).into_response()
        }
        None => ApiError::unavailable("no leader is elected yet; retry shortly").into_response(),
    }
}
