//! Runs: what is due (the evaluator's answer per job), the concurrency policy, runs that
//! miss their window, completion deadlines, kills, retries, the end of a run (counters,
//! history with its retention, children that may start now), run now and mark success.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::{
    CoreError, Cron, KILL_RETRY, LATENESS_BUCKETS_MS, MAX_ACTIVE_RUNS, MAX_RECONCILE_BATCH, OFFER_LEAD, Output, Reply,
    StoreOp, plus, signed,
};
use crate::evaluator::{self, JobSchedule};
use crate::model::{ConcurrencyPolicy, FinishedRun, JobName, KillCause, RunKey, RunRecord, RunState, RunTrigger};

/// Most bytes of a run's message kept.
fn clip(message: &str) -> String {
    let limit = crate::model::MAX_MESSAGE_LEN;
    if message.len() <= limit {
        return message.to_owned();
    }
    let mut end = limit;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

impl Cron {
    pub(super) fn tick(&mut self, now: Timestamp) {
        self.run_due_jobs(now);
        self.use_held_offers(now);
        self.expire_pending(now);
        self.enforce_completion_deadlines(now);
        self.resend_kills(now);
        if self.subscribed && self.last_reconcile.is_none_or(|last| plus(last, self.config.reconcile_interval) <= now) {
            self.reconcile(now);
        }
    }

    /// Settles every job whose next scheduled time has come, through the evaluator.
    fn run_due_jobs(&mut self, now: Timestamp) {
        while let Some((at, name)) = self.wakes.first().cloned() {
            if at > now {
                break;
            }
            self.wakes.remove(&(at, name.clone()));
            self.wake_of.remove(&name);
            let Some(job) = self.jobs.get(&name) else { continue };
            let Some(schedule) = job.spec.schedule() else { continue };
            let one = BTreeMap::from([(
                name.clone(),
                JobSchedule {
                    schedule: schedule.clone(),
                    disabled: job.spec.disabled,
                    epsilon: job.spec.start_window(),
                    missed_runs: job.spec.missed_runs,
                    last_scheduled: job.last_scheduled,
                    active_since: job.active_since,
                },
            )]);
            let evaluation = evaluator::evaluate(&one, now);
            if let Some(last) = evaluation.last_scheduled.get(&name)
                && let Some(job) = self.jobs.get_mut(&name)
            {
                job.last_scheduled = Some(*last);
            }
            for missed in evaluation.missed {
                let reason = missed.reason.to_string();
                self.record_missed(
                    now,
                    RunKey { job: missed.job, scheduled: missed.scheduled },
                    RunTrigger::Schedule,
                    reason,
                );
            }
            for run in evaluation.runs {
                let key = RunKey { job: run.job, scheduled: run.scheduled };
                self.start_run(now, key, RunTrigger::Schedule, Some(run.deadline));
            }
            self.persist_job(&name);
            if let Some(next) = evaluation.next_wake {
                self.wakes.insert((next, name.clone()));
                self.wake_of.insert(name, next);
            }
        }
    }

    /// Records a new run of a job, as its concurrency policy allows: `Forbid` records it
    /// missed while another run is in flight, `Replace` kills those first. Manual runs
    /// always start: a user asked for this one.
    fn start_run(&mut self, now: Timestamp, key: RunKey, trigger: RunTrigger, deadline: Option<Timestamp>) {
        let policy = self.jobs.get(&key.job).map_or(ConcurrencyPolicy::Allow, |j| j.spec.concurrency_policy);
        if !matches!(trigger, RunTrigger::Manual { .. }) {
            let in_flight: Vec<RunKey> = self.active_runs(&key.job).map(|r| r.key.clone()).collect();
            match policy {
                ConcurrencyPolicy::Allow => {}
                ConcurrencyPolicy::Forbid => {
                    if let Some(first) = in_flight.first() {
                        let reason = format!(
                            "the run scheduled at {} was still in flight, and the concurrency policy is Forbid",
                            first.scheduled
                        );
                        self.record_missed(now, key, trigger, reason);
                        return;
                    }
                }
                ConcurrencyPolicy::Replace => {
                    for old in in_flight {
                        self.kill_run(now, &old, KillCause::Replaced);
                    }
                }
            }
        }
        if self.active.len() >= MAX_ACTIVE_RUNS {
            let reason = format!("{MAX_ACTIVE_RUNS} runs were in flight, the most kept");
            self.record_missed(now, key, trigger, reason);
            return;
        }
        let run = RunRecord {
            task_id: key.task_id(1),
            key: key.clone(),
            trigger,
            attempt: 1,
            failures: 0,
            state: RunState::Pending,
            killing: None,
            recorded_at: now,
            deadline,
            agent: None,
            started: None,
            attempt_started: None,
            ended: None,
            exit_code: None,
            message: String::new(),
        };
        self.persist(StoreOp::PutRun(Box::new(run.clone())));
        self.pending.insert((key.scheduled, key.job.clone()));
        self.active.insert(key, run);
    }

    /// Records a run that will not start, with why.
    fn record_missed(&mut self, now: Timestamp, key: RunKey, trigger: RunTrigger, reason: String) {
        let run = RunRecord {
            task_id: key.task_id(1),
            key,
            trigger,
            attempt: 1,
            failures: 0,
            state: RunState::Missed { reason: clip(&reason) },
            killing: None,
            recorded_at: now,
            deadline: None,
            agent: None,
            started: None,
            attempt_started: None,
            ended: Some(now),
            exit_code: None,
            message: String::new(),
        };
        self.file_final(run);
    }

    /// Pending runs whose window closed without an offer that fits.
    fn expire_pending(&mut self, now: Timestamp) {
        let expired: Vec<RunKey> = self
            .pending
            .iter()
            .map(|(scheduled, job)| RunKey { job: job.clone(), scheduled: *scheduled })
            .filter(|key| self.active.get(key).is_some_and(|r| r.deadline.is_some_and(|d| d < now)))
            .collect();
        for key in expired {
            let Some(mut run) = self.active.remove(&key) else { continue };
            self.pending.remove(&(key.scheduled, key.job.clone()));
            let deadline = run.deadline.map(|d| d.to_string()).unwrap_or_default();
            let why = if run.message.is_empty() { String::new() } else { format!(" ({})", run.message) };
            run.state = RunState::Missed {
                reason: clip(&format!("no offer could launch it before its deadline {deadline}{why}")),
            };
            run.ended = Some(now);
            self.file_final(run);
        }
    }

    /// When a launched or running run must have ended.
    pub(super) fn completion_deadline(&self, run: &RunRecord) -> Option<Timestamp> {
        if run.killing.is_some() {
            return None;
        }
        let started = run.attempt_started?;
        let max = self.jobs.get(&run.key.job)?.spec.max_completion_time?;
        Some(plus(started, signed(max)))
    }

    fn enforce_completion_deadlines(&mut self, now: Timestamp) {
        let late: Vec<RunKey> = self
            .timed
            .iter()
            .flat_map(|job| self.active_runs(job))
            .filter(|r| r.state.has_task() && self.completion_deadline(r).is_some_and(|d| d <= now))
            .map(|r| r.key.clone())
            .collect();
        for key in late {
            self.kill_run(now, &key, KillCause::Timeout);
        }
    }

    fn resend_kills(&mut self, now: Timestamp) {
        let due: Vec<RunKey> = self
            .kills_sent
            .iter()
            .filter(|(_, sent)| plus(**sent, KILL_RETRY) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(run) = self.active.get(&key) else {
                self.kills_sent.remove(&key);
                continue;
            };
            self.outbox.push(Output::Kill { task_id: run.task_id.clone(), agent_id: run.agent.clone() });
            self.kills_sent.insert(key, now);
        }
    }

    /// Kills a run in flight: a pending one ends at once (`Killed`); a launched one gets
    /// a kill and ends with its task's last update.
    pub(super) fn kill_run(&mut self, now: Timestamp, key: &RunKey, cause: KillCause) {
        let Some(run) = self.active.get_mut(key) else { return };
        if run.state == RunState::Pending {
            let Some(mut run) = self.active.remove(key) else { return };
            self.pending.remove(&(key.scheduled, key.job.clone()));
            run.state = RunState::Killed;
            run.message = clip(match cause {
                KillCause::User => "killed before it was launched",
                KillCause::Replaced => "replaced by a newer run before it was launched",
                KillCause::Timeout => "timed out before it was launched",
            });
            run.killing = Some(cause);
            run.ended = Some(now);
            self.count_end(now, &run);
            self.file_final(run);
            return;
        }
        if run.killing.is_some() {
            return;
        }
        run.killing = Some(cause);
        let (task_id, agent_id) = (run.task_id.clone(), run.agent.clone());
        let record = run.clone();
        self.persist(StoreOp::PutRun(Box::new(record)));
        self.outbox.push(Output::Kill { task_id, agent_id });
        self.kills_sent.insert(key.clone(), now);
    }

    /// The current attempt of a launched run failed: the next attempt while `retries`
    /// allow, else the run ends `Failed`.
    pub(super) fn attempt_failed(&mut self, now: Timestamp, key: &RunKey, message: &str, exit_code: Option<i32>) {
        let retries = self.jobs.get(&key.job).map_or(0, |j| j.spec.retries);
        let Some(run) = self.active.get_mut(key) else { return };
        run.failures += 1;
        run.exit_code = exit_code;
        run.message = clip(message);
        if run.killing.is_none() && run.failures <= retries {
            self.relaunch(key, None);
            return;
        }
        self.end_run(now, key, RunState::Failed);
    }

    /// Puts a run back in the queue under its next attempt (a new task id).
    pub(super) fn relaunch(&mut self, key: &RunKey, deadline: Option<Timestamp>) {
        let Some(run) = self.active.get_mut(key) else { return };
        self.by_task.remove(&run.task_id);
        run.attempt += 1;
        run.task_id = key.task_id(run.attempt);
        run.state = RunState::Pending;
        self.pending.insert((key.scheduled, key.job.clone()));
        run.agent = None;
        run.attempt_started = None;
        run.deadline = deadline;
        let record = run.clone();
        self.kills_sent.remove(key);
        self.persist(StoreOp::PutRun(Box::new(record)));
    }

    /// Ends a run in flight with `state`.
    pub(super) fn end_run(&mut self, now: Timestamp, key: &RunKey, state: RunState) {
        let Some(mut run) = self.active.remove(key) else { return };
        self.by_task.remove(&run.task_id);
        self.pending.remove(&(key.scheduled, key.job.clone()));
        self.kills_sent.remove(key);
        run.state = state;
        run.ended = Some(now);
        self.count_end(now, &run);
        let succeeded = run.state == RunState::Succeeded;
        let job = run.key.job.clone();
        self.file_final(run);
        if succeeded {
            self.trigger_children(now, &job);
        }
    }

    /// The job's counters after a run ended (missed runs count nowhere).
    fn count_end(&mut self, now: Timestamp, run: &RunRecord) {
        let Some(job) = self.jobs.get_mut(&run.key.job) else { return };
        let c = &mut job.counters;
        match run.state {
            RunState::Succeeded => {
                c.success_count += 1;
                c.last_success = Some(now);
                c.errors_since_last_success = 0;
            }
            RunState::Failed | RunState::Killed | RunState::TimedOut => {
                c.error_count += 1;
                c.last_error = Some(now);
                c.errors_since_last_success += 1;
            }
            RunState::Pending | RunState::Launched | RunState::Running | RunState::Missed { .. } => return,
        }
        let name = run.key.job.clone();
        self.persist_job(&name);
    }

    /// Files a final run: into the job's history (the oldest beyond the retention
    /// dropped), persisted; a run of a deleted job is forgotten.
    fn file_final(&mut self, run: RunRecord) {
        *self.metrics.runs_by_outcome.entry(run.state.name()).or_insert(0) += 1;
        if !self.jobs.contains_key(&run.key.job) {
            self.persist(StoreOp::DeleteRun(run.key));
            return;
        }
        let limit = self.config.history_per_job;
        let finished = FinishedRun::of(&run);
        let job = run.key.job.clone();
        self.persist(StoreOp::PutRun(Box::new(run)));
        let history = self.history.entry(job.clone()).or_default();
        // Runs end out of order (a retry outlives a later run): the history stays in key
        // order, the oldest scheduled first.
        let at = history.partition_point(|r| r.scheduled < finished.scheduled);
        history.insert(at, finished);
        let mut dropped = Vec::new();
        while history.len() > limit {
            if let Some(old) = history.pop_front() {
                dropped.push(RunKey { job: job.clone(), scheduled: old.scheduled });
            }
        }
        for key in dropped {
            self.persist(StoreOp::DeleteRun(key));
        }
    }

    /// Counts a launch's lateness (first attempts of scheduled runs only).
    pub(super) fn count_launch(&mut self, now: Timestamp, run: &RunRecord) {
        if run.attempt != 1 || run.trigger != RunTrigger::Schedule {
            return;
        }
        let late_ms = u64::try_from(now.duration_since(run.key.scheduled).as_millis()).unwrap_or(0);
        let bucket = LATENESS_BUCKETS_MS.iter().position(|&b| late_ms <= b).unwrap_or(LATENESS_BUCKETS_MS.len());
        if let Some(count) = self.metrics.lateness_buckets.get_mut(bucket) {
            *count += 1;
        }
        self.metrics.lateness_sum_ms = self.metrics.lateness_sum_ms.saturating_add(late_ms);
        self.metrics.launches += 1;
    }

    /// After `parent` succeeded: starts each enabled child whose parents all succeeded
    /// since its own last dependency run.
    fn trigger_children(&mut self, now: Timestamp, parent: &JobName) {
        let children: Vec<JobName> = self.children.get(parent).into_iter().flatten().cloned().collect();
        for child in children {
            self.maybe_trigger(now, &child);
        }
    }

    pub(super) fn maybe_trigger(&mut self, now: Timestamp, child: &JobName) {
        let Some(job) = self.jobs.get(child) else { return };
        let parents = job.spec.parents();
        if job.spec.disabled || parents.is_empty() {
            return;
        }
        let since = job.dependency_since;
        let ready = parents
            .iter()
            .all(|p| self.jobs.get(p).and_then(|j| j.counters.last_success).is_some_and(|success| success > since));
        if !ready {
            return;
        }
        let window = signed(job.spec.start_window());
        if let Some(job) = self.jobs.get_mut(child) {
            job.dependency_since = now;
        }
        self.persist_job(child);
        let key = self.fresh_key(child, now);
        self.start_run(now, key, RunTrigger::Dependency, Some(plus(now, window)));
    }

    /// A key for a run at `now` that no run of the job holds (two in one instant are
    /// a nanosecond apart).
    fn fresh_key(&self, job: &JobName, now: Timestamp) -> RunKey {
        let mut key = RunKey { job: job.clone(), scheduled: now };
        while self.active.contains_key(&key) || self.history(job).any(|r| r.scheduled == key.scheduled) {
            key.scheduled = plus(key.scheduled, SignedDuration::from_nanos(1));
        }
        key
    }

    pub(super) fn run_now(
        &mut self,
        now: Timestamp,
        name: &JobName,
        arguments: Vec<String>,
    ) -> Result<Reply, CoreError> {
        if !self.jobs.contains_key(name) {
            return Err(CoreError::NotFound(name.clone()));
        }
        if self.active.len() >= MAX_ACTIVE_RUNS {
            return Err(CoreError::Conflict(format!("{MAX_ACTIVE_RUNS} runs are in flight, the most kept")));
        }
        let key = self.fresh_key(name, now);
        self.start_run(now, key.clone(), RunTrigger::Manual { arguments }, None);
        Ok(Reply::Started(key))
    }

    pub(super) fn mark_success(&mut self, now: Timestamp, name: &JobName) -> Result<Reply, CoreError> {
        let Some(job) = self.jobs.get_mut(name) else { return Err(CoreError::NotFound(name.clone())) };
        job.counters.success_count += 1;
        job.counters.last_success = Some(now);
        job.counters.errors_since_last_success = 0;
        self.persist_job(name);
        self.trigger_children(now, name);
        Ok(Reply::Done)
    }

    pub(super) fn kill_runs(&mut self, now: Timestamp, name: &JobName) -> Result<Reply, CoreError> {
        if !self.jobs.contains_key(name) {
            return Err(CoreError::NotFound(name.clone()));
        }
        let keys: Vec<RunKey> = self.active_runs(name).map(|r| r.key.clone()).collect();
        for key in &keys {
            self.kill_run(now, key, KillCause::User);
        }
        Ok(Reply::Killed(keys.len()))
    }

    /// Asks the master for the state of every run's task in flight.
    pub(super) fn reconcile(&mut self, now: Timestamp) {
        self.last_reconcile = Some(now);
        let tasks: Vec<_> =
            self.active.values().filter(|r| r.state.has_task()).map(|r| (r.task_id.clone(), r.agent.clone())).collect();
        for batch in tasks.chunks(MAX_RECONCILE_BATCH) {
            self.outbox.push(Output::Reconcile(batch.to_vec()));
        }
    }

    /// Revive while runs wait or one is due within [`OFFER_LEAD`]; Suppress otherwise.
    pub(super) fn update_offer_interest(&mut self, now: Timestamp) {
        if !self.subscribed {
            return;
        }
        let wanted = self.offers_needed(now);
        if self.offers_wanted != Some(wanted) {
            self.offers_wanted = Some(wanted);
            self.outbox.push(if wanted { Output::Revive } else { Output::Suppress });
        }
    }

    pub(super) fn offers_needed(&self, now: Timestamp) -> bool {
        !self.pending.is_empty() || self.wakes.first().is_some_and(|(at, _)| *at <= plus(now, OFFER_LEAD))
    }
}
