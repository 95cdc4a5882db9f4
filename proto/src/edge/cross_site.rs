//! The guard against cross-site requests: a web page on another site can make a
//! visitor's browser send a `POST` with a `text/plain` or form body to any address the
//! browser reaches (no CORS preflight is asked for those), and our APIs on loopback or
//! a private network would act on it. So a change (any method but `GET`, `HEAD` and
//! `OPTIONS`):
//! - with a body, must declare it as JSON (or protobuf or gRPC, where the API takes
//!   them): a browser sends those across sites only after a preflight we never grant;
//! - must come from this server's own origin, or without an `Origin` (command-line and
//!   library clients send none), or from a caller the authentication layer marked
//!   [`Authenticated`](super::Authenticated) (a credential it sent on purpose, not an
//!   ambient one).
//!
//! The origin is compared with `Host` (or `X-Forwarded-Host`, which a page cannot set
//! without a preflight), default ports ignored; `Sec-Fetch-Site: cross-site` or
//! `same-site` (another port or subdomain) is refused too.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::Authenticated;
use super::errors::error_response;

/// Why a change was refused, with the header to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub field: &'static str,
    pub reason: String,
}

impl Refusal {
    pub fn into_response(self) -> Response {
        let message = format!("{}: {}", self.field, self.reason);
        error_response(self.status, message, json!([{ "field": self.field, "reason": self.reason }]))
    }
}

/// Media types a change may carry: JSON (any `+json` too), Mesos' protobuf, gRPC.
fn accepted_media_type(media: &str) -> bool {
    media == "application/json"
        || media.ends_with("+json")
        || media == "application/x-protobuf"
        || media.starts_with("application/grpc")
}

fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks a request before it is routed. `has_body`: the request carries body bytes (or
/// may: a chunked body of unknown length counts as one).
pub fn check(method: &Method, headers: &HeaderMap, has_body: bool, authenticated: bool) -> Result<(), Refusal> {
    if !is_change(method) {
        return Ok(());
    }
    if has_body {
        let declared = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = declared.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !accepted_media_type(&media) {
            let shown = if declared.is_empty() { "missing" } else { declared };
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                field: "Content-Type",
                reason: format!("{shown}: a change must be sent as application/json"),
            });
        }
    }
    if authenticated {
        return Ok(());
    }
    same_origin(headers)
}

fn cross_site(reason: String) -> Refusal {
    Refusal { status: StatusCode::FORBIDDEN, field: "Origin", reason }
}

fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(site) = text("sec-fetch-site")
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Err(cross_site(format!(
            "a change from another site (Sec-Fetch-Site: {site}) is refused; send it from this server's \
             own pages, from a client without a browser, or with credentials"
        )));
    }
    let Some(origin) = text("origin") else {
        return Ok(());
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err(cross_site(format!("{origin:?} is not this server: a change from another site is refused")));
    };
    let origin_host = without_default_port(scheme, authority);
    let served = [text("host"), text("x-forwarded-host").map(|h| h.split(',').next().unwrap_or(h).trim())];
    if served.into_iter().flatten().any(|host| without_default_port(scheme, host) == origin_host) {
        return Ok(());
    }
    let host = text("host").unwrap_or("unknown");
    Err(cross_site(format!(
        "{origin} is not this server ({host}): a change from another site is refused; send it from this \
         server's own pages, from a client without a browser, or with credentials"
    )))
}

/// `host:port` in lower case without the scheme's default port, so that
/// `http://example:80` and `Host: example` are the same origin.
fn without_default_port(scheme: &str, authority: &str) -> String {
    let authority = authority.trim_end_matches('/').to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        _ => ":80",
    };
    authority.strip_suffix(default).map(str::to_owned).unwrap_or(authority)
}

