//! The run state machine: cron's pure core.
//!
//! (jobs, runs, counters, now, the master's events) → outputs. The runtime feeds it the
//! API's [`Command`]s and the master's [`Input`]s, each with the current time, and
//! executes the [`Output`]s it appends to its outbox, in order: `Persist` records are
//! committed before any output after them leaves the process, and before the command
//! that made them is answered. No I/O, no clock, no tokio in here.
//!
//! How a run goes:
//! - it is recorded `Pending` (persisted) when its schedule makes it due (the
//!   [`evaluator`](crate::evaluator) decides on time, caught up or missed), when all its
//!   parents succeeded since its own last run, or when a user runs the job now;
//! - an offer that fits (resources, role, constraints) launches it as the task
//!   `RunKey::task_id(attempt)` — the run is persisted `Launched` in the same batch as the
//!   launch, so a process that restarts knows every task it may have started, by id;
//! - the task's updates move it to `Running` and to a final state; a failure starts the
//!   next attempt while `retries` allow; `max_completion_time` kills it (`TimedOut`);
//! - a run that could not be launched within its window is recorded `Missed`, with why.
//!
//! Split: `jobs` (put, delete, the dependency graph), `runs` (due runs, concurrency,
//! deadlines, timeouts, kills, retries, counters, history), `updates` (status updates and
//! reconciliation), `launch` (offers → tasks).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_proto::model::{AgentId, FrameworkId, Offer, OfferId, TaskId, TaskInfo, TaskStatus};
use jiff::{SignedDuration, Timestamp};

use crate::model::{FinishedRun, JobName, JobRecord, RunKey, RunRecord};

mod jobs;
mod launch;
mod runs;
mod updates;

#[cfg(test)]
pub(crate) mod tests;

/// Settings of the core, from `agora cron`'s flags.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The framework's role (`--role`); runs launch on resources of this role or `*`.
    pub role: String,
    /// Finished runs kept per job.
    pub history_per_job: usize,
    /// How often every in-flight run is reconciled with the master, after the
    /// reconciliation at each subscription.
    pub reconcile_interval: SignedDuration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            role: "*".into(),
            history_per_job: crate::model::HISTORY_PER_JOB,
            reconcile_interval: SignedDuration::from_mins(10),
        }
    }
}

/// A change asked for through the API. The edge has validated each field; the core
/// checks what needs the other jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Creates or replaces the job of that name (its counters and history stay).
    PutJob(Box<crate::model::JobSpec>),
    /// Deletes a job, its pending runs and its history, and kills its running tasks.
    /// Refused while it has children unless `force` (they lose it as a parent).
    DeleteJob { name: JobName, force: bool },
    /// Starts a run now, with extra arguments, whatever the schedule and `disabled`.
    RunNow { name: JobName, arguments: Vec<String> },
    /// Counts a success now, as if a run had succeeded: its children may start.
    MarkSuccess { name: JobName },
    /// Kills every run of the job in flight (a pending one ends at once).
    KillRuns { name: JobName },
}

/// What a [`Command`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Done,
    /// The job (and, with `force`, the children left without parents are disabled).
    Deleted {
        disabled_children: Vec<JobName>,
    },
    /// The run that was recorded.
    Started(RunKey),
    /// How many runs were being killed or ended.
    Killed(usize),
}

/// Why a [`Command`] was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// 404: no job of that name.
    #[error("job '{0}' not found")]
    NotFound(JobName),
    /// 400: the change is not valid against the other jobs (a missing parent, a cycle).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// 400/409: refused in the current state (children exist, too many jobs).
    #[error("{0}")]
    Conflict(String),
}

/// What the master said, through the SDK driver.
#[derive(Clone, Debug)]
pub enum Input {
    Subscribed {
        framework_id: FrameworkId,
    },
    Disconnected,
    Offers(Vec<Offer>),
    Rescinded(OfferId),
    Update(TaskStatus),
    /// Time passed: due runs, deadlines, timeouts, kill retries, periodic
    /// reconciliation. The runtime ticks at [`Cron::next_wake`] and at least once a second.
    Tick,
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Commit with the rest of the batch before any later output is executed.
    Persist(StoreOp),
    /// ACCEPT: launch `tasks` on the offers (all of one agent); what they leave unused is
    /// refused for `refuse_seconds`.
    Launch {
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        refuse_seconds: f64,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        refuse_seconds: f64,
    },
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    /// RECONCILE these tasks; every task of the framework when empty.
    Reconcile(Vec<(TaskId, Option<AgentId>)>),
    /// Offers are wanted again (runs are pending or due soon).
    Revive,
    /// No offers are needed.
    Suppress,
}

