//! The one task that owns the [`Cron`] core. It reads requests from the API
//! ([`Request`], through the [`CronHandle`](super::CronHandle)), the master's events from
//! the SDK's forwarder ([`Inbound`]), and a timer set to the core's next wake-up (at least
//! once a second). Whatever arrived together is one batch; after it the owner
//!
//! 1. commits every `Persist` of the batch in ONE store transaction,
//! 2. then answers the batch's commands, releases the callbacks that wait (SUBSCRIBED)
//!    and hands the acknowledgements of the batch's status updates to the executor (an
//!    update is acknowledged only once its consequences are durable),
//! 3. then hands the master calls (launch, kill, decline, reconcile, revive, suppress) to
//!    the executor, in order.
//!
//! So a run is durable `Launched`, under its task id, before its launch leaves the
//! process. A commit that fails stops the owner (and the process).

use std::time::Duration;

use agora_sdk::{Acknowledgement, DriverHandle};
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};

use std::collections::BTreeSet;

use super::handle::{Request, RunsAnswer};
use crate::core::{CoreError, Cron, Input, Output, Reply, StoreOp};
use crate::model::{JobName, RunRecord};
use crate::store::{Store, StoreError};

/// Requests and inputs taken into one batch at most, so that a flood of one kind cannot
/// hold a commit (and its answers) back for long.
const BATCH_LEN: usize = 256;
/// Master calls waiting for the executor; the owner waits for room beyond.
const ACTIONS_QUEUE_LEN: usize = 1024;
/// The longest the owner sleeps without a tick.
const MAX_TICK: Duration = Duration::from_secs(1);

/// What the SDK's forwarder hands the owner: a master event; for SUBSCRIBED, a channel
/// told once the batch holding it is committed; for a reliable status update, its
/// acknowledgement, sent once that batch is committed.
pub(crate) type Inbound = agora_sdk::forward::Delivery<Input>;

impl From<agora_sdk::forward::MasterEvent> for Input {
    fn from(event: agora_sdk::forward::MasterEvent) -> Input {
        use agora_sdk::forward::MasterEvent;
        match event {
            MasterEvent::Subscribed { framework_id, .. } => Input::Subscribed { framework_id },
            MasterEvent::Disconnected => Input::Disconnected,
            MasterEvent::Offers(offers) => Input::Offers(offers),
            MasterEvent::Rescinded(offer_id) => Input::Rescinded(offer_id),
            MasterEvent::Update(status) => Input::Update(status),
        }
    }
}

/// What the executor does, in order.
#[derive(Debug)]
pub(crate) enum Action {
    Call(Box<Output>),
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
    let _ = stop.wait_for(|stop| *stop).await;
}

pub(crate) struct Owner {
    pub cron: Cron,
    pub store: Store,
}

/// What waits for the batch's commit.
enum Held {
    Reply(oneshot::Sender<Result<Reply, CoreError>>, Result<Reply, CoreError>),
    Committed(oneshot::Sender<()>),
    Ack(Acknowledgement),
}

impl Owner {
    /// Runs until `stop` turns true or a channel closes; an error when a commit failed.
    /// Gives the request channel back, for the next term of leadership.
    pub async fn run(
        self,
        driver: DriverHandle,
        requests: mpsc::Receiver<Request>,
        inputs: mpsc::Receiver<Inbound>,
        stop: watch::Receiver<bool>,
    ) -> (Result<(), OwnerError>, mpsc::Receiver<Request>) {
        let (actions, executor_inbox) = mpsc::channel(ACTIONS_QUEUE_LEN);
        let executor = tokio::spawn(execute(driver, executor_inbox));
        let ended = self.serve(requests, inputs, stop, actions).await;
        // The executor ends once its queue is empty and closed.
        let _ = executor.await;
        ended
    }

