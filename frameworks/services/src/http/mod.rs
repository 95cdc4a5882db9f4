//! The REST API: Marathon's `/v2` on axum, over [`ServicesHandle`].
//!
//! Handlers parse the request with [`crate::marathon`], send a [`crate::core::Command`] for
//! a change, and render answers inside `read` closures on the owner task, straight from
//! the planner into bytes (no copy of the state per request). Paths are normalised before
//! routing (`//` and a trailing `/` are tolerated), app ids with slashes are routed with a
//! wildcard whose known suffixes (`/tasks`, `/restart`, `/versions`) are split off.

mod apps;
mod deployments;
mod events;
mod groups;
mod system;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;
use serde_json::Value;

use crate::core::{Command, PlanError, Planner, Reply};
use crate::marathon::ApiError;
use crate::model::{DeploymentId, Timestamp};
use crate::runtime::{CommittedView, ServicesHandle};

/// Largest request body accepted (a group of many apps fits; one app is far smaller).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How often a change prepared from what it read is prepared again after losing a race.
pub const MAX_PREPARE_ATTEMPTS: u32 = 16;

/// Who answers `/v2/leader` and `/v2/info`: the runtime provides these.
pub type LeaderFn = Arc<dyn Fn() -> Option<String> + Send + Sync>;
/// Makes this process give up leadership (`DELETE /v2/leader`); `None` when not in HA.
pub type AbdicateFn = Arc<dyn Fn() + Send + Sync>;

/// What `/v2/info` and `/v2/leader` say about this process.
#[derive(Clone)]
pub struct ApiInfo {
    /// The framework's name (`--name`, `agora-services` by default).
    pub framework_name: String,
    /// Agora's version.
    pub version: String,
    /// This process as `host:port`, as other processes reach its API.
    pub address: String,
    pub http_port: u16,
    /// The master(s) or etcd this process follows, as given on its command line.
    pub master: String,
    /// The framework's role(s) and user.
    pub role: String,
    pub user: String,
    /// The leading services process as `host:port`, if any is known.
    pub leader: LeaderFn,
    pub abdicate: Option<AbdicateFn>,
    /// Whether several processes elect a leader (`--etcd`).
    pub ha: bool,
    /// Whether `/v2/eventSubscriptions` is served (`--event-subscriber http_callback`).
    pub http_callbacks: bool,
}

impl std::fmt::Debug for ApiInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiInfo")
            .field("framework_name", &self.framework_name)
            .field("address", &self.address)
            .field("master", &self.master)
            .field("ha", &self.ha)
            .finish_non_exhaustive()
    }
}

/// What every handler gets.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    pub handle: ServicesHandle,
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

/// The API on a router: serve it with `axum::serve(listener, router(handle, info))`.
pub fn router(handle: ServicesHandle, info: ApiInfo) -> Router {
    let api = Api { handle, info: Arc::new(info), metrics: Arc::new(HttpMetrics::default()) };
    let routes = Router::new()
        .route("/ping", get(system::ping))
        .route("/metrics", get(system::metrics))
        .route("/v2/info", get(system::info))
        .route("/v2/leader", get(system::leader).delete(system::abdicate))
        .route("/v2/apps", get(apps::list).post(apps::create).put(apps::put_many).patch(apps::patch_many))
        .route(
            "/v2/apps/{*rest}",
            get(apps::get_under)
                .put(apps::put_under)
                .patch(apps::patch_under)
                .delete(apps::delete_under)
                .post(apps::post_under),
        )
        .route("/v2/tasks", get(apps::all_tasks))
        .route("/v2/tasks/delete", post(apps::delete_tasks))
        .route("/v2/deployments", get(deployments::list))
        .route("/v2/deployments/{id}", delete(deployments::cancel))
        .route(
            "/v2/groups",
            get(groups::get_root).post(groups::create).put(groups::put_root).delete(groups::delete_root),
        )
        .route(
            "/v2/groups/{*rest}",
            get(groups::get_under).post(groups::create_under).put(groups::put_under).delete(groups::delete_under),
        )
        .route("/v2/queue", get(deployments::queue))
        .route("/v2/queue/{*rest}", delete(deployments::reset_delay))
        .route("/v2/events", get(events::stream))
        .route("/v2/eventSubscriptions", get(events::subscriptions).post(events::subscribe).delete(events::unsubscribe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(api.clone(), count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // axum's own refusals in the JSON shape; changes only same-origin (or
        // authenticated) and as JSON (`agora_proto::edge`).
        .layer(axum::middleware::from_fn(agora_proto::edge::json_errors))
        .layer(axum::middleware::from_fn(agora_proto::edge::cross_site::guard_changes))
        .with_state(api);
    // Normalising the path must happen before routing, so it wraps the routes.
    let normalised = tower::ServiceExt::map_request(routes, normalise_path);
    Router::new().fallback_service(normalised)
}

async fn count_requests(State(api): State<Api>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    api.metrics.record(&method, response.status().as_u16());
    response
}

/// `//v2//apps/` → `/v2/apps`: Marathon's clients sometimes join URLs carelessly.
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
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the handlers
// ---------------------------------------------------------------------------------------

/// The query string's parameters, repeated ones kept (`embed=a&embed=b`).
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

    /// Every value of `name`, comma-separated values split (`embed=a,b`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + Clone + 'a {
        self.0.iter().filter(move |(k, _)| k == name).flat_map(|(_, v)| v.split(',')).map(str::trim)
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
            Some(v) => Err(ApiError::bad_request(format!("query parameter {name}={v:?} is not true or false"))),
        }
    }
}

