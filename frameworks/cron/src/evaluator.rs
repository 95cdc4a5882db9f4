//! The due-run evaluator: from the jobs' schedules, what each job has settled and the
//! current time, it decides which runs start now, which were missed, and when to look
//! again. It reads no clock and does no I/O; the runtime records its answer durably
//! before it launches anything.
//!
//! Each job's scheduled times in `(settled, now]` get exactly one outcome:
//!
//! - **on time**: `now` is within `[t, t + epsilon]`, so the run starts now;
//! - **missed**: `now` is past `t + epsilon` (the framework was down or could not act),
//!   recorded with the reason; unless
//! - **caught up**: the job's [`MissedRunPolicy`] asks for the latest missed runs to be
//!   started late after all (none by default, the latest one, or the latest `n`).
//!
//! A disabled job has no outcome and no wake-up. Work per call is bounded: at most
//! [`MAX_TIMES_PER_JOB`] scheduled times per job; when a job has more (a long downtime of
//! a job every minute), the answer settles the oldest ones and asks to be woken at once.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::schedule::Schedule;

/// The most scheduled times one job settles in one evaluation.
pub const MAX_TIMES_PER_JOB: usize = 1000;
/// The most missed runs a [`MissedRunPolicy::All`] policy may catch up.
pub const MAX_CATCH_UP: u32 = 100;

/// A job's name, its identity in Chronos' API.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(String);

impl JobName {
    /// Wraps a name; the API edge has already checked its syntax.
    pub fn new(name: impl Into<String>) -> Self {
        JobName(name.into())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to do with runs whose window passed while nothing could start them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedRunPolicy {
    /// Record them as missed and start none (the default, and Chronos' behaviour).
    #[default]
    Skip,
    /// Start the latest missed run late; record the others as missed.
    Latest,
    /// Start the latest `n` missed runs late (at most [`MAX_CATCH_UP`]), oldest first;
    /// record the others as missed.
    All(u32),
}

impl MissedRunPolicy {
    fn catch_up_bound(self) -> usize {
        let bound = match self {
            MissedRunPolicy::Skip => 0,
            MissedRunPolicy::Latest => 1,
            MissedRunPolicy::All(n) => n.min(MAX_CATCH_UP),
        };
        usize::try_from(bound).unwrap_or(0)
    }
}

/// One job as the evaluator sees it.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    /// The schedule and its zone.
    pub schedule: Schedule,
    /// A disabled job is never due.
    pub disabled: bool,
    /// How late after its scheduled time a run may still start (Chronos' `epsilon`).
    pub epsilon: Duration,
    /// What to do after runs were missed.
    pub missed_runs: MissedRunPolicy,
    /// The latest scheduled time already settled (run, caught up or recorded as
    /// missed): only later times are considered.
    pub last_scheduled: Option<Timestamp>,
    /// When the job was created or last enabled: earlier times are not its to run.
    pub active_since: Timestamp,
}

/// Why a run is starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Within its window.
    OnTime,
    /// Past its window, started by the missed-run policy.
    CatchUp,
}

/// A run to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The job.
    pub job: JobName,
    /// The time the schedule gave it: with the job, the run's identity.
    pub scheduled: Timestamp,
    /// Whether it is on time or caught up.
    pub kind: RunKind,
    /// The run must have started by then: `scheduled + epsilon` on time, `now + epsilon`
    /// when caught up.
    pub deadline: Timestamp,
}

/// Why a scheduled time was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// Its window closed before it could start, and the policy starts no missed runs.
    WindowPassed {
        /// The job's window.
        epsilon: Duration,
        /// When the evaluator first saw it.
        seen_at: Timestamp,
    },
    /// Its window closed before it could start, and later missed runs filled the
    /// policy's catch-up bound.
    BeyondCatchUp {
        /// The job's window.
        epsilon: Duration,
        /// When the evaluator first saw it.
        seen_at: Timestamp,
        /// How many of the latest missed runs the policy starts.
        bound: u32,
    },
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MissReason::WindowPassed { epsilon, seen_at } => write!(
                f,
                "not started within its epsilon of {}s: first seen at {seen_at}; the \
                 missed-run policy starts none",
                epsilon.as_secs()
            ),
            MissReason::BeyondCatchUp { epsilon, seen_at, bound } => write!(
                f,
                "not started within its epsilon of {}s: first seen at {seen_at}; the \
                 missed-run policy starts only the latest {bound}",
                epsilon.as_secs()
            ),
        }
    }
}

