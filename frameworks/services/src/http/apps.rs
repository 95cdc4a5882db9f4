//! `/v2/apps` and `/v2/tasks`: apps created, changed (PUT and PATCH merge the given fields
//! into the current definition), rolled back, restarted and deleted; their tasks listed
//! and killed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    Api, Params, TASK_BYTES, deployment_result, json_body, json_bytes, json_pieces, render_error, to_json,
    wall_clock_ms, wants_text,
};
use crate::core::{Command, Expected, Planner, Reply};
use crate::marathon::app::{AppContext, merge_update, parse_app, rollback_version};
use crate::marathon::render::{
    AppReads, AppView, Embed, Pieces, TaskView, definition_json, write_app_list, write_task_list,
};
use crate::marathon::selector::LabelSelector;
use crate::marathon::{ApiError, Problems};
use crate::model::{AppId, AppSpec, Instance, PathId, Timestamp};
use crate::runtime::{Published, StampedEvent};

/// What a path under `/v2/apps/` names once its known suffix is split off.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    App(String),
    Tasks(String),
    Task(String, String),
    Restart(String),
    Versions(String),
    Version(String, String),
}

impl Target {
    /// Splits `rest` for `method`: only the suffixes that method has are recognised, so
    /// that an app whose id ends in `tasks` is still reachable where no sub-resource is.
    fn of(rest: &str, method: &str) -> Target {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let n = segments.len();
        let head = |k: usize| segments[..n - k].join("/");
        let last = segments.last().copied();
        let before_last = if n >= 2 { Some(segments[n - 2]) } else { None };
        match method {
            "GET" if n >= 2 && last == Some("tasks") => Target::Tasks(head(1)),
            "GET" if n >= 2 && last == Some("versions") => Target::Versions(head(1)),
            "GET" if n >= 3 && before_last == Some("versions") => Target::Version(head(2), segments[n - 1].to_owned()),
            "DELETE" if n >= 2 && last == Some("tasks") => Target::Tasks(head(1)),
            "DELETE" if n >= 3 && before_last == Some("tasks") => Target::Task(head(2), segments[n - 1].to_owned()),
            "POST" if n >= 2 && last == Some("restart") => Target::Restart(head(1)),
            _ => Target::App(segments.join("/")),
        }
    }
}

/// An id from the URL; ids that cannot exist are 404 on reads.
fn app_id_for_read(text: &str) -> Result<AppId, ApiError> {
    PathId::parse(text).map_err(|_| app_not_found(text))
}

fn app_id_for_write(text: &str) -> Result<AppId, ApiError> {
    match PathId::parse(text) {
        Ok(id) if id.is_root() => Err(ApiError::invalid_field("/id", "the root group '/' is not an app id")),
        Ok(id) => Ok(id),
        Err(e) => Err(ApiError::invalid_field("/id", e.0)),
    }
}

fn app_not_found(id: impl std::fmt::Display) -> ApiError {
    let id = id.to_string();
    let id = if id.starts_with('/') { id } else { format!("/{id}") };
    ApiError::not_found(format!("App '{id}' does not exist"))
}

// ---------------------------------------------------------------------------------------
// Listing and showing
// ---------------------------------------------------------------------------------------

pub(super) async fn list(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    // Marathon always shows counts and deployments in the list.
    let mut embed = Embed::default().with(params.all("embed"));
    embed.counts = true;
    embed.deployments = true;
    let cmd = params.get("cmd").map(str::to_lowercase);
    let id = params.get("id").map(str::to_lowercase);
    let label = match params.get("label") {
        Some(text) => Some(LabelSelector::parse(text).map_err(|e| ApiError::bad_request(format!("label: {e}")))?),
        None => None,
    };
    // From the committed view, on a blocking thread: a listing of 50,000 tasks is tens of
    // milliseconds of rendering that must hold up neither the owner nor other reads.
    let pieces = api
        .read_view(true, move |view| {
            let select = |spec: &AppSpec| {
                let cmd_ok = cmd.as_deref().is_none_or(|c| match &spec.command {
                    crate::model::AppCommand::Shell(s) => s.to_lowercase().contains(c),
                    crate::model::AppCommand::Args(_) => false,
                });
                let id_ok = id.as_deref().is_none_or(|i| spec.id.as_str().to_lowercase().contains(i));
                let label_ok = label.as_ref().is_none_or(|l| l.matches(&spec.labels));
                cmd_ok && id_ok && label_ok
            };
            let mut out = Pieces::default();
            write_app_list(&mut out, view, embed, select).map_err(render_error)?;
            Ok::<_, ApiError>(out)
        })
        .await??;
    Ok(json_pieces(pieces))
}

