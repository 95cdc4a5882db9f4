//! The REST API: Chronos' `/v1/scheduler` (and its older `/scheduler`) on axum, over a
//! [`CronApi`] (the runtime's `CronHandle`).
//!
//! Handlers parse with [`crate::chronos`], send a [`Command`] for a change (answered once
//! its records are committed), and render answers inside `read` closures on the owner
//! task, straight from the core into bytes. Paths are normalised before routing (`//` and
//! a trailing `/` are tolerated). On a follower, reads are redirected to the leader and
//! changes forwarded to it ([`leader`]).

mod jobs;
mod leader;
mod system;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use jiff::Timestamp;

pub use self::leader::{Leadership, LeadershipFn};
use crate::chronos::ApiError;
use crate::core::{Command, CoreError, Cron, Reply};
use crate::model::{JobName, RunRecord};

/// Largest request body accepted: a job definition is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the HTTP layer needs from the owner of the core: reads run on the owner task with
/// its current time, commands answered once their records are committed. The runtime's
/// `CronHandle` implements it; tests use a task owning a bare core.
pub trait CronApi: Clone + Send + Sync + 'static {
    /// Runs `read` on the owner task with the current time; an error when the owner is
    /// not there (stopping, or not the leader).
    fn read<R, F>(&self, read: F) -> impl Future<Output = Result<R, ApiError>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&Cron, Timestamp) -> R + Send + 'static;

    /// Applies a change; the outer error when the owner is not there.
    fn command(&self, command: Command) -> impl Future<Output = Result<Result<Reply, CoreError>, ApiError>> + Send;

    /// The job's runs, finished (kept, read from the store) and in flight, oldest first,
    /// once every change before is committed; `None` when there is no such job.
    fn runs(&self, name: JobName) -> impl Future<Output = Result<Option<Vec<RunRecord>>, ApiError>> + Send;
}

/// What `/leader` and the redirects say about this process.
#[derive(Clone)]
pub struct ApiInfo {
    /// Who leads: this process, another one (by `host:port`), or nobody yet.
    pub leadership: LeadershipFn,
}

impl ApiInfo {
    /// A single process: always the leader, reachable at `address`.
    pub fn single(address: String) -> Self {
        Self { leadership: Arc::new(move || Leadership::Leader { address: address.clone() }) }
    }
}

impl std::fmt::Debug for ApiInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiInfo").field("leadership", &(self.leadership)()).finish()
    }
}

/// What every handler gets.
#[derive(Clone, Debug)]
pub(crate) struct Api<A> {
    pub cron: A,
    pub info: Arc<ApiInfo>,
    pub metrics: Arc<HttpMetrics>,
}

