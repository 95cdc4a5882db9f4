//! Leader election on etcd, and what followers answer meanwhile.
//!
//! Each master campaigns by creating `<root>/leader` (holding its advertised address)
//! under a lease it keeps alive; the key's creator leads, the others watch the key and
//! campaign again when it disappears. A leader that loses its lease or its key exits the
//! process (fail-stop, as Mesos masters do on losing leadership): another master may lead
//! by then, and a supervisor restarts this one as a follower. Until a master leads, every
//! request is answered here: HTTP with a 307 to the leader (`/health` with who leads),
//! gRPC with UNAVAILABLE naming the leader in its message and in `agora-leader` metadata.

use std::time::Duration;

use agora_proto::etcd_client::{Etcd, EtcdError, Holder, Term};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

/// The gRPC metadata key naming the leader in a follower's UNAVAILABLE answer.
pub const LEADER_METADATA: &str = "agora-leader";
/// Longest wait on one watch of the leader key before reading it again, so a lost watch
/// cannot leave a follower waiting forever.
const WATCH_LIMIT: Duration = Duration::from_secs(10);
/// Retry backoff after etcd errors while campaigning: capped, jittered.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Where the masters meet in etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// The key prefix, `/agora` by default: the leader key and the registry live under it.
    pub root: String,
    /// The leader's lease: a leader that dies is replaced within about this long.
    pub lease_ttl_s: u32,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints, root: "/agora".into(), lease_ttl_s: 5 }
    }

    pub fn leader_key(&self) -> Vec<u8> {
        format!("{}/leader", self.root.trim_end_matches('/')).into_bytes()
    }
}

/// What this master is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Following `leader` (its advertised `host:port`), or nobody while none is elected.
    Follower {
        leader: Option<String>,
    },
}

/// Campaigns until this master leads, publishing who leads meanwhile; returns the term.
pub async fn campaign(client: &Etcd, options: &EtcdOptions, advertise: &str, role: &watch::Sender<Role>) -> Term {
    let key = options.leader_key();
    let mut backoff = RETRY_MIN;
    loop {
        match campaign_once(client, options, &key, advertise).await {
            Ok(Ok(term)) => return term,
            Ok(Err(holder)) => {
                backoff = RETRY_MIN;
                // A key naming this very master is a previous run's, whose lease has not
                // expired yet: redirecting clients to it would send them in a circle.
                let leader = (holder.address != advertise).then(|| holder.address.clone());
                role.send_replace(Role::Follower { leader });
                tracing::info!(leader = %holder.address, "following");
                if let Err(error) = client.wait_for_change(&key, holder.read_revision, WATCH_LIMIT).await {
                    tracing::warn!(%error, "watching the leader key failed");
                    tokio::time::sleep(jittered(backoff)).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "campaign failed; retrying");
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// One attempt: a fresh lease, then the create-if-absent. A lost attempt revokes its
/// lease at once (it holds nothing) rather than leaving it to expire.
async fn campaign_once(
    client: &Etcd,
    options: &EtcdOptions,
    key: &[u8],
    advertise: &str,
) -> Result<Result<Term, Holder>, EtcdError> {
    let lease = client.grant_lease(i64::from(options.lease_ttl_s)).await?;
    let result = client.campaign(key, advertise, lease).await;
    if !matches!(result, Ok(Ok(_))) {
        let _ = client.revoke_lease(lease).await;
    }
    result
}

/// Holds leadership for `term`: keeps its lease alive and watches the key. Returns only
/// when leadership is lost, saying why; the caller stops the process.
pub async fn hold(client: &Etcd, options: &EtcdOptions, term: &Term) -> EtcdError {
    let ttl = Duration::from_secs(u64::from(options.lease_ttl_s));
    // Three refreshes per TTL, as etcd's own clients do, so one lost refresh costs nothing.
    let keep_alive = client.keep_alive(term.lease_id, ttl, ttl / 3);
    let watch_key = async {
        loop {
            match client.holder(&term.key).await {
                Ok(Some(holder)) if holder.create_revision == term.create_revision => {
                    let _ = client.wait_for_change(&term.key, holder.read_revision, WATCH_LIMIT).await;
                }
                Ok(_) => return EtcdError::Deposed,
                Err(error) => {
                    tracing::warn!(%error, "reading the leader key failed");
                    tokio::time::sleep(jittered(RETRY_MAX)).await;
                }
            }
        }
    };
    tokio::select! {
        error = keep_alive => error,
        error = watch_key => error,
    }
}

fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>())
}

/// Lets requests through on the leader; answers them on a follower (see the module doc).
pub async fn follow_leader(State(role): State<watch::Receiver<Role>>, request: Request, next: Next) -> Response {
    let leader = match &*role.borrow() {
        Role::Leader => None,
        Role::Follower { leader } => Some(leader.clone()),
    };
    let Some(leader) = leader else { return next.run(request).await };
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return not_the_leader(leader.as_deref()).into_http::<axum::body::Body>();
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if request.uri().path() == "/health" {
        return axum::Json(json!({ "leader": false, "leading_master": leader })).into_response();
    }
    match leader {
        Some(leader) => {
            let scheme = agora_proto::tls::scheme(request.extensions());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("{scheme}://{leader}{path}"))]).into_response()
        }
        None => {
            super::http::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no leading master is elected yet", json!([]))
                .into_response()
        }
    }
}

/// The gRPC answer of a follower: UNAVAILABLE (clients retry), naming the leader.
fn not_the_leader(leader: Option<&str>) -> tonic::Status {
    let Some(leader) = leader else { return tonic::Status::unavailable("not the leader; no leader is elected yet") };
    let mut status = tonic::Status::unavailable(format!("not the leader; leader is {leader}"));
    if let Ok(value) = leader.parse() {
        status.metadata_mut().insert(LEADER_METADATA, value);
    }
    status
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn app(role: Role) -> axum::Router {
        let (_tx, rx) = watch::channel(role);
        axum::Router::new()
            .route("/state", axum::routing::get(|| async { "served" }))
            .layer(axum::middleware::from_fn_with_state(rx, follow_leader))
    }

    fn following(leader: Option<&str>) -> Role {
        Role::Follower { leader: leader.map(str::to_owned) }
    }

    async fn call(role: Role, request: Request<Body>) -> Response {
        app(role).oneshot(request).await.expect("the router answers")
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("a valid request")
    }

    #[tokio::test]
    async fn the_leader_serves_requests_itself() {
        let response = call(Role::Leader, get("/state")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_follower_redirects_http_to_the_leader_keeping_path_and_query() {
        let response = call(following(Some("10.0.0.2:5050")), get("/state?x=1")).await;
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "http://10.0.0.2:5050/state?x=1");
    }

    #[tokio::test]
    async fn a_follower_answers_health_saying_who_leads_and_503_while_nobody_does() {
        let health = call(following(None), get("/health")).await;
        assert_eq!(health.status(), StatusCode::OK);
        let body = axum::body::to_bytes(health.into_body(), 1024).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body, json!({ "leader": false, "leading_master": null }));
        let state = call(following(None), get("/state")).await;
        assert_eq!(state.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_follower_refuses_grpc_as_unavailable_naming_the_leader() {
        let request = Request::post("/agora.v1.Scheduler/Subscribe")
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(Body::empty())
            .expect("a valid request");
        let response = call(following(Some("10.0.0.2:5050")), request).await;
        let status = tonic::Status::from_header_map(response.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "not the leader; leader is 10.0.0.2:5050");
        assert_eq!(response.headers()[LEADER_METADATA], "10.0.0.2:5050");
    }
}
