//! Mesos' v1 scheduler HTTP API, `POST /api/v1/scheduler`: a second transport for the
//! same scheduler the gRPC service serves. SUBSCRIBE opens a chunked RecordIO stream of
//! events with a `Mesos-Stream-Id`; every other call comes on a request of its own
//! carrying that id. Calls are translated (`convert`) into the gRPC service's messages and
//! run through the same owner requests, so frameworks of both transports share one
//! registry, allocator and failover rules, and a framework may fail over from one to
//! the other. See `docs/http-api.md`.

pub mod convert;
#[cfg(test)]
mod fuzz_tests;
pub mod operator;
pub mod operator_admin;
pub mod operator_stream;
pub mod recordio;
pub mod types;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::model::{FrameworkId, FrameworkInfo};
use agora_proto::pb;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message as _;
use serde_json::json;
use tokio::sync::watch;

use self::convert::{Action, MasterContext};
use super::auth::{self, Kind, Security};
use super::http::ApiError;
use super::owner::{Handle, Request};
use super::scheduler::Unsubscribe;
use super::streams::{NOT_CURRENT, Streams, Subscription};
use super::wire;
use crate::core::CallError;

/// Largest call body accepted: room for an ACCEPT launching a few thousand tasks.
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;

const STREAM_ID_HEADER: &str = "mesos-stream-id";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
const RECORDIO: &str = "application/recordio";

#[derive(Clone, Debug)]
struct Api {
    handle: Handle,
    stop: watch::Receiver<bool>,
    master: MasterContext,
    streams: Streams,
    security: Arc<Security>,
}

/// The route, to merge into the master's HTTP router. `streams` is shared with the gRPC
/// scheduler service.
pub fn router(
    handle: Handle,
    stop: watch::Receiver<bool>,
    master: MasterContext,
    security: Arc<Security>,
    streams: Streams,
) -> Router {
    let api = Api { handle, stop, master, streams, security };
    Router::new()
        .route("/api/v1/scheduler", post(scheduler))
        .route("/master/api/v1/scheduler", post(scheduler))
        .with_state(api)
}

/// How a message is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    fn media_type(self) -> &'static str {
        match self {
            Encoding::Json => JSON,
            Encoding::Protobuf => PROTOBUF,
        }
    }

    fn of(media_type: &str) -> Option<Self> {
        match media_type {
            JSON => Some(Encoding::Json),
            PROTOBUF => Some(Encoding::Protobuf),
            _ => None,
        }
    }
}

fn refusal(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, message, json!([]))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    refusal(status, message).into_response()
}

fn bad_field(error: agora_proto::convert::WireError) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, error.to_string(), json!([{ "field": error.field, "reason": error.reason }]))
        .into_response()
}

/// The media type of a header, without parameters (`application/json; charset=utf-8`).
fn media_type(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// What the client accepts: `Accept` (JSON when absent or `*/*`), or with `Accept:
/// application/recordio` the encoding named by `Message-Accept` (newer Mesos clients).
/// Returns the encoding and whether the stream is declared as `application/recordio`.
fn accepted(headers: &HeaderMap) -> Result<(Encoding, bool), ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let mut recordio = false;
    let mut choice = None;
    for part in accept.split(',') {
        let kind = part.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match kind.as_str() {
            "*/*" | "application/*" => choice = choice.or(Some(Encoding::Json)),
            RECORDIO => recordio = true,
            other => {
                if let Some(encoding) = Encoding::of(other) {
                    choice = choice.or(Some(encoding));
                }
            }
        }
    }
    if recordio {
        let message =
            media_type(headers, header::HeaderName::from_static("message-accept")).unwrap_or_else(|| JSON.to_owned());
        let encoding = Encoding::of(&message).ok_or_else(|| {
            refusal(StatusCode::NOT_ACCEPTABLE, format!("Message-Accept {message:?}: use {JSON} or {PROTOBUF}"))
        })?;
        return Ok((encoding, true));
    }
    choice.map(|encoding| (encoding, false)).ok_or_else(|| {
        refusal(
            StatusCode::NOT_ACCEPTABLE,
            format!("Accept {accept:?}: the scheduler API answers {JSON} or {PROTOBUF}"),
        )
    })
}

fn decode(encoding: Encoding, body: &[u8]) -> Result<types::Call, ApiError> {
    match encoding {
        Encoding::Json => {
            let deserializer = &mut serde_json::Deserializer::from_slice(body);
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let path = e.path().to_string();
                let reason = e.inner().to_string();
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("malformed JSON call: {path}: {reason}"),
                    json!([{ "field": path, "reason": reason }]),
                )
            })
        }
        Encoding::Protobuf => types::Call::decode(body)
            .map_err(|e| refusal(StatusCode::BAD_REQUEST, format!("malformed protobuf call: {e}"))),
    }
}

