//! What a follower answers: `/ping` and `/leader` itself; reads (GET, HEAD) a 307 to the
//! leader with the same path and query; changes (POST, PUT, DELETE, …) forwarded to the
//! leader and its answer returned, as Chronos' followers do; a 503 while no leader is
//! known. On the leader the layer lets everything through.
//!
//! Why changes are forwarded rather than redirected: chronos-python (httplib2) follows a
//! 307 only for GET and HEAD, and takes any other answer under 400 that has a body as
//! success. A client given only a follower could not change anything otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiInfo, MAX_BODY_BYTES};
use crate::chronos::ApiError;

/// Marks a request a follower forwarded, so that two processes that each believe the
/// other leads do not forward it back and forth.
const FORWARDED: &str = "x-agora-cron-forwarded";
/// How long the leader may take to answer a forwarded change.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer relayed (a change answers with little or nothing).
const MAX_FORWARDED_ANSWER: usize = 4 * 1024 * 1024;

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

/// What the middleware needs: who leads, and a client to forward changes with.
#[derive(Clone, Debug)]
pub(crate) struct Follow {
    pub info: Arc<ApiInfo>,
    pub client: reqwest::Client,
}

impl Follow {
    pub fn new(info: Arc<ApiInfo>) -> Self {
        // A follower forwards to one leader, over loopback or the cluster's network; no
        // proxy from the environment applies, and redirects are the caller's to follow.
        let client = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Follow { info, client }
    }
}

/// The axum middleware.
pub(crate) async fn follow_leader(State(follow): State<Follow>, request: Request, next: Next) -> Response {
    let leader = match (follow.info.leadership)() {
        Leadership::Leader { .. } => return next.run(request).await,
        Leadership::Follower { leader } => leader,
    };
    let path = request.uri().path();
    if path == "/ping" || path == "/leader" || path.ends_with("/scheduler/leader") {
        return next.run(request).await;
    }
    let Some(leader) = leader else {
        return ApiError::unavailable("no leader is elected yet; retry shortly").into_response();
    };
    let target = format!("http://{leader}{}", request.uri().path_and_query().map_or("/", |p| p.as_str()));
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response();
    }
    if request.headers().contains_key(FORWARDED) {
        return ApiError::unavailable(format!("forwarded to a follower: {leader} is being elected; retry shortly"))
            .into_response();
    }
    forward(&follow.client, request, &target).await.unwrap_or_else(IntoResponse::into_response)
}

/// Sends `request` to `target` and relays the answer: status, content type and body.
async fn forward(client: &reqwest::Client, request: Request, target: &str) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
    let mut outgoing = client.request(parts.method.clone(), target).header(FORWARDED, "1").body(body);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value.clone());
        }
    }
    let unreachable = |e: reqwest::Error| ApiError::unavailable(format!("cannot reach the leader at {target}: {e}"));
    let answer = outgoing.send().await.map_err(unreachable)?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let location = answer.headers().get(header::LOCATION).cloned();
    if answer.content_length().is_some_and(|len| len > MAX_FORWARDED_ANSWER as u64) {
        return Err(ApiError::internal("the leader's answer is too large to relay"));
    }
    let bytes = answer.bytes().await.map_err(unreachable)?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(value) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    if let Some(value) = location {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
