//! The API's errors in Marathon's shape, `{"message": ..., "details": [...]}`, mapped once
//! to status codes: 400 malformed JSON, 404 unknown ids, 409 locked by a deployment (with
//! `deployments: [{"id": ...}]`), 422 invalid definitions (each detail names a field),
//! 413 bodies over the limit, 503 when the owner is not there.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::core::PlanError;
use crate::model::DeploymentId;
use crate::runtime::Unavailable;
use agora_sdk::json::Problems;

/// One entry of `details`: a JSON path and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub path: String,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Vec<Detail>,
    /// For 409: the deployments holding the apps.
    pub deployments: Vec<DeploymentId>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), details: Vec::new(), deployments: Vec::new() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422 with one detail.
    pub fn invalid_field(path: impl Into<String>, error: impl Into<String>) -> Self {
        let mut problems = Problems::new();
        problems.add(path, error);
        Self::invalid(&problems)
    }

    /// 422 listing every problem found.
    pub fn invalid(problems: &Problems) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "Object is not valid".into(),
            details: problems.grouped().into_iter().map(|(path, errors)| Detail { path, errors }).collect(),
            deployments: Vec::new(),
        }
    }

    /// 400: the body is not JSON.
    pub fn malformed_json(error: &serde_json::Error) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: "Invalid JSON".into(),
            details: vec![Detail { path: "/".into(), errors: vec![error.to_string()] }],
            deployments: Vec::new(),
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {limit} bytes"))
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, Unavailable.to_string())
    }
}

impl From<Unavailable> for ApiError {
    fn from(_: Unavailable) -> Self {
        Self::unavailable()
    }
}

impl From<PlanError> for ApiError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::NotFound(message) => ApiError::not_found(message),
            PlanError::Conflict { message, deployments } => {
                ApiError { status: StatusCode::CONFLICT, message, details: Vec::new(), deployments }
            }
            PlanError::Invalid { field, message } => {
                let path = if field.is_empty() || field.starts_with('/') { field } else { format!("/{field}") };
                ApiError::invalid_field(if path.is_empty() { "/".to_owned() } else { path }, message)
            }
            PlanError::Stale(id) => ApiError::new(
                StatusCode::CONFLICT,
                format!("App {id} kept changing while this request was applied; send it again."),
            ),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    details: &'a [Detail],
    #[serde(skip_serializing_if = "Option::is_none")]
    deployments: Option<Vec<IdOnly<'a>>>,
}

#[derive(Serialize)]
struct IdOnly<'a> {
    id: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let deployments = (self.status == StatusCode::CONFLICT)
            .then(|| self.deployments.iter().map(|d| IdOnly { id: &d.0 }).collect());
        let body = Body { message: &self.message, details: &self.details, deployments };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn a_conflict_names_the_deployments_holding_the_apps() {
        let error = ApiError::from(PlanError::Conflict {
            message: "App is locked by one or more deployments.".into(),
            deployments: vec![DeploymentId("d-1".into())],
        });
        let (status, body) = body_of(error).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            body,
            serde_json::json!({"message": "App is locked by one or more deployments.", "details": [],
                "deployments": [{"id": "d-1"}]})
        );
    }

    #[tokio::test]
    async fn an_invalid_definition_lists_each_field_with_its_errors() {
        let mut problems = Problems::new();
        problems.add("/cpus", "too small");
        problems.add("/id", "bad");
        problems.add("/cpus", "not a number");
        let (status, body) = body_of(ApiError::invalid(&problems)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body,
            serde_json::json!({"message": "Object is not valid", "details": [
                {"path": "/cpus", "errors": ["too small", "not a number"]},
                {"path": "/id", "errors": ["bad"]}]})
        );
    }

    #[tokio::test]
    async fn a_planner_refusal_names_its_field_as_a_path() {
        let (status, body) =
            body_of(PlanError::Invalid { field: "dependencies".into(), message: "unknown /db".into() }.into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["path"], "/dependencies");
    }
}
