//! The one task that owns the [`Planner`]. It reads three things: requests from the REST
//! API ([`Request`], through the [`ServicesHandle`](super::ServicesHandle)), the master's
//! events from the SDK's forwarder ([`Inbound`]), and a tick. Whatever arrived together is
//! one batch; after it the owner takes the planner's outputs and
//!
//! 1. commits every `Persist` of the batch in ONE store transaction,
//! 2. then answers the batch's commands, releases the callbacks that wait (SUBSCRIBED),
//!    and hands the acknowledgements of the batch's status updates to the executor task as
//!    one call (so an update is acknowledged only once its consequences are durable,
//!    without the SDK waiting for a commit per update: the driver runs with explicit
//!    acknowledgements),
//! 3. then publishes the events and hands the master calls (launch, kill, decline,
//!    reconcile, revive, suppress) to the executor, in order.
//!
//! Nothing leaves the process before the records it depends on are durable: an instance
//! is recorded before its launch, a deployment before its `deploymentId` is answered. A
//! commit that fails stops the owner (and the process): it cannot keep what it promised.

use std::sync::Arc;
use std::time::Duration;

use agora_proto::model::FrameworkId;
use agora_sdk::{Acknowledgement, DriverHandle};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::handle::{Published, Request, StampedEvent};
use super::view::{ViewWriter, Views};
use crate::core::{Input, Output, PlanError, Planner, Reply, StoreOp};
use crate::model::Timestamp;
use crate::store::{Store, StoreError};

/// Requests and inputs taken into one batch at most, so that a flood of one kind cannot
/// hold a commit (and its answers) back for long.
const BATCH_LEN: usize = 256;
/// Master calls waiting for the executor; the owner waits for room beyond (backpressure
/// on a master that answers slowly).
const ACTIONS_QUEUE_LEN: usize = 1024;

/// What the SDK's forwarder hands the owner: a master event; for the events that must be
/// durable before more happen (SUBSCRIBED), a channel told once the batch holding it is
/// committed; for reliable status updates, their acknowledgement, sent to the master once
/// that batch is committed.
pub(crate) type Inbound = agora_sdk::forward::Delivery<Input>;

impl From<agora_sdk::forward::MasterEvent> for Input {
    fn from(event: agora_sdk::forward::MasterEvent) -> Input {
        use agora_sdk::forward::MasterEvent;
        match event {
            MasterEvent::Subscribed { framework_id, reconnected } => Input::Subscribed { framework_id, reconnected },
            MasterEvent::Disconnected => Input::Disconnected,
            MasterEvent::Offers(offers) => Input::Offers(offers),
            MasterEvent::Rescinded(offer_id) => Input::Rescinded(offer_id),
            MasterEvent::Update(status) => Input::Update(status),
        }
    }
}

/// What the executor does, in order: the planner's master calls, and after each commit
/// the acknowledgements of the status updates it made durable.
// The calls move through the queue as the planner made them; boxing each to shrink the
// rarer acknowledgement variant would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Action {
    Call(Output),
    Acknowledge(Vec<Acknowledgement>),
}

/// Why the owner stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("cannot commit to the store: {0}")]
    Store(#[from] StoreError),
}

/// Completes once `stop` holds `true` (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across the caller's awaits.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The wall clock in ms since the epoch: Marathon's versions and timestamps are times.
pub(crate) fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) struct Owner {
    pub planner: Planner,
    pub store: Store,
    /// The framework id as committed, to persist a new one once.
    pub framework_id: Option<FrameworkId>,
    pub driver: DriverHandle,
    pub events: broadcast::Sender<Arc<StampedEvent>>,
    /// Where the committed view is published after each commit, for the listings.
    pub views: Views,
    pub tick: Duration,
    /// A new framework id waits for the batch's commit.
    pub pending_framework_id: bool,
}

/// What waits for the batch's commit.
enum Held {
    Reply(oneshot::Sender<Result<Reply, PlanError>>, Result<Reply, PlanError>),
    Committed(oneshot::Sender<()>),
    Ack(Acknowledgement),
}

