//! [`ServicesHandle`]: how the REST API and the CLI's server side reach the planner. Every
//! call is a request on the owner task's bounded channel with a oneshot for the answer;
//! nothing but the owner touches the planner. Listings read the [`CommittedView`] the
//! owner publishes after each commit instead, without waiting for the owner.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::view::{CommittedView, ViewWriter, Views};
use crate::core::{Command, Output, PlanError, Planner, Reply, ServiceEvent};
use crate::model::{AppSpec, Timestamp};

/// A read of the planner with the current time (ms since the epoch); it sends its own answer.
pub(crate) type ReadFn = Box<dyn FnOnce(&Planner, u64) + Send>;

/// A request to the owner task.
pub(crate) enum Request {
    /// Runs the closure against the planner. Runs after the records of every change
    /// before it are committed: a read shows only what is durable.
    Read(ReadFn),
    /// A change: applied, its records committed, then answered.
    Command(Command, oneshot::Sender<Result<Reply, PlanError>>),
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Read(_) => f.write_str("Read"),
            Request::Command(command, _) => f.debug_tuple("Command").field(command).finish(),
        }
    }
}

/// What `/v2/events` streams: the planner's events and the API's own.
// Events travel in an `Arc` (one allocation per event, shared by every subscriber), so
// the larger variant costs nothing per copy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Published {
    Service(ServiceEvent),
    /// An app was posted or changed through the API (Marathon's `api_post_event`).
    ApiPost {
        uri: String,
        client_ip: String,
        app: Arc<AppSpec>,
    },
}

/// An event with the time it happened.
#[derive(Clone, Debug)]
pub struct StampedEvent {
    pub at: Timestamp,
    pub event: Published,
}

/// The owner is gone (shutting down) or this process is not the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("services is not running here (stopping, or not the leader)")]
pub struct Unavailable;

/// A cheap, cloneable handle on the owner task.
#[derive(Clone, Debug)]
pub struct ServicesHandle {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<StampedEvent>>,
    views: Views,
}

impl ServicesHandle {
    pub(crate) fn new(
        requests: mpsc::Sender<Request>,
        events: broadcast::Sender<Arc<StampedEvent>>,
        views: Views,
    ) -> Self {
        Self { requests, events, views }
    }

    /// The committed state as of the owner's last commit, to render from on the caller's
    /// own thread: what a read on the owner would show, without waiting in its queue.
    pub fn view(&self) -> Result<Arc<CommittedView>, Unavailable> {
        self.views.borrow().clone().ok_or(Unavailable)
    }

    /// Where the owner publishes its views.
    pub(crate) fn views_sender(&self) -> Views {
        self.views.clone()
    }

    /// Runs `read` on the owner task and returns what it computed.
    pub async fn read<R, F>(&self, read: F) -> Result<R, Unavailable>
    where
        R: Send + 'static,
        F: FnOnce(&Planner, u64) -> R + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let request = Request::Read(Box::new(move |planner, now_ms| {
            let _ = reply.send(read(planner, now_ms));
        }));
        self.requests.send(request).await.map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)
    }

    /// Applies a change; answers once its records are committed.
    pub async fn command(&self, command: Command) -> Result<Result<Reply, PlanError>, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Command(command, reply)).await.map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)
    }

    /// Every event from now on. A receiver that falls behind the channel's bound gets
    /// `Lagged` and should drop its client (Marathon's slow-consumer rule).
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<StampedEvent>> {
        self.events.subscribe()
    }

    /// The sender the owner publishes the planner's events on.
    pub(crate) fn events_sender(&self) -> broadcast::Sender<Arc<StampedEvent>> {
        self.events.clone()
    }

    /// Publishes an event of the API's own (`api_post_event`).
    pub fn publish(&self, event: StampedEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(Arc::new(event));
    }
}

/// Events a test handle's broadcast holds for a slow reader before it lags.
pub const TEST_EVENT_CAPACITY: usize = 256;

/// A handle over `planner` with no master and no store behind it: one task answers reads
/// and applies commands, publishing the planner's events. For tests of the API; the
/// runtime's owner (with the store and the SDK driver) is what `agora services` runs.
pub fn spawn_for_tests(mut planner: Planner) -> ServicesHandle {
    let (requests, mut inbox) = mpsc::channel::<Request>(64);
    let (events, _) = broadcast::channel(TEST_EVENT_CAPACITY);
    let publisher = events.clone();
    let views = Views::default();
    // The records a command makes are "committed" at once, as the owner's after its commit.
    let mut view = ViewWriter::new(&planner, views.clone());
    tokio::spawn(async move {
        while let Some(request) = inbox.recv().await {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            match request {
                Request::Read(read) => read(&planner, now_ms),
                Request::Command(command, reply) => {
                    let result = planner.command(now_ms, command);
                    let mut ops = Vec::new();
                    for output in planner.take_outputs() {
                        match output {
                            Output::Event(event) => {
                                let _ = publisher.send(Arc::new(StampedEvent {
                                    at: Timestamp(now_ms),
                                    event: Published::Service(event),
                                }));
                            }
                            Output::Persist(op) => ops.push(op),
                            _ => {}
                        }
                    }
                    view.apply(&ops);
                    let _ = reply.send(result);
                }
            }
        }
    });
    ServicesHandle::new(requests, events, views)
}
