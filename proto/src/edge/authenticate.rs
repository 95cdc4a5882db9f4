//! Operator authentication for the frameworks' REST APIs (services, cron): the middleware
//! that, with `--authenticate-http`, refuses a request without a valid credential (HTTP
//! Basic, `Bearer SECRET`, Marathon's `token=SECRET`) with 401 and a Basic challenge, and
//! marks an authenticated one ([`super::Authenticated`]) for the layers inside it. The
//! master has its own (`agora_master::runtime::auth`), which adds the ACLs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::Authenticated;
use crate::auth::Credentials;

/// What a REST API requires of its callers.
#[derive(Clone, Debug)]
pub struct HttpGate {
    pub credentials: Arc<Credentials>,
    /// Refuse requests without a valid credential (`--authenticate-http`); otherwise a
    /// credential presented is still checked, and marks the caller authenticated.
    pub required: bool,
    /// Paths anyone may read (health probes: `/ping`).
    pub open_paths: &'static [&'static str],
}

/// The middleware; wrap it outside the cross-site guard so that an authenticated caller
/// is known there.
pub async fn authenticate(State(gate): State<Arc<HttpGate>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = gate.open_paths.contains(&path);
    let value = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    if value.is_none() && (open || !gate.required) {
        return next.run(request).await;
    }
    match gate.credentials.authenticate(value) {
        Ok(principal) => {
            request.extensions_mut().insert(Authenticated { principal });
            next.run(request).await
        }
        Err(_) if open => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(path = %request.uri().path(), %refusal, "request refused: authentication");
            let mut response =
                super::error_response(StatusCode::UNAUTHORIZED, refusal.to_string(), serde_json::json!([]));
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"agora\""));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;
    use crate::auth::Credential;

    fn app(required: bool) -> Router {
        let credentials = Arc::new(Credentials::parse("ops s3cret").expect("valid"));
        let gate = Arc::new(HttpGate { credentials, required, open_paths: &["/ping"] });
        Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route(
                "/v2/apps",
                get(|request: Request| async move {
                    let who = request.extensions().get::<Authenticated>().map(|a| a.principal.clone());
                    who.unwrap_or_else(|| "anonymous".to_owned())
                }),
            )
            .layer(axum::middleware::from_fn_with_state(gate, authenticate))
    }

    async fn call(app: Router, path: &str, authorization: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::builder().uri(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app.oneshot(request.body(Body::empty()).expect("a request")).await.expect("an answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn with_authentication_required_only_open_paths_answer_without_a_valid_credential() {
        let basic = Credential::new("ops", "s3cret").basic();
        let cases: [(&str, Option<&str>, StatusCode, &str); 7] = [
            ("/v2/apps", None, StatusCode::UNAUTHORIZED, "authentication is required"),
            ("/v2/apps", Some("Bearer nope"), StatusCode::UNAUTHORIZED, "not valid"),
            ("/v2/apps", Some("Digest x"), StatusCode::UNAUTHORIZED, "malformed"),
            ("/v2/apps", Some(&basic), StatusCode::OK, "ops"),
            ("/v2/apps", Some("Bearer s3cret"), StatusCode::OK, "ops"),
            ("/v2/apps", Some("token=s3cret"), StatusCode::OK, "ops"),
            ("/ping", None, StatusCode::OK, "pong"),
        ];
        for (path, authorization, status, body) in cases {
            let (got_status, got_body) = call(app(true), path, authorization).await;
            assert_eq!(got_status, status, "{path} {authorization:?}: {got_body}");
            assert!(got_body.contains(body), "{path} {authorization:?}: {got_body}");
        }
    }

    #[tokio::test]
    async fn without_it_anonymous_callers_pass_and_a_presented_credential_must_still_be_valid() {
        assert_eq!(call(app(false), "/v2/apps", None).await, (StatusCode::OK, "anonymous".to_owned()));
        assert_eq!(call(app(false), "/v2/apps", Some("token=wrong")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(app(false), "/v2/apps", Some("token=s3cret")).await, (StatusCode::OK, "ops".to_owned()));
    }
}
