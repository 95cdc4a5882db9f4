//! The operator HTTP API: `/health`, `/version`, `/state` (in the shape of Mesos'
//! `/master/state`) and `/metrics` (Prometheus text). These DTOs are the HTTP layer's own;
//! the core's types never reach serde.

use agora_proto::model::{Attribute, Resources, Role};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::metrics;
use super::owner::Handle;
use super::read_model::{FrameworkCopy, ReadModel, StateCopy};
use crate::core::{AgentView, StatusEntry, TaskView};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router(handle: Handle, read_model: ReadModel) -> axum::Router {
    let reads = axum::Router::new()
        .route("/state", get(state))
        .route("/state.json", get(state))
        .route("/master/state", get(state))
        .merge(super::legacy::router())
        .with_state(read_model);
    axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/master/version", get(version))
        .route("/master/health", get(health))
        .route("/metrics", get(prometheus))
        .merge(super::operator::router())
        .with_state(handle)
        .merge(reads)
}

/// An error in the one shape every Agora HTTP API uses: `{"message": …, "details": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    details: Value,
    /// Seconds to wait before asking again (`Retry-After`), for 429 and 503.
    retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>, details: Value) -> Self {
        Self { status, message: message.into(), details, retry_after_s: None }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(json!({ "message": self.message, "details": self.details }))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// Answers every path no route matches, HTTP and gRPC alike (a gRPC client reads the 404
/// as UNIMPLEMENTED).
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {}", uri.path()), json!([]))
}

async fn health() -> &'static str {
    "OK"
}

/// pymesos reads `version` as dot-separated integers (it decides from it which Mesos
/// features to use), so the crate version must stay plain `MAJOR.MINOR.PATCH`.
/// `version` is what Mesos tools parse (numbers and dots); `agora_version` says the
/// same for readers that want to know it is Agora's.
async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION, "agora_version": VERSION }))
}

/// Longest a large answer waits for its turn to render before the caller is told to
/// come back.
const RENDER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A turn to render a large answer, taken before the state is copied: at most
/// `--max-concurrent-renders` copies and renderings are in memory at once, however many
/// callers ask (each `/state` of a large cluster is hundreds of MiB while written).
#[derive(Debug)]
pub struct RenderTurn {
    /// Held, never read: dropping it gives the turn back.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

pub async fn render_turn(read_model: &ReadModel) -> Result<RenderTurn, ApiError> {
    render_turn_within(read_model, RENDER_WAIT).await
}

async fn render_turn_within(read_model: &ReadModel, wait: std::time::Duration) -> Result<RenderTurn, ApiError> {
    match tokio::time::timeout(wait, read_model.render_permits().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(RenderTurn { _permit: permit }),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many large answers are being rendered at once; retry shortly",
            json!([]),
        )
        .retry_after(1)),
    }
}

/// Renders a large answer on a blocking thread, so the runtime's workers (and the owner
/// among them) keep running while a 500,000-task `/state` is written; the turn is given
/// back once it is written.
pub async fn render_blocking<T: Send + 'static>(
    turn: RenderTurn,
    render: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        render()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering failed: {e}"), json!([])))
}

/// JSON bytes as a response.
pub fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn state(
    State(read_model): State<ReadModel>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let turn = render_turn(&read_model).await?;
    read_model.caught_up().await;
    let copy = caller.visible_state(read_model.state());
    let body = render_blocking(turn, move || serde_json::to_vec(&StateDto::from(&copy))).await?;
    let body = body.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), json!([])))?;
    Ok(json_response(body))
}

async fn prometheus(State(handle): State<Handle>) -> Result<Response, ApiError> {
    let report = handle
        .ask(|reply| super::owner::Request::Metrics { reply })
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), json!([])))?;
    let text = metrics::render(&report);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub(super) fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Resources as Mesos prints them: `{"cpus": 4.0, "mem": 8192.0, "disk": 0.0, "ports": "[31000-32000]"}`.