pub(super) async fn get_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    match Target::of(&rest, "GET") {
        Target::App(id) => show(api, &id, &params).await,
        Target::Tasks(id) => app_tasks(api, &id, &headers).await,
        Target::Versions(id) => versions(api, &id).await,
        Target::Version(id, version) => version_of(api, &id, &version).await,
        Target::Task(..) | Target::Restart(_) => Err(ApiError::not_found(format!("no such endpoint: /v2/apps/{rest}"))),
    }
}

async fn show(api: Api, text: &str, params: &Params) -> Result<Response, ApiError> {
    let embed = Embed::SINGLE_APP.with(params.all("embed"));
    // `/v2/apps/shop/*`: every app in the group, as `{"*": [...]}`.
    if let Some(group) = text.strip_suffix('*') {
        let group = PathId::parse(group).map_err(|_| ApiError::not_found(format!("Group '{group}' does not exist")))?;
        return api
            .render_view(false, move |view| {
                #[derive(Serialize)]
                struct Star<'a> {
                    #[serde(rename = "*")]
                    apps: Vec<AppView<'a>>,
                }
                let apps = view.apps().filter(|a| group.contains(&a.spec.id)).map(|a| AppView::new(a, view, embed));
                to_json(&Star { apps: apps.collect() })
            })
            .await;
    }
    let id = app_id_for_read(text)?;
    api.render_view(false, move |view| {
        #[derive(Serialize)]
        struct One<'a> {
            app: AppView<'a>,
        }
        let record = view.app(&id).ok_or_else(|| app_not_found(&id))?;
        to_json(&One { app: AppView::new(record, view, embed) })
    })
    .await
}

#[derive(Serialize)]
struct TaskList<'a> {
    tasks: Vec<TaskView<'a>>,
}

async fn app_tasks(api: Api, text: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let id = app_id_for_read(text)?;
    let text_wanted = wants_text(headers);
    let bytes = api
        .read_view(false, move |view| {
            let record = view.app(&id).ok_or_else(|| app_not_found(&id))?;
            if text_wanted {
                let mut out = String::new();
                tasks_text(&mut out, &record.spec, view.instances_of(&id));
                return Ok(out.into_bytes());
            }
            let tasks = view.instances_of(&id).map(|i| TaskView { instance: i, app: Some(&record.spec) }).collect();
            to_json(&TaskList { tasks })
        })
        .await??;
    Ok(if text_wanted { text_response(bytes) } else { json_bytes(StatusCode::OK, bytes) })
}

async fn versions(api: Api, text: &str) -> Result<Response, ApiError> {
    let id = app_id_for_read(text)?;
    api.render(move |planner, _| {
        #[derive(Serialize)]
        struct Versions {
            versions: Vec<String>,
        }
        if planner.app(&id).is_none() {
            return Err(app_not_found(&id));
        }
        // Newest first, as Marathon lists them.
        let mut versions: Vec<String> = planner.versions(&id).map(|(v, _)| v.to_string()).collect();
        versions.reverse();
        to_json(&Versions { versions })
    })
    .await
}