/// One durable change. The store applies a batch atomically.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreOp {
    FrameworkId(FrameworkId),
    PutJob(Box<JobRecord>),
    /// The job's record (its runs are deleted one by one).
    DeleteJob(JobName),
    PutRun(Box<RunRecord>),
    DeleteRun(RunKey),
}

/// Everything the store holds, read back at start: runs in flight whole, finished runs
/// as the core keeps them (their records stay in the store).
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub framework_id: Option<FrameworkId>,
    pub jobs: Vec<JobRecord>,
    /// Runs in flight (a finished run here is kept as a [`FinishedRun`]).
    pub runs: Vec<RunRecord>,
    /// Finished runs by job, in any order.
    pub finished: BTreeMap<JobName, Vec<FinishedRun>>,
}

/// Runs by outcome and the lateness of starts since this process started, for
/// `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Final runs by `RunState::name`.
    pub runs_by_outcome: BTreeMap<&'static str, u64>,
    /// Launches by lateness: the count at or under each of [`LATENESS_BUCKETS_MS`], then
    /// the count beyond the last.
    pub lateness_buckets: [u64; LATENESS_BUCKETS_MS.len() + 1],
    /// Sum of the launches' lateness, for the histogram's `_sum`.
    pub lateness_sum_ms: u64,
    pub launches: u64,
}

/// Upper bounds of the lateness histogram's buckets.
pub const LATENESS_BUCKETS_MS: [u64; 10] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// How long before a run is due offers are asked for, so that one is at hand in time.
pub const OFFER_LEAD: SignedDuration = SignedDuration::from_secs(15);
/// How long declined offers are refused while runs wait or are due soon, and when idle.
pub const REFUSE_WHILE_DUE_S: f64 = 1.0;
pub const REFUSE_WHEN_IDLE_S: f64 = 60.0;
/// Offers that fit nothing pending are held (not declined) while a job is due within
/// this long, so that its run launches at its time instead of waiting for the master to
/// offer again.
pub const HOLD_LEAD: SignedDuration = SignedDuration::from_secs(5);
/// An offer held this long is declined (others may need its resources).
pub const HOLD_MAX: SignedDuration = SignedDuration::from_secs(10);
/// Most offers held at once.
pub const MAX_HELD_OFFERS: usize = 256;
/// A kill the master has not confirmed is sent again after this long.
pub const KILL_RETRY: SignedDuration = SignedDuration::from_secs(10);
/// Most runs in flight (pending, launched, running) at once; due runs beyond it are
/// recorded missed.
pub const MAX_ACTIVE_RUNS: usize = 100_000;
/// Most launches a dropped run is given beyond its retries, so that a master that keeps
/// dropping cannot make it loop for ever.
pub const MAX_RELAUNCHES: u32 = 10;
/// Most task ids in one `Reconcile` output.
pub const MAX_RECONCILE_BATCH: usize = 5_000;
/// Most tasks launched on one agent's offers at a time.
pub const MAX_TASKS_PER_ACCEPT: usize = 1_000;

/// The core.
#[derive(Debug)]
pub struct Cron {
    config: CoreConfig,
    framework_id: Option<FrameworkId>,
    jobs: BTreeMap<JobName, JobRecord>,
    /// Parent → its children, kept with `jobs`.
    children: BTreeMap<JobName, BTreeSet<JobName>>,
    /// Runs not final yet, by key.
    active: BTreeMap<RunKey, RunRecord>,
    /// The current attempt's task of each launched or running run.
    by_task: BTreeMap<TaskId, RunKey>,
    /// The pending runs, in the order offers go to them (earliest scheduled first), kept
    /// with `active`: what wants offers and what to place is known without a scan of
    /// every run in flight, which a burst of status updates would repeat per update.
    pending: BTreeSet<(Timestamp, JobName)>,
    /// The jobs with a `max_completion_time`, kept with `jobs`: only their runs have a
    /// completion deadline, so the others' are never looked at when the next wake-up is
    /// asked for (after every batch).
    timed: BTreeSet<JobName>,
    /// Final runs per job, oldest scheduled first, at most `history_per_job`; their
    /// records are in the store, read from there when the API asks.
    history: BTreeMap<JobName, VecDeque<FinishedRun>>,
    /// Scheduled jobs by their next scheduled time (enabled ones only).
    wakes: BTreeSet<(Timestamp, JobName)>,
    wake_of: BTreeMap<JobName, Timestamp>,
    /// Offers held for runs due soon, with when each arrived.
    held: BTreeMap<OfferId, (Offer, Timestamp)>,
    /// Runs being killed, with when the kill was last sent.
    kills_sent: BTreeMap<RunKey, Timestamp>,
    /// Dependent jobs to check at the next call (after recovery).
    recheck_dependents: bool,
    subscribed: bool,
    /// What the master was last told: `Some(true)` after Revive, `Some(false)` after
    /// Suppress, `None` when unknown (after a (re)subscription).
    offers_wanted: Option<bool>,
    last_reconcile: Option<Timestamp>,
    regexes: launch::Patterns,
    metrics: Metrics,
    outbox: Vec<Output>,
}

