//! `/v2/deployments` (listed, cancelled with a rollback or stopped with `force`) and the
//! launch queue, `/v2/queue`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Api, Params, deployment_result, to_json};
use crate::core::{Command, Reply};
use crate::marathon::ApiError;
use crate::marathon::render::{DeploymentView, QueueView};
use crate::model::{DeploymentId, PathId};

pub(super) async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    api.render(|planner, _| {
        let views: Vec<DeploymentView<'_>> =
            planner.deployments().map(|deployment| DeploymentView { deployment, planner: Some(planner) }).collect();
        to_json(&views)
    })
    .await
}

/// Rolls the deployment back (200 with the rollback's `{deploymentId, version}`), or with
/// `force=true` only stops it (202, no body), as Marathon does.
pub(super) async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let force = Params::parse(query.as_deref()).flag("force", false)?;
    let reply = api.command(Command::CancelDeployment { id: DeploymentId(id), force }).await?;
    Ok(match reply {
        Reply::Deployment { .. } => deployment_result(StatusCode::OK, &reply),
        Reply::Done { .. } => StatusCode::ACCEPTED.into_response(),
    })
}

pub(super) async fn queue(State(api): State<Api>) -> Result<Response, ApiError> {
    api.render(|planner, now_ms| {
        let entries = planner.queue(now_ms);
        to_json(&QueueView { planner, entries: &entries, now_ms })
    })
    .await
}

/// `DELETE /v2/queue/{app id}/delay`: the app's next launch is not held back any more.
pub(super) async fn reset_delay(State(api): State<Api>, Path(rest): Path<String>) -> Result<Response, ApiError> {
    let Some(app) = rest.trim_end_matches('/').strip_suffix("/delay") else {
        return Err(ApiError::not_found(format!("no such endpoint: DELETE /v2/queue/{rest}")));
    };
    let id = PathId::parse(app).map_err(|_| ApiError::not_found(format!("App '/{app}' does not exist")))?;
    api.command(Command::ResetDelay { id }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
