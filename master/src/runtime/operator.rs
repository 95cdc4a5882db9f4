//! The operator API for sharing: `/roles`, `/weights`, `/quota` and `/reserve` /
//! `/unreserve`, as HTTP/JSON. Bodies are parsed here into core values (bad input is a 400
//! naming the field); the core's operator calls run on the owner task.
//!
//! Shapes (quantities as Mesos prints them: CPUs as decimals, `mem`/`disk` in MiB):
//! - `GET /roles` → `{"roles": [{"name", "weight", "frameworks", "allocated", "offered",
//!   "quota": {"guarantee", "limit"} | null, "dominant_share"}]}`
//! - `GET /weights` → `[{"role": "eng", "weight": 2.0}]`; `PUT /weights` takes the same.
//! - `GET /quota` → `[{"role", "guarantee", "limit"}]`; `POST /quota` takes one
//!   `{"role": "eng", "guarantee": {"cpus": 1, "mem": 1024}, "limit": {"cpus": 4, "mem": 4096}}`
//!   (`guarantee` and `limit` optional; no `limit` means none; guarantees beyond what the
//!   active agents hold are a 409 unless `"force": true`); `DELETE /quota/{role}`.
//! - `POST /reserve`, `POST /unreserve`: `{"agent_id": "…", "resources": "cpus(eng):1;mem(eng):512"}`.

use agora_proto::acl::Action;
use agora_proto::model::{AgentId, Resources, Role, Scalars, cpus_to_milli};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::auth::Caller;
use super::http::ApiError;
use super::owner::{CoreFn, Handle, Request};
use crate::core::{Master, OperatorError, OperatorErrorKind, Quota, RoleView};

/// Largest request body the operator endpoints read.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest quantity of memory or disk accepted, in MiB (an exbibyte).
const MAX_MIB: f64 = (1u64 << 40) as f64;

pub fn router() -> axum::Router<Handle> {
    axum::Router::new()
        .route("/roles", get(roles))
        .route("/master/roles", get(roles))
        .route("/weights", get(weights).put(put_weights))
        .route("/quota", get(quota).post(post_quota))
        .route("/quota/{*role}", delete(delete_quota))
        .route("/reserve", post(reserve))
        .route("/unreserve", post(unreserve))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Runs `f` on the core in the owner task and returns its answer.
pub(crate) async fn on_core<T: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce(&mut Master) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let run = CoreFn(Box::new(move |core: &mut Master| {
        let answer = f(core);
        Box::new(move || {
            let _ = tx.send(answer);
        })
    }));
    let unavailable = |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e, json!([]));
    handle.send(Request::Operator(run)).await.map_err(|e| unavailable(e.to_string()))?;
    rx.await.map_err(|e| unavailable(e.to_string()))
}

fn bad_request(field: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::new(StatusCode::BAD_REQUEST, format!("{field}: {reason}"), json!([{ "field": field, "reason": reason }]))
}

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> Self {
        let status = match e.kind {
            OperatorErrorKind::Invalid => StatusCode::BAD_REQUEST,
            OperatorErrorKind::NotFound => StatusCode::NOT_FOUND,
            OperatorErrorKind::Conflict => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string(), json!([{ "field": e.field, "reason": e.reason }]))
    }
}

/// Parses a JSON body; a syntax or shape error is a 400 whose message serde words with the
/// field (`missing field `role``, `unknown field …`).
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request("body", e.to_string()))
}

fn role(field: &str, name: &str) -> Result<Role, ApiError> {
    Role::parse(name).map_err(|e| bad_request(field, e.to_string()))
}

/// Quantities as operators write them: `{"cpus": 1.5, "mem": 1024, "disk": 0}`. A
/// quantity left out is 0 in a guarantee and unlimited in a limit (and then not shown).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScalarsDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mem: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk: Option<f64>,
}

/// What a quantity left out of a limit means: no limit on that resource.
const UNLIMITED: u64 = u64::MAX;

impl ScalarsDto {
    /// `missing` stands for a quantity left out (0, or `UNLIMITED`).
    fn to_core(self, field: &str, missing: u64) -> Result<Scalars, ApiError> {
        let cpus_milli = match self.cpus {
            None => missing,
            Some(cpus) => cpus_to_milli(cpus).map_err(|e| bad_request(&format!("{field}.cpus"), e.to_string()))?,
        };
        let mib = |name: &str, v: Option<f64>| match v {
            None => Ok(missing),
            Some(v) if v.is_finite() && (0.0..=MAX_MIB).contains(&v) => Ok(v.round() as u64),
            Some(_) => Err(bad_request(&format!("{field}.{name}"), "must be a number of MiB from 0 to 2^40")),
        };
        Ok(Scalars::new(cpus_milli, mib("mem", self.mem)?, mib("disk", self.disk)?))
    }

