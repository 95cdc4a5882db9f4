//! Per-caller rate limits: a token bucket per caller, keyed by the principal the
//! authentication layer proved ([`Authenticated`](super::Authenticated)), else by the
//! peer's IP address (`ConnectInfo<SocketAddr>`). Loopback peers that did not
//! authenticate are not limited: they are on the host already (and `agora local`,
//! `agora bench` and co-located frameworks share that one address). A request over its
//! caller's rate is answered 429 with `Retry-After` (HTTP) or `RESOURCE_EXHAUSTED` (gRPC),
//! before any handler runs.
//!
//! [`Buckets`] is the pure part (time is an argument); [`limit`] the middleware.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Authenticated;
use super::errors::error_response;

/// Callers tracked at once; past it, buckets that have refilled are forgotten first (a
/// forgotten caller starts with a full bucket, which is what it would have had).
const MAX_CALLERS: usize = 100_000;

/// How fast each caller may send requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained; 0 turns the limit off.
    pub per_second: u32,
    /// Requests a caller may send at once after being quiet.
    pub burst: u32,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { per_second: 0, burst: 0 };
}

/// One token bucket per caller, in thousandths of a request.
#[derive(Debug)]
pub struct Buckets {
    limit: RateLimit,
    /// Caller → (milli-tokens left, when last refilled in ms).
    callers: HashMap<String, (u64, u64)>,
}

impl Buckets {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, callers: HashMap::new() }
    }

    fn capacity_milli(&self) -> u64 {
        u64::from(self.limit.burst.max(1)) * 1000
    }

    /// Takes one request from `caller`'s bucket at `now_ms`: `Err(ms)` when it is empty,
    /// with how long until a request is allowed again.
    pub fn take(&mut self, caller: &str, now_ms: u64) -> Result<(), u64> {
        if self.limit.per_second == 0 {
            return Ok(());
        }
        let capacity = self.capacity_milli();
        let rate = u64::from(self.limit.per_second);
        if self.callers.len() >= MAX_CALLERS && !self.callers.contains_key(caller) {
            self.forget_refilled(now_ms);
        }
        let (tokens, at) = self.callers.entry(caller.to_owned()).or_insert((capacity, now_ms));
        // Milli-tokens: `rate` requests per second is `rate` milli-tokens per millisecond.
        let refill = now_ms.saturating_sub(*at).saturating_mul(rate);
        *tokens = tokens.saturating_add(refill).min(capacity);
        *at = now_ms;
        if *tokens >= 1000 {
            *tokens -= 1000;
            return Ok(());
        }
        Err((1000 - *tokens).div_ceil(rate))
    }

    fn forget_refilled(&mut self, now_ms: u64) {
        let capacity = self.capacity_milli();
        let rate = u64::from(self.limit.per_second);
        self.callers.retain(|_, (tokens, at)| tokens.saturating_add(now_ms.saturating_sub(*at) * rate) < capacity);
        if self.callers.len() >= MAX_CALLERS {
            // Everyone is busy: start afresh rather than grow without bound.
            self.callers.clear();
        }
    }
}

/// What the middleware holds: the buckets and the clock they are read with.
#[derive(Clone, Debug)]
pub struct Limiter {
    buckets: Arc<Mutex<Buckets>>,
    start: tokio::time::Instant,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { buckets: Arc::new(Mutex::new(Buckets::new(limit))), start: tokio::time::Instant::now() }
    }

    fn take(&self, caller: &str) -> Result<(), u64> {
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        // A std mutex: held for one map operation, never across an await; a poisoned one
        // still holds consistent buckets.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.take(caller, now_ms)
    }
}

/// Whom a request counts against: its principal, else its peer's address (loopback
/// peers without a principal count against no one).
fn caller_of(request: &Request) -> Option<String> {
    if let Some(authenticated) = request.extensions().get::<Authenticated>() {
        return Some(format!("principal {}", authenticated.principal));
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    (!peer.is_loopback()).then(|| format!("address {peer}"))
}

/// The middleware: refuses a request over its caller's rate.
pub async fn limit(State(limiter): State<Limiter>, request: Request, next: Next) -> Response {
    let Some(caller) = caller_of(&request) else {
        return next.run(request).await;
    };
    let Err(wait_ms) = limiter.take(&caller) else {
        return next.run(request).await;
    };
    let retry_after_s = wait_ms.div_ceil(1000).max(1);
    tracing::debug!(%caller, path = %request.uri().path(), "rate limited");
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let message = format!("{caller} sends requests faster than this server allows; retry in {retry_after_s} s");
    let mut response = if grpc {
        tonic::Status::resource_exhausted(message).into_http::<axum::body::Body>().into_response()
    } else {
        error_response(StatusCode::TOO_MANY_REQUESTS, message, json!([]))
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate_and_others_are_not_slowed() {
        let mut buckets = Buckets::new(RateLimit { per_second: 10, burst: 3 });
        for _ in 0..3 {
            assert_eq!(buckets.take("a", 0), Ok(()));
        }
        assert_eq!(buckets.take("a", 0), Err(100));
        assert_eq!(buckets.take("b", 0), Ok(()));
        // A tenth of a second later, one more request is allowed, and not two.
        assert_eq!(buckets.take("a", 100), Ok(()));
        assert_eq!(buckets.take("a", 100), Err(100));
        // A long quiet refills the burst, never more.
        for _ in 0..3 {
            assert_eq!(buckets.take("a", 60_000), Ok(()));
        }
        assert!(buckets.take("a", 60_000).is_err());
        assert_eq!(Buckets::new(RateLimit::OFF).take("a", 0), Ok(()));
    }

    fn request(peer: &str, principal: Option<&str>, grpc: bool) -> Request {
        let mut request = Request::builder().uri("/x");
        if grpc {
            request = request.header(header::CONTENT_TYPE, "application/grpc");
        }
        let mut request = request.body(Body::empty()).expect("valid request");
        let peer: SocketAddr = peer.parse().expect("an address");
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(principal) = principal {
            request.extensions_mut().insert(Authenticated { principal: principal.to_owned() });
        }
        request
    }

    #[tokio::test]
    async fn a_caller_over_its_rate_gets_429_with_retry_after_or_resource_exhausted() {
        let limiter = Limiter::new(RateLimit { per_second: 1, burst: 1 });
        let app = Router::new()
            .route("/x", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limiter, limit));
        let status = |r: Response| r.status();
        assert_eq!(status(app.clone().oneshot(request("10.0.0.1:1", None, false)).await.expect("answer")), 200);
        let refused = app.clone().oneshot(request("10.0.0.1:2", None, false)).await.expect("answer");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let refused = app.clone().oneshot(request("10.0.0.1:3", None, true)).await.expect("answer");
        assert_eq!(refused.headers().get("grpc-status").map(|v| v.as_bytes()), Some(&b"8"[..]));
        // Another address, a principal (counted apart from its address) and loopback pass.
        for (peer, principal) in [("10.0.0.2:1", None), ("10.0.0.1:4", Some("ops")), ("127.0.0.1:1", None)] {
            assert_eq!(status(app.clone().oneshot(request(peer, principal, false)).await.expect("answer")), 200);
        }
        assert_eq!(status(app.clone().oneshot(request("127.0.0.1:1", None, false)).await.expect("answer")), 200);
    }
}
