//! The operator API's calls beyond the state reads (`POST /api/v1`, JSON, Mesos' shapes):
//! the master's settings and figures (GET_FLAGS, GET_METRICS, GET_LOGGING_LEVEL,
//! GET_MASTER, GET_EXECUTORS), sharing (GET_ROLES, GET_WEIGHTS, UPDATE_WEIGHTS,
//! GET_QUOTA, UPDATE_QUOTA, RESERVE_RESOURCES, UNRESERVE_RESOURCES), agents and
//! frameworks (DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT, MARK_AGENT_GONE, TEARDOWN,
//! and Agora's KILL_TASK, which Mesos' operator API lacks) and maintenance (GET_MAINTENANCE_STATUS, GET_MAINTENANCE_SCHEDULE,
//! UPDATE_MAINTENANCE_SCHEDULE, START_MAINTENANCE, STOP_MAINTENANCE).
//!
//! Each call is read into serde DTOs in Mesos' names, checked here (a 400 names the field
//! by its path in the call, `drain_agent.agent_id.value`), and run on the owner task with the
//! core's operator methods, which check the rest before they change anything; the answer
//! leaves once the change is durable. See `docs/http-api.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::acl::Action;
use agora_proto::model::{AgentId, FrameworkId, Resources, Role, Scalars, TaskId, cpus_to_milli};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::operator::OperatorApi;
use super::{convert, types as m};
use crate::core::{
    DrainInfo, DrainState, InverseOfferAnswer, InverseOfferStatus, MachineId, Maintenance, Master, OperatorError,
    Quota, Unavailability, Window, machine_id,
};
use crate::runtime::auth::Caller;
use crate::runtime::http::ApiError;
use crate::runtime::operator::on_core;
use crate::runtime::owner::{Handle, Request};
use crate::runtime::{MasterOptions, clock::Clock};

/// The calls this module answers.
pub const CALLS: [&str; 23] = [
    "GET_FLAGS",
    "GET_METRICS",
    "GET_LOGGING_LEVEL",
    "GET_MASTER",
    "GET_EXECUTORS",
    "GET_ROLES",
    "GET_WEIGHTS",
    "UPDATE_WEIGHTS",
    "GET_QUOTA",
    "UPDATE_QUOTA",
    "RESERVE_RESOURCES",
    "UNRESERVE_RESOURCES",
    "DRAIN_AGENT",
    "DEACTIVATE_AGENT",
    "REACTIVATE_AGENT",
    "MARK_AGENT_GONE",
    "TEARDOWN",
    "KILL_TASK",
    "GET_MAINTENANCE_STATUS",
    "GET_MAINTENANCE_SCHEDULE",
    "UPDATE_MAINTENANCE_SCHEDULE",
    "START_MAINTENANCE",
    "STOP_MAINTENANCE",
];

/// Most entries one UPDATE_WEIGHTS or UPDATE_QUOTA may carry.
const MAX_ENTRIES: usize = 1_000;

/// What the calls read of the master besides its core: its flags and who it is.
#[derive(Debug)]
pub struct AdminContext {
    pub flags: Vec<(String, String)>,
    pub master: convert::MasterContext,
}

impl AdminContext {
    pub fn new(options: &MasterOptions, master: convert::MasterContext) -> Arc<Self> {
        Arc::new(Self { flags: flags(options), master })
    }
}

/// The master's settings as flags, by the names `agora master` takes them.
pub fn flags(options: &MasterOptions) -> Vec<(String, String)> {
    let core = &options.core;
    // As the flags take them (`75s`, `500ms`).
    let duration = |ms: u64| if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") };
    let mut flags = vec![
        ("advertise".to_owned(), options.advertise.clone()),
        ("agent_heartbeat_interval".to_owned(), duration(core.agent_heartbeat_interval_ms)),
        ("agent_timeout".to_owned(), duration(core.agent_timeout_ms)),
        ("agent_reregister_timeout".to_owned(), duration(core.agent_reregister_timeout_ms)),
        ("agent_removals_per_minute".to_owned(), core.agent_removals_per_minute.to_string()),
        ("framework_heartbeat_interval".to_owned(), duration(core.framework_heartbeat_interval_ms)),
        (
            "max_offers_per_framework".to_owned(),
            core.max_offers_per_framework.map_or("none".to_owned(), |n| n.to_string()),
        ),
        ("offer_timeout".to_owned(), core.offer_timeout_ms.map_or("none".to_owned(), duration)),
        ("seed".to_owned(), options.seed.to_string()),
    ];
    match (&options.etcd, &options.registry_path) {
        (Some(etcd), _) => {
            flags.push(("etcd".to_owned(), etcd.endpoints.join(",")));
            flags.push(("etcd_lease_ttl".to_owned(), format!("{}s", etcd.lease_ttl_s)));
            flags.push(("registry".to_owned(), "etcd".to_owned()));
        }
        (None, Some(path)) => flags.push(("registry".to_owned(), path.display().to_string())),
        (None, None) => flags.push(("registry".to_owned(), "in_memory".to_owned())),
    }
    flags.sort();
    flags
}

