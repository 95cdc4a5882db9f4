//! The one error shape every Agora HTTP API answers with, `{"message": …, "details": …}`,
//! and a middleware that puts axum's own refusals (405 with an empty body, 413 and 415 as
//! plain text, a malformed path or query) into it, so a client parses every error the
//! same way.

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Most bytes of a plain-text error body kept as the JSON message.
const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// `{"message": …, "details": …}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>, details: Value) -> Response {
    (status, Json(json!({ "message": message.into(), "details": details }))).into_response()
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .is_some_and(|media| media == "application/json" || media.ends_with("+json"))
}

fn is_grpc(content_type: Option<&HeaderValue>) -> bool {
    content_type.and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"))
}

/// Rewrites an error answer that is not JSON into the JSON shape, keeping its status and
/// headers (`Allow`, `Retry-After`). gRPC exchanges are left alone: their errors travel in
/// trailers.
pub async fn json_errors(request: Request, next: Next) -> Response {
    if is_grpc(request.headers().get(header::CONTENT_TYPE)) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers().get(header::CONTENT_TYPE))
        || is_grpc(response.headers().get(header::CONTENT_TYPE))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The body of axum's own rejections is a short sentence; a longer one is cut, never
    // buffered whole.
    let text = match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = message_for(status, &method, &path, &text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&json!({ "message": message, "details": [] })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// A sentence for an error axum (or hyper) answered in its own words or with none.
fn message_for(status: StatusCode, method: &Method, path: &str, text: &str) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => format!("the request body is larger than {path} accepts"),
        _ if !text.is_empty() => text.to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/thing", get(|| async { "ok" }).post(|body: String| async move { body }))
            .route("/json", post(|Json(v): Json<Value>| async move { Json(v) }))
            .route(
                "/grpc",
                post(|| async { (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/grpc")], "") }),
            )
            .layer(DefaultBodyLimit::max(16))
            .layer(axum::middleware::from_fn(json_errors))
    }

    async fn call(request: Request) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn request(method: &str, uri: &str, content_type: &str, body: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .expect("valid request")
    }

    #[tokio::test]
    async fn a_method_not_allowed_is_json_and_keeps_its_allow_header() {
        let (status, headers, body) = call(request("DELETE", "/thing", "application/json", "")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(headers.get(header::ALLOW).is_some());
        assert_eq!(body["message"], "DELETE is not allowed on /thing");
        assert_eq!(body["details"], json!([]));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_and_a_wrong_media_type_are_json() {
        let (status, _, body) = call(request("POST", "/thing", "application/json", &"x".repeat(64))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["message"].as_str().is_some_and(|m| m.contains("larger")), "{body}");
        let (status, _, body) = call(request("POST", "/json", "text/plain", "{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(body["message"].as_str().is_some_and(|m| m.contains("Content-Type")), "{body}");
    }

    #[tokio::test]
    async fn grpc_answers_and_successes_are_left_alone() {
        let response = app().oneshot(request("POST", "/grpc", "application/grpc", "")).await.expect("infallible");
        assert_eq!(response.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
        let response = app().oneshot(request("GET", "/thing", "text/plain", "")).await.expect("infallible");
        let bytes = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
        assert_eq!(&bytes[..], b"ok");
    }
}