async fn version_of(api: Api, text: &str, version: &str) -> Result<Response, ApiError> {
    let id = app_id_for_read(text)?;
    let at = Timestamp::parse(version)
        .ok_or_else(|| ApiError::bad_request(format!("{version:?} is not a version (2015-02-11T09:31:25.123Z)")))?;
    api.render(move |planner, _| {
        let spec = planner
            .version(&id, at)
            .ok_or_else(|| ApiError::not_found(format!("App '{id}' does not exist in version {at}")))?;
        to_json(&AppView::version(spec, at))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Creating and changing
// ---------------------------------------------------------------------------------------

/// The client's address for `api_post_event`, when the server records it.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn client_ip(peer: &Peer) -> String {
    peer.as_ref().map_or_else(|| "unknown".to_owned(), |Extension(ConnectInfo(addr))| addr.ip().to_string())
}

fn publish_posts(api: &Api, uri: &str, peer: &Peer, specs: &[AppSpec]) {
    let at = Timestamp(wall_clock_ms());
    for spec in specs {
        api.handle.publish(StampedEvent {
            at,
            event: Published::ApiPost { uri: uri.to_owned(), client_ip: client_ip(peer), app: Arc::new(spec.clone()) },
        });
    }
}

pub(super) async fn create(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    OriginalUri(uri): OriginalUri,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let force = params.flag("force", false)?;
    let value = json_body(body)?;
    let mut problems = Problems::new();
    let spec = parse_app(&value, &AppContext::top(None), &mut problems).ok_or_else(|| ApiError::invalid(&problems))?;
    let id = spec.id.clone();
    // The planner refuses an id already taken, atomically with the change.
    let expect = BTreeMap::from([(id.clone(), Expected::Absent)]);
    let reply = api.command(Command::PutApps { apps: vec![spec.clone()], force, expect }).await?;
    publish_posts(&api, uri.path(), &peer, std::slice::from_ref(&spec));
    // The app as it now stands: counts and the deployment starting it, as Marathon shows.
    let shown = {
        let id = id.clone();
        api.read(move |planner, _| {
            let embed = Embed { counts: true, deployments: true, ..Embed::default() };
            planner.app(&id).map(|record| to_json(&AppView::new(record, planner, embed)))
        })
        .await?
    };
    let bytes = match shown {
        Some(rendered) => rendered?,
        // Deleted again before we looked: the definition we created is still the answer.
        None => to_json(&AppView::definition(&spec))?,
    };
    let mut response = json_bytes(StatusCode::CREATED, bytes);
    set_location(&mut response, &id);
    if let Reply::Deployment { id, .. } = &reply
        && let Ok(value) = HeaderValue::from_str(&id.0)
    {
        response.headers_mut().insert("Marathon-Deployment-Id", value);
    }
    Ok(response)
}

fn set_location(response: &mut Response, id: &AppId) {
    if let Ok(value) = HeaderValue::from_str(&format!("/v2/apps{id}")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

/// How a PUT or PATCH treats the fields it does not give.
#[derive(Clone, Copy, Debug)]
struct UpdateMode {
    /// Merge into the current definition (PATCH; PUT unless `partialUpdate=false`).
    partial: bool,
    /// Create apps that do not exist (PUT) or answer 404 (PATCH).
    allow_creation: bool,
}

/// One app's part of an update: its id, the body, where the body sits in the request.
#[derive(Clone)]
struct Update {
    id: AppId,
    body: Map<String, Value>,
    path: String,
}

/// What the planner holds for an updated app.
struct Current {
    definition: Option<Map<String, Value>>,
    /// The version the definition is at.
    version: Option<Timestamp>,
    /// The version asked for by a rollback body, if it exists.
    rollback: Option<Arc<AppSpec>>,
}

/// Turns updates into complete specs against the current state; the second value is the
/// version each existing app was read at (`None`: it did not exist).
async fn resolve_updates(
    api: &Api,
    updates: Vec<Update>,
    mode: UpdateMode,
) -> Result<Vec<(AppSpec, Option<Timestamp>)>, ApiError> {
    let mut rollbacks = Vec::with_capacity(updates.len());
    for update in &updates {
        let version = match rollback_version(&update.body) {
            None => None,
            Some(value) => {
                let at = value.as_str().and_then(Timestamp::parse).ok_or_else(|| {
                    ApiError::invalid_field(
                        format!("{}/version", update.path),
                        "is not a version (2015-02-11T09:31:25.123Z)",
                    )
                })?;
                Some(at)
            }
        };
        rollbacks.push(version);
    }
    let wanted: Vec<(AppId, Option<Timestamp>)> =
        updates.iter().zip(&rollbacks).map(|(u, v)| (u.id.clone(), *v)).collect();
    let current: Vec<Current> = api
        .read(move |planner: &Planner, _| {
            wanted
                .iter()
                .map(|(id, version)| Current {
                    definition: planner.app(id).map(|r| definition_json(&r.spec)),
                    version: planner.app(id).map(|r| r.version),
                    rollback: version.and_then(|v| planner.version(id, v).cloned()),
                })
                .collect()
        })
        .await?;

    let mut problems = Problems::new();
    let mut specs = Vec::with_capacity(updates.len());
    for ((update, version), current) in updates.iter().zip(rollbacks).zip(current) {
        let exists = current.definition.is_some();
        let read_at = current.version;
        if let Some(at) = version {
            if !exists {
                return Err(app_not_found(&update.id));
            }
            let spec = current
                .rollback
                .ok_or_else(|| ApiError::not_found(format!("App '{}' does not exist in version {at}", update.id)))?;
            specs.push(((*spec).clone(), read_at));
            continue;
        }
        let cx = AppContext { url_id: Some(&update.id), path: update.path.clone(), ..AppContext::top(None) };
        let spec = match current.definition {
            Some(definition) if mode.partial => {
                parse_app(&Value::Object(merge_update(definition, &update.body)), &cx, &mut problems)
            }
            None if !mode.allow_creation => return Err(app_not_found(&update.id)),
            _ => parse_app(&Value::Object(update.body.clone()), &cx, &mut problems),
        };
        if let Some(spec) = spec {
            specs.push((spec, read_at));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(&problems));
    }
    Ok(specs)
}

/// Resolves the updates against the current state and applies them, expecting every app
/// that existed to be still at the version read: a change that lands in between (another
/// PATCH, a scale) is merged with, not overwritten. Answers the reply and each spec with
/// whether its app existed.
async fn put_updates(
    api: &Api,
    updates: Vec<Update>,
    mode: UpdateMode,
    force: bool,
) -> Result<(Reply, Vec<(AppSpec, bool)>), ApiError> {
    api.command_prepared(|| {
        let (api, updates) = (api.clone(), updates.clone());
        async move {
            let resolved = resolve_updates(&api, updates, mode).await?;
            let expect = resolved
                .iter()
                .filter_map(|(spec, read_at)| read_at.map(|at| (spec.id.clone(), Expected::Version(at))))
                .collect();
            let applied: Vec<(AppSpec, bool)> =
                resolved.iter().map(|(spec, read_at)| (spec.clone(), read_at.is_some())).collect();
            let apps = resolved.into_iter().map(|(spec, _)| spec).collect();
            Ok((Command::PutApps { apps, force, expect }, applied))
        }
    })
    .await
}

fn body_object(value: Value, path: &str) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::invalid_field(
            if path.is_empty() { "/" } else { path },
            format!("expected an object, got {}", agora_sdk::json::type_name(&other)),
        )),
    }
}

pub(super) async fn put_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    OriginalUri(uri): OriginalUri,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let mode = UpdateMode { partial: params.flag("partialUpdate", true)?, allow_creation: true };
    update_one(api, &rest, &params, mode, uri.path(), &peer, body).await
}

