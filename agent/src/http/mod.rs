//! The agent's HTTP API: `/health`, `/state`, the sandboxes, read-only, under `/files`, and
//! the tasks' usage at `/monitor/statistics` and `/metrics`.
//! DTOs live here and nowhere else; errors have the one shape every Agora HTTP API uses,
//! `{"message": …, "details": …}`.

mod error;
mod files;
mod limit;
mod monitor;
mod state;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

pub(crate) use error::HttpError;

use crate::runtime::Event;

/// Requests served at once; more wait for nothing and get 503, so that a burst of file
/// reads cannot exhaust the agent's memory or file descriptors.
const MAX_CONCURRENT_REQUESTS: usize = 256;

/// What the handlers share: a way to ask the owner, and where the sandboxes are.
#[derive(Clone, Debug)]
pub(crate) struct HttpState {
    events: mpsc::Sender<Event>,
    /// Canonical, so that resolved paths can be checked against it by prefix.
    sandboxes: Arc<PathBuf>,
    permits: Arc<Semaphore>,
    /// Who may call (`--credentials`, `--authenticate-http`) and read which sandboxes
    /// (`--acls`: `access_sandboxes`).
    auth: Option<Arc<agora_proto::edge::authenticate::HttpGate>>,
    acls: Option<Arc<agora_proto::acl::Acls>>,
}

impl HttpState {
    pub fn new(events: mpsc::Sender<Event>, sandboxes: PathBuf) -> Self {
        Self {
            events,
            sandboxes: Arc::new(sandboxes),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
            auth: None,
            acls: None,
        }
    }

    /// Authenticates callers through `gate` and checks `access_sandboxes` against `acls`.
    pub fn with_auth(
        mut self,
        gate: Option<Arc<agora_proto::edge::authenticate::HttpGate>>,
        acls: Option<Arc<agora_proto::acl::Acls>>,
    ) -> Self {
        self.auth = gate;
        self.acls = acls;
        self
    }
}

pub(crate) fn router(state: HttpState) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/state", get(state::state))
        .route("/files/browse", get(files::browse))
        .route("/files/read", get(files::read))
        .route("/files/download", get(files::download))
        .route("/monitor/statistics", get(monitor::statistics))
        .route("/monitor/statistics.json", get(monitor::statistics))
        .route("/metrics", get(monitor::metrics))
        .layer(middleware::from_fn_with_state(state.clone(), limit_concurrency))
        // axum's own refusals (405, a malformed query) in the JSON shape too.
        .layer(middleware::from_fn(agora_proto::edge::json_errors));
    let router = match state.auth.clone() {
        // Outermost: a refusal costs no permit.
        Some(gate) => router.layer(middleware::from_fn_with_state(gate, agora_proto::edge::authenticate::authenticate)),
        None => router,
    };
    router.with_state(state)
}

/// Bounds on the agent's HTTP connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Connections held open at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// A connection on which nothing moves for this long is closed.
    pub idle_timeout: std::time::Duration,
}

/// Serves the API until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    state: HttpState,
    limits: ConnectionLimits,
    tls: Option<agora_proto::tls::ServerTls>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(state);
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let listener = limit::LimitedListener::new(listener, limits.max_connections, limits.idle_timeout);
    if let Err(error) = agora_proto::tls::serve(listener, tls.as_ref(), app, stopped).await {
        tracing::error!(%error, "the agent's HTTP server failed");
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn limit_concurrency(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    match state.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => HttpError::Busy.into_response(),
    }
}