/// Requests answered, by method and status, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    // A std mutex: held only to bump or copy a counter, never across an await.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpMetrics {
    fn record(&self, method: &str, status: u16) {
        if let Ok(mut counts) = self.requests.lock() {
            *counts.entry((method.to_owned(), status)).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.requests.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The API on a router: serve it with `axum::serve(listener, router(cron, info))`.
pub fn router<A: CronApi + std::fmt::Debug>(cron: A, info: ApiInfo) -> Router {
    let api = Api { cron, info: Arc::new(info), metrics: Arc::new(HttpMetrics::default()) };
    let mut routes = Router::new()
        .route("/ping", get(system::ping))
        .route("/metrics", get(system::metrics::<A>))
        .route("/leader", get(system::leader::<A>));
    // Chronos 3 serves `/v1/scheduler`; Chronos 2 and chronos-python's
    // `scheduler_api_version=None` use `/scheduler`.
    for prefix in ["/v1/scheduler", "/scheduler"] {
        routes = routes
            .route(&format!("{prefix}/leader"), get(system::leader::<A>))
            .route(&format!("{prefix}/jobs"), get(jobs::list::<A>))
            .route(&format!("{prefix}/jobs/search"), get(jobs::search::<A>))
            .route(&format!("{prefix}/jobs/summary"), get(jobs::summary::<A>))
            .route(&format!("{prefix}/iso8601"), put(jobs::put_scheduled::<A>).post(jobs::put_scheduled::<A>))
            .route(&format!("{prefix}/dependency"), put(jobs::put_dependent::<A>).post(jobs::put_dependent::<A>))
            .route(&format!("{prefix}/job/{{name}}"), get(jobs::get::<A>).put(jobs::run::<A>).delete(jobs::delete::<A>))
            .route(&format!("{prefix}/job/{{name}}/next"), get(jobs::next::<A>))
            .route(&format!("{prefix}/job/{{name}}/history"), get(jobs::history::<A>))
            .route(&format!("{prefix}/job/stat/{{name}}"), get(jobs::stat::<A>))
            .route(&format!("{prefix}/job/success/{{name}}"), put(jobs::mark_success::<A>))
            .route(&format!("{prefix}/task/kill/{{name}}"), axum::routing::delete(jobs::kill::<A>))
            .route(&format!("{prefix}/graph/dot"), get(jobs::graph_dot::<A>))
            .route(&format!("{prefix}/graph/csv"), get(jobs::graph_csv::<A>))
            .route(&format!("{prefix}/stats/{{percentile}}"), get(jobs::stats::<A>));
    }
    let info = api.info.clone();
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(api.clone(), count_requests::<A>))
        .layer(axum::middleware::from_fn_with_state(leader::Follow::new(info), leader::follow_leader))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // axum's own refusals in the JSON shape; changes only same-origin (or
        // authenticated) and as JSON, before a follower forwards them (`agora_proto::edge`).
        .layer(axum::middleware::from_fn(agora_proto::edge::json_errors))
        .layer(axum::middleware::from_fn(agora_proto::edge::cross_site::guard_changes))
        .with_state(api);
    // Normalising the path must happen before routing, so it wraps the routes.
    let normalised = tower::ServiceExt::map_request(routes, normalise_path);
    Router::new().fallback_service(normalised)
}

async fn count_requests<A: CronApi>(State(api): State<Api<A>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    api.metrics.record(&method, response.status().as_u16());
    response
}

/// `//v1//scheduler/jobs/` → `/v1/scheduler/jobs`: clients join URLs carelessly.
fn normalise_path(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    if !path.contains("//") && (path.len() <= 1 || !path.ends_with('/')) {
        return request;
    }
    let mut clean = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    if let Some(query) = uri.query() {
        clean.push('?');
        clean.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    if let Ok(path_and_query) = clean.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the handlers
// ---------------------------------------------------------------------------------------

/// The query string's parameters, repeated ones kept.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params(
            query
                .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
                .unwrap_or_default(),
        )
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean flag, case-insensitive (`?force=TRUE`); a bare `?force` is true.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(v) => Err(ApiError::invalid_field(format!("?{name}"), format!("'{v}' is not true or false"))),
        }
    }

    /// A whole number within `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, min: usize, max: usize, default: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid_field(
                    format!("?{name}"),
                    format!("'{v}' is not a whole number between {min} and {max}"),
                )),
            },
        }
    }
}

/// The body's bytes: 413 over the limit.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })
}

/// Rendered JSON.
pub(crate) fn json_bytes(bytes: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

/// Plain text (the graph, as Chronos sends it).
pub(crate) fn text(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], body)
        .into_response()
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("cannot render the answer: {e}")))
}

/// A refusal of the core, as Chronos answers: 400 for all of them, naming the field.
impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::NotFound(name) => ApiError::job_not_found(name.as_str()),
            CoreError::Invalid { field, message } => {
                let path = if field.starts_with('/') { field.to_owned() } else { format!("/{field}") };
                ApiError::invalid_field(path, message)
            }
            CoreError::Conflict(message) => ApiError::bad_request(message),
        }
    }
}

impl<A: CronApi> Api<A> {
    /// Runs `read` on the owner task.
    pub async fn read<R, F>(&self, read: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&Cron, Timestamp) -> R + Send + 'static,
    {
        self.cron.read(read).await
    }

    /// Renders JSON on the owner task: `render` returns the bytes or an error.
    pub async fn render<F>(&self, render: F) -> Result<Response, ApiError>
    where
        F: FnOnce(&Cron, Timestamp) -> Result<Vec<u8>, ApiError> + Send + 'static,
    {
        let bytes = self.read(render).await??;
        Ok(json_bytes(bytes))
    }

    /// Applies a change; a refusal becomes its 400.
    pub async fn command(&self, command: Command) -> Result<Reply, ApiError> {
        Ok(self.cron.command(command).await??)
    }

    /// The job's runs kept and in flight, oldest first; 404 when there is no such job.
    pub async fn runs(&self, name: JobName) -> Result<Vec<RunRecord>, ApiError> {
        let missing = ApiError::job_not_found(name.as_str());
        self.cron.runs(name).await?.ok_or(missing)
    }
}