#[derive(Debug, Default, Deserialize)]
struct AdminCall {
    #[serde(default)]
    update_weights: Option<UpdateWeights>,
    #[serde(default)]
    reserve_resources: Option<Reservation>,
    #[serde(default)]
    unreserve_resources: Option<Reservation>,
    #[serde(default)]
    update_quota: Option<UpdateQuota>,
    #[serde(default)]
    drain_agent: Option<DrainAgent>,
    #[serde(default)]
    deactivate_agent: Option<AgentCall>,
    #[serde(default)]
    reactivate_agent: Option<AgentCall>,
    #[serde(default)]
    mark_agent_gone: Option<AgentCall>,
    #[serde(default)]
    teardown: Option<Teardown>,
    #[serde(default)]
    kill_task: Option<KillTask>,
    #[serde(default)]
    update_maintenance_schedule: Option<UpdateSchedule>,
    #[serde(default)]
    start_maintenance: Option<Machines>,
    #[serde(default)]
    stop_maintenance: Option<Machines>,
}

#[derive(Debug, Deserialize)]
struct UpdateWeights {
    #[serde(default)]
    weight_infos: Vec<WeightInfo>,
}

#[derive(Debug, Deserialize)]
struct WeightInfo {
    weight: f64,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reservation {
    #[serde(default)]
    agent_id: Option<m::Id>,
    #[serde(default)]
    resources: Vec<m::Resource>,
    #[serde(default)]
    source: Vec<m::Resource>,
}

#[derive(Debug, Deserialize)]
struct UpdateQuota {
    /// Mesos' `force`: skip the check that guarantees fit in the active agents.
    #[serde(default)]
    force: Option<bool>,
    #[serde(default)]
    quota_configs: Vec<QuotaConfig>,
}

#[derive(Debug, Deserialize)]
struct QuotaConfig {
    role: String,
    #[serde(default)]
    guarantees: BTreeMap<String, m::Scalar>,
    #[serde(default)]
    limits: BTreeMap<String, m::Scalar>,
}

/// google.protobuf.Duration as Mesos' JSON writes it.
#[derive(Debug, Deserialize)]
struct ProtoDuration {
    #[serde(default)]
    seconds: i64,
    #[serde(default)]
    nanos: i32,
}

#[derive(Debug, Deserialize)]
struct DrainAgent {
    #[serde(default)]
    agent_id: Option<m::Id>,
    #[serde(default)]
    max_grace_period: Option<ProtoDuration>,
    #[serde(default)]
    mark_gone: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct AgentCall {
    #[serde(default)]
    agent_id: Option<m::Id>,
}

#[derive(Debug, Deserialize)]
struct Teardown {
    #[serde(default)]
    framework_id: Option<m::Id>,
}

/// Agora's KILL_TASK: `{"task_id": {"value": …}, "framework_id": {"value": …}}`, the
/// framework optional while the task id names one live task.
#[derive(Debug, Deserialize)]
struct KillTask {
    #[serde(default)]
    task_id: Option<m::Id>,
    #[serde(default)]
    framework_id: Option<m::Id>,
}

#[derive(Debug, Deserialize)]
struct UpdateSchedule {
    schedule: ScheduleDto,
}

#[derive(Debug, Deserialize)]
struct ScheduleDto {
    #[serde(default)]
    windows: Vec<WindowDto>,
}

#[derive(Debug, Deserialize)]
struct WindowDto {
    #[serde(default)]
    machine_ids: Vec<MachineIdDto>,
    unavailability: UnavailabilityDto,
}

#[derive(Debug, Deserialize)]
struct MachineIdDto {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UnavailabilityDto {
    start: NanosDto,
    #[serde(default)]
    duration: Option<NanosDto>,
}

/// Mesos' TimeInfo and DurationInfo.
#[derive(Debug, Deserialize)]
struct NanosDto {
    nanoseconds: i64,
}

#[derive(Debug, Deserialize)]
struct Machines {
    #[serde(default)]
    machines: Vec<MachineIdDto>,
}

fn bad_request(field: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::new(StatusCode::BAD_REQUEST, format!("{field}: {reason}"), json!([{ "field": field, "reason": reason }]))
}

/// The core's refusal with its field named by its path in the call (under `prefix`).
fn refused(prefix: &str, mut e: OperatorError) -> ApiError {
    if !prefix.is_empty() {
        e.field = format!("{prefix}.{}", e.field);
    }
    ApiError::from(e)
}

fn required<T>(field: &str, kind: &str, value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| bad_request(field, format!("is required for a {kind} call")))
}

fn agent_id(field: &str, id: Option<m::Id>) -> Result<AgentId, ApiError> {
    match id {
        Some(id) if !id.value.is_empty() => Ok(AgentId::new(id.value)),
        _ => Err(bad_request(&format!("{field}.value"), "is required")),
    }
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

fn answer_json(kind: &str, field: &str, body: Value) -> Response {
    Json(json!({ "type": kind, field: body })).into_response()
}

/// Answers call `kind` (one of [`CALLS`]) with the call's JSON `body`.
pub async fn answer(handle: &Handle, context: &AdminContext, caller: &Caller, kind: &str, body: &[u8]) -> Response {
    match run(handle, context, caller, kind, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// The `teardown_frameworks` ACL, by the framework's principal ("" when it has none).
pub async fn authorize_teardown(handle: &Handle, caller: &Caller, id: &FrameworkId) -> Result<(), ApiError> {
    if !caller.security().restricts(Action::TeardownFrameworks) {
        return Ok(());
    }
    let lookup = id.clone();
    let principal = on_core(handle, move |core| core.framework_principal(&lookup).map(str::to_owned)).await?;
    caller.authorize(Action::TeardownFrameworks, principal.as_deref().unwrap_or_default())
}

/// The `drain_agents` ACL for an agent, by its hostname (its id when it is unknown).
async fn authorize_agent(handle: &Handle, caller: &Caller, id: &AgentId) -> Result<(), ApiError> {
    if !caller.security().restricts(Action::DrainAgents) {
        return Ok(());
    }
    let lookup = id.clone();
    let hostname = on_core(handle, move |core| core.agent_hostname(&lookup).map(str::to_owned)).await?;
    caller.authorize(Action::DrainAgents, hostname.as_deref().unwrap_or(id.as_str()))
}

/// The `drain_agents` ACL for machines put into or out of maintenance, by hostname (their
/// IP when they name no hostname).
fn authorize_machines<'a>(caller: &Caller, machines: impl IntoIterator<Item = &'a MachineId>) -> Result<(), ApiError> {
    for machine in machines {
        let name = if machine.hostname.is_empty() { &machine.ip } else { &machine.hostname };
        caller.authorize(Action::DrainAgents, name)?;
    }
    Ok(())
}

async fn run(
    handle: &Handle,
    context: &AdminContext,
    caller: &Caller,
    kind: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let call: AdminCall = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        bad_request(&path, e.inner().to_string())
    })?;
    let now_ms = Clock::new().now_ms();
    Ok(match kind {
        "GET_FLAGS" => {
            let flags: Vec<Value> =
                context.flags.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
            answer_json(kind, "get_flags", json!({ "flags": flags }))
        }
        "GET_METRICS" => {
            let report = handle
                .ask(|reply| Request::Metrics { reply })
                .await
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), json!([])))?;
            let metrics: Vec<Value> = crate::runtime::metrics::mesos_snapshot(&report)
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            answer_json(kind, "get_metrics", json!({ "metrics": metrics }))
        }
        "GET_LOGGING_LEVEL" => answer_json(kind, "get_logging_level", json!({ "level": logging_level() })),
        "GET_MASTER" => {
            let report = handle
                .ask(|reply| Request::Metrics { reply })
                .await
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), json!([])))?;
            let start = report.start_time_ms as f64 / 1000.0;
            answer_json(
                kind,
                "get_master",
                json!({
                    "master_info": master_info(&context.master),
                    "start_time": start,
                    "elected_time": start,
                }),
            )
        }
        // Agora's tasks are their own executors (as Mesos' command executor), so there
        // is no executor of its own to list.
        "GET_EXECUTORS" => answer_json(kind, "get_executors", json!({ "executors": [] })),
        "GET_ROLES" => {
            let views = on_core(handle, |core| core.roles()).await?;
            let roles: Vec<Value> = views
                .iter()
                .map(|v| {
                    let frameworks: Vec<Value> = v.frameworks.iter().map(|f| json!({"value": f.to_string()})).collect();
                    json!({
                        "name": v.role.to_string(),
                        "weight": v.weight_milli as f64 / 1000.0,
                        "frameworks": frameworks,
                        "resources": scalars_out(&v.allocated),
                    })
                })
                .collect();
            answer_json(kind, "get_roles", json!({ "roles": roles }))
        }
        "GET_WEIGHTS" => {
            let weights = on_core(handle, |core| core.role_policy().weights.clone()).await?;
            let infos: Vec<Value> = weights
                .iter()
                .map(|(role, w)| json!({"role": role.to_string(), "weight": *w as f64 / 1000.0}))
                .collect();
            answer_json(kind, "get_weights", json!({ "weight_infos": infos }))
        }
        "UPDATE_WEIGHTS" => {
            let update = required("update_weights", kind, call.update_weights)?;
            let weights = weights(&update)?;
            for (role, _) in &weights {
                caller.authorize(Action::UpdateWeights, role.as_str())?;
            }
            on_core(handle, move |core| core.set_weights(weights)).await?.map_err(|e| refused("update_weights", e))?;
            ok()
        }
        "GET_QUOTA" => {
            let quotas = on_core(handle, |core| core.role_policy().quotas.clone()).await?;
            answer_json(kind, "get_quota", json!({ "status": quota_status(&quotas) }))
        }
        "UPDATE_QUOTA" => {
            let update = required("update_quota", kind, call.update_quota)?;
            let force = update.force.unwrap_or(false);
            let changes = quotas(&update)?;
            for (role, _) in &changes {
                caller.authorize(Action::UpdateQuotas, role.as_str())?;
            }
            on_core(handle, move |core| {
                if !force {
                    core.check_quota_capacity("quota_configs", &changes)?;
                }
                core.update_quotas(changes)
            })
            .await?
            .map_err(|e| refused("update_quota", e))?;
            ok()
        }
        "RESERVE_RESOURCES" | "UNRESERVE_RESOURCES" => {
            let reserve = kind == "RESERVE_RESOURCES";
            let field = if reserve { "reserve_resources" } else { "unreserve_resources" };
            let call = if reserve { call.reserve_resources } else { call.unreserve_resources };
            let call = required(field, kind, call)?;
            let id = agent_id(&format!("{field}.agent_id"), call.agent_id)?;
            if !call.source.is_empty() {
                return Err(bad_request(
                    &format!("{field}.source"),
                    "is not supported: Agora reserves from unreserved resources only",
                ));
            }
            let pb = convert::resources(&format!("{field}.resources"), &call.resources)
                .map_err(|e| bad_request(&e.field, e.reason))?;
            let resources =
                Resources::try_from(pb).map_err(|e| bad_request(&format!("{field}.resources"), e.to_string()))?;
            if resources.is_empty() {
                return Err(bad_request(&format!("{field}.resources"), "must name at least one resource"));
            }
            let action = if reserve { Action::ReserveResources } else { Action::UnreserveResources };
            crate::runtime::operator::authorize_reservation(caller, action, &resources)?;
            let result =
                on_core(
                    handle,
                    move |core| {
                        if reserve { core.reserve(&id, &resources) } else { core.unreserve(&id, &resources) }
                    },
                )
                .await?;
            result.map_err(|e| refused(field, e))?;
            accepted()
        }
        "DRAIN_AGENT" => {
            let drain = required("drain_agent", kind, call.drain_agent)?;
            let id = agent_id("drain_agent.agent_id", drain.agent_id)?;
            authorize_agent(handle, caller, &id).await?;
            let max_grace_ms = match drain.max_grace_period {
                None => None,
                Some(d) if d.seconds < 0 || d.nanos < 0 || d.seconds > 365 * 24 * 3600 => {
                    return Err(bad_request("drain_agent.max_grace_period", "must be a duration from 0 to a year"));
                }
                Some(d) => Some((d.seconds as u64).saturating_mul(1000).saturating_add(d.nanos as u64 / 1_000_000)),
            };
            let mark_gone = drain.mark_gone.unwrap_or(false);
            on_core(handle, move |core| core.drain_agent(now_ms, &id, max_grace_ms, mark_gone))
                .await?
                .map_err(|e| refused("drain_agent", e))?;
            ok()
        }
        "DEACTIVATE_AGENT" => {
            let call = required("deactivate_agent", kind, call.deactivate_agent)?;
            let id = agent_id("deactivate_agent.agent_id", call.agent_id)?;
            authorize_agent(handle, caller, &id).await?;
            on_core(handle, move |core| core.deactivate_agent(&id))
                .await?
                .map_err(|e| refused("deactivate_agent", e))?;
            ok()
        }
        "REACTIVATE_AGENT" => {
            let call = required("reactivate_agent", kind, call.reactivate_agent)?;
            let id = agent_id("reactivate_agent.agent_id", call.agent_id)?;
            authorize_agent(handle, caller, &id).await?;
            on_core(handle, move |core| core.reactivate_agent(&id))
                .await?
                .map_err(|e| refused("reactivate_agent", e))?;
            ok()
        }
        "MARK_AGENT_GONE" => {
            let call = required("mark_agent_gone", kind, call.mark_agent_gone)?;
            let id = agent_id("mark_agent_gone.agent_id", call.agent_id)?;
            authorize_agent(handle, caller, &id).await?;
            on_core(handle, move |core| core.mark_agent_gone(now_ms, &id))
                .await?
                .map_err(|e| refused("mark_agent_gone", e))?;
            ok()
        }
        "TEARDOWN" => {
            let call = required("teardown", kind, call.teardown)?;
            let id = match call.framework_id {
                Some(id) if !id.value.is_empty() => FrameworkId::new(id.value),
                _ => return Err(bad_request("teardown.framework_id.value", "is required")),
            };
            authorize_teardown(handle, caller, &id).await?;
            on_core(handle, move |core| core.teardown_framework(now_ms, &id))
                .await?
                .map_err(|e| refused("teardown", e))?;
            ok()
        }
        "KILL_TASK" => {
            let call = required("kill_task", kind, call.kill_task)?;
            let task_id = match call.task_id {
                Some(id) if !id.value.is_empty() => TaskId::from(id.value),
                _ => return Err(bad_request("kill_task.task_id.value", "is required")),
            };
            let framework_id = match call.framework_id {
                Some(id) if id.value.is_empty() => {
                    return Err(bad_request("kill_task.framework_id.value", "is empty"));
                }
                other => other.map(|id| FrameworkId::new(id.value)),
            };
            // Killing a task takes the same permission as tearing its framework down.
            let lookup = task_id.clone();
            let owner = on_core(handle, move |core| core.live_task_framework(framework_id.as_ref(), &lookup))
                .await?
                .map_err(|e| refused("kill_task", e))?;
            authorize_teardown(handle, caller, &owner).await?;
            on_core(handle, move |core| core.kill_task_by_operator(Some(&owner), &task_id))
                .await?
                .map_err(|e| refused("kill_task", e))?;
            accepted()
        }
        "GET_MAINTENANCE_SCHEDULE" => {
            let maintenance = on_core(handle, |core| core.maintenance().clone()).await?;
            answer_json(kind, "get_maintenance_schedule", json!({ "schedule": schedule_out(&maintenance) }))
        }
        "GET_MAINTENANCE_STATUS" => {
            let status = maintenance_status(handle).await?;
            answer_json(kind, "get_maintenance_status", json!({ "status": status_out(&status) }))
        }
        "UPDATE_MAINTENANCE_SCHEDULE" => {
            let update = required("update_maintenance_schedule", kind, call.update_maintenance_schedule)?;
            let windows = schedule_in("update_maintenance_schedule.schedule", update.schedule)?;
            authorize_machines(caller, windows.iter().flat_map(|w| &w.machines))?;
            update_schedule(handle, "update_maintenance_schedule", windows).await?;
            accepted()
        }
        "START_MAINTENANCE" | "STOP_MAINTENANCE" => {
            let start = kind == "START_MAINTENANCE";
            let field = if start { "start_maintenance" } else { "stop_maintenance" };
            let call = required(field, kind, if start { call.start_maintenance } else { call.stop_maintenance })?;
            let machines = machines_in(&format!("{field}.machines"), call.machines)?;
            authorize_machines(caller, &machines)?;
            machines_down_or_up(handle, field, start, now_ms, machines).await?;
            accepted()
        }
        other => return Err(bad_request("type", format!("{other:?} is not a call of this module"))),
    })
}

