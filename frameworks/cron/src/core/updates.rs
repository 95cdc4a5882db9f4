//! The master's side: subscription (with the reconciliation that settles every run in
//! flight after a restart or failover) and status updates.
//!
//! What an update does to the run of its task:
//! - STAGING / STARTING / KILLING: nothing new; RUNNING: the run is `Running`.
//! - FINISHED: `Succeeded` (even while being killed: it completed).
//! - FAILED / ERROR, LOST / GONE / UNKNOWN, and KILLED that we did not ask for: the
//!   attempt failed; the next attempt starts while `retries` allow. A task the master
//!   cannot account for counts as failed, never as not started: starting it again could
//!   run it twice.
//! - KILLED after our kill: `Killed` (or `TimedOut` for a completion deadline).
//! - DROPPED: the master never launched it; it is launched again under the next attempt
//!   while its window is open, or recorded missed.
//! - UNREACHABLE: the agent may come back; the run waits.
//!
//! A task no run holds is killed (unless it has ended): nothing may run that cron does
//! not know.

use agora_proto::model::{FrameworkId, TaskState, TaskStatus};
use jiff::Timestamp;

use super::{Cron, MAX_RELAUNCHES, Output, StoreOp};
use crate::model::{KillCause, RunState};

impl Cron {
    pub(super) fn subscribed(&mut self, now: Timestamp, framework_id: FrameworkId) {
        if self.framework_id.as_ref() != Some(&framework_id) {
            self.persist(StoreOp::FrameworkId(framework_id.clone()));
            self.framework_id = Some(framework_id);
        }
        self.subscribed = true;
        self.offers_wanted = None;
        self.reconcile(now);
        // Then implicitly: the master answers with every task it knows of ours, so that
        // tasks nobody holds are found and killed.
        self.outbox.push(Output::Reconcile(Vec::new()));
    }

    pub(super) fn update(&mut self, now: Timestamp, status: TaskStatus) {
        let Some(key) = self.by_task.get(&status.task_id).cloned() else {
            if !status.state.is_terminal() && status.state != TaskState::TaskUnknown {
                self.outbox.push(Output::Kill { task_id: status.task_id.clone(), agent_id: status.agent_id.clone() });
            }
            return;
        };
        let Some(run) = self.active.get_mut(&key) else {
            self.by_task.remove(&status.task_id);
            return;
        };
        if let Some(agent) = &status.agent_id {
            run.agent = Some(agent.clone());
        }
        let message = if status.message.is_empty() { status.state.as_str().to_owned() } else { status.message.clone() };
        match status.state {
            TaskState::TaskStaging | TaskState::TaskStarting | TaskState::TaskKilling | TaskState::TaskUnreachable => {}
            TaskState::TaskRunning => {
                if run.state == RunState::Launched {
                    run.state = RunState::Running;
                    let record = run.clone();
                    self.persist(StoreOp::PutRun(Box::new(record)));
                }
            }
            TaskState::TaskFinished => {
                run.exit_code = status.exit_code.or(Some(0));
                run.message = message;
                self.end_run(now, &key, RunState::Succeeded);
            }
            TaskState::TaskKilled if run.killing.is_some() => {
                let state = if run.killing == Some(KillCause::Timeout) { RunState::TimedOut } else { RunState::Killed };
                run.exit_code = status.exit_code;
                run.message = message;
                self.end_run(now, &key, state);
            }
            TaskState::TaskDropped => {
                let retries = self.jobs.get(&key.job).map_or(0, |j| j.spec.retries);
                let killing = run.killing;
                let exhausted = run.attempt > retries.saturating_add(1).saturating_add(MAX_RELAUNCHES);
                run.message = message;
                match killing {
                    Some(KillCause::Timeout) => self.end_run(now, &key, RunState::TimedOut),
                    Some(_) => self.end_run(now, &key, RunState::Killed),
                    None if exhausted => self.end_run(now, &key, RunState::Failed),
                    None => {
                        let deadline = run.deadline;
                        self.relaunch(&key, deadline);
                    }
                }
            }
            TaskState::TaskFailed
            | TaskState::TaskError
            | TaskState::TaskKilled
            | TaskState::TaskLost
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
            | TaskState::TaskUnknown => {
                if let Some(cause) = run.killing {
                    // Gone while being killed: what we asked for happened.
                    let state = if cause == KillCause::Timeout { RunState::TimedOut } else { RunState::Killed };
                    run.exit_code = status.exit_code;
                    run.message = message;
                    self.end_run(now, &key, state);
                } else {
                    let text = format!("{}: {message}", status.state.as_str());
                    self.attempt_failed(now, &key, &text, status.exit_code);
                }
            }
        }
    }
}