pub(super) async fn patch_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    OriginalUri(uri): OriginalUri,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let mode = UpdateMode { partial: true, allow_creation: false };
    update_one(api, &rest, &params, mode, uri.path(), &peer, body).await
}

async fn update_one(
    api: Api,
    rest: &str,
    params: &Params,
    mode: UpdateMode,
    uri: &str,
    peer: &Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let force = params.flag("force", false)?;
    let id = app_id_for_write(rest)?;
    let body = body_object(json_body(body)?, "")?;
    let (reply, mut specs) =
        put_updates(&api, vec![Update { id: id.clone(), body, path: String::new() }], mode, force).await?;
    let Some((spec, existed)) = specs.pop() else {
        return Err(ApiError::invalid_field("/", "nothing to change"));
    };
    publish_posts(&api, uri, peer, std::slice::from_ref(&spec));
    if existed {
        Ok(deployment_result(StatusCode::OK, &reply))
    } else {
        let mut response = deployment_result(StatusCode::CREATED, &reply);
        set_location(&mut response, &id);
        Ok(response)
    }
}

pub(super) async fn put_many(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    OriginalUri(uri): OriginalUri,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let mode = UpdateMode { partial: params.flag("partialUpdate", true)?, allow_creation: true };
    update_many(api, &params, mode, uri.path(), &peer, body).await
}