/// The middleware: refuses a change that fails [`check`] before any handler sees it.
pub async fn guard_changes(request: Request, next: Next) -> Response {
    let has_body = axum::body::HttpBody::size_hint(request.body()).exact() != Some(0);
    let authenticated = request.extensions().get::<Authenticated>().is_some();
    match check(request.method(), request.headers(), has_body, authenticated) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                method = %request.method(),
                path = %request.uri().path(),
                reason = %refusal.reason,
                "refused a change"
            );
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn post(pairs: &[(&'static str, &'static str)]) -> Result<(), Refusal> {
        check(&Method::POST, &headers(pairs), true, false)
    }

    #[test]
    fn a_text_plain_post_from_a_foreign_origin_is_refused_for_its_media_type_and_its_origin() {
        let refused = post(&[("content-type", "text/plain"), ("origin", "http://evil.example"), ("host", "m:5050")]);
        assert_eq!(refused.map_err(|r| (r.status, r.field)), Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type")));
        let refused =
            post(&[("content-type", "application/json"), ("origin", "http://evil.example"), ("host", "m:5050")]);
        assert_eq!(refused.map_err(|r| (r.status, r.field)), Err((StatusCode::FORBIDDEN, "Origin")));
    }

    #[test]
    fn form_bodies_and_missing_media_types_are_refused_but_body_less_changes_need_none() {
        for media in ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"] {
            let mut map = headers(&[]);
            map.insert(header::CONTENT_TYPE, HeaderValue::from_str(media).expect("valid"));
            assert!(check(&Method::PUT, &map, true, false).is_err(), "{media}");
        }
        assert!(post(&[]).is_err());
        assert_eq!(check(&Method::DELETE, &headers(&[]), false, false), Ok(()));
        assert_eq!(check(&Method::PUT, &headers(&[]), false, false), Ok(()));
    }

    #[test]
    fn json_protobuf_and_grpc_from_clients_without_an_origin_pass() {
        for media in
            ["application/json", "application/json; charset=utf-8", "application/x-protobuf", "application/grpc"]
        {
            let mut map = headers(&[("host", "127.0.0.1:5050")]);
            map.insert(header::CONTENT_TYPE, HeaderValue::from_str(media).expect("valid"));
            assert_eq!(check(&Method::POST, &map, true, false), Ok(()), "{media}");
        }
    }

    #[test]
    fn the_same_origin_passes_with_or_without_its_default_port() {
        let json = ("content-type", "application/json");
        assert_eq!(post(&[json, ("origin", "http://127.0.0.1:5050"), ("host", "127.0.0.1:5050")]), Ok(()));
        assert_eq!(post(&[json, ("origin", "http://Example.org"), ("host", "example.org:80")]), Ok(()));
        assert_eq!(post(&[json, ("origin", "https://example.org"), ("host", "example.org:443")]), Ok(()));
        assert_eq!(
            post(&[json, ("origin", "http://proxy:8080"), ("host", "b:1"), ("x-forwarded-host", "proxy:8080")]),
            Ok(())
        );
        assert!(post(&[json, ("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:5050")]).is_err());
        assert!(post(&[json, ("origin", "null"), ("host", "127.0.0.1:5050")]).is_err());
        assert!(post(&[json, ("sec-fetch-site", "same-site"), ("host", "127.0.0.1:5050")]).is_err());
    }

    #[test]
    fn an_authenticated_caller_passes_from_any_origin_but_still_sends_json() {
        let map = headers(&[("content-type", "application/json"), ("origin", "http://elsewhere"), ("host", "m")]);
        assert_eq!(check(&Method::POST, &map, true, true), Ok(()));
        let map = headers(&[("content-type", "text/plain"), ("origin", "http://elsewhere"), ("host", "m")]);
        assert!(check(&Method::POST, &map, true, true).is_err());
    }

    #[test]
    fn reads_are_never_refused() {
        let map = headers(&[("content-type", "text/plain"), ("origin", "http://evil"), ("host", "m")]);
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(check(&method, &map, true, false), Ok(()));
        }
    }
}