    /// [`Owner::run`] with the executor's queue given: what tests read.
    pub(crate) async fn serve(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut inputs: mpsc::Receiver<Inbound>,
        mut stop: watch::Receiver<bool>,
        actions: mpsc::Sender<Action>,
    ) -> (Result<(), OwnerError>, mpsc::Receiver<Request>) {
        let result = loop {
            let mut held = Vec::new();
            let wake = self.sleep_time();
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
                    () = tokio::time::sleep(wake) => self.cron.input(Timestamp::now(), Input::Tick),
                }
                // Whatever else waits joins the batch, requests and master events in turn.
                let mut taken = 1;
                while taken < BATCH_LEN {
                    let mut any = false;
                    if let Ok(request) = requests.try_recv() {
                        self.request(request, &mut held, &actions).await?;
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
                // Due runs are settled at their time even while events keep coming.
                if self.cron.next_wake().is_some_and(|at| at <= Timestamp::now()) {
                    self.cron.input(Timestamp::now(), Input::Tick);
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
        (result, requests)
    }

    /// How long until the core's next wake-up, at most [`MAX_TICK`].
    fn sleep_time(&self) -> Duration {
        let Some(at) = self.cron.next_wake() else { return MAX_TICK };
        let until = at.duration_since(Timestamp::now());
        Duration::try_from(until).unwrap_or(Duration::ZERO).min(MAX_TICK)
    }

    fn input(&mut self, inbound: Inbound, held: &mut Vec<Held>) {
        let Inbound { input, committed, ack } = inbound;
        self.cron.input(Timestamp::now(), input);
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
    ) -> Result<(), OwnerError> {
        match request {
            Request::Read(read) => {
                // A read sees only committed state: what it shows was promised.
                self.flush(held, actions).await?;
                read(&self.cron, Timestamp::now());
            }
            Request::Command(command, reply) => {
                let result = self.cron.command(Timestamp::now(), command);
                held.push(Held::Reply(reply, result));
            }
            Request::Runs(name, reply) => {
                self.flush(held, actions).await?;
                let _ = reply.send(self.runs(&name).await);
            }
        }
        Ok(())
    }

    /// The job's runs: the finished ones the core keeps, read whole from the (just
    /// committed) store, and those in flight from the core; oldest first.
    async fn runs(&self, name: &JobName) -> RunsAnswer {
        if self.cron.job(name).is_none() {
            return Ok(None);
        }
        let kept: BTreeSet<Timestamp> = self.cron.history(name).map(|run| run.scheduled).collect();
        let stored = self.store.runs_of(name).await.map_err(|e| format!("cannot read the job's runs: {e}"))?;
        let mut runs: Vec<RunRecord> =
            stored.into_iter().filter(|run| run.state.is_final() && kept.contains(&run.key.scheduled)).collect();
        runs.extend(self.cron.active_runs(name).cloned());
        runs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Some(runs))
    }

    /// Commits the batch's records, then answers, then executes.
    async fn flush(&mut self, held: &mut Vec<Held>, actions: &mpsc::Sender<Action>) -> Result<(), OwnerError> {
        let outputs = self.cron.take_outputs();
        let mut ops: Vec<StoreOp> = Vec::new();
        let mut rest = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Persist(op) => ops.push(op),
                other => rest.push(other),
            }
        }
        self.store.apply(&ops).await?;
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
        for call in rest {
            if actions.send(Action::Call(Box::new(call))).await.is_err() {
                tracing::warn!("the executor is gone; a master call was dropped");
            }
        }
        Ok(())
    }
}