impl Owner {
    /// Runs until `stop` turns true or a channel closes; an error when a commit failed.
    /// Gives the request channel back, for the next term of leadership.
    pub async fn run(
        self,
        requests: mpsc::Receiver<Request>,
        inputs: mpsc::Receiver<Inbound>,
        stop: watch::Receiver<bool>,
    ) -> (Result<(), OwnerError>, mpsc::Receiver<Request>) {
        let (actions, executor_inbox) = mpsc::channel(ACTIONS_QUEUE_LEN);
        let executor = tokio::spawn(execute(self.driver.clone(), executor_inbox));
        let ended = self.serve(requests, inputs, stop, actions).await;
        // The executor ends once its queue is empty and closed.
        let _ = executor.await;
        ended
    }

    /// [`Owner::run`] with the executor's queue given: what tests read.
    async fn serve(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut inputs: mpsc::Receiver<Inbound>,
        mut stop: watch::Receiver<bool>,
        actions: mpsc::Sender<Action>,
    ) -> (Result<(), OwnerError>, mpsc::Receiver<Request>) {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The planner as recovered is what is committed: the first view.
        let mut view = ViewWriter::new(&self.planner, self.views.clone());
        let result = loop {
            let mut held = Vec::new();
            let batch = async {
                tokio::select! {
                    biased;
                    () = stopped(&mut stop) => return Ok(false),
                    inbound = inputs.recv() => match inbound {
                        Some(inbound) => self.input(inbound, &mut held),
                        None => return Ok(false),
                    },
                    request = requests.recv() => match request {
                        Some(request) => self.request(request, &mut held, &actions, &mut view).await?,
                        None => return Ok(false),
                    },
                    _ = ticker.tick() => self.planner.input(now_ms(), Input::Tick),
                }
                // Whatever else is waiting joins the batch, requests and master events in
                // turn, so that a flood of updates does not hold the API's changes back.
                let mut taken = 1;
                while taken < BATCH_LEN {
                    let mut any = false;
                    if let Ok(request) = requests.try_recv() {
                        self.request(request, &mut held, &actions, &mut view).await?;
                        taken += 1;
                        any = true;
                    }
                    if let Ok(inbound) = inputs.try_recv() {
                        self.input(inbound, &mut held);
                        taken += 1;
                        any = true;
                    }
                    if !any {
                        break;
                    }
                }
                self.flush(&mut held, &actions, &mut view).await?;
                Ok::<bool, OwnerError>(true)
            };
            match batch.await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        // No view while no owner runs: the listings answer as reads then do.
        self.views.send_replace(None);
        (result, requests)
    }

    fn input(&mut self, inbound: Inbound, held: &mut Vec<Held>) {
        let Inbound { input, committed, ack } = inbound;
        if let Input::Subscribed { framework_id, .. } = &input
            && self.framework_id.as_ref() != Some(framework_id)
        {
            // Recorded before the planner's records of this batch: a restart must
            // re-subscribe with the id every recorded task belongs to.
            self.framework_id = Some(framework_id.clone());
            self.pending_framework_id = true;
        }
        self.planner.input(now_ms(), input);
        if let Some(committed) = committed {
            held.push(Held::Committed(committed));
        }
        if let Some(ack) = ack {
            held.push(Held::Ack(ack));
        }
    }

    async fn request(
        &mut self,
        request: Request,
        held: &mut Vec<Held>,
        actions: &mpsc::Sender<Action>,
        view: &mut ViewWriter,
    ) -> Result<(), OwnerError> {
        match request {
            Request::Read(read) => {
                // A read sees only committed state: what it shows was promised.
                self.flush(held, actions, view).await?;
                read(&self.planner, now_ms());
            }
            Request::Command(command, reply) => {
                let result = self.planner.command(now_ms(), command);
                held.push(Held::Reply(reply, result));
            }
        }
        Ok(())
    }

    /// Commits the batch's records, publishes the committed view, then answers, then
    /// publishes the events and executes.
    async fn flush(
        &mut self,
        held: &mut Vec<Held>,
        actions: &mpsc::Sender<Action>,
        view: &mut ViewWriter,
    ) -> Result<(), OwnerError> {
        let outputs = self.planner.take_outputs();
        let mut ops: Vec<StoreOp> = Vec::new();
        if std::mem::take(&mut self.pending_framework_id)
            && let Some(id) = &self.framework_id
        {
            ops.push(StoreOp::FrameworkId(id.clone()));
        }
        let mut rest = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Persist(op) => ops.push(op),
                other => rest.push(other),
            }
        }
        if !ops.is_empty() {
            self.store.apply(&ops).await?;
            // Before the answers: a client that got its answer reads what it changed.
            view.apply(&ops);
        }
        let mut acks = Vec::new();
        for waiting in held.drain(..) {
            match waiting {
                Held::Reply(reply, result) => {
                    let _ = reply.send(result);
                }
                Held::Committed(committed) => {
                    let _ = committed.send(());
                }
                Held::Ack(ack) => acks.push(ack),
            }
        }
        // Before the batch's master calls: an agent sends a task's next update only once
        // the last one is acknowledged.
        if !acks.is_empty() && actions.send(Action::Acknowledge(acks)).await.is_err() {
            tracing::warn!("the executor is gone; acknowledgements were dropped");
        }
        let at = Timestamp(now_ms());
        for output in rest {
            match output {
                Output::Event(event) => {
                    // No subscriber is not an error.
                    let _ = self.events.send(Arc::new(StampedEvent { at, event: Published::Service(event) }));
                }
                call => {
                    if actions.send(Action::Call(call)).await.is_err() {
                        tracing::warn!("the executor is gone; a master call was dropped");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Makes the planner's master calls through the driver, one at a time and in order. A
/// failed call is logged and dropped: the planner learns what happened from the master
/// (an ACCEPT of a stale offer ends in TASK_DROPPED updates; a call lost with the
/// subscription is made good by the reconciliation after re-subscribing).
async fn execute(driver: DriverHandle, mut actions: mpsc::Receiver<Action>) {
    while let Some(action) = actions.recv().await {
        let call = match action {
            Action::Call(call) => call,
            Action::Acknowledge(acks) => {
                // The agents resend what was not acknowledged.
                if let Err(error) = driver.acknowledge(acks).await {
                    tracing::info!(%error, "acknowledgements not delivered");
                }
                continue;
            }
        };
        let (what, result) = match call {
            Output::Launch { offer_ids, tasks } => {
                let count = tasks.len();
                tracing::debug!(tasks = count, offers = offer_ids.len(), "launching");
                ("launch", driver.accept(offer_ids, tasks, None).await)
            }
            Output::Decline { offer_ids, refuse_seconds } => {
                ("decline", driver.decline(offer_ids, Some(refuse_seconds)).await)
            }
            Output::Kill { task_id, agent_id } => ("kill", driver.kill(&task_id, agent_id.as_ref()).await),
            Output::Reconcile(tasks) => ("reconcile", driver.reconcile(tasks).await),
            Output::Revive => ("revive", driver.revive().await),
            Output::Suppress => ("suppress", driver.suppress().await),
            Output::Persist(_) | Output::Event(_) => continue,
        };
        if let Err(error) = result {
            tracing::info!(call = what, %error, "master call failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_proto::model::{FrameworkInfo, Role};
    use agora_sdk::{Driver, DriverConfig};

    use super::*;
    use crate::core::{Command, PlannerConfig, Reply};
    use crate::runtime::ServicesHandle;
    use crate::store::FileStore;
    use crate::store::tests::sample;

    /// An owner on a file store in `dir`, with a driver that never connects (its calls
    /// fail, which the executor logs); the store is returned too, to read what was committed.
    fn owner(dir: &std::path::Path) -> (Owner, FileStore, ServicesHandle, mpsc::Receiver<Request>) {
        let store = FileStore::open(&dir.join("services.redb")).expect("open");
        let framework = FrameworkInfo {
            id: None,
            name: "test".into(),
            user: "nobody".into(),
            roles: vec![Role::unreserved()],
            failover_timeout_ms: 1_000,
            hostname: String::new(),
            principal: String::new(),
        };
        let driver = Driver::new(DriverConfig::new(vec!["127.0.0.1:1".into()], framework)).expect("driver");
        let (handle, requests) = crate::runtime::channel();
        let owner = Owner {
            planner: Planner::new(PlannerConfig::default()),
            store: Store::File(store.clone()),
            framework_id: None,
            driver: driver.handle(),
            events: handle.events_sender(),
            views: handle.views_sender(),
            tick: Duration::from_secs(3600),
            pending_framework_id: false,
        };
        (owner, store, handle, requests)
    }

    #[tokio::test]
    async fn a_command_is_answered_only_once_its_records_are_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (owner, store, handle, requests) = owner(dir.path());
        let (_inputs, inbox) = mpsc::channel(8);
        let (_stop, stop) = watch::channel(false);
        let mut events = handle.subscribe_events();
        tokio::spawn(owner.run(requests, inbox, stop));
        let spec = (*sample::spec("/web", 2)).clone();
        let reply = handle
            .command(Command::PutApps { apps: vec![spec], force: false, expect: Default::default() })
            .await
            .expect("owner runs");
        let Ok(Reply::Deployment { id, .. }) = reply else { panic!("a deployment: {reply:?}") };
        // The same database, read after the answer: the app and its deployment are there.
        let recovered = store.load().await.expect("load");
        assert_eq!(recovered.apps.iter().map(|a| a.spec.id.to_string()).collect::<Vec<_>>(), ["/web"]);
        assert_eq!(recovered.deployments.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), [id]);
        // The planner's events were published after the commit.
        let event = events.recv().await.expect("an event");
        assert!(matches!(event.event, Published::Service(_)), "{event:?}");
        // A read sees the committed change.
        let apps = handle.read(|planner, _| planner.apps().count()).await.expect("read");
        assert_eq!(apps, 1);
    }

    #[tokio::test]
    async fn a_new_framework_id_is_committed_before_the_subscription_is_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (owner, store, _handle, requests) = owner(dir.path());
        let (inputs, inbox) = mpsc::channel(8);
        let (_stop, stop) = watch::channel(false);
        tokio::spawn(owner.run(requests, inbox, stop));
        let (committed, done) = oneshot::channel();
        let framework_id = FrameworkId::new("fw-7");
        let input = Input::Subscribed { framework_id: framework_id.clone(), reconnected: false };
        inputs.send(Inbound { input, committed: Some(committed), ack: None }).await.expect("owner runs");
        done.await.expect("released after the commit");
        assert_eq!(store.load().await.expect("load").framework_id, Some(framework_id));
    }

    #[tokio::test]
    async fn an_update_is_acknowledged_after_its_batch_and_before_the_batch_s_master_calls() {
        use agora_proto::model::{AgentId, TaskId, TaskState, TaskStatus, TaskStatusReason, UpdateId};
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut owner, _store, _handle, requests) = owner(dir.path());
        owner.planner.input(1, Input::Subscribed { framework_id: FrameworkId::new("fw-1"), reconnected: false });
        let _ = owner.planner.take_outputs();
        let (inputs, inbox) = mpsc::channel(8);
        let (actions_tx, mut actions) = mpsc::channel(8);
        let (_stop, stop) = watch::channel(false);
        tokio::spawn(owner.serve(requests, inbox, stop, actions_tx));
        // A task the planner does not know: it answers with a kill.
        let status = TaskStatus {
            agent_id: Some(AgentId::new("a-1")),
            uuid: Some(UpdateId::new("u-1")),
            ..TaskStatus::from_master(
                TaskId::new("stray"),
                None,
                TaskState::TaskRunning,
                TaskStatusReason::Unspecified,
                "",
                1,
            )
        };
        let ack = Acknowledgement::of(&status).expect("a reliable update");
        inputs
            .send(Inbound { input: Input::Update(status), committed: None, ack: Some(ack.clone()) })
            .await
            .expect("owner runs");
        match actions.recv().await.expect("an action") {
            Action::Acknowledge(acks) => assert_eq!(acks, [ack]),
            other => panic!("the acknowledgement comes first: {other:?}"),
        }
        let kill = actions.recv().await.expect("an action");
        assert!(
            matches!(kill, Action::Call(Output::Kill { ref task_id, .. }) if task_id.as_str() == "stray"),
            "{kill:?}"
        );
    }

    #[tokio::test]
    async fn the_owner_stops_when_told_and_gives_the_requests_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (owner, _store, handle, requests) = owner(dir.path());
        let (_inputs, inbox) = mpsc::channel(8);
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(owner.run(requests, inbox, stop));
        stop_tx.send(true).expect("owner listens");
        let (result, mut back) = running.await.expect("owner task");
        assert!(result.is_ok());
        // The channel is still open for the next term: a request waits in it.
        let pending = tokio::spawn(async move { handle.read(|planner, _| planner.apps().count()).await });
        let request = back.recv().await.expect("the request arrives");
        assert!(matches!(request, Request::Read(_)));
        drop(request);
        assert!(pending.await.expect("reader").is_err(), "a dropped request reads as unavailable");
    }
}