fn encode(encoding: Encoding, event: &types::Event) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::to_vec(event).unwrap_or_else(|e| {
            // Events are built from valid values only (finite numbers, string keys).
            tracing::error!(%e, "cannot encode an event as JSON");
            b"{\"type\":\"HEARTBEAT\"}".to_vec()
        }),
        Encoding::Protobuf => event.encode_to_vec(),
    }
}

async fn scheduler(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let principal = match api.security.authenticate_http(Kind::Framework, &headers) {
        Ok(principal) => principal,
        Err(refusal) => return auth::unauthorized(&refusal),
    };
    let Some(content_type) = media_type(&headers, header::CONTENT_TYPE) else {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type is required: {JSON} or {PROTOBUF}"));
    };
    let Some(encoding) = Encoding::of(&content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {content_type:?}: use {JSON} or {PROTOBUF}"),
        );
    };
    let body = match axum::body::to_bytes(body, MAX_CALL_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("the call is larger than {MAX_CALL_BYTES} bytes"));
        }
    };
    let call = match decode(encoding, &body) {
        Ok(call) => call,
        Err(refused) => return refused.into_response(),
    };
    let framework_id = call.framework_id.as_ref().map(|id| id.value.clone()).filter(|id| !id.is_empty());
    let action = match convert::action(call) {
        Ok(action) => action,
        Err(e) => return bad_field(e),
    };
    match action {
        Action::Subscribe(info) => subscribe(api, &headers, principal, info).await,
        other => {
            let Some(framework_id) = framework_id else {
                return bad_field(agora_proto::convert::WireError::new("framework_id.value", "is required"));
            };
            framework_call(api, &headers, principal, FrameworkId::new(framework_id), other).await
        }
    }
}

async fn subscribe(api: Api, headers: &HeaderMap, principal: auth::Principal, info: pb::FrameworkInfo) -> Response {
    let (encoding, recordio) = match accepted(headers) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let mut info = match FrameworkInfo::try_from(info) {
        Ok(info) => info,
        Err(e) => return bad_field(e.in_field("subscribe.framework_info")),
    };
    if let Err(refusal) = api.security.admit_framework(&principal, &mut info) {
        return error(StatusCode::FORBIDDEN, refusal);
    }
    let subscription = match api.handle.ask(|reply| Request::Subscribe { info, reply }).await {
        Err(stopped) => return error(StatusCode::SERVICE_UNAVAILABLE, stopped.to_string()),
        Ok(Err(e)) => return call_error(e),
        Ok(Ok(subscription)) => subscription,
    };
    tracing::info!(framework_id = %subscription.framework_id, "framework subscribed over HTTP");
    let token = api.streams.register(Subscription {
        framework_id: subscription.framework_id.clone(),
        stream_id: subscription.stream_id.clone(),
        principal,
    });
    let header_value = HeaderValue::from_str(token.token());
    // The token goes before the owner hears the stream is gone.
    let guard = (token, Unsubscribe::new(api.handle.clone(), subscription.framework_id, subscription.stream_id));
    let mut events = subscription.events;
    let mut stop = api.stop.clone();
    let master = api.master.clone();
    let interval = Duration::from_millis(subscription.heartbeat_interval_ms.max(100));
    let stream = async_stream::stream! {
        let _guard = guard;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => match &*event {
                        crate::core::Event::InverseOffers(offers) => Some(convert::inverse_offers(offers)),
                        crate::core::Event::Offers(offers) => {
                            let converted = wire::event_to_pb(&event).and_then(|event| convert::event(event, &master));
                            converted.map(|mut converted| {
                                convert::add_unavailability(&mut converted, offers);
                                converted
                            })
                        }
                        _ => wire::event_to_pb(&event).and_then(|event| convert::event(event, &master)),
                    },
                    // The owner closed the stream: a newer subscription, a teardown, or a
                    // client too slow to keep up with its bounded queue.
                    None => break,
                },
                _ = heartbeat.tick() => Some(convert::heartbeat()),
                _ = super::stopped(&mut stop) => break,
            };
            if let Some(event) = event {
                yield Ok::<Bytes, Infallible>(recordio::frame(&encode(encoding, &event)));
            }
        }
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    if recordio {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(RECORDIO));
        headers.insert("message-content-type", HeaderValue::from_static(encoding.media_type()));
    } else {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.media_type()));
    }
    if let Ok(value) = header_value {
        headers.insert(STREAM_ID_HEADER, value);
    }
    response
}

