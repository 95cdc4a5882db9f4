//! `/v2/events`: the event stream as Server-Sent Events; `/v2/eventSubscriptions`: the
//! HTTP callbacks that get the same events POSTed (`runtime::callbacks` sends them).
//!
//! Each client reads the owner's broadcast channel through its own receiver, so memory
//! stays bounded by the channel's capacity: a client that falls behind by more than that
//! is disconnected (it can reconnect and re-read the state), never buffered for.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{StreamExt, stream};
use tokio_stream::wrappers::BroadcastStream;

use serde_json::json;

use super::{Api, Params, wall_clock_ms};
use crate::core::{Command, MAX_CALLBACK_URL_LEN};
use crate::marathon::ApiError;
use crate::marathon::events::{EventFilter, attached, render};
use crate::model::Timestamp;

pub(super) async fn stream(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let params = Params::parse(query.as_deref());
    let filter = EventFilter::new(params.all("event_type").map(str::to_owned));
    let remote = peer.map_or_else(|| "unknown".to_owned(), |Extension(ConnectInfo(addr))| addr.ip().to_string());
    // Subscribed before anything is sent, so that no event after `attached` is missed.
    let receiver = api.handle.subscribe_events();
    let first = filter.wants("event_stream_attached").then(|| {
        let data = attached(&remote, Timestamp(wall_clock_ms())).to_string();
        Ok::<_, Infallible>(Event::default().event("event_stream_attached").data(data))
    });
    let events = BroadcastStream::new(receiver)
        .take_while(move |item| {
            if item.is_err() {
                tracing::info!(client = %remote, "an event stream client fell behind and is disconnected");
            }
            futures::future::ready(item.is_ok())
        })
        .flat_map(move |item| {
            let frames: Vec<Result<Event, Infallible>> = match item {
                Ok(event) => render(&event)
                    .into_iter()
                    .filter(|(event_type, _)| filter.wants(event_type))
                    .map(|(event_type, data)| Ok(Event::default().event(event_type).data(data.to_string())))
                    .collect(),
                Err(_) => Vec::new(),
            };
            stream::iter(frames)
        });
    Sse::new(stream::iter(first).chain(events)).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /v2/eventSubscriptions`: `{"callbackUrls": [...]}`.
pub(super) async fn subscriptions(State(api): State<Api>) -> Result<Response, ApiError> {
    callbacks_on(&api)?;
    let urls: Vec<String> = api.read(|planner, _| planner.subscribers().map(str::to_owned).collect()).await?;
    Ok(Json(json!({ "callbackUrls": urls })).into_response())
}

/// `POST /v2/eventSubscriptions?callbackUrl=…`: answers the `subscribe_event`.
pub(super) async fn subscribe(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    change_subscription(api, query, peer, true).await
}

/// `DELETE /v2/eventSubscriptions?callbackUrl=…`: answers the `unsubscribe_event`.
pub(super) async fn unsubscribe(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    change_subscription(api, query, peer, false).await
}

async fn change_subscription(
    api: Api,
    query: Option<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    subscribed: bool,
) -> Result<Response, ApiError> {
    callbacks_on(&api)?;
    let params = Params::parse(query.as_deref());
    let callback_url = callback_url(params.get("callbackUrl"))?;
    let client_ip = peer.map_or_else(|| "unknown".to_owned(), |Extension(ConnectInfo(addr))| addr.ip().to_string());
    let command = if subscribed {
        Command::Subscribe { callback_url: callback_url.clone(), client_ip: client_ip.clone() }
    } else {
        Command::Unsubscribe { callback_url: callback_url.clone(), client_ip: client_ip.clone() }
    };
    api.command(command).await?;
    Ok(Json(json!({
        "callbackUrl": callback_url,
        "clientIp": client_ip,
        "eventType": if subscribed { "subscribe_event" } else { "unsubscribe_event" },
        "timestamp": Timestamp(wall_clock_ms()).to_string(),
    }))
    .into_response())
}

fn callbacks_on(api: &Api) -> Result<(), ApiError> {
    if api.info.http_callbacks {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "HTTP event callbacks are off on this server: start agora services with --event-subscriber \
         http_callback to use /v2/eventSubscriptions (or follow /v2/events)",
    ))
}

/// A callback URL as subscribed: absolute `http://`, with a host, not too long.
fn callback_url(given: Option<&str>) -> Result<String, ApiError> {
    let field = "/callbackUrl";
    let text = given.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::invalid_field(field, "is required"))?;
    if text.len() > MAX_CALLBACK_URL_LEN {
        return Err(ApiError::invalid_field(field, format!("is longer than {MAX_CALLBACK_URL_LEN} characters")));
    }
    let url = reqwest::Url::parse(text).map_err(|e| ApiError::invalid_field(field, format!("is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(ApiError::invalid_field(field, "must be an http:// URL (callbacks are sent without TLS)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_field(field, "has no host"));
    }
    Ok(text.to_owned())
}