pub(super) async fn patch_many(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    OriginalUri(uri): OriginalUri,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    update_many(api, &params, UpdateMode { partial: true, allow_creation: false }, uri.path(), &peer, body).await
}

async fn update_many(
    api: Api,
    params: &Params,
    mode: UpdateMode,
    uri: &str,
    peer: &Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let force = params.flag("force", false)?;
    let Value::Array(items) = json_body(body)? else {
        return Err(ApiError::invalid_field("/", "expected an array of apps"));
    };
    let mut updates = Vec::with_capacity(items.len());
    let mut problems = Problems::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("/({i})");
        let body = body_object(item, &path)?;
        match body.get("id").and_then(Value::as_str).map(PathId::parse) {
            Some(Ok(id)) if !id.is_root() => updates.push(Update { id, body, path }),
            Some(Err(e)) => problems.add(format!("{path}/id"), e.0),
            _ => problems.add(format!("{path}/id"), "every app in the list needs its id"),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(&problems));
    }
    let ids: Vec<&str> = updates.iter().map(|u| u.id.as_str()).collect();
    agora_sdk::json::unique(ids, "/", "app ids", &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::invalid(&problems));
    }
    let (reply, specs) = put_updates(&api, updates, mode, force).await?;
    let specs: Vec<AppSpec> = specs.into_iter().map(|(spec, _)| spec).collect();
    publish_posts(&api, uri, peer, &specs);
    Ok(deployment_result(StatusCode::OK, &reply))
}

pub(super) async fn delete_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    match Target::of(&rest, "DELETE") {
        Target::App(text) => {
            // Marathon deletes an app even while a deployment holds it unless told not to.
            let force = params.flag("force", true)?;
            let id = app_id_for_read(&text)?;
            let reply = api.command(Command::DeleteApp { id, force }).await?;
            Ok(deployment_result(StatusCode::OK, &reply))
        }
        Target::Tasks(text) => {
            let id = app_id_for_read(&text)?;
            let host = params.get("host").map(str::to_owned);
            kill_app_tasks(api, &params, id, move |i| host.as_deref().is_none_or(|h| h == "*" || i.host == h), false)
                .await
        }
        Target::Task(text, task) => {
            let id = app_id_for_read(&text)?;
            kill_app_tasks(api, &params, id, move |i| i.task_id.as_str() == task, true).await
        }
        _ => Err(ApiError::not_found(format!("no such endpoint: DELETE /v2/apps/{rest}"))),
    }
}

