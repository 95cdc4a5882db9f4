//! The [`Scheduler`] trait: what a framework implements to react to the master's events.

use std::future::Future;

use agora_proto::model::{AgentId, FrameworkId, Offer, OfferId, TaskStatus};

use crate::DriverHandle;

/// A framework's reaction to the master's events.
///
/// The driver calls one method at a time, in the order the events arrive, from the task
/// that runs [`Driver::run`](crate::Driver::run); the scheduler is therefore the single
/// owner of its state and needs no lock. Methods are async so that a callback can make
/// calls to the master (`driver.accept(..).await`) and persist its own state before it
/// returns; they must return futures that are `Send` so that the driver can run on any
/// tokio worker (implement them with `async fn`; the compiler checks the bound).
///
/// Why async callbacks rather than a synchronous trait whose calls the driver queues: a
/// callback sees each call's outcome where it made it (a rejected ACCEPT, a stale
/// subscription), and it can persist state before returning, which matters because the
/// driver acknowledges an update only once the callback has returned.
///
/// A callback that takes long holds up the events behind it, heartbeats included: keep
/// each one short, or hand slow work to a task of your own.
///
/// Every method has a default that does nothing, except
/// [`shutdown_requested`](Scheduler::shutdown_requested), which stops the driver.
pub trait Scheduler: Send {
    /// The driver subscribed. `reconnected` is true when the subscription named a framework
    /// id, i.e. the master had known this framework before (after a lost stream, a master
    /// failover, or a scheduler restart with a persisted id); the framework should then
    /// reconcile its tasks. Offers given before are void.
    fn subscribed(
        &mut self,
        driver: &DriverHandle,
        framework_id: &FrameworkId,
        reconnected: bool,
    ) -> impl Future<Output = ()> + Send {
        let _ = (driver, framework_id, reconnected);
        async {}
    }

    /// New offers. Each should be accepted or declined; an offer neither accepted nor
    /// declined holds its resources until the master rescinds it.
    fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) -> impl Future<Output = ()> + Send {
        let _ = (driver, offers);
        async {}
    }

    /// The master withdrew an offer; accepting it now would fail.
    fn rescinded(&mut self, driver: &DriverHandle, offer_id: OfferId) -> impl Future<Output = ()> + Send {
        let _ = (driver, offer_id);
        async {}
    }

    /// A task changed state. A reliable update (one with a `uuid`) is acknowledged by the
    /// driver only after this returns, so an update that arrived while the framework was
    /// crashing is delivered again: handle each update idempotently. With
    /// [`DriverConfig::explicit_acknowledgements`](crate::DriverConfig::explicit_acknowledgements)
    /// the scheduler acknowledges it itself ([`DriverHandle::acknowledge`]).
    fn update(&mut self, driver: &DriverHandle, status: TaskStatus) -> impl Future<Output = ()> + Send {
        let _ = (driver, status);
        async {}
    }

    /// An opaque message from an executor on `agent_id`.
    fn message(&mut self, driver: &DriverHandle, agent_id: AgentId, data: Vec<u8>) -> impl Future<Output = ()> + Send {
        let _ = (driver, agent_id, data);
        async {}
    }

    /// An agent was lost (`status` is `None`), or an executor on it exited with `status`.
    /// Task updates for the agent's tasks come separately.
    fn failure(
        &mut self,
        driver: &DriverHandle,
        agent_id: AgentId,
        status: Option<i32>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (driver, agent_id, status);
        async {}
    }

    /// Something went wrong that the scheduler should know about: an ERROR event from the
    /// master (after which the driver stops, as Mesos frameworks must), a malformed event,
    /// or an acknowledgement the master rejected.
    fn error(&mut self, driver: &DriverHandle, message: String) -> impl Future<Output = ()> + Send {
        let _ = (driver, message);
        async {}
    }

    /// The subscription was lost; the driver is reconnecting. Outstanding offers are void.
    fn disconnected(&mut self, driver: &DriverHandle) -> impl Future<Output = ()> + Send {
        let _ = driver;
        async {}
    }

    /// The `shutdown` future given to [`Driver::run_until`](crate::Driver::run_until)
    /// completed (Ctrl-C, say). The default stops the driver at once without tearing the
    /// framework down, so its tasks keep running and a restarted scheduler can pick them up;
    /// a one-shot framework would rather kill its tasks and tear down when they are gone.
    fn shutdown_requested(&mut self, driver: &DriverHandle) -> impl Future<Output = ()> + Send {
        driver.stop();
        async {}
    }
}
