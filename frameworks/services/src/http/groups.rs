//! `/v2/groups`: the tree of groups (explicit ones and those implied by app ids), shown
//! with Marathon's embeds, created, changed (a whole stack from one file), scaled and
//! deleted.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::{Api, Params, deployment_result, json_body, to_json};
use crate::core::{Command, Expected};
use crate::marathon::group::{Subtree, parse_group};
use crate::marathon::render::{GroupEmbed, GroupTree};
use crate::marathon::{ApiError, Problems};
use crate::model::{AppId, GroupId, MAX_INSTANCES, PathId, Timestamp};

fn group_not_found(id: &str) -> ApiError {
    let id = if id.starts_with('/') { id.to_owned() } else { format!("/{id}") };
    ApiError::not_found(format!("Group '{id}' does not exist"))
}

pub(super) async fn get_root(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    show(api, "/", query).await
}

pub(super) async fn get_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    match rest.trim_end_matches('/').strip_suffix("versions") {
        Some(group) if group.is_empty() || group.ends_with('/') => versions(api, group).await,
        _ => show(api, &rest, query).await,
    }
}

async fn show(api: Api, text: &str, query: Option<String>) -> Result<Response, ApiError> {
    let id = PathId::parse(text).map_err(|_| group_not_found(text))?;
    let params = Params::parse(query.as_deref());
    let embed = GroupEmbed::parse(params.all("embed"));
    api.render(move |planner, _| {
        let tree = GroupTree::new(planner);
        if !tree.contains(&id) {
            return Err(group_not_found(id.as_str()));
        }
        let tree = if embed.apps && embed.app.needs_instances() { tree.with_instances() } else { tree };
        to_json(&tree.view(&id, embed))
    })
    .await
}

/// The times the group's contents changed: every stored version of the apps in it,
/// newest first. (Agora keeps versions per app; a group's history is theirs.)
async fn versions(api: Api, text: &str) -> Result<Response, ApiError> {
    let id = PathId::parse(text).map_err(|_| group_not_found(text))?;
    api.render(move |planner, _| {
        let tree = GroupTree::new(planner);
        if !tree.contains(&id) {
            return Err(group_not_found(id.as_str()));
        }
        let mut versions: Vec<_> =
            tree.apps_under(&id).iter().flat_map(|app| planner.versions(&app.spec.id).map(|(v, _)| *v)).collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.dedup();
        to_json(&versions.iter().map(ToString::to_string).collect::<Vec<_>>())
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Changes
// ---------------------------------------------------------------------------------------

/// The current subtree under `id`: its apps' specs and its explicit groups.
async fn subtree(api: &Api, id: &GroupId) -> Result<(bool, Subtree), ApiError> {
    let id = id.clone();
    api.read(move |planner, _| {
        let tree = GroupTree::new(planner);
        let exists = tree.contains(&id);
        let subtree = Subtree {
            apps: tree.apps_under(&id).into_iter().map(|a| (a.spec.id.clone(), (*a.spec).clone())).collect(),
            versions: tree.apps_under(&id).into_iter().map(|a| (a.spec.id.clone(), a.version)).collect(),
            groups: planner.groups().filter(|g| id.contains(&g.id)).map(|g| (g.id.clone(), g.clone())).collect(),
        };
        (exists, subtree)
    })
    .await
}

fn group_id_for_write(text: &str) -> Result<GroupId, ApiError> {
    PathId::parse(text).map_err(|e| ApiError::invalid_field("/id", e.0))
}

pub(super) async fn create(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    create_group(api, None, query, body).await
}

pub(super) async fn create_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = group_id_for_write(&rest)?;
    create_group(api, Some(id), query, body).await
}

/// `POST /v2/groups[/{id}]`: creates a group with what it holds; 409 if it exists.
async fn create_group(
    api: Api,
    url_id: Option<GroupId>,
    query: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let force = params.flag("force", false)?;
    let value = json_body(body)?;
    let mut problems = Problems::new();
    let def = parse_group(&value, url_id.as_ref(), &mut problems).ok_or_else(|| ApiError::invalid(&problems))?;
    // Prepared from the subtree as it stands, and again if an app in it changes meanwhile.
    let (reply, ()) = api
        .command_prepared(|| {
            let (api, def) = (api.clone(), def.clone());
            async move {
                let (exists, mut current) = subtree(&api, &def.id).await?;
                if exists && !def.id.is_root() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("Group {} is already created. Use PUT to change this group.", def.id),
                    ));
                }
                let read = current.versions.clone();
                current.apply(&def);
                Ok((put_group(&def.id, current, force, read), ()))
            }
        })
        .await?;
    let mut response = deployment_result(StatusCode::CREATED, &reply);
    if let Ok(value) = HeaderValue::from_str(&format!("/v2/groups{}", def.id)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The change that makes the group's subtree `subtree`, prepared from the apps `read`.
fn put_group(id: &GroupId, subtree: Subtree, force: bool, read: BTreeMap<AppId, Timestamp>) -> Command {
    Command::PutGroup {
        id: id.clone(),
        groups: subtree.groups.into_values().collect(),
        apps: subtree.apps.into_values().collect(),
        force,
        read: Some(read),
    }
}

pub(super) async fn put_root(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    update(api, PathId::root(), query, body).await
}

pub(super) async fn put_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    update(api, group_id_for_write(&rest)?, query, body).await
}

