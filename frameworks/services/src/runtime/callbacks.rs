//! HTTP callback subscriptions (`--event-subscriber http_callback`, as Marathon's flag):
//! the leader POSTs every event it publishes, as the JSON `/v2/events` streams, to each
//! subscribed URL.
//!
//! Each URL has a bounded queue and a sender task of its own, which POSTs one event at a
//! time in order: a slow or dead subscriber loses its own events (counted and logged),
//! never delays the others or the owner. Delivery is at most once, as in Marathon; the
//! event stream (`/v2/events`) is the better way to follow the state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};

use super::handle::{Published, StampedEvent};
use crate::core::ServiceEvent;
use crate::marathon::events::render;

/// Events waiting for one subscriber; more are dropped.
pub const QUEUE_LEN: usize = 1_024;
/// Longest wait for one POST's answer.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers events to the subscribers until `stop` turns true or the events end.
/// `initial` is the subscribers committed before `events` was subscribed to; later changes
/// arrive as events.
pub async fn deliver(
    initial: Vec<String>,
    mut events: broadcast::Receiver<Arc<StampedEvent>>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "no HTTP client for event callbacks; none are delivered");
            return;
        }
    };
    let mut subscribers: BTreeMap<String, Subscriber> = BTreeMap::new();
    for url in initial {
        subscribers.insert(url.clone(), Subscriber::start(&client, url));
    }
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            event = events.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "event callbacks fell behind the event bus; events were not delivered");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Published::Service(ServiceEvent::Subscription { callback_url, subscribed, .. }) = &event.event {
            if *subscribed {
                if !subscribers.contains_key(callback_url) {
                    subscribers.insert(callback_url.clone(), Subscriber::start(&client, callback_url.clone()));
                }
            } else {
                // Its sender ends once its queue is empty.
                subscribers.remove(callback_url);
            }
        }
        if subscribers.is_empty() {
            continue;
        }
        for (_, value) in render(&event) {
            let body = Bytes::from(value.to_string());
            for subscriber in subscribers.values_mut() {
                subscriber.offer(body.clone());
            }
        }
    }
}

/// One subscriber's queue.
struct Subscriber {
    url: String,
    queue: mpsc::Sender<Bytes>,
    dropped: u64,
}

impl Subscriber {
    fn start(client: &reqwest::Client, url: String) -> Subscriber {
        let (queue, mut waiting) = mpsc::channel::<Bytes>(QUEUE_LEN);
        let (client, target) = (client.clone(), url.clone());
        tokio::spawn(async move {
            while let Some(body) = waiting.recv().await {
                let sent = client
                    .post(&target)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(answer) if answer.status().is_success() => {}
                    Ok(answer) => {
                        tracing::debug!(url = %target, status = %answer.status(), "an event callback refused an event")
                    }
                    Err(error) => tracing::debug!(url = %target, %error, "an event callback could not be reached"),
                }
            }
        });
        Subscriber { url, queue, dropped: 0 }
    }

    fn offer(&mut self, body: Bytes) {
        if self.queue.try_send(body).is_err() {
            self.dropped += 1;
            // Logged at the first drop and then every thousandth, not for each.
            if self.dropped % 1_000 == 1 {
                tracing::warn!(url = %self.url, dropped = self.dropped, "an event callback is too slow; its events are dropped");
            }
        }
    }
}