/// Replaces the maintenance schedule; shared with the legacy `/maintenance/schedule`.
/// A refusal names its field under `prefix`.
pub async fn update_schedule(handle: &Handle, prefix: &str, windows: Vec<Window>) -> Result<(), ApiError> {
    let now_ms = Clock::new().now_ms();
    on_core(handle, move |core| core.update_maintenance_schedule(now_ms, windows))
        .await?
        .map_err(|e| refused(prefix, e))
}

/// START_MAINTENANCE (`down`) or STOP_MAINTENANCE; shared with `/machine/down`, `/machine/up`.
pub async fn machines_down_or_up(
    handle: &Handle,
    prefix: &str,
    down: bool,
    now_ms: u64,
    machines: Vec<MachineId>,
) -> Result<(), ApiError> {
    on_core(
        handle,
        move |core: &mut Master| {
            if down { core.start_maintenance(now_ms, machines) } else { core.stop_maintenance(machines) }
        },
    )
    .await?
    .map_err(|e| refused(prefix, e))
}

/// Mesos' legacy maintenance endpoints, with and without `/master`: `GET`/`POST
/// /maintenance/schedule` (a `Schedule`), `GET /maintenance/status` (a `ClusterStatus`),
/// `POST /machine/down` and `/machine/up` (a list of `MachineID`s).
pub fn legacy_routes() -> Router<OperatorApi> {
    let mut router = Router::new();
    for prefix in ["", "/master"] {
        router = router
            .route(&format!("{prefix}/maintenance/schedule"), get(get_schedule).post(post_schedule))
            .route(&format!("{prefix}/maintenance/status"), get(get_status))
            .route(&format!("{prefix}/machine/down"), post(machine_down))
            .route(&format!("{prefix}/machine/up"), post(machine_up));
    }
    router.layer(DefaultBodyLimit::max(MAX_LEGACY_BODY_BYTES))
}