/// The body as JSON: 413 over the limit, 400 when it is not JSON.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::malformed_json(&e))
}

/// A JSON body written in pieces, sent as they are (the kept ones shared, not copied).
pub(crate) fn json_pieces(pieces: crate::marathon::render::Pieces) -> Response {
    let (pieces, len) = pieces.finish();
    let body =
        axum::body::Body::from_stream(futures::stream::iter(pieces.into_iter().map(Ok::<_, std::convert::Infallible>)));
    let mut response =
        (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// Rendered JSON with its status.
pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    to_json_sized(value, 4_096)
}

/// About how many bytes a task takes in a listing, to size the buffer once.
pub(crate) const TASK_BYTES: usize = 512;

/// Renders into a buffer of about `capacity` bytes, so that a listing of tens of megabytes
/// is not copied over and over as it grows.
pub(crate) fn to_json_sized<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(capacity.min(MAX_RENDER_CAPACITY));
    serde_json::to_writer(&mut out, value).map_err(render_error)?;
    Ok(out)
}

pub(crate) fn render_error(e: serde_json::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render the answer: {e}"))
}

/// The most a buffer is sized for up front (it still grows past it if needed).
const MAX_RENDER_CAPACITY: usize = 256 * 1024 * 1024;

impl Api {
    /// Runs `read` on the owner task.
    pub async fn read<R, F>(&self, read: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&Planner, u64) -> R + Send + 'static,
    {
        Ok(self.handle.read(read).await?)
    }

    /// Renders on the owner task: `render` returns the bytes or an error.
    pub async fn render<F>(&self, render: F) -> Result<Response, ApiError>
    where
        F: FnOnce(&Planner, u64) -> Result<Vec<u8>, ApiError> + Send + 'static,
    {
        let bytes = self.read(render).await??;
        Ok(json_bytes(StatusCode::OK, bytes))
    }

    /// Renders from the committed view, off the owner task: what a read on the owner
    /// would show, without waiting behind its batches, commits and other reads. A `big`
    /// render (a listing of every task) runs on a blocking thread: tens of milliseconds of
    /// CPU would otherwise hold up an async worker and whatever waits on it.
    pub async fn read_view<R, F>(&self, big: bool, read: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&CommittedView) -> R + Send + 'static,
    {
        let view = self.handle.view()?;
        if !big {
            return Ok(read(&view));
        }
        tokio::task::spawn_blocking(move || read(&view))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the answer failed: {e}")))
    }

    /// [`Api::read_view`] of a JSON answer.
    pub async fn render_view<F>(&self, big: bool, render: F) -> Result<Response, ApiError>
    where
        F: FnOnce(&CommittedView) -> Result<Vec<u8>, ApiError> + Send + 'static,
    {
        let bytes = self.read_view(big, render).await??;
        Ok(json_bytes(StatusCode::OK, bytes))
    }

    /// Applies a change; a refusal becomes its 404/409/422.
    pub async fn command(&self, command: Command) -> Result<Reply, ApiError> {
        Ok(self.handle.command(command).await??)
    }

    /// A change prepared from what it read ([`Expected::Version`]): prepared and sent
    /// again while another change wins the race in between, at most
    /// [`MAX_PREPARE_ATTEMPTS`] times. Answers the reply with what the last preparation
    /// gave beside its command.
    pub async fn command_prepared<T, F, Fut>(&self, mut prepare: F) -> Result<(Reply, T), ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(Command, T), ApiError>>,
    {
        let mut attempt = 1;
        loop {
            let (command, prepared) = prepare().await?;
            match self.handle.command(command).await? {
                Err(PlanError::Stale(_)) if attempt < MAX_PREPARE_ATTEMPTS => attempt += 1,
                answer => return Ok((answer?, prepared)),
            }
        }
    }
}

/// Marathon's answer to a change: `{"deploymentId": ..., "version": ...}`, with the
/// deployment's id also in the `Marathon-Deployment-Id` header.
pub(crate) fn deployment_result(status: StatusCode, reply: &Reply) -> Response {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Result<'a> {
        deployment_id: Option<&'a str>,
        version: String,
    }
    let (id, version): (Option<&DeploymentId>, Timestamp) = match reply {
        Reply::Deployment { id, version } => (Some(id), *version),
        Reply::Done { version } => (None, *version),
    };
    let body = Result { deployment_id: id.map(|d| d.0.as_str()), version: version.to_string() };
    let mut response = match to_json(&body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => e.into_response(),
    };
    if let Some(id) = id
        && let Ok(value) = HeaderValue::from_str(&id.0)
    {
        response.headers_mut().insert("Marathon-Deployment-Id", value);
    }
    response
}

/// Whether the client asked for `text/plain` rather than JSON.
pub(crate) fn wants_text(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("text/plain") && !accept.contains("application/json")
}

/// Milliseconds since the epoch, for the API's own events.
pub(crate) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