/// Makes the core's master calls through the driver, one at a time and in order. A failed
/// call is logged and dropped: the core learns what happened from the master (a launch
/// on a stale offer ends in TASK_DROPPED; a call lost with the subscription is made good
/// by the reconciliation after re-subscribing).
async fn execute(driver: DriverHandle, mut actions: mpsc::Receiver<Action>) {
    while let Some(action) = actions.recv().await {
        let call = match action {
            Action::Call(call) => *call,
            Action::Acknowledge(acks) => {
                // The agents resend what was not acknowledged.
                if let Err(error) = driver.acknowledge(acks).await {
                    tracing::info!(%error, "acknowledgements not delivered");
                }
                continue;
            }
        };
        let (what, result) = match call {
            Output::Launch { offer_ids, tasks, refuse_seconds } => {
                for task in &tasks {
                    tracing::info!(task = %task.task_id, "launching");
                }
                ("launch", driver.accept(offer_ids, tasks, Some(refuse_seconds)).await)
            }
            Output::Decline { offer_ids, refuse_seconds } => {
                ("decline", driver.decline(offer_ids, Some(refuse_seconds)).await)
            }
            Output::Kill { task_id, agent_id } => ("kill", driver.kill(&task_id, agent_id.as_ref()).await),
            Output::Reconcile(tasks) => ("reconcile", driver.reconcile(tasks).await),
            Output::Revive => ("revive", driver.revive().await),
            Output::Suppress => ("suppress", driver.suppress().await),
            Output::Persist(_) => continue,
        };
        if let Err(error) = result {
            tracing::info!(call = what, %error, "master call failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_proto::model::{AgentId, FrameworkId, TaskState, TaskStatus, TaskStatusReason, UpdateId};

    use super::*;
    use crate::core::tests::{every_minute, offer};
    use crate::core::{Command, CoreConfig};
    use crate::model::JobName;

    /// The next call the owner hands the executor (acknowledgements included).
    async fn next_action(actions: &mut mpsc::Receiver<Action>) -> Action {
        tokio::time::timeout(Duration::from_secs(10), actions.recv()).await.expect("an action in time").expect("open")
    }

    /// A finished run of `job` at `secs` after t0, as the store keeps it.
    fn finished(job: &str, secs: i64, message: &str) -> crate::model::RunRecord {
        let key = crate::core::tests::key(job, crate::core::tests::at(secs));
        let ended = crate::core::tests::at(secs + 2);
        crate::model::RunRecord {
            task_id: key.task_id(1),
            key,
            trigger: crate::model::RunTrigger::Schedule,
            attempt: 1,
            failures: 0,
            state: crate::model::RunState::Succeeded,
            killing: None,
            recorded_at: crate::core::tests::at(secs),
            deadline: None,
            agent: Some(AgentId::new("agent-a")),
            started: Some(crate::core::tests::at(secs + 1)),
            attempt_started: Some(crate::core::tests::at(secs + 1)),
            ended: Some(ended),
            exit_code: Some(0),
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn a_restarted_owner_reads_finished_runs_whole_from_the_store_and_deletes_those_beyond_the_retention() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(crate::store::FILE_NAME);
        // Settled far ahead: the test's real clock makes no run due.
        let job = crate::model::JobRecord {
            spec: every_minute("etl"),
            counters: Default::default(),
            last_scheduled: Some("2100-01-01T00:00:00Z".parse().expect("a time")),
            active_since: crate::core::tests::t0(),
            dependency_since: crate::core::tests::t0(),
        };
        let mut pending = finished("etl", 180, "");
        pending.state = crate::model::RunState::Pending;
        pending.ended = None;
        let ops = vec![
            StoreOp::PutJob(Box::new(job)),
            StoreOp::PutRun(Box::new(finished("etl", 0, "oldest"))),
            StoreOp::PutRun(Box::new(finished("etl", 60, "second"))),
            StoreOp::PutRun(Box::new(finished("etl", 120, "third"))),
            StoreOp::PutRun(Box::new(pending)),
            StoreOp::PutRun(Box::new(finished("etl2", 60, "another job's"))),
        ];
        Store::open_file(&path).expect("open").apply(&ops).await.expect("commit");

        let mut store = Store::open_file(&path).expect("reopen");
        let recovered = store.load().await.expect("load");
        assert_eq!(recovered.runs.len(), 1, "only the run in flight is recovered whole");
        let config = CoreConfig { history_per_job: 2, ..CoreConfig::default() };
        let owner = Owner { cron: Cron::recover(config, recovered), store };
        let (handle, requests) = crate::runtime::channel();
        let (_inputs, inbox) = mpsc::channel(8);
        let (actions_tx, _actions) = mpsc::channel(64);
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(owner.serve(requests, inbox, stop, actions_tx));

        let runs = handle.runs(JobName::new("etl")).await.expect("owner").expect("readable").expect("a job");
        let seen: Vec<(i64, &str)> = runs
            .iter()
            .map(|r| (r.key.scheduled.duration_since(crate::core::tests::t0()).as_secs(), r.message.as_str()))
            .collect();
        assert_eq!(seen, [(60, "second"), (120, "third"), (180, "")]);
        assert_eq!(runs[0], finished("etl", 60, "second"), "the whole record, from the store");
        assert_eq!(handle.runs(JobName::new("ghost")).await.expect("owner"), Ok(None));
        stop_tx.send(true).expect("owner listens");
        let (result, _) = running.await.expect("owner task");
        assert!(result.is_ok());
        drop(handle);

        let stored = Store::open_file(&path).expect("reopen").runs_of(&JobName::new("etl")).await.expect("read");
        assert_eq!(stored.len(), 3, "the oldest, beyond the retention, was deleted");
    }

    #[tokio::test]
    async fn a_launch_leaves_only_once_its_run_is_stored_and_an_update_is_acknowledged_once_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(crate::store::FILE_NAME);
        let owner = Owner { cron: Cron::new(CoreConfig::default()), store: Store::open_file(&path).expect("open") };
        let (handle, requests) = crate::runtime::channel();
        let (inputs, inbox) = mpsc::channel(8);
        let (actions_tx, mut actions) = mpsc::channel(64);
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(owner.serve(requests, inbox, stop, actions_tx));

        let (committed, done) = oneshot::channel();
        let subscribed = Input::Subscribed { framework_id: FrameworkId::new("fw-1") };
        inputs.send(Inbound { input: subscribed, committed: Some(committed), ack: None }).await.expect("owner runs");
        done.await.expect("SUBSCRIBED is released once committed");
        let job = Box::new(every_minute("etl"));
        handle.command(Command::PutJob(job)).await.expect("owner").expect("valid");
        let name = JobName::new("etl");
        let started = handle.command(Command::RunNow { name, arguments: vec![] }).await.expect("owner");
        let Ok(crate::core::Reply::Started(key)) = started else { panic!("a run: {started:?}") };
        inputs
            .send(Inbound { input: Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]), committed: None, ack: None })
            .await
            .expect("owner runs");
        let task = loop {
            if let Action::Call(call) = next_action(&mut actions).await
                && let Output::Launch { tasks, .. } = *call
            {
                break tasks[0].task_id.clone();
            }
        };
        assert_eq!(task, key.task_id(1));

        // RUNNING, reliable: its acknowledgement comes before any later call.
        let status = TaskStatus {
            agent_id: Some(AgentId::new("agent-a")),
            uuid: Some(UpdateId::new("u-1")),
            ..TaskStatus::from_master(task.clone(), None, TaskState::TaskRunning, TaskStatusReason::Unspecified, "", 1)
        };
        let ack = Acknowledgement::of(&status).expect("a reliable update");
        inputs
            .send(Inbound { input: Input::Update(status), committed: None, ack: Some(ack.clone()) })
            .await
            .expect("owner");
        loop {
            match next_action(&mut actions).await {
                Action::Acknowledge(acks) => {
                    assert_eq!(acks, [ack]);
                    break;
                }
                Action::Call(call) => assert!(!matches!(*call, Output::Launch { .. }), "{call:?}"),
            }
        }
        stop_tx.send(true).expect("owner listens");
        let (result, _) = running.await.expect("owner task");
        assert!(result.is_ok());
        drop(handle);

        // What was acknowledged and launched is on disk.
        let recovered = Store::open_file(&path).expect("reopen").load().await.expect("load");
        let run = recovered.runs.iter().find(|r| r.key == key).expect("the run is stored");
        assert_eq!((&run.task_id, &run.state), (&task, &crate::model::RunState::Running));
        assert_eq!(recovered.framework_id, Some(FrameworkId::new("fw-1")));
    }
}