/// Largest body the legacy endpoints read: a schedule of thousands of machines.
const MAX_LEGACY_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body; a syntax error is a 400 naming the body.
fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request("body", e.to_string()))
}

async fn get_schedule(State(api): State<OperatorApi>) -> Result<Json<Value>, ApiError> {
    let maintenance = on_core(&api.owner, |core| core.maintenance().clone()).await?;
    Ok(Json(schedule_out(&maintenance)))
}

async fn get_status(State(api): State<OperatorApi>) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_out(&maintenance_status(&api.owner).await?)))
}

async fn post_schedule(
    State(api): State<OperatorApi>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let windows = schedule_in_json(json_body(&body)?)?;
    authorize_machines(&caller, windows.iter().flat_map(|w| &w.machines))?;
    update_schedule(&api.owner, "", windows).await?;
    Ok(StatusCode::OK)
}

async fn machine_down(
    State(api): State<OperatorApi>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let machines = machines_in_json("machines", json_body(&body)?)?;
    authorize_machines(&caller, &machines)?;
    machines_down_or_up(&api.owner, "", true, Clock::new().now_ms(), machines).await?;
    Ok(StatusCode::OK)
}

async fn machine_up(
    State(api): State<OperatorApi>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let machines = machines_in_json("machines", json_body(&body)?)?;
    authorize_machines(&caller, &machines)?;
    machines_down_or_up(&api.owner, "", false, Clock::new().now_ms(), machines).await?;
    Ok(StatusCode::OK)
}

