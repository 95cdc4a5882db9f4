//! The API's errors in one shape, mapped once to status codes. Chronos answers every
//! refusal with 400 and an `ApiResult` (`{"status": "Bad Request", "message": ...}`),
//! unknown jobs included; we keep its status codes and `status` string and add
//! `details`, one entry per field at fault, so that a client (and chronos-python, which
//! shows the first 120 characters of `message`) learns which field to fix.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use agora_sdk::json::Problems;

/// One entry of `details`: a JSON path and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub path: String,
    pub errors: Vec<String>,
}

/// An answer other than success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Vec<Detail>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), details: Vec::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// An unknown job: Chronos answers 400 `Job 'x' not found`, and so do we.
    pub fn job_not_found(name: &str) -> Self {
        Self::invalid_field("/name", format!("Job '{name}' not found"))
    }

    /// 400 with one detail.
    pub fn invalid_field(path: impl Into<String>, error: impl Into<String>) -> Self {
        let mut problems = Problems::new();
        problems.add(path, error);
        Self::invalid(&problems)
    }

    /// 400 listing every problem found; the message lists them too, field first.
    pub fn invalid(problems: &Problems) -> Self {
        let message = problems
            .iter()
            .map(|(path, error)| match path.trim_start_matches('/') {
                "" => error.to_owned(),
                field => format!("{field}: {error}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            details: problems.grouped().into_iter().map(|(path, errors)| Detail { path, errors }).collect(),
        }
    }

    /// 400: the body is not JSON.
    pub fn malformed_json(error: &serde_json::Error) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("the body is not valid JSON: {error}"),
            details: vec![Detail { path: "/".into(), errors: vec![error.to_string()] }],
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {limit} bytes"))
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    status: &'a str,
    message: &'a str,
    details: &'a [Detail],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.canonical_reason().unwrap_or("Error");
        let body = Body { status, message: &self.message, details: &self.details };
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
    async fn an_invalid_job_names_each_field_in_the_message_and_the_details() {
        let mut problems = Problems::new();
        problems.add("/schedule", "61 * * * *: minute 61 is out of range 0-59");
        problems.add("/retries", "too many");
        let (status, body) = body_of(ApiError::invalid(&problems)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            serde_json::json!({
                "status": "Bad Request",
                "message": "schedule: 61 * * * *: minute 61 is out of range 0-59; retries: too many",
                "details": [
                    {"path": "/schedule", "errors": ["61 * * * *: minute 61 is out of range 0-59"]},
                    {"path": "/retries", "errors": ["too many"]}
                ]
            })
        );
    }

    #[tokio::test]
    async fn an_unknown_job_is_a_bad_request_as_in_chronos() {
        let (status, body) = body_of(ApiError::job_not_found("nightly")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "name: Job 'nightly' not found");
    }
}
