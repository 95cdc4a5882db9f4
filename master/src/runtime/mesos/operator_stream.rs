//! The operator API's SUBSCRIBE (`POST /api/v1 {"type": "SUBSCRIBE"}`): a RecordIO
//! stream of Mesos' master events in JSON, SUBSCRIBED first (the whole GET_STATE and the
//! heartbeat interval), then TASK_ADDED, TASK_UPDATED, AGENT_ADDED, AGENT_REMOVED,
//! FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED, with HEARTBEATs between.
//!
//! The events come from the read model (`runtime/read_model.rs`), which registers the
//! stream together with its copy of the state and offers it every later event through a
//! bounded queue: a subscriber that falls behind is dropped there, and its stream ends
//! once it has read what was queued. The master's owner never sees a subscriber. The
//! stream also ends when the master stops (the read model's applier drops its queues).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::operator::{agent, framework, framework_info, get_state, state_name, status, task};
use super::recordio;
use crate::runtime::http::ApiError;
use crate::runtime::read_model::{OperatorEvent, ReadModel};

/// Answers a SUBSCRIBE call with its event stream, or 503 when there are too many.
pub async fn subscribe(read: &ReadModel) -> Response {
    read.caught_up().await;
    let (copy, mut events) = match read.subscribe() {
        Ok(subscribed) => subscribed,
        Err(e) => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), json!([])).into_response(),
    };
    let interval_ms = copy.facts.heartbeat_interval_ms.max(100);
    let interval = Duration::from_millis(interval_ms);
    // The first record can be large (the whole state): written on a blocking thread.
    let first = tokio::task::spawn_blocking(move || {
        let subscribed = json!({
            "type": "SUBSCRIBED",
            "subscribed": {
                "get_state": get_state(&copy),
                "heartbeat_interval_seconds": interval_ms as f64 / 1000.0,
            },
        });
        recordio::frame(&serde_json::to_vec(&subscribed).unwrap_or_default())
    });
    let first = match first.await {
        Ok(first) => first,
        Err(e) => {
            let message = format!("rendering the state failed: {e}");
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message, json!([])).into_response();
        }
    };
    let stream = async_stream::stream! {
        yield Ok::<Bytes, Infallible>(first);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let record = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => event_json(&event),
                    // Dropped for falling behind, or the master stopped.
                    None => break,
                },
                _ = heartbeat.tick() => json!({"type": "HEARTBEAT"}),
            };
            yield Ok(recordio::frame(&serde_json::to_vec(&record).unwrap_or_default()));
        }
    };
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One event in Mesos' JSON shape (`{"type": T, "<t>": {…}}`).
pub fn event_json(event: &Arc<OperatorEvent>) -> Value {
    match &**event {
        OperatorEvent::TaskAdded(t) => json!({"type": "TASK_ADDED", "task_added": {"task": task(t)}}),
        OperatorEvent::TaskUpdated(t, entry) => json!({
            "type": "TASK_UPDATED",
            "task_updated": {
                "framework_id": {"value": t.framework_id.to_string()},
                "status": status(t, entry),
                "state": state_name(t.state),
            },
        }),
        OperatorEvent::AgentAdded(a) => json!({"type": "AGENT_ADDED", "agent_added": {"agent": agent(a)}}),
        OperatorEvent::AgentRemoved(id) => {
            json!({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": id.to_string()}}})
        }
        OperatorEvent::FrameworkAdded(f) => {
            json!({"type": "FRAMEWORK_ADDED", "framework_added": {"framework": framework(f)}})
        }
        OperatorEvent::FrameworkUpdated(f) => {
            json!({"type": "FRAMEWORK_UPDATED", "framework_updated": {"framework": framework(f)}})
        }
        OperatorEvent::FrameworkRemoved(f) => {
            json!({"type": "FRAMEWORK_REMOVED", "framework_removed": {"framework_info": framework_info(f)}})
        }
    }
}