/// glog's verbosity, as Mesos reports it, from the log filter in force: 0 unless debug (1)
/// or trace (2) logs are on.
fn logging_level() -> u32 {
    match tracing::level_filters::LevelFilter::current() {
        tracing::level_filters::LevelFilter::TRACE => 2,
        tracing::level_filters::LevelFilter::DEBUG => 1,
        _ => 0,
    }
}

pub fn master_info(master: &convert::MasterContext) -> Value {
    json!({
        "id": master.master_id,
        "ip": master.ip,
        "port": master.port,
        "pid": format!("master@{}:{}", master.hostname, master.port),
        "hostname": master.hostname,
        "version": master.version,
        "address": {"hostname": master.hostname, "ip": master.hostname, "port": master.port},
    })
}

fn scalar(name: &str, value: f64) -> Value {
    json!({"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": "*"})
}

/// Scalars as Mesos' resource list (unlimited quantities left out).
fn scalars_out(s: &Scalars) -> Vec<Value> {
    let mut list = Vec::new();
    if s.cpus_milli != u64::MAX {
        list.push(scalar("cpus", s.cpus_milli as f64 / 1000.0));
    }
    if s.mem_mib != u64::MAX {
        list.push(scalar("mem", s.mem_mib as f64));
    }
    if s.disk_mib != u64::MAX {
        list.push(scalar("disk", s.disk_mib as f64));
    }
    list
}

