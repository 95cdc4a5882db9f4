//! What health and readiness check results mean, decided in the core.
//!
//! The runtime runs the checks (an HTTP GET, a TCP connect, a shell command) and reports
//! each result; everything that depends on time or history is decided here, with the time
//! as an argument, so that it is tested exactly:
//!
//! - A task's checks start when it is reported RUNNING (or, after an agent restart, when it
//!   is recovered running) and stop when a kill starts or the process ends.
//! - Health: the first result and every change between healthy and unhealthy queue a
//!   RUNNING update with `healthy` and reason `TASK_HEALTH_CHECK_STATUS_UPDATED`. Failures
//!   within the grace period after the task started are ignored until a check first
//!   passes, as in Mesos. Each failure outside it counts; a pass resets the count; at
//!   `max_consecutive_failures` (when above 0) the core kills the task with its own grace
//!   period, and its terminal TASK_KILLED says why, with `healthy: false`.
//! - Readiness: the first pass queues a RUNNING update with `ready: true` and reason
//!   `TASK_CHECK_STATUS_UPDATED` and stops the check; failures change nothing.
//! - Every update of the task repeats the latest `healthy` and `ready`.
//!
//! A check update that finds a RUNNING update of the task queued but not yet sent updates
//! that one instead of queueing another, so checks never lengthen a task's queue: the
//! framework still learns the latest health, and a flapping check cannot fill memory while
//! the master is away.

use agora_proto::model::{TaskState, TaskStatusReason};

use super::{Core, Output, Process, RunId, TaskKey};

/// Which of a task's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckKind {
    Health,
    Readiness,
}

/// What the checks of one task found, and which of them the runtime is running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TaskChecks {
    /// The latest health result that counted.
    pub healthy: Option<bool>,
    /// `Some(true)` once the readiness check passed.
    pub ready: Option<bool>,
    /// When the task was first reported RUNNING (checkpointed: the grace period of a
    /// recovered task runs from its real start).
    pub running_since_ms: Option<u64>,
    /// Why the core killed the task, for its terminal update.
    pub kill_message: Option<String>,
    /// Failures in a row that counted; not checkpointed, so a restarted agent counts
    /// afresh (erring towards keeping the task).
    consecutive_failures: u32,
    health_running: bool,
    readiness_running: bool,
}

impl TaskChecks {
    pub fn recovered(
        healthy: Option<bool>,
        ready: Option<bool>,
        running_since_ms: Option<u64>,
        kill_message: Option<String>,
    ) -> Self {
        Self { healthy, ready, running_since_ms, kill_message, ..Self::default() }
    }

    /// Stops whatever check still runs.
    pub fn stop(&mut self, run: RunId, out: &mut Vec<Output>) {
        if std::mem::take(&mut self.health_running) {
            out.push(Output::StopCheck { run, kind: CheckKind::Health });
        }
        if std::mem::take(&mut self.readiness_running) {
            out.push(Output::StopCheck { run, kind: CheckKind::Readiness });
        }
    }

    fn is_running(&self, kind: CheckKind) -> bool {
        match kind {
            CheckKind::Health => self.health_running,
            CheckKind::Readiness => self.readiness_running,
        }
    }
}

impl Core {
    /// Starts the checks of a task that is RUNNING, not being killed, and whose process
    /// runs: its health check, and its readiness check unless that already passed.
    pub(super) fn start_checks(&mut self, now_ms: u64, key: &TaskKey, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let has_checks = task.info.health_check.is_some() || task.info.readiness_check.is_some();
        let eligible = has_checks
            && task.state == TaskState::TaskRunning
            && task.kill.is_none()
            && !task.framework_removed
            && matches!(task.process, Process::Running { .. });
        let Some(sandbox) = task.sandbox.clone().filter(|_| eligible) else {
            return;
        };
        let since_ms = *task.health.running_since_ms.get_or_insert(now_ms);
        self.dirty.insert(key.clone());
        if let Some(check) = &task.info.health_check
            && !task.health.health_running
        {
            task.health.health_running = true;
            out.push(Output::StartCheck {
                run: task.run,
                kind: CheckKind::Health,
                task: Box::new(task.info.clone()),
                sandbox: sandbox.clone(),
                first_at_ms: since_ms.saturating_add(check.delay_ms).max(now_ms),
            });
        }
        if task.info.readiness_check.is_some() && task.health.ready != Some(true) && !task.health.readiness_running {
            task.health.readiness_running = true;
            out.push(Output::StartCheck {
                run: task.run,
                kind: CheckKind::Readiness,
                task: Box::new(task.info.clone()),
                sandbox,
                first_at_ms: now_ms,
            });
        }
    }