    fn from_core(s: &Scalars) -> Self {
        let shown = |v: u64, scale: f64| (v != UNLIMITED).then_some(v as f64 / scale);
        Self { cpus: shown(s.cpus_milli, 1000.0), mem: shown(s.mem_mib, 1.0), disk: shown(s.disk_mib, 1.0) }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WeightDto {
    role: String,
    weight: f64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct QuotaDto {
    role: String,
    #[serde(default)]
    guarantee: Option<ScalarsDto>,
    #[serde(default)]
    limit: Option<ScalarsDto>,
    /// Sets a guarantee beyond what the active agents hold (Mesos' `force`).
    #[serde(default, skip_serializing)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveDto {
    agent_id: String,
    resources: String,
}

#[derive(Debug, Serialize)]
struct RoleDto {
    name: String,
    weight: f64,
    frameworks: Vec<String>,
    allocated: ScalarsDto,
    offered: ScalarsDto,
    quota: Option<QuotaDto>,
    dominant_share: f64,
}

fn quota_dto(role: &Role, quota: &Quota) -> QuotaDto {
    QuotaDto {
        role: role.to_string(),
        guarantee: Some(ScalarsDto::from_core(&quota.guarantee)),
        limit: quota.limit.as_ref().map(ScalarsDto::from_core),
        force: false,
    }
}

impl From<&RoleView> for RoleDto {
    fn from(v: &RoleView) -> Self {
        RoleDto {
            name: v.role.to_string(),
            weight: v.weight_milli as f64 / 1000.0,
            frameworks: v.frameworks.iter().map(ToString::to_string).collect(),
            allocated: ScalarsDto::from_core(&v.allocated),
            offered: ScalarsDto::from_core(&v.offered),
            quota: v.quota.as_ref().map(|q| quota_dto(&v.role, q)),
            dominant_share: v.dominant_share_ppm as f64 / 1_000_000.0,
        }
    }
}

async fn roles(State(handle): State<Handle>) -> Result<Json<Value>, ApiError> {
    let views = on_core(&handle, |core| core.roles()).await?;
    let roles: Vec<RoleDto> = views.iter().map(RoleDto::from).collect();
    Ok(Json(json!({ "roles": roles })))
}

fn weights_dto(core: &Master) -> Vec<WeightDto> {
    let weights = &core.role_policy().weights;
    weights.iter().map(|(role, w)| WeightDto { role: role.to_string(), weight: *w as f64 / 1000.0 }).collect()
}

async fn weights(State(handle): State<Handle>) -> Result<Json<Vec<WeightDto>>, ApiError> {
    Ok(Json(on_core(&handle, |core| weights_dto(core)).await?))
}

async fn put_weights(
    State(handle): State<Handle>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Vec<WeightDto>>, ApiError> {
    let entries: Vec<WeightDto> = parse(&body)?;
    let mut weights = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let r = role(&format!("[{i}].role"), &entry.role)?;
        caller.authorize(Action::UpdateWeights, r.as_str())?;
        if !entry.weight.is_finite() || entry.weight <= 0.0 || entry.weight > 1_000_000.0 {
            return Err(bad_request(&format!("[{i}].weight"), "must be more than 0 and at most 1000000"));
        }
        weights.push((r, ((entry.weight * 1000.0).round() as u64).max(1)));
    }
    let result = on_core(&handle, move |core| core.set_weights(weights).map(|()| weights_dto(core))).await?;
    Ok(Json(result?))
}

async fn quota(State(handle): State<Handle>) -> Result<Json<Vec<QuotaDto>>, ApiError> {
    let list = on_core(&handle, |core| {
        core.role_policy().quotas.iter().map(|(role, q)| quota_dto(role, q)).collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list))
}

async fn post_quota(
    State(handle): State<Handle>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<QuotaDto>, ApiError> {
    let dto: QuotaDto = parse(&body)?;
    let r = role("role", &dto.role)?;
    caller.authorize(Action::UpdateQuotas, r.as_str())?;
    let guarantee = dto.guarantee.map(|g| g.to_core("guarantee", 0)).transpose()?.unwrap_or(Scalars::ZERO);
    let limit = dto.limit.map(|l| l.to_core("limit", UNLIMITED)).transpose()?;
    let quota = Quota { guarantee, limit };
    let answer = quota_dto(&r, &quota);
    let force = dto.force;
    on_core(&handle, move |core| {
        if !force {
            core.check_quota_capacity("guarantee", &[(r.clone(), Some(quota.clone()))])?;
        }
        core.set_quota(r, quota)
    })
    .await??;
    Ok(Json(answer))
}

async fn delete_quota(
    State(handle): State<Handle>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<QuotaDto>, ApiError> {
    let r = role("role", &name)?;
    caller.authorize(Action::UpdateQuotas, r.as_str())?;
    let shown = r.clone();
    let removed = on_core(&handle, move |core| core.remove_quota(&r)).await??;
    Ok(Json(quota_dto(&shown, &removed)))
}

fn reservation(body: &Bytes) -> Result<(AgentId, Resources), ApiError> {
    let dto: ReserveDto = parse(body)?;
    if dto.agent_id.is_empty() {
        return Err(bad_request("agent_id", "must not be empty"));
    }
    let resources = Resources::parse(&dto.resources).map_err(|e| bad_request("resources", e.to_string()))?;
    Ok((AgentId::new(dto.agent_id), resources))
}

/// The ACL on a reservation, for each role it reserves to (or unreserves from).
pub(crate) fn authorize_reservation(caller: &Caller, action: Action, resources: &Resources) -> Result<(), ApiError> {
    for (role, _) in resources.pools() {
        caller.authorize(action, role.as_str())?;
    }
    Ok(())
}

async fn reserve(
    State(handle): State<Handle>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (agent_id, resources) = reservation(&body)?;
    authorize_reservation(&caller, Action::ReserveResources, &resources)?;
    let text = resources.to_string();
    on_core(&handle, move |core| core.reserve(&agent_id, &resources)).await??;
    Ok(Json(json!({ "reserved": text })))
}

async fn unreserve(
    State(handle): State<Handle>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (agent_id, resources) = reservation(&body)?;
    authorize_reservation(&caller, Action::UnreserveResources, &resources)?;
    let text = resources.to_string();
    on_core(&handle, move |core| core.unreserve(&agent_id, &resources)).await??;
    Ok(Json(json!({ "unreserved": text })))
}