impl Cron {
    pub fn new(config: CoreConfig) -> Self {
        Self::recover(config, Recovered::default())
    }

    /// A core resuming from what the store held. Runs in flight are settled by the
    /// reconciliation at the next subscription; dependent jobs are checked at the first
    /// call (a parent's success committed just before a crash still starts its children).
    pub fn recover(config: CoreConfig, recovered: Recovered) -> Self {
        let mut cron = Self {
            config,
            framework_id: recovered.framework_id,
            jobs: BTreeMap::new(),
            children: BTreeMap::new(),
            active: BTreeMap::new(),
            by_task: BTreeMap::new(),
            pending: BTreeSet::new(),
            timed: BTreeSet::new(),
            history: BTreeMap::new(),
            wakes: BTreeSet::new(),
            wake_of: BTreeMap::new(),
            kills_sent: BTreeMap::new(),
            held: BTreeMap::new(),
            recheck_dependents: true,
            subscribed: false,
            offers_wanted: None,
            last_reconcile: None,
            regexes: launch::Patterns::default(),
            metrics: Metrics::default(),
            outbox: Vec::new(),
        };
        for job in recovered.jobs {
            cron.index_parents(&job.spec.name, job.spec.parents());
            if job.spec.max_completion_time.is_some() {
                cron.timed.insert(job.spec.name.clone());
            }
            cron.jobs.insert(job.spec.name.clone(), job);
        }
        let mut finished = recovered.finished;
        for run in recovered.runs {
            if run.state.is_final() {
                finished.entry(run.key.job.clone()).or_default().push(FinishedRun::of(&run));
            } else {
                if run.state.has_task() {
                    cron.by_task.insert(run.task_id.clone(), run.key.clone());
                }
                if run.state == crate::model::RunState::Pending {
                    cron.pending.insert((run.key.scheduled, run.key.job.clone()));
                }
                cron.active.insert(run.key.clone(), run);
            }
        }
        // Beyond the retention (lowered since they were kept), the oldest are deleted at
        // the first commit.
        let limit = cron.config.history_per_job;
        for (job, mut runs) in finished {
            runs.sort_by_key(|run| run.scheduled);
            let beyond = runs.len().saturating_sub(limit);
            for old in runs.drain(..beyond) {
                cron.persist(StoreOp::DeleteRun(RunKey { job: job.clone(), scheduled: old.scheduled }));
            }
            cron.history.insert(job, runs.into());
        }
        let names: Vec<JobName> = cron.jobs.keys().cloned().collect();
        for name in names {
            cron.schedule_wake(&name);
        }
        cron
    }

    /// Applies a change from the API. On `Ok`, the outputs it appended (Persist first)
    /// must be committed before the reply is sent. On `Err` nothing changed and nothing
    /// was appended.
    pub fn command(&mut self, now: Timestamp, command: Command) -> Result<Reply, CoreError> {
        let reply = match command {
            Command::PutJob(spec) => self.put_job(now, *spec),
            Command::DeleteJob { name, force } => self.delete_job(now, &name, force),
            Command::RunNow { name, arguments } => self.run_now(now, &name, arguments),
            Command::MarkSuccess { name } => self.mark_success(now, &name),
            Command::KillRuns { name } => self.kill_runs(now, &name),
        }?;
        self.settle(now);
        Ok(reply)
    }