    pub(super) fn check_result(
        &mut self,
        now_ms: u64,
        run: RunId,
        kind: CheckKind,
        outcome: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = self.runs.get(&run).cloned() else {
            return;
        };
        let Some(task) = self.tasks.get(&key) else {
            return;
        };
        // A result that was on its way when the check stopped changes nothing.
        if !task.health.is_running(kind) || task.state != TaskState::TaskRunning || task.kill.is_some() {
            return;
        }
        match kind {
            CheckKind::Health => self.health_result(now_ms, &key, outcome, out),
            CheckKind::Readiness => self.readiness_result(now_ms, &key, outcome, out),
        }
    }

    fn health_result(&mut self, now_ms: u64, key: &TaskKey, outcome: Result<(), String>, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Some(check) = task.info.health_check.as_ref() else {
            return;
        };
        let error = match outcome {
            Ok(()) => {
                task.health.consecutive_failures = 0;
                if task.health.healthy != Some(true) {
                    task.health.healthy = Some(true);
                    self.check_update(
                        now_ms,
                        key,
                        TaskStatusReason::TaskHealthCheckStatusUpdated,
                        "Health check passed".to_owned(),
                        out,
                    );
                }
                return;
            }
            Err(error) => error,
        };
        let since_ms = task.health.running_since_ms.unwrap_or(now_ms);
        if task.health.healthy.is_none() && now_ms < since_ms.saturating_add(check.grace_period_ms) {
            // Still starting up: the grace period forgives failures until a check passes.
            return;
        }
        task.health.consecutive_failures = task.health.consecutive_failures.saturating_add(1);
        let failures = task.health.consecutive_failures;
        let max = check.max_consecutive_failures;
        if task.health.healthy != Some(false) {
            task.health.healthy = Some(false);
            self.check_update(
                now_ms,
                key,
                TaskStatusReason::TaskHealthCheckStatusUpdated,
                format!("Health check failed: {error}"),
                out,
            );
        }
        if max == 0 || failures < max {
            return;
        }
        if let Some(task) = self.tasks.get_mut(key) {
            task.health.kill_message =
                Some(format!("{failures} consecutive health checks failed, the last with: {error}"));
        }
        self.kill_task(now_ms, key.clone(), None, out);
    }

    fn readiness_result(&mut self, now_ms: u64, key: &TaskKey, outcome: Result<(), String>, out: &mut Vec<Output>) {
        if outcome.is_err() {
            // Not ready yet; the check goes on.
            return;
        }
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        task.health.ready = Some(true);
        task.health.readiness_running = false;
        out.push(Output::StopCheck { run: task.run, kind: CheckKind::Readiness });
        self.check_update(
            now_ms,
            key,
            TaskStatusReason::TaskCheckStatusUpdated,
            "Readiness check passed".to_owned(),
            out,
        );
    }

    /// Reports a check's news on a RUNNING update: in place of a RUNNING update queued and
    /// not yet sent, else as a new one (see the module documentation).
    fn check_update(
        &mut self,
        now_ms: u64,
        key: &TaskKey,
        reason: TaskStatusReason,
        message: String,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        self.dirty.insert(key.clone());
        if task.framework_removed {
            return;
        }
        let (healthy, ready) = (task.health.healthy, task.health.ready);
        if task.pending.len() >= 2
            && let Some(queued) = task.pending.back_mut().filter(|s| s.state == TaskState::TaskRunning)
        {
            queued.healthy = healthy;
            queued.ready = ready;
            if queued.reason != TaskStatusReason::Unspecified {
                // Itself a check update: the latest news replaces its own.
                queued.reason = reason;
                queued.message = message;
                queued.timestamp_ms = now_ms;
            }
            return;
        }
        self.update(now_ms, key, TaskState::TaskRunning, reason, message, None, out);
    }
}