pub fn resources_json(resources: &Resources) -> Value {
    let scalars = resources.scalars();
    let ports = resources.ports();
    let ranges: Vec<String> = ports.ranges().iter().map(|(b, e)| format!("{b}-{e}")).collect();
    let mut map = Map::new();
    map.insert("cpus".into(), json!(scalars.cpus_milli as f64 / 1000.0));
    map.insert("mem".into(), json!(scalars.mem_mib as f64));
    map.insert("disk".into(), json!(scalars.disk_mib as f64));
    if !ranges.is_empty() {
        map.insert("ports".into(), json!(format!("[{}]", ranges.join(", "))));
    }
    Value::Object(map)
}

pub(super) fn reserved_json(resources: &Resources) -> Value {
    let mut map = Map::new();
    for (role, pool) in resources.pools().filter(|(role, _)| !role.is_unreserved()) {
        let mut one = Resources::new();
        one.add_pool(role.clone(), pool.clone());
        map.insert(role.to_string(), resources_json(&one));
    }
    Value::Object(map)
}

pub(super) fn unreserved(resources: &Resources) -> Resources {
    let mut out = Resources::new();
    if let Some(pool) = resources.pool(&Role::unreserved()) {
        out.add_pool(Role::unreserved(), pool.clone());
    }
    out
}

pub(super) fn attributes_json(attributes: &[Attribute]) -> Value {
    Value::Object(attributes.iter().map(|a| (a.name.clone(), json!(a.value))).collect())
}

#[derive(Serialize)]
pub struct StateDto {
    version: &'static str,
    id: String,
    leader: String,
    start_time: f64,
    activated_slaves: usize,
    deactivated_slaves: usize,
    unreachable_slaves: usize,
    outstanding_offers: usize,
    slaves: Vec<AgentDto>,
    frameworks: Vec<FrameworkDto>,
    completed_frameworks: Vec<FrameworkDto>,
}