/// A scheduled time that will not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedRun {
    /// The job.
    pub job: JobName,
    /// The time the schedule gave it.
    pub scheduled: Timestamp,
    /// Why it is not run.
    pub reason: MissReason,
}

/// The evaluator's answer, to be recorded before any run is launched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Runs to start now, by scheduled time then job.
    pub runs: Vec<Run>,
    /// Scheduled times that will not run, by scheduled time then job.
    pub missed: Vec<MissedRun>,
    /// For each job this evaluation settled times of, the latest one: the job's
    /// `last_scheduled` from now on.
    pub last_scheduled: BTreeMap<JobName, Timestamp>,
    /// When to evaluate again: the earliest next scheduled time of an enabled job, `now`
    /// when a job has more times to settle, `None` when no job will ever be due.
    pub next_wake: Option<Timestamp>,
}

/// Decides what is due at `now`.
pub fn evaluate(jobs: &BTreeMap<JobName, JobSchedule>, now: Timestamp) -> Evaluation {
    let mut evaluation = Evaluation::default();
    for (name, job) in jobs.iter().filter(|(_, job)| !job.disabled) {
        let wake = evaluate_job(name, job, now, &mut evaluation);
        evaluation.next_wake = match (evaluation.next_wake, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    evaluation.runs.sort_by(|a, b| (a.scheduled, &a.job).cmp(&(b.scheduled, &b.job)));
    evaluation.missed.sort_by(|a, b| (a.scheduled, &a.job).cmp(&(b.scheduled, &b.job)));
    evaluation
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// Settles one job's times up to `now` into `out`; answers its next wake-up.
fn evaluate_job(name: &JobName, job: &JobSchedule, now: Timestamp, out: &mut Evaluation) -> Option<Timestamp> {
    // Times at `active_since` itself count: a job whose ISO 8601 start is its creation
    // time runs at once, as in Chronos.
    let since = job.active_since.checked_sub(SignedDuration::from_nanos(1)).unwrap_or(job.active_since);
    let from = job.last_scheduled.map_or(since, |last| last.max(since));
    let missed_by = |t: Timestamp| add(t, job.epsilon) < now;

    let mut times = Vec::new();
    let mut cursor = from;
    let mut upcoming = job.schedule.next_after(cursor);
    while let Some(t) = upcoming.filter(|&t| t <= now) {
        if times.len() == MAX_TIMES_PER_JOB {
            break;
        }
        times.push(t);
        cursor = t;
        upcoming = job.schedule.next_after(cursor);
    }
    let more = upcoming.is_some_and(|t| t <= now);

    // Missed times are a prefix, since `missed_by` holds for every time before one it
    // holds for. Those past this call's share still count toward the catch-up bound.
    let bound = job.missed_runs.catch_up_bound();
    let missed_here = times.iter().take_while(|&&t| missed_by(t)).count();
    let mut missed_later = 0;
    if more {
        let mut next = upcoming;
        while missed_later < bound {
            match next.filter(|&t| t <= now && missed_by(t)) {
                Some(t) => {
                    missed_later += 1;
                    next = job.schedule.next_after(t);
                }
                None => break,
            }
        }
    }
    for (i, &scheduled) in times.iter().enumerate() {
        if i >= missed_here {
            out.runs.push(Run {
                job: name.clone(),
                scheduled,
                kind: RunKind::OnTime,
                deadline: add(scheduled, job.epsilon),
            });
            continue;
        }
        let missed_after = missed_here - 1 - i + missed_later;
        if missed_after < bound {
            out.runs.push(Run {
                job: name.clone(),
                scheduled,
                kind: RunKind::CatchUp,
                deadline: add(now, job.epsilon),
            });
        } else {
            let reason = match job.missed_runs {
                MissedRunPolicy::Skip => MissReason::WindowPassed { epsilon: job.epsilon, seen_at: now },
                MissedRunPolicy::Latest | MissedRunPolicy::All(_) => MissReason::BeyondCatchUp {
                    epsilon: job.epsilon,
                    seen_at: now,
                    bound: u32::try_from(bound).unwrap_or(MAX_CATCH_UP),
                },
            };
            out.missed.push(MissedRun { job: name.clone(), scheduled, reason });
        }
    }
    if let Some(&last) = times.last() {
        out.last_scheduled.insert(name.clone(), last);
    }
    if more { Some(now) } else { upcoming }
}