/// `PUT /v2/groups/{id}`: the lists given replace the group's, or `{"scaleBy": f}` scales
/// every app in it (instances × f, rounded up). Creates the group if it does not exist.
async fn update(
    api: Api,
    id: GroupId,
    query: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let force = params.flag("force", false)?;
    if params.flag("dryRun", false)? {
        return Err(ApiError::bad_request("dryRun is not supported by Agora: the change would be applied"));
    }
    let value = json_body(body)?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::invalid_field("/", "expected a group object"));
    };
    if let Some(scale_by) = map.remove("scaleBy").filter(|v| !v.is_null()) {
        return scale(api, id, &map, &scale_by, force).await;
    }
    if map.get("version").is_some_and(|v| !v.is_null()) && map.keys().all(|k| k == "version" || k == "id") {
        return Err(ApiError::invalid_field(
            "/version",
            "Agora keeps versions per app: roll an app back with PUT /v2/apps/{id} and {\"version\": ...}",
        ));
    }
    let mut problems = Problems::new();
    let def = parse_group(&Value::Object(map), Some(&id), &mut problems).ok_or_else(|| ApiError::invalid(&problems))?;
    let (reply, ()) = api
        .command_prepared(|| {
            let (api, id, def) = (api.clone(), id.clone(), def.clone());
            async move {
                let (_, mut current) = subtree(&api, &id).await?;
                let read = current.versions.clone();
                current.apply(&def);
                Ok((put_group(&id, current, force, read), ()))
            }
        })
        .await?;
    Ok(deployment_result(StatusCode::OK, &reply))
}

async fn scale(
    api: Api,
    id: GroupId,
    rest: &serde_json::Map<String, Value>,
    scale_by: &Value,
    force: bool,
) -> Result<Response, ApiError> {
    if let Some(other) = rest.keys().find(|k| k.as_str() != "id") {
        return Err(ApiError::invalid_field(format!("/{other}"), "scaleBy cannot be combined with other changes"));
    }
    let mut problems = Problems::new();
    let factor = agora_sdk::json::as_number(scale_by, "/scaleBy", 0.0, 100_000.0, &mut problems)
        .ok_or_else(|| ApiError::invalid(&problems))?;
    // Scaled from the instances read; prepared again if an app changes meanwhile.
    let (reply, ()) = api
        .command_prepared(|| {
            let (api, id) = (api.clone(), id.clone());
            async move {
                let (exists, current) = subtree(&api, &id).await?;
                if !exists {
                    return Err(group_not_found(id.as_str()));
                }
                let mut apps = Vec::with_capacity(current.apps.len());
                for (app_id, mut spec) in current.apps {
                    let scaled = (f64::from(spec.instances) * factor).ceil();
                    if scaled > f64::from(MAX_INSTANCES) {
                        return Err(ApiError::invalid_field(
                            "/scaleBy",
                            format!("{app_id} would have {scaled} instances; at most {MAX_INSTANCES} are allowed"),
                        ));
                    }
                    spec.instances = scaled as u32;
                    apps.push(spec);
                }
                let expect = current.versions.into_iter().map(|(app, at)| (app, Expected::Version(at))).collect();
                Ok((Command::PutApps { apps, force, expect }, ()))
            }
        })
        .await?;
    Ok(deployment_result(StatusCode::OK, &reply))
}

pub(super) async fn delete_root(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    delete_group(api, PathId::root(), query).await
}

pub(super) async fn delete_under(
    State(api): State<Api>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = PathId::parse(&rest).map_err(|_| group_not_found(&rest))?;
    delete_group(api, id, query).await
}

async fn delete_group(api: Api, id: GroupId, query: Option<String>) -> Result<Response, ApiError> {
    let force = Params::parse(query.as_deref()).flag("force", false)?;
    let reply = api.command(Command::DeleteGroup { id, force }).await?;
    Ok(deployment_result(StatusCode::OK, &reply))
}