impl From<&StateCopy> for StateDto {
    fn from(s: &StateCopy) -> Self {
        let active = s.agents.iter().filter(|a| a.active && !a.deactivated).count();
        StateDto {
            version: VERSION,
            id: s.facts.master_id.clone(),
            leader: s.facts.advertise.clone(),
            start_time: seconds(s.facts.start_time_ms),
            activated_slaves: active,
            deactivated_slaves: s.agents.len() - active,
            unreachable_slaves: s.agents.iter().filter(|a| !a.reachable).count(),
            outstanding_offers: s.outstanding_offers,
            slaves: s.agents.iter().map(|a| AgentDto::from(&**a)).collect(),
            frameworks: s.frameworks.iter().map(FrameworkDto::from).collect(),
            completed_frameworks: s.completed_frameworks.iter().map(|f| FrameworkDto::from(&**f)).collect(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct AgentDto {
    id: String,
    hostname: String,
    port: u16,
    pid: String,
    resources: Value,
    used_resources: Value,
    offered_resources: Value,
    unreserved_resources: Value,
    reserved_resources: Value,
    attributes: Value,
    /// Connected, reachable and not deactivated: offered (Mesos' meaning).
    active: bool,
    /// Taken out of offers by the operator (DEACTIVATE_AGENT or a drain).
    deactivated: bool,
    /// Mesos' `DrainInfo` while the agent drains or once it is drained.
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_info: Option<Value>,
    reachable: bool,
    registered_time: f64,
}

impl From<&AgentView> for AgentDto {
    fn from(agent: &AgentView) -> Self {
        AgentDto {
            id: agent.id.to_string(),
            hostname: agent.info.hostname.clone(),
            port: agent.info.port,
            pid: format!("agent@{}:{}", agent.info.hostname, agent.info.port),
            resources: resources_json(&agent.info.resources),
            used_resources: resources_json(&agent.used),
            offered_resources: resources_json(&agent.offered),
            unreserved_resources: resources_json(&unreserved(&agent.info.resources)),
            reserved_resources: reserved_json(&agent.info.resources),
            attributes: attributes_json(&agent.info.attributes),
            active: agent.active && !agent.deactivated,
            deactivated: agent.deactivated,
            drain_info: agent.drain.as_ref().map(super::mesos::operator_admin::drain_info),
            reachable: agent.reachable,
            registered_time: seconds(agent.registered_at_ms),
        }
    }
}

#[derive(Serialize)]
pub(super) struct FrameworkDto {
    id: String,
    name: String,
    user: String,
    hostname: String,
    principal: String,
    role: String,
    roles: Vec<String>,
    active: bool,
    connected: bool,
    failover_timeout: f64,
    registered_time: f64,
    unregistered_time: f64,
    resources: Value,
    used_resources: Value,
    offered_resources: Value,
    tasks: Vec<TaskDto>,
    completed_tasks: Vec<TaskDto>,
}

impl From<&FrameworkCopy> for FrameworkDto {
    fn from(copy: &FrameworkCopy) -> Self {
        let framework = &*copy.view;
        let info = &framework.info;
        let mut total = copy.used.clone();
        total.add(&framework.offered);
        FrameworkDto {
            id: framework.id.to_string(),
            name: info.name.clone(),
            user: info.user.clone(),
            hostname: info.hostname.clone(),
            principal: info.principal.clone(),
            role: info.roles.first().map(ToString::to_string).unwrap_or_else(|| "*".into()),
            roles: info.roles.iter().map(ToString::to_string).collect(),
            active: framework.active,
            connected: framework.active,
            failover_timeout: seconds(info.failover_timeout_ms),
            registered_time: seconds(framework.registered_at_ms),
            unregistered_time: framework.unregistered_at_ms.map(seconds).unwrap_or(0.0),
            resources: resources_json(&total),
            used_resources: resources_json(&copy.used),
            offered_resources: resources_json(&framework.offered),
            tasks: copy.tasks.iter().map(|t| TaskDto::from(&**t)).collect(),
            completed_tasks: copy.completed_tasks.iter().map(|t| TaskDto::from(&**t)).collect(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct TaskDto {
    id: String,
    name: String,
    framework_id: String,
    executor_id: String,
    slave_id: String,
    state: &'static str,
    resources: Value,
    statuses: Vec<StatusDto>,
}

impl From<&TaskView> for TaskDto {
    fn from(task: &TaskView) -> Self {
        TaskDto {
            id: task.info.task_id.to_string(),
            name: task.info.name.clone(),
            framework_id: task.framework_id.to_string(),
            executor_id: String::new(),
            slave_id: task.info.agent_id.to_string(),
            state: task.state.as_str(),
            resources: resources_json(&task.info.resources),
            statuses: task.statuses.iter().map(StatusDto::from).collect(),
        }
    }
}

#[derive(Serialize)]
struct StatusDto {
    state: &'static str,
    timestamp: f64,
    reason: &'static str,
    source: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// Mesos' `healthy`: present once the task's health check has a result.
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
}

impl From<&StatusEntry> for StatusDto {
    fn from(status: &StatusEntry) -> Self {
        StatusDto {
            state: status.state.as_str(),
            timestamp: seconds(status.timestamp_ms),
            reason: status.reason.as_str(),
            source: status.source.as_str(),
            message: status.message.to_string(),
            exit_code: status.exit_code,
            healthy: status.healthy,
            ready: status.ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::read_model::MasterFacts;

    fn read_model(max_concurrent_renders: usize) -> ReadModel {
        ReadModel::new(MasterFacts {
            master_id: "m".to_owned(),
            advertise: "m:5050".to_owned(),
            start_time_ms: 0,
            heartbeat_interval_ms: 15_000,
            max_completed_tasks_per_framework: 10,
            max_completed_frameworks: 10,
            flags: Vec::new(),
            max_concurrent_renders,
        })
    }

    #[tokio::test]
    async fn renders_beyond_the_bound_wait_their_turn_then_are_told_to_retry() {
        let read = read_model(1);
        let first = render_turn(&read).await.expect("a turn");
        let short = std::time::Duration::from_millis(20);
        let refused = render_turn_within(&read, short).await.expect_err("no turn within the wait").into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        // A turn given back is taken by the next reader.
        let waiting = tokio::spawn({
            let read = read.clone();
            async move { render_turn(&read).await.is_ok() }
        });
        let done = render_blocking(first, || 42).await.expect("rendered");
        assert_eq!(done, 42);
        assert!(waiting.await.expect("joined"));
    }
}