pub(super) async fn post_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    match Target::of(&rest, "POST") {
        Target::Restart(text) => {
            let force = params.flag("force", false)?;
            let id = app_id_for_read(&text)?;
            let reply = api.command(Command::RestartApp { id, force }).await?;
            Ok(deployment_result(StatusCode::OK, &reply))
        }
        _ => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("POST is not allowed on /v2/apps/{rest}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Killing tasks
// ---------------------------------------------------------------------------------------

/// `scale` and `wipe`, which exclude each other, and `force`.
fn kill_flags(params: &Params) -> Result<(bool, bool, bool), ApiError> {
    let scale = params.flag("scale", false)?;
    let wipe = params.flag("wipe", false)?;
    if scale && wipe {
        return Err(ApiError::bad_request("You cannot use scale and wipe at the same time."));
    }
    Ok((scale, wipe, params.flag("force", false)?))
}

/// Kills the tasks of `id` that `select` picks; answers the killed tasks as they were
/// (`{"tasks": [...]}`, or `{"task": {...}}` for one), or the deployment with `scale`.
async fn kill_app_tasks<F>(api: Api, params: &Params, id: AppId, select: F, single: bool) -> Result<Response, ApiError>
where
    F: Fn(&Instance) -> bool + Send + 'static,
{
    let (scale, wipe, force) = kill_flags(params)?;
    let (ids, rendered) = api
        .read(move |planner, _| {
            let record = planner.app(&id).ok_or_else(|| app_not_found(&id))?;
            let picked: Vec<&Instance> = planner.instances_of(&id).filter(|i| select(i)).collect();
            let ids: Vec<_> = picked.iter().map(|i| i.task_id.clone()).collect();
            let views = picked.into_iter().map(|i| TaskView { instance: i, app: Some(&record.spec) });
            let rendered = if single {
                #[derive(Serialize)]
                struct One<'a> {
                    task: TaskView<'a>,
                }
                match views.into_iter().next() {
                    Some(task) => to_json(&One { task })?,
                    None => return Err(ApiError::not_found(format!("Task does not exist in app '{id}'"))),
                }
            } else {
                to_json(&TaskList { tasks: views.collect() })?
            };
            Ok((ids, rendered))
        })
        .await??;
    if ids.is_empty() {
        return Ok(json_bytes(StatusCode::OK, rendered));
    }
    let reply = api.command(Command::KillTasks { tasks: ids, scale, wipe, force }).await?;
    Ok(if scale { deployment_result(StatusCode::OK, &reply) } else { json_bytes(StatusCode::OK, rendered) })
}

pub(super) async fn all_tasks(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use agora_proto::model::TaskState;
    let params = Params::parse(query.as_deref());
    // `status=running`, `status[]=staging`; unknown conditions are ignored, as Marathon does.
    let mut states: Vec<TaskState> = Vec::new();
    for status in params.all("status").chain(params.all("status[]")) {
        match status.to_ascii_lowercase().as_str() {
            "running" | "task_running" => states.push(TaskState::TaskRunning),
            "staging" | "task_staging" => states.extend([TaskState::TaskStaging, TaskState::TaskStarting]),
            "starting" | "task_starting" => states.push(TaskState::TaskStarting),
            "killing" | "task_killing" => states.push(TaskState::TaskKilling),
            "unreachable" | "task_unreachable" => states.push(TaskState::TaskUnreachable),
            _ => {}
        }
    }
    let text_wanted = wants_text(&headers);
    // From the committed view, on a blocking thread, as the app listing.
    let bytes = api
        .read_view(true, move |view| {
            let keep = |i: &Instance| states.is_empty() || states.contains(&i.state);
            if text_wanted {
                let index = view.instances_by_app();
                let mut out = String::new();
                for app in view.apps() {
                    tasks_text(&mut out, &app.spec, index.of(&app.spec.id).iter().copied().filter(|i| keep(i)));
                }
                return Ok(out.into_bytes());
            }
            // One pass, each app's tasks together, so its spec is looked up once per app.
            let mut last: Option<(&AppId, Option<&AppSpec>)> = None;
            let tasks = view.instances().filter(|i| keep(i)).map(|instance| {
                let app = match last {
                    Some((id, spec)) if id == &instance.app_id => spec,
                    _ => {
                        let spec = view.app(&instance.app_id).map(|r| &*r.spec);
                        last = Some((&instance.app_id, spec));
                        spec
                    }
                };
                TaskView { instance, app }
            });
            let mut out = Vec::with_capacity(view.instance_count() * TASK_BYTES);
            write_task_list(&mut out, tasks);
            Ok::<_, ApiError>(out)
        })
        .await??;
    Ok(if text_wanted { text_response(bytes) } else { json_bytes(StatusCode::OK, bytes) })
}

/// Marathon's `text/plain` task list: per app and service port, a tab-separated line of
/// the app (slashes as `_`), the service port, and each task's `host:port`; an app without
/// ports gets one line of its tasks' hosts.
fn tasks_text<'a>(out: &mut String, spec: &AppSpec, instances: impl Iterator<Item = &'a Instance>) {
    use std::fmt::Write;
    let instances: Vec<&Instance> = instances.collect();
    let name = spec.id.task_prefix();
    if spec.port_definitions.is_empty() {
        let _ = write!(out, "{name}\t \t");
        for i in &instances {
            let _ = write!(out, "{}\t", i.host);
        }
        out.push('\n');
        return;
    }
    for (index, definition) in spec.port_definitions.iter().enumerate() {
        let _ = write!(out, "{name}\t{}\t", definition.port);
        for i in &instances {
            if let Some(port) = i.ports.get(index) {
                let _ = write!(out, "{}:{port}\t", i.host);
            }
        }
        out.push('\n');
    }
}

