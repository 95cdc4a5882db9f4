//! The read calls of Mesos' v1 operator API, `POST /api/v1` (JSON): GET_HEALTH,
//! GET_VERSION, GET_STATE, GET_AGENTS, GET_FRAMEWORKS and GET_TASKS, answered in Mesos'
//! shapes (`{"type": T, "get_…": {…}}`) from the read model `/state` reads too, and
//! SUBSCRIBE (`operator_stream.rs`); the other calls in `operator_admin`. See
//! `docs/http-api.md`.

use agora_proto::model::{Attribute, Resources, TaskState, TaskStatusSource};
use agora_proto::pb;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{Value, json};

use std::sync::Arc;

use super::convert;
use super::operator_admin::{self, AdminContext};
use crate::core::{AgentView, FrameworkView, StatusEntry, TaskView};
use crate::runtime::auth::Caller;
use crate::runtime::http::{ApiError, VERSION, json_response, render_blocking, render_turn};
use crate::runtime::owner::Handle;
use crate::runtime::read_model::{FrameworkCopy, ReadModel, StateCopy};

/// Largest operator call accepted: room for a maintenance schedule of thousands of
/// machines; the read calls are a few bytes.
const MAX_OPERATOR_CALL_BYTES: usize = 1024 * 1024;

/// The calls this endpoint answers.
const CALLS: [&str; 7] =
    ["GET_HEALTH", "GET_VERSION", "GET_STATE", "GET_AGENTS", "GET_FRAMEWORKS", "GET_TASKS", "SUBSCRIBE"];

/// What the operator API's handlers reach: the owner (for writes), the read model
/// (for reads, which never ask the owner) and what the calls of `operator_admin` read of
/// the master's settings.
#[derive(Clone, Debug)]
pub struct OperatorApi {
    pub owner: Handle,
    pub read: ReadModel,
    pub admin: Arc<AdminContext>,
}

pub fn router(owner: Handle, read: ReadModel, admin: Arc<AdminContext>) -> Router {
    Router::new()
        .route("/api/v1", post(operator))
        .route("/master/api/v1", post(operator))
        .merge(operator_admin::legacy_routes())
        .with_state(OperatorApi { owner, read, admin })
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message, json!([])).into_response()
}

#[derive(serde::Deserialize)]
struct Call {
    r#type: String,
}

async fn operator(
    State(api): State<OperatorApi>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.split(';').next().unwrap_or_default().trim() != "application/json" {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {content_type:?}: Agora's operator API reads and answers application/json"),
        );
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    if !accept
        .split(',')
        .any(|a| matches!(a.split(';').next().unwrap_or_default().trim(), "application/json" | "*/*" | "application/*"))
    {
        return refusal(
            StatusCode::NOT_ACCEPTABLE,
            format!("Accept {accept:?}: the operator API answers application/json"),
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_OPERATOR_CALL_BYTES).await else {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the call is larger than {MAX_OPERATOR_CALL_BYTES} bytes"),
        );
    };
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let call: Call = match serde_path_to_error::deserialize(deserializer) {
        Ok(call) => call,
        Err(e) => {
            let path = e.path().to_string();
            let reason = e.inner().to_string();
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("malformed JSON call: {path}: {reason}"),
                json!([{ "field": path, "reason": reason }]),
            )
            .into_response();
        }
    };
    let kind = call.r#type.as_str();
    match kind {
        "GET_HEALTH" => return Json(json!({"type": kind, "get_health": {"healthy": true}})).into_response(),
        "GET_VERSION" => {
            return Json(json!({"type": kind, "get_version": {"version_info": {"version": VERSION}}})).into_response();
        }
        "GET_STATE" | "GET_AGENTS" | "GET_FRAMEWORKS" | "GET_TASKS" => {}
        "SUBSCRIBE" if !caller.views_everything() => {
            return refusal(
                StatusCode::FORBIDDEN,
                "SUBSCRIBE streams every framework and task: the view_frameworks and view_tasks ACLs must let the \
                 caller see them all",
            );
        }
        "SUBSCRIBE" => return super::operator_stream::subscribe(&api.read).await,
        admin if operator_admin::CALLS.contains(&admin) => {
            return operator_admin::answer(&api.owner, &api.admin, &caller, admin, &body).await;
        }
        other => {
            let calls: Vec<&str> = CALLS.iter().chain(&operator_admin::CALLS).copied().collect();
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("type: {other:?} is not one of the operator calls Agora answers: {}", calls.join(", ")),
                json!([{ "field": "type", "reason": format!("one of {}", calls.join(", ")) }]),
            )
            .into_response();
        }
    }
    let turn = match render_turn(&api.read).await {
        Ok(turn) => turn,
        Err(busy) => return busy.into_response(),
    };
    api.read.caught_up().await;
    let report = caller.visible_state(api.read.state());
    let kind = kind.to_owned();
    let rendered = render_blocking(turn, move || {
        let answer = match kind.as_str() {
            "GET_AGENTS" => json!({"type": kind, "get_agents": agents(&report)}),
            "GET_FRAMEWORKS" => json!({"type": kind, "get_frameworks": frameworks(&report)}),
            "GET_TASKS" => json!({"type": kind, "get_tasks": tasks(&report)}),
            _ => json!({"type": kind, "get_state": get_state(&report)}),
        };
        serde_json::to_vec(&answer)
    })
    .await;
    match rendered {
        Ok(Ok(body)) => json_response(body),
        Ok(Err(e)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => e.into_response(),
    }
}

/// Mesos' `GetState`: the other three answers together.
pub fn get_state(report: &StateCopy) -> Value {
    json!({
        "get_tasks": tasks(report),
        "get_executors": {},
        "get_frameworks": frameworks(report),
        "get_agents": agents(report),
    })
}

