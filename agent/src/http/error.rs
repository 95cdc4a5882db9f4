//! The HTTP API's errors and their one mapping to status codes and JSON bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{field}: {reason}")]
    BadParameter { field: &'static str, reason: String },
    #[error("path {path:?} leaves the sandboxes")]
    Escapes { path: String },
    #[error("{path:?} was not found")]
    NotFound { path: String },
    #[error("{path:?} is a directory")]
    IsADirectory { path: String },
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    #[error("{path:?} is not served: it {reason}")]
    NotServed { path: String, reason: String },
    #[error("cannot read {path:?}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("the agent is stopping")]
    Stopping,
    #[error("too many requests at once; try again")]
    Busy,
    /// The `access_sandboxes` ACL refused; `acl` names the rule.
    #[error("{message}")]
    Forbidden { message: String, acl: String },
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, details) = match &self {
            HttpError::BadParameter { field, reason } => {
                (StatusCode::BAD_REQUEST, json!({ "field": field, "reason": reason }))
            }
            HttpError::Escapes { path } | HttpError::IsADirectory { path } | HttpError::NotADirectory { path } => {
                (StatusCode::BAD_REQUEST, json!({ "path": path }))
            }
            HttpError::NotFound { path } => (StatusCode::NOT_FOUND, json!({ "path": path })),
            HttpError::NotServed { path, reason } => (StatusCode::FORBIDDEN, json!({ "path": path, "reason": reason })),
            HttpError::Io { path, cause } => {
                (StatusCode::INTERNAL_SERVER_ERROR, json!({ "path": path, "error": cause.to_string() }))
            }
            HttpError::Stopping | HttpError::Busy => (StatusCode::SERVICE_UNAVAILABLE, serde_json::Value::Null),
            HttpError::Forbidden { acl, .. } => (StatusCode::FORBIDDEN, json!([{ "acl": acl }])),
        };
        (status, Json(json!({ "message": self.to_string(), "details": details }))).into_response()
    }
}