fn text_response(bytes: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], bytes)
        .into_response()
}

pub(super) async fn delete_tasks(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let (scale, wipe, force) = kill_flags(&params)?;
    let body = json_body(body)?;
    let mut problems = Problems::new();
    let ids = agora_sdk::json::Obj::of(&body, "", &mut problems).and_then(|obj| {
        obj.reject_unknown(&["ids"], &mut problems);
        let ids = obj.strings("ids", crate::model::MAX_INSTANCES as usize, 1_024, &mut problems);
        if ids.is_none() && !obj.has("ids") {
            problems.add("/ids", "is required");
        }
        ids
    });
    let Some(ids) = ids.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid(&problems));
    };
    let (known, rendered) = api
        .read(move |planner, _| {
            let known: Vec<&Instance> =
                ids.iter().filter_map(|id| planner.instance(&agora_proto::model::TaskId::from(id.as_str()))).collect();
            let tasks =
                known.iter().map(|i| TaskView { instance: i, app: planner.app(&i.app_id).map(|r| &*r.spec) }).collect();
            let rendered = to_json(&TaskList { tasks })?;
            Ok::<_, ApiError>((known.into_iter().map(|i| i.task_id.clone()).collect::<Vec<_>>(), rendered))
        })
        .await??;
    if known.is_empty() {
        return Ok(json_bytes(StatusCode::OK, rendered));
    }
    let reply = api.command(Command::KillTasks { tasks: known, scale, wipe, force }).await?;
    Ok(if scale { deployment_result(StatusCode::OK, &reply) } else { json_bytes(StatusCode::OK, rendered) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_split_off_only_for_the_methods_that_have_them() {
        assert_eq!(Target::of("shop/web/tasks", "GET"), Target::Tasks("shop/web".into()));
        assert_eq!(
            Target::of("shop/web/tasks/shop_web.1", "DELETE"),
            Target::Task("shop/web".into(), "shop_web.1".into())
        );
        assert_eq!(Target::of("shop/web/restart", "POST"), Target::Restart("shop/web".into()));
        assert_eq!(Target::of("shop/web/versions", "GET"), Target::Versions("shop/web".into()));
        assert_eq!(
            Target::of("web/versions/2015-02-11T09:31:25.123Z", "GET"),
            Target::Version("web".into(), "2015-02-11T09:31:25.123Z".into())
        );
        assert_eq!(Target::of("shop/tasks", "PUT"), Target::App("shop/tasks".into()));
        assert_eq!(Target::of("tasks", "GET"), Target::App("tasks".into()));
        assert_eq!(Target::of("//shop//web", "GET"), Target::App("shop/web".into()));
    }
}