/// Scalars as a QuotaConfig's map (`{"cpus": {"value": 1}}`), unlimited ones left out.
fn scalar_map(s: &Scalars) -> Value {
    let mut map = serde_json::Map::new();
    if s.cpus_milli != u64::MAX && s.cpus_milli > 0 {
        map.insert("cpus".to_owned(), json!({"value": s.cpus_milli as f64 / 1000.0}));
    }
    if s.mem_mib != u64::MAX && s.mem_mib > 0 {
        map.insert("mem".to_owned(), json!({"value": s.mem_mib as f64}));
    }
    if s.disk_mib != u64::MAX && s.disk_mib > 0 {
        map.insert("disk".to_owned(), json!({"value": s.disk_mib as f64}));
    }
    Value::Object(map)
}

fn quota_status(quotas: &BTreeMap<Role, Quota>) -> Value {
    let configs: Vec<Value> = quotas
        .iter()
        .map(|(role, q)| {
            let limits = q.limit.as_ref().map_or(json!({}), scalar_map);
            json!({"role": role.to_string(), "guarantees": scalar_map(&q.guarantee), "limits": limits})
        })
        .collect();
    // `infos` is the pre-1.9 shape, with the guarantee only.
    let infos: Vec<Value> = quotas
        .iter()
        .map(|(role, q)| json!({"role": role.to_string(), "guarantee": scalars_out(&q.guarantee)}))
        .collect();
    json!({ "infos": infos, "configs": configs })
}