    /// Applies an event from the master, or a tick.
    pub fn input(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Subscribed { framework_id } => self.subscribed(now, framework_id),
            Input::Disconnected => {
                self.subscribed = false;
                self.offers_wanted = None;
                // A new subscription's offers replace them.
                self.held.clear();
            }
            Input::Offers(offers) => self.offers(now, offers),
            Input::Rescinded(offer_id) => {
                self.held.remove(&offer_id);
            }
            Input::Update(status) => self.update(now, status),
            Input::Tick => self.tick(now),
        }
        self.settle(now);
    }

    /// The outputs appended since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// When the core next has something to do without an event: a job due, a pending
    /// run's deadline, a run's completion deadline, a kill to send again. `None` when
    /// nothing is scheduled.
    pub fn next_wake(&self) -> Option<Timestamp> {
        let due = self.wakes.first().map(|(t, _)| *t);
        let pending = self.pending.iter().filter_map(|(scheduled, job)| {
            self.active.get(&RunKey { job: job.clone(), scheduled: *scheduled })?.deadline
        });
        let completions = self
            .timed
            .iter()
            .flat_map(|job| self.active_runs(job))
            .filter(|run| run.state.has_task())
            .filter_map(|run| self.completion_deadline(run));
        let deadlines = pending.chain(completions);
        let kills = self.kills_sent.values().map(|sent| plus(*sent, KILL_RETRY));
        let held = self.held.values().map(|(_, since)| plus(*since, HOLD_MAX));
        due.into_iter().chain(deadlines).chain(kills).chain(held).min()
    }

    fn persist(&mut self, op: StoreOp) {
        self.outbox.push(Output::Persist(op));
    }

    fn persist_job(&mut self, name: &JobName) {
        if let Some(job) = self.jobs.get(name) {
            let op = StoreOp::PutJob(Box::new(job.clone()));
            self.persist(op);
        }
    }

    /// Work every call ends with: dependents to check after recovery, and telling the
    /// master whether offers are wanted.
    fn settle(&mut self, now: Timestamp) {
        debug_assert_eq!(
            self.pending.len(),
            self.active.values().filter(|run| run.state == crate::model::RunState::Pending).count(),
            "the pending index holds every pending run"
        );
        debug_assert!(
            self.jobs
                .values()
                .filter(|job| job.spec.max_completion_time.is_some())
                .map(|job| &job.spec.name)
                .eq(self.timed.iter()),
            "the timed jobs are those with a max_completion_time"
        );
        if std::mem::take(&mut self.recheck_dependents) {
            let dependents: Vec<JobName> =
                self.jobs.values().filter(|j| !j.spec.parents().is_empty()).map(|j| j.spec.name.clone()).collect();
            for child in dependents {
                self.maybe_trigger(now, &child);
            }
        }
        self.update_offer_interest(now);
    }

    // ----- Read side, for the API -----

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Jobs in name order.
    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    pub fn job(&self, name: &JobName) -> Option<&JobRecord> {
        self.jobs.get(name)
    }

    /// The job's runs in flight, oldest first.
    pub fn active_runs<'a>(&'a self, name: &'a JobName) -> impl Iterator<Item = &'a RunRecord> + 'a {
        self.active.range(job_range(name)).map(|(_, run)| run)
    }

    /// Every run in flight, by key.
    pub fn all_active_runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.active.values()
    }

    /// The job's finished runs kept, oldest scheduled first (at most
    /// `history_per_job`); their whole records are in the store.
    pub fn history(&self, name: &JobName) -> impl Iterator<Item = &FinishedRun> {
        self.history.get(name).into_iter().flat_map(|runs| runs.iter())
    }

    /// The dependency edges, (parent, child), in order.
    pub fn edges(&self) -> Vec<(JobName, JobName)> {
        let mut edges = Vec::new();
        for (parent, children) in &self.children {
            for child in children {
                edges.push((parent.clone(), child.clone()));
            }
        }
        edges
    }

    /// How long the job's kept successful runs took (launch of the last attempt to the
    /// end), in milliseconds, oldest first.
    pub fn durations_ms<'a>(&'a self, name: &'a JobName) -> impl Iterator<Item = f64> + 'a {
        self.history(name).filter_map(|run| run.succeeded_ms)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs waiting for an offer.
    pub fn queue_len(&self) -> usize {
        self.pending.len()
    }

    /// Offers held for runs due soon.
    pub fn held_offers(&self) -> usize {
        self.held.len()
    }

    /// Whether the scheduler is subscribed to the master.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }
}

/// The keys of one job's runs.
fn job_range(name: &JobName) -> std::ops::RangeInclusive<RunKey> {
    RunKey { job: name.clone(), scheduled: Timestamp::MIN }..=RunKey { job: name.clone(), scheduled: Timestamp::MAX }
}

/// `t + d`, saturating at the representable range.
fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// A std duration as jiff's, saturating.
fn signed(d: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}