fn resources(resources: &Resources) -> Value {
    json!(convert::resources_out(Some(pb::Resources::from(resources)), None))
}

fn time(ms: u64) -> Value {
    json!({"nanoseconds": ms.saturating_mul(1_000_000)})
}

fn attributes(attributes: &[Attribute]) -> Value {
    attributes.iter().map(|a| json!({"name": a.name, "type": "TEXT", "text": {"value": a.value}})).collect()
}

fn agents(report: &StateCopy) -> Value {
    let agents: Vec<Value> = report.agents.iter().map(|a| agent(a)).collect();
    json!({"agents": agents, "recovered_agents": []})
}

pub fn agent(agent: &AgentView) -> Value {
    let info = &agent.info;
    let mut allocated = agent.used.clone();
    allocated.add(&agent.offered);
    let mut value = json!({
        "agent_info": {
            "hostname": info.hostname,
            "port": info.port,
            "id": {"value": agent.id.to_string()},
            "resources": resources(&info.resources),
            "attributes": attributes(&info.attributes),
        },
        "active": agent.active && !agent.deactivated,
        "deactivated": agent.deactivated,
        "pid": format!("slave(1)@{}:{}", info.hostname, info.port),
        "version": VERSION,
        "registered_time": time(agent.registered_at_ms),
        "total_resources": resources(&info.resources),
        "allocated_resources": resources(&allocated),
        "offered_resources": resources(&agent.offered),
    });
    if let (Some(drain), Some(object)) = (&agent.drain, value.as_object_mut()) {
        object.insert("drain_info".to_owned(), operator_admin::drain_info(drain));
    }
    value
}

fn frameworks(report: &StateCopy) -> Value {
    let live: Vec<Value> = report.frameworks.iter().map(framework).collect();
    let completed: Vec<Value> = report.completed_frameworks.iter().map(|f| framework(f)).collect();
    json!({"frameworks": live, "completed_frameworks": completed})
}

/// Mesos' `FrameworkInfo` of a framework.
pub fn framework_info(framework: &FrameworkView) -> Value {
    let info = &framework.info;
    let roles: Vec<String> = info.roles.iter().map(ToString::to_string).collect();
    json!({
        "user": info.user,
        "name": info.name,
        "id": {"value": framework.id.to_string()},
        "failover_timeout": info.failover_timeout_ms as f64 / 1000.0,
        "hostname": info.hostname,
        "principal": info.principal,
        "roles": roles,
        "capabilities": [{"type": "MULTI_ROLE"}],
    })
}

pub fn framework(copy: &FrameworkCopy) -> Value {
    let framework = &*copy.view;
    let mut allocated = copy.used.clone();
    allocated.add(&framework.offered);
    let mut value = json!({
        "framework_info": framework_info(framework),
        "active": framework.active,
        "connected": framework.active,
        "recovered": false,
        "registered_time": time(framework.registered_at_ms),
        "allocated_resources": resources(&allocated),
        "offered_resources": resources(&framework.offered),
    });
    if let (Some(ms), Some(object)) = (framework.unregistered_at_ms, value.as_object_mut()) {
        object.insert("unregistered_time".to_owned(), time(ms));
    }
    value
}

fn tasks(report: &StateCopy) -> Value {
    let live: Vec<Value> = report.live_tasks().map(|t| task(t)).collect();
    let completed: Vec<Value> = report.completed_tasks().map(|t| task(t)).collect();
    json!({"pending_tasks": [], "tasks": live, "unreachable_tasks": [], "completed_tasks": completed, "orphan_tasks": []})
}

pub fn task(task: &TaskView) -> Value {
    let statuses: Vec<Value> = task.statuses.iter().map(|entry| status(task, entry)).collect();
    let state = state_name(task.state);
    json!({
        "name": task.info.name,
        "task_id": {"value": task.info.task_id.to_string()},
        "framework_id": {"value": task.framework_id.to_string()},
        "agent_id": {"value": task.info.agent_id.to_string()},
        "state": state,
        "resources": resources(&task.info.resources),
        "statuses": statuses,
    })
}

/// Mesos' name of a task state (`TASK_RUNNING`).
pub fn state_name(state: TaskState) -> &'static str {
    convert::status(pb::TaskStatus { state: pb::TaskState::from(state) as i32, ..Default::default() })
        .state
        .and_then(super::types::task_state::name)
        .unwrap_or("TASK_UNKNOWN")
}

/// Mesos' `TaskStatus` of one status of a task's history.
pub fn status(task: &TaskView, entry: &StatusEntry) -> Value {
    json!(convert::status(status_pb(task, entry)))
}

fn status_pb(task: &TaskView, entry: &StatusEntry) -> pb::TaskStatus {
    let source = match entry.source {
        TaskStatusSource::Master => pb::TaskStatusSource::SourceMaster,
        TaskStatusSource::Agent => pb::TaskStatusSource::SourceAgent,
        TaskStatusSource::Executor => pb::TaskStatusSource::SourceExecutor,
    };
    pb::TaskStatus {
        task_id: task.info.task_id.to_string(),
        agent_id: task.info.agent_id.to_string(),
        state: pb::TaskState::from(entry.state) as i32,
        reason: pb::TaskStatusReason::from(entry.reason) as i32,
        source: source as i32,
        message: entry.message.to_string(),
        timestamp_ms: entry.timestamp_ms,
        uuid: String::new(),
        exit_code: entry.exit_code,
        signal: entry.signal,
        healthy: entry.healthy,
        ready: entry.ready,
    }
}