fn weights(update: &UpdateWeights) -> Result<Vec<(Role, u64)>, ApiError> {
    if update.weight_infos.len() > MAX_ENTRIES {
        return Err(bad_request("update_weights.weight_infos", format!("at most {MAX_ENTRIES} entries")));
    }
    let mut weights = Vec::with_capacity(update.weight_infos.len());
    for (i, info) in update.weight_infos.iter().enumerate() {
        let field = format!("update_weights.weight_infos[{i}]");
        let name = info.role.as_deref().unwrap_or_default();
        let role = Role::parse(name).map_err(|e| bad_request(&format!("{field}.role"), e.to_string()))?;
        if !info.weight.is_finite() || info.weight <= 0.0 || info.weight > 1_000_000.0 {
            return Err(bad_request(&format!("{field}.weight"), "must be more than 0 and at most 1000000"));
        }
        weights.push((role, ((info.weight * 1000.0).round() as u64).max(1)));
    }
    Ok(weights)
}

/// A QuotaConfig's map as scalars; `missing` for a quantity left out.
fn scalars_in(field: &str, map: &BTreeMap<String, m::Scalar>, missing: u64) -> Result<Scalars, ApiError> {
    let mut s = Scalars::new(missing, missing, missing);
    for (name, value) in map {
        let field = format!("{field}.{name}");
        let v = value.value;
        if !v.is_finite() || v < 0.0 {
            return Err(bad_request(&format!("{field}.value"), "must be a non-negative number"));
        }
        match name.as_str() {
            "cpus" => {
                s.cpus_milli = cpus_to_milli(v).map_err(|e| bad_request(&format!("{field}.value"), e.to_string()))?
            }
            "mem" | "disk" => {
                if v > (1u64 << 40) as f64 {
                    return Err(bad_request(&format!("{field}.value"), "must be a number of MiB up to 2^40"));
                }
                if name == "mem" {
                    s.mem_mib = v.ceil() as u64;
                } else {
                    s.disk_mib = v.ceil() as u64;
                }
            }
            _ => return Err(bad_request(&field, "is not a resource Agora has quota for: cpus, mem, disk")),
        }
    }
    Ok(s)
}

/// Each role's new quota, `None` to remove it (no guarantees and no limits, as Mesos resets).
fn quotas(update: &UpdateQuota) -> Result<Vec<(Role, Option<Quota>)>, ApiError> {
    if update.quota_configs.len() > MAX_ENTRIES {
        return Err(bad_request("update_quota.quota_configs", format!("at most {MAX_ENTRIES} entries")));
    }
    let mut changes = Vec::with_capacity(update.quota_configs.len());
    for (i, config) in update.quota_configs.iter().enumerate() {
        let field = format!("update_quota.quota_configs[{i}]");
        let role = Role::parse(&config.role).map_err(|e| bad_request(&format!("{field}.role"), e.to_string()))?;
        if config.guarantees.is_empty() && config.limits.is_empty() {
            changes.push((role, None));
            continue;
        }
        let guarantee = scalars_in(&format!("{field}.guarantees"), &config.guarantees, 0)?;
        let limit = if config.limits.is_empty() {
            None
        } else {
            Some(scalars_in(&format!("{field}.limits"), &config.limits, u64::MAX)?)
        };
        changes.push((role, Some(Quota { guarantee, limit })));
    }
    Ok(changes)
}

fn machine_in(field: &str, dto: MachineIdDto) -> Result<MachineId, ApiError> {
    machine_id(field, dto.hostname.as_deref().unwrap_or_default(), dto.ip.as_deref().unwrap_or_default())
        .map_err(|e| bad_request(&e.field, e.reason))
}

