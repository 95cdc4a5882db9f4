//! The SDK [`Scheduler`] of cron: it forwards every master event to the owner task over a
//! bounded channel (the driver waits while the owner is behind: backpressure). The
//! driver runs with explicit acknowledgements: a status update goes to the owner with its
//! acknowledgement, which the owner sends once the update's consequences are committed.
//! SUBSCRIBED waits for its commit (the framework id is durable before anything else).

use agora_proto::model::{AgentId, FrameworkId, Offer, OfferId, TaskStatus};
use agora_sdk::{Acknowledgement, DriverHandle, Scheduler};
use tokio::sync::{mpsc, oneshot};

use super::owner::Inbound;
use crate::core::Input;

#[derive(Debug)]
pub(crate) struct Forwarder {
    pub inputs: mpsc::Sender<Inbound>,
}

impl Forwarder {
    async fn send(&self, input: Input, ack: Option<Acknowledgement>) {
        if self.inputs.send(Inbound { input, committed: None, ack }).await.is_err() {
            tracing::debug!("the owner is gone; an event from the master was dropped");
        }
    }

    /// Sends `input` and returns once the batch holding it is committed; never returns
    /// when the owner is gone (the process is ending, and returning would let the driver
    /// go on as if it were recorded).
    async fn send_and_wait(&self, input: Input) {
        let (committed, done) = oneshot::channel();
        let delivered = self.inputs.send(Inbound { input, committed: Some(committed), ack: None }).await.is_ok();
        if !delivered || done.await.is_err() {
            tracing::debug!("the owner is gone; holding the event");
            std::future::pending::<()>().await;
        }
    }
}

impl Scheduler for Forwarder {
    async fn subscribed(&mut self, _driver: &DriverHandle, framework_id: &FrameworkId, reconnected: bool) {
        tracing::info!(%framework_id, reconnected, "subscribed");
        self.send_and_wait(Input::Subscribed { framework_id: framework_id.clone() }).await;
    }

    async fn offers(&mut self, _driver: &DriverHandle, offers: Vec<Offer>) {
        self.send(Input::Offers(offers), None).await;
    }

    async fn rescinded(&mut self, _driver: &DriverHandle, offer_id: OfferId) {
        self.send(Input::Rescinded(offer_id), None).await;
    }

    async fn update(&mut self, _driver: &DriverHandle, status: TaskStatus) {
        let ack = Acknowledgement::of(&status);
        self.send(Input::Update(status), ack).await;
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
        self.send(Input::Disconnected, None).await;
    }
}