async fn framework_call(
    api: Api,
    headers: &HeaderMap,
    principal: auth::Principal,
    framework_id: FrameworkId,
    action: Action,
) -> Response {
    let Some(token) = headers.get(STREAM_ID_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "the Mesos-Stream-Id header is required on every call but SUBSCRIBE");
    };
    // One answer for a token that is unknown, ended or another framework's, so that a
    // guesser learns nothing from it.
    let Some(subscription) = api.streams.lookup(token, &framework_id) else {
        return error(StatusCode::FORBIDDEN, NOT_CURRENT);
    };
    if !auth::same_principal(&subscription.principal, &principal) {
        tracing::warn!(%framework_id, ?principal, "call refused: not the principal that subscribed");
        return error(StatusCode::FORBIDDEN, "the call is not from the principal that subscribed this framework");
    }
    let stream_id = subscription.stream_id;
    let calls = match action {
        // The subscription was just checked; there is nothing else to do.
        Action::NoOp => return StatusCode::ACCEPTED.into_response(),
        Action::Subscribe(_) => return error(StatusCode::BAD_REQUEST, "SUBSCRIBE opens a stream of its own"),
        Action::UpdateFramework(info) => {
            let mut info = match FrameworkInfo::try_from(info) {
                Ok(info) => info,
                Err(e) => return bad_field(e.in_field("update_framework.framework_info")),
            };
            if let Err(refusal) = api.security.admit_framework(&principal, &mut info) {
                return error(StatusCode::FORBIDDEN, refusal);
            }
            if info.id.as_ref() != Some(&framework_id) {
                return bad_field(agora_proto::convert::WireError::new(
                    "update_framework.framework_info.id",
                    "must be the framework's id",
                ));
            }
            vec![crate::core::Call::UpdateFramework { info }]
        }
        Action::AnswerInverseOffers { ids, accept } => {
            if ids.len() > crate::core::MAX_OFFERS_PER_CALL {
                return bad_field(agora_proto::convert::WireError::new(
                    "inverse_offer_ids",
                    format!("at most {} inverse offers", crate::core::MAX_OFFERS_PER_CALL),
                ));
            }
            let ids = ids.into_iter().map(agora_proto::model::OfferId::new).collect();
            vec![crate::core::Call::AnswerInverseOffers { ids, accept }]
        }
        Action::Call(body) => {
            let call =
                pb::Call { framework_id: framework_id.to_string(), stream_id: stream_id.to_string(), call: Some(body) };
            match wire::calls_from_pb(call) {
                Ok(calls) => calls,
                Err(e) => return bad_field(e),
            }
        }
    };
    let update = matches!(calls.first(), Some(crate::core::Call::UpdateFramework { .. }));
    match api.handle.ask(|reply| Request::Calls { framework_id, stream_id, calls, reply }).await {
        Err(stopped) => error(StatusCode::SERVICE_UNAVAILABLE, stopped.to_string()),
        Ok(Err(e)) => call_error(e),
        // Mesos answers UPDATE_FRAMEWORK with 200 once it is applied, other calls 202.
        Ok(Ok(())) if update => StatusCode::OK.into_response(),
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
    }
}

/// The one mapping from the core's call errors to HTTP statuses, as Mesos answers them.
fn call_error(error: CallError) -> Response {
    match &error {
        CallError::UnknownFramework(_) => self::error(StatusCode::FORBIDDEN, error.to_string()),
        CallError::StaleStream(_) => self::error(StatusCode::BAD_REQUEST, error.to_string()),
        CallError::Forbidden(_) => self::error(StatusCode::FORBIDDEN, error.to_string()),
        CallError::Exhausted(_) => self::error(StatusCode::TOO_MANY_REQUESTS, error.to_string()),
        CallError::Invalid { field, reason } => {
            ApiError::new(StatusCode::BAD_REQUEST, error.to_string(), json!([{ "field": field, "reason": reason }]))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    type Case = (&'static [(&'static str, &'static str)], (Encoding, bool));

    #[test]
    fn the_event_encoding_follows_accept_or_message_accept_under_recordio() {
        let cases: [Case; 5] = [
            (&[], (Encoding::Json, false)),
            (&[("accept", "*/*")], (Encoding::Json, false)),
            (&[("accept", "application/x-protobuf")], (Encoding::Protobuf, false)),
            (
                &[("accept", "application/recordio"), ("message-accept", "application/x-protobuf")],
                (Encoding::Protobuf, true),
            ),
            (&[("accept", "application/recordio")], (Encoding::Json, true)),
        ];
        for (pairs, expected) in cases {
            assert_eq!(accepted(&headers(pairs)).map_err(|e| format!("{e:?}")), Ok(expected), "{pairs:?}");
        }
        assert!(accepted(&headers(&[("accept", "text/html")])).is_err());
        assert!(accepted(&headers(&[("accept", "application/recordio"), ("message-accept", "text/plain")])).is_err());
    }
}