fn machines_in_json(field: &str, value: Value) -> Result<Vec<MachineId>, ApiError> {
    let list: Vec<MachineIdDto> = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = match path.as_str() {
            "." => field.to_owned(),
            p if p.starts_with('[') => format!("{field}{p}"),
            p => format!("{field}.{p}"),
        };
        bad_request(&at, e.inner().to_string())
    })?;
    machines_in(field, list)
}

fn machines_in(field: &str, list: Vec<MachineIdDto>) -> Result<Vec<MachineId>, ApiError> {
    list.into_iter().enumerate().map(|(i, dto)| machine_in(&format!("{field}[{i}]"), dto)).collect()
}

fn schedule_in_json(value: Value) -> Result<Vec<Window>, ApiError> {
    let dto: ScheduleDto = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        bad_request(&path, e.inner().to_string())
    })?;
    schedule_in("schedule", dto)
}

fn schedule_in(field: &str, dto: ScheduleDto) -> Result<Vec<Window>, ApiError> {
    let mut windows = Vec::with_capacity(dto.windows.len());
    for (i, window) in dto.windows.into_iter().enumerate() {
        let field = format!("{field}.windows[{i}]");
        let machines = machines_in(&format!("{field}.machine_ids"), window.machine_ids)?;
        let unavailability = Unavailability {
            start_ns: window.unavailability.start.nanoseconds,
            duration_ns: window.unavailability.duration.map(|d| d.nanoseconds),
        };
        windows.push(Window { machines, unavailability });
    }
    Ok(windows)
}

pub fn machine_out(machine: &MachineId) -> Value {
    let mut map = serde_json::Map::new();
    if !machine.hostname.is_empty() {
        map.insert("hostname".to_owned(), json!(machine.hostname));
    }
    if !machine.ip.is_empty() {
        map.insert("ip".to_owned(), json!(machine.ip));
    }
    Value::Object(map)
}

pub fn schedule_out(maintenance: &Maintenance) -> Value {
    let windows: Vec<Value> = maintenance
        .windows
        .iter()
        .map(|w| {
            let mut unavailability = json!({"start": {"nanoseconds": w.unavailability.start_ns}});
            if let (Some(d), Some(object)) = (w.unavailability.duration_ns, unavailability.as_object_mut()) {
                object.insert("duration".to_owned(), json!({"nanoseconds": d}));
            }
            json!({"machine_ids": w.machines.iter().map(machine_out).collect::<Vec<_>>(), "unavailability": unavailability})
        })
        .collect();
    json!({ "windows": windows })
}

/// The schedule and the frameworks' answers to inverse offers, read on the core.
type MaintenanceStatus = (Maintenance, BTreeMap<MachineId, Vec<InverseOfferStatus>>);

async fn maintenance_status(handle: &Handle) -> Result<MaintenanceStatus, ApiError> {
    on_core(handle, |core| (core.maintenance().clone(), core.inverse_offer_statuses())).await
}

pub fn status_out((maintenance, statuses): &MaintenanceStatus) -> Value {
    let status = |s: &InverseOfferStatus| {
        let answer = match s.answer {
            None => "UNKNOWN",
            Some(InverseOfferAnswer::Accept) => "ACCEPT",
            Some(InverseOfferAnswer::Decline) => "DECLINE",
        };
        json!({
            "status": answer,
            "framework_id": {"value": s.framework_id.to_string()},
            "timestamp": {"nanoseconds": s.timestamp_ms.saturating_mul(1_000_000)},
        })
    };
    let draining: Vec<Value> = maintenance
        .draining()
        .iter()
        .map(|m| {
            let list: Vec<Value> = statuses.get(m).into_iter().flatten().map(status).collect();
            json!({"id": machine_out(m), "statuses": list})
        })
        .collect();
    let down: Vec<Value> = maintenance.down.iter().map(machine_out).collect();
    json!({ "draining_machines": draining, "down_machines": down })
}

/// An agent's drain as Mesos' `DrainInfo`.
pub fn drain_info(drain: &DrainInfo) -> Value {
    let state = match drain.state {
        DrainState::Draining => "DRAINING",
        DrainState::Drained => "DRAINED",
    };
    let mut config = json!({ "mark_gone": drain.mark_gone });
    if let (Some(ms), Some(object)) = (drain.max_grace_period_ms, config.as_object_mut()) {
        object.insert("max_grace_period".to_owned(), json!({"nanoseconds": ms.saturating_mul(1_000_000)}));
    }
    json!({ "state": state, "config": config })
}
