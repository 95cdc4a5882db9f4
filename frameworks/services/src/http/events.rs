//! `/v2/events`: the event stream as Server-Sent Events.
//!
//! Each client reads the owner's broadcast channel through its own receiver, so memory
//! stays bounded by the channel's capacity: a client that falls behind by more than that
//! is disconnected (it can reconnect and re-read the state), never buffered for.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use tokio_stream::wrappers::BroadcastStream;

use super::{Api, Params, wall_clock_ms};
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
