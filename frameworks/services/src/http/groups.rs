//! `/v2/groups`: the tree of groups (explicit ones and those implied by app ids), shown
//! with Marathon's embeds.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;

use super::{Api, Params, to_json};
use crate::marathon::ApiError;
use crate::marathon::render::{GroupEmbed, GroupTree};
use crate::model::PathId;

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
