//! A [`Scheduler`] that forwards every master event to a framework's owner task over a
//! bounded channel, for frameworks built as one task owning a pure core (services, cron).
//! The driver waits while the owner is behind (backpressure). With explicit
//! acknowledgements, a status update travels with its [`Acknowledgement`], which the owner
//! sends once the update's consequences are committed; SUBSCRIBED waits for its commit
//! (the framework id is durable before anything else happens).

use agora_proto::model::{AgentId, FrameworkId, Offer, OfferId, TaskStatus};
use tokio::sync::{mpsc, oneshot};

use crate::{Acknowledgement, DriverHandle, Scheduler};

/// A master event, as the owner's core takes it.
#[derive(Clone, Debug)]
pub enum MasterEvent {
    Subscribed { framework_id: FrameworkId, reconnected: bool },
    Disconnected,
    Offers(Vec<Offer>),
    Rescinded(OfferId),
    Update(TaskStatus),
}

/// What the forwarder hands the owner: the event in the core's terms; for SUBSCRIBED, a
/// channel to tell once the batch holding it is committed; for a reliable status update,
/// its acknowledgement, to send once that batch is committed.
#[derive(Debug)]
pub struct Delivery<I> {
    pub input: I,
    pub committed: Option<oneshot::Sender<()>>,
    pub ack: Option<Acknowledgement>,
}

/// The forwarding scheduler; `I` is the owner's input type.
#[derive(Debug)]
pub struct Forwarder<I> {
    inputs: mpsc::Sender<Delivery<I>>,
}

impl<I: From<MasterEvent> + Send> Forwarder<I> {
    pub fn new(inputs: mpsc::Sender<Delivery<I>>) -> Self {
        Self { inputs }
    }

    async fn send(&self, event: MasterEvent, ack: Option<Acknowledgement>) {
        if self.inputs.send(Delivery { input: I::from(event), committed: None, ack }).await.is_err() {
            tracing::debug!("the owner is gone; an event from the master was dropped");
        }
    }

    /// Sends `event` and returns once the batch holding it is committed. When the owner is
    /// gone (a failed commit, or stopping) it never returns: returning would let the
    /// driver go on as if the event were recorded, and the process is ending anyway.
    async fn send_and_wait(&self, event: MasterEvent) {
        let (committed, done) = oneshot::channel();
        let delivery = Delivery { input: I::from(event), committed: Some(committed), ack: None };
        let delivered = self.inputs.send(delivery).await.is_ok();
        if !delivered || done.await.is_err() {
            tracing::debug!("the owner is gone; holding the event unacknowledged");
            std::future::pending::<()>().await;
        }
    }
}

impl<I: From<MasterEvent> + Send> Scheduler for Forwarder<I> {
    async fn subscribed(&mut self, _driver: &DriverHandle, framework_id: &FrameworkId, reconnected: bool) {
        tracing::info!(%framework_id, reconnected, "subscribed");
        self.send_and_wait(MasterEvent::Subscribed { framework_id: framework_id.clone(), reconnected }).await;
    }

    async fn offers(&mut self, _driver: &DriverHandle, offers: Vec<Offer>) {
        self.send(MasterEvent::Offers(offers), None).await;
    }

    async fn rescinded(&mut self, _driver: &DriverHandle, offer_id: OfferId) {
        self.send(MasterEvent::Rescinded(offer_id), None).await;
    }

    async fn update(&mut self, _driver: &DriverHandle, status: TaskStatus) {
        let ack = Acknowledgement::of(&status);
        self.send(MasterEvent::Update(status), ack).await;
    }

    async fn failure(&mut self, _driver: &DriverHandle, agent_id: AgentId, status: Option<i32>) {
        // The tasks' own updates follow; the core acts on those.
        tracing::info!(%agent_id, ?status, "agent or executor failure");
    }

    async fn error(&mut self, _driver: &DriverHandle, message: String) {
        tracing::warn!(%message, "error from the master or the driver");
    }

    async fn disconnected(&mut self, _driver: &DriverHandle) {
        tracing::warn!("lost the subscription to the master; re-subscribing");
        self.send(MasterEvent::Disconnected, None).await;
    }
}
