//! The one task that owns the [`Planner`]. It reads three things: requests from the REST
//! API ([`Request`], through the [`ServicesHandle`](super::ServicesHandle)), the master's
//! events from the SDK scheduler ([`Inbound`]), and a tick. Whatever arrived together is
//! one batch; after it the owner takes the planner's outputs and
//!
//! 1. commits every `Persist` of the batch in ONE store transaction,
//! 2. then answers the batch's commands and releases the scheduler's callbacks (so the
//!    SDK acknowledges a status update only once its consequences are durable),
//! 3. then publishes the events and hands the master calls (launch, kill, decline,
//!    reconcile, revive, suppress) to the executor task, in order.
//!
//! Nothing leaves the process before the records it depends on are durable: an instance
//! is recorded before its launch, a deployment before its `deploymentId` is answered. A
//! commit that fails stops the owner (and the process): it cannot keep what it promised.

use std::sync::Arc;
use std::time::Duration;

use agora_proto::model::FrameworkId;
use agora_sdk::DriverHandle;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::handle::{Published, Request, StampedEvent};
use crate::core::{Input, Output, PlanError, Planner, Reply, StoreOp};
use crate::model::Timestamp;
use crate::store::{Store, StoreError};

/// Requests and inputs taken into one batch at most, so that a flood of one kind cannot
/// hold a commit (and its answers) back for long.
const BATCH_LEN: usize = 256;
/// Master calls waiting for the executor; the owner waits for room beyond (backpressure
/// on a master that answers slowly).
const ACTIONS_QUEUE_LEN: usize = 1024;

/// What the SDK scheduler hands the owner: a master event, and for the events the SDK
/// acknowledges (status updates) or that must be durable before more happen (SUBSCRIBED),
/// a channel told once the batch holding it is committed.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub input: Input,
    pub committed: Option<oneshot::Sender<()>>,
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
    pub tick: Duration,
    /// A new framework id waits for the batch's commit.
    pub pending_framework_id: bool,
}

/// What waits for the batch's commit.
enum Held {
    Reply(oneshot::Sender<Result<Reply, PlanError>>, Result<Reply, PlanError>),
    Committed(oneshot::Sender<()>),
}

impl Owner {
    /// Runs until `stop` turns true or a channel closes; an error when a commit failed.
    /// Gives the request channel back, for the next term of leadership.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut inputs: mpsc::Receiver<Inbound>,
        mut stop: watch::Receiver<bool>,
    ) -> (Result<(), OwnerError>, mpsc::Receiver<Request>) {
        let (actions, executor_inbox) = mpsc::channel(ACTIONS_QUEUE_LEN);
        let executor = tokio::spawn(execute(self.driver.clone(), executor_inbox));
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                        Some(request) => self.request(request, &mut held, &actions).await?,
                        None => return Ok(false),
                    },
                    _ = ticker.tick() => self.planner.input(now_ms(), Input::Tick),
                }
                // Whatever else is waiting joins the batch.
                for _ in 1..BATCH_LEN {
                    if let Ok(inbound) = inputs.try_recv() {
                        self.input(inbound, &mut held);
                    } else if let Ok(request) = requests.try_recv() {
                        self.request(request, &mut held, &actions).await?;
                    } else {
                        break;
                    }
                }
                self.flush(&mut held, &actions).await?;
                Ok::<bool, OwnerError>(true)
            };
            match batch.await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        // The executor ends once its queue is empty and closed.
        drop(actions);
        let _ = executor.await;
        (result, requests)
    }

    fn input(&mut self, inbound: Inbound, held: &mut Vec<Held>) {
        let Inbound { input, committed } = inbound;
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
    }

    async fn request(
        &mut self,
        request: Request,
        held: &mut Vec<Held>,
        actions: &mpsc::Sender<Output>,
    ) -> Result<(), OwnerError> {
        match request {
            Request::Read(read) => {
                // A read sees only committed state: what it shows was promised.
                self.flush(held, actions).await?;
                read(&self.planner, now_ms());
            }
            Request::Command(command, reply) => {
                let result = self.planner.command(now_ms(), command);
                held.push(Held::Reply(reply, result));
            }
        }
        Ok(())
    }

    /// Commits the batch's records, then answers, then publishes and executes.
    async fn flush(&mut self, held: &mut Vec<Held>, actions: &mpsc::Sender<Output>) -> Result<(), OwnerError> {
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
        }
        for waiting in held.drain(..) {
            match waiting {
                Held::Reply(reply, result) => {
                    let _ = reply.send(result);
                }
                Held::Committed(committed) => {
                    let _ = committed.send(());
                }
            }
        }
        let at = Timestamp(now_ms());
        for output in rest {
            match output {
                Output::Event(event) => {
                    // No subscriber is not an error.
                    let _ = self.events.send(Arc::new(StampedEvent { at, event: Published::Service(event) }));
                }
                action => {
                    if actions.send(action).await.is_err() {
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
async fn execute(driver: DriverHandle, mut actions: mpsc::Receiver<Output>) {
    while let Some(action) = actions.recv().await {
        let (what, result) = match action {
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
