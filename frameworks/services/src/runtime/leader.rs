//! What a follower answers: every request but `/ping` and `/v2/leader` gets a 307 to the
//! leader with the same path and query (Marathon's clients follow it), or a 503 while no
//! leader is elected. On the leader the layer lets everything through to the REST API.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::election::Role;

/// The axum middleware (`axum::middleware::from_fn_with_state(role, follow_leader)`).
pub async fn follow_leader(State(role): State<watch::Receiver<Role>>, request: Request, next: Next) -> Response {
    let leader = match &*role.borrow() {
        Role::Leader => None,
        Role::Follower { leader } => Some(leader.clone()),
    };
    let Some(leader) = leader else { return next.run(request).await };
    match (request.uri().path(), &leader) {
        ("/ping", _) => return ([(header::CONTENT_TYPE, "text/plain")], "pong").into_response(),
        ("/v2/leader", Some(leader)) => return axum::Json(json!({ "leader": leader })).into_response(),
        ("/v2/leader", None) => {
            let body = json!({ "message": "There is no leader", "details": [] });
            return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        }
        _ => {}
    }
    match leader {
        Some(leader) => {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let scheme = agora_proto::tls::scheme(request.extensions());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("{scheme}://{leader}{path}"))]).into_response()
        }
        None => {
            let body = json!({ "message": "no leader is elected yet; retry shortly", "details": [] });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn call(role: Role, method: &str, path: &str) -> Response {
        let (_tx, rx) = watch::channel(role);
        let app = axum::Router::new()
            .route("/v2/apps", axum::routing::get(|| async { "served" }).post(|| async { "posted" }))
            .layer(axum::middleware::from_fn_with_state(rx, follow_leader));
        let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("a valid request");
        app.oneshot(request).await.expect("the router answers")
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn following(leader: Option<&str>) -> Role {
        Role::Follower { leader: leader.map(str::to_owned) }
    }

    #[tokio::test]
    async fn the_leader_serves_every_request_itself() {
        let response = call(Role::Leader, "POST", "/v2/apps").await;
        assert_eq!(body(response).await, "posted");
    }

    #[tokio::test]
    async fn a_follower_redirects_to_the_leader_keeping_method_path_and_query() {
        let response = call(following(Some("10.0.0.2:8080")), "POST", "/v2/apps?force=true&x=%2F").await;
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "http://10.0.0.2:8080/v2/apps?force=true&x=%2F");
    }

    #[tokio::test]
    async fn a_follower_answers_ping_and_leader_itself() {
        let ping = call(following(Some("10.0.0.2:8080")), "GET", "/ping").await;
        assert_eq!(ping.status(), StatusCode::OK);
        assert_eq!(body(ping).await, "pong");
        let leader = call(following(Some("10.0.0.2:8080")), "GET", "/v2/leader").await;
        assert_eq!(body(leader).await, r#"{"leader":"10.0.0.2:8080"}"#);
    }

    #[tokio::test]
    async fn without_a_leader_a_follower_answers_503_and_404_on_leader() {
        assert_eq!(call(following(None), "GET", "/v2/apps").await.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(call(following(None), "GET", "/v2/leader").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(call(following(None), "GET", "/ping").await.status(), StatusCode::OK);
    }
}
