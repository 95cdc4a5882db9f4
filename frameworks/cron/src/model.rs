//! The cron domain: jobs, their counters and their runs, in our own types. Chronos' JSON
//! names and defaults live in `chronos/`; the core and the store see only these.
//!
//! Every type here is valid by construction: the API edge parses and validates a request
//! into them (names through [`check_job_name`], schedules through [`Schedule::parse`],
//! sizes against the limits below), and the core relies on what the doc comments state.
//! The core checks only what needs the other jobs: the dependency graph.
//!
//! Records are stored as JSON with these (snake_case) names; times as RFC 3339 text.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use agora_proto::model::{AgentId, FetchUri, TaskId};
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::evaluator::{JobName, MissedRunPolicy};
pub use crate::schedule::Schedule;

/// Most jobs one framework keeps.
pub const MAX_JOBS: usize = 100_000;
/// Most characters in a job name, so that a run's task id (the name escaped, its
/// scheduled time and attempt) stays within the master's 256-byte limit on ids.
pub const MAX_JOB_NAME_LEN: usize = 64;
/// Most bytes in a command.
pub const MAX_COMMAND_LEN: usize = 16 * 1024;
/// Most arguments of a job or of one manual run, and most bytes in each.
pub const MAX_ARGUMENTS: usize = 256;
pub const MAX_ARGUMENT_LEN: usize = 4096;
/// Most environment variables of a job.
pub const MAX_ENVIRONMENT: usize = 256;
/// Most constraints of a job.
pub const MAX_CONSTRAINTS: usize = 32;
/// Most parents of a dependent job.
pub const MAX_PARENTS: usize = 64;
/// Most retries of a failed run (Chronos has no bound; a huge value is refused).
pub const MAX_RETRIES: u32 = 100;
/// Most bytes in the free-text fields (`owner`, `owner_name`, `description`).
pub const MAX_TEXT_LEN: usize = 4096;
/// The longest `epsilon`, `starting_deadline` and `max_completion_time`.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// Chronos' default `epsilon`: `PT60S`.
pub const DEFAULT_EPSILON: Duration = Duration::from_secs(60);
/// Finished runs kept per job (older ones are dropped, the counters keep their sums).
pub const HISTORY_PER_JOB: usize = 50;
/// Most runs a history request may ask for (at most [`HISTORY_PER_JOB`] exist).
pub const MAX_HISTORY_REQUEST: usize = 1000;
/// Most bytes of a run's message kept.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Checks a job name as Chronos' API accepts it: ASCII letters, digits, `_`, `-`, `#`,
/// spaces and dots, not empty, at most [`MAX_JOB_NAME_LEN`] characters. Answers why not.
pub fn check_job_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a job name may not be empty".into());
    }
    if name.len() > MAX_JOB_NAME_LEN {
        return Err(format!("is longer than {MAX_JOB_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '#' | ' ' | '.'))) {
        return Err(format!("contains {c:?}: a job name holds only letters, digits, spaces, `_`, `-`, `#` and `.`"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------

/// What a job is started by.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its schedule, read in the schedule's time zone.
    Schedule(Schedule),
    /// Its parents: it runs once all of them succeeded since its own last run. Not empty
    /// (but for a job whose parents were all deleted with `force`, which is then
    /// disabled), no duplicates, at most [`MAX_PARENTS`]; the core checks that they exist
    /// and that the graph has no cycle.
    Parents(Vec<JobName>),
}

impl PartialEq for Trigger {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Trigger::Schedule(a), Trigger::Schedule(b)) => {
                a.canonical() == b.canonical() && a.time_zone_text() == b.time_zone_text()
            }
            (Trigger::Parents(a), Trigger::Parents(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Trigger {}

/// What happens when a run is due while an earlier run of the job is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    /// Both run (Chronos' `concurrent: true`).
    Allow,
    /// The new run is recorded as missed, with the reason (Chronos' `concurrent: false`).
    #[default]
    Forbid,
    /// The running runs are killed and the new one starts.
    Replace,
}

/// How a constraint compares an agent's field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintOp {
    /// The field equals the value exactly.
    Equals,
    /// The field matches the value, a regular expression anchored at both ends.
    Like,
    /// The field does not match the value (an agent without the field matches).
    Unlike,
}

/// Where a job's tasks may run: on agents whose `hostname` or attribute `attribute`
/// passes `op` against `value`. An agent without the attribute fails `Equals` and `Like`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub attribute: String,
    pub op: ConstraintOp,
    /// For `Like`/`Unlike`, a regular expression the edge has compiled once.
    pub value: String,
}

/// One job as the user defined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: JobName,
    /// Run by `/bin/sh -c` when `shell`, else executed with `arguments` as its argv tail.
    pub command: String,
    pub shell: bool,
    /// Appended to the command (each quoted for the shell when `shell`), before a manual
    /// run's own arguments.
    pub arguments: Vec<String>,
    pub cpus_milli: u64,
    pub mem_mib: u64,
    pub disk_mib: u64,
    /// The owner's e-mail address(es), as Chronos keeps them.
    pub owner: String,
    pub owner_name: String,
    pub description: String,
    /// The user the task runs as; the framework's user when `None`.
    pub run_as_user: Option<String>,
    /// How many times a failed run is started again (at most [`MAX_RETRIES`]).
    pub retries: u32,
    /// A disabled job is never started by its schedule or its parents (run now still
    /// starts it, as in Chronos).
    pub disabled: bool,
    /// Chronos' `concurrent`, kept to be rendered back as given; the core reads only
    /// `concurrency_policy`, which the edge derives from it when `concurrencyPolicy` is
    /// absent (`true` → `Allow`, `false` → `Forbid`).
    pub concurrent: bool,
    pub concurrency_policy: ConcurrencyPolicy,
    pub constraints: Vec<Constraint>,
    pub environment: BTreeMap<String, String>,
    /// How late after its scheduled time a run may still start (Chronos' `epsilon`).
    #[serde(with = "duration_secs")]
    pub epsilon: Duration,
    pub trigger: Trigger,
    /// Overrides `epsilon` as the start window when set (`startingDeadlineSeconds`).
    #[serde(with = "option_duration_secs")]
    pub starting_deadline: Option<Duration>,
    /// What to do with runs missed while the framework was down.
    #[serde(with = "missed_policy")]
    pub missed_runs: MissedRunPolicy,
    /// A run still going this long after it started is killed and recorded `TimedOut`.
    #[serde(with = "option_duration_secs")]
    pub max_completion_time: Option<Duration>,
    /// Files the agent fetches into each run's sandbox before the command starts (Chronos'
    /// `fetch`, and `uris`). Absent from jobs stored before fetching existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetch: Vec<FetchUri>,
    /// When the job was first created; kept across replacements.
    #[serde(with = "timestamp")]
    pub created_at: Timestamp,
    /// When this definition was stored (its version).
    #[serde(with = "timestamp")]
    pub version: Timestamp,
}

impl JobSpec {
    /// The window after a scheduled time within which its run may start.
    pub fn start_window(&self) -> Duration {
        self.starting_deadline.unwrap_or(self.epsilon)
    }

    /// The schedule, for a scheduled job.
    pub fn schedule(&self) -> Option<&Schedule> {
        match &self.trigger {
            Trigger::Schedule(schedule) => Some(schedule),
            Trigger::Parents(_) => None,
        }
    }

    /// The parents, for a dependent job (empty for a scheduled one).
    pub fn parents(&self) -> &[JobName] {
        match &self.trigger {
            Trigger::Schedule(_) => &[],
            Trigger::Parents(parents) => parents,
        }
    }
}

/// A job's counters, as Chronos reports them (kept across history retention).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounters {
    pub success_count: u64,
    pub error_count: u64,
    #[serde(with = "option_timestamp")]
    pub last_success: Option<Timestamp>,
    #[serde(with = "option_timestamp")]
    pub last_error: Option<Timestamp>,
    pub errors_since_last_success: u64,
}

/// A job as kept: its definition, its counters and how far its triggers have been
/// settled. What the store holds per job and what the API's reads return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub spec: JobSpec,
    pub counters: JobCounters,
    /// The latest scheduled time settled (run, missed or caught up): only later times
    /// are the evaluator's to consider.
    #[serde(with = "option_timestamp")]
    pub last_scheduled: Option<Timestamp>,
    /// Scheduled times before this are not the job's to run: when it was created, its
    /// schedule changed, or it was enabled again.
    #[serde(with = "timestamp")]
    pub active_since: Timestamp,
    /// A dependent job runs once every parent's `last_success` is after this: when it was
    /// created, enabled, or last started by its parents.
    #[serde(with = "timestamp")]
    pub dependency_since: Timestamp,
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// The job's schedule, at `scheduled` (on time, or caught up after downtime).
    Schedule,
    /// All of the job's parents succeeded.
    Dependency,
    /// A user asked for it now, with these extra arguments.
    Manual { arguments: Vec<String> },
}

/// Where a run is. A run is recorded (durably) `Pending` before anything is launched for
/// it; every state after `Running` is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for an offer that fits (a retry waits here too).
    Pending,
    /// Its task was launched on an agent; no update yet (or only STAGING/STARTING).
    Launched,
    /// Its task runs.
    Running,
    /// Its task finished with exit code 0 (or a user marked the run successful).
    Succeeded,
    /// Its task failed on its last attempt.
    Failed,
    /// It was killed on request (a user, or `Replace` by a newer run).
    Killed,
    /// It ran longer than the job's `max_completion_time` and was killed.
    TimedOut,
    /// It could not start within its window; `reason` says why.
    Missed { reason: String },
}

impl RunState {
    /// Whether nothing more will happen to the run.
    pub fn is_final(&self) -> bool {
        !matches!(self, RunState::Pending | RunState::Launched | RunState::Running)
    }

    /// Whether the run's task may exist on an agent.
    pub fn has_task(&self) -> bool {
        matches!(self, RunState::Launched | RunState::Running)
    }

    /// A short lower-case name for logs, metrics and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Launched => "launched",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Killed => "killed",
            RunState::TimedOut => "timed_out",
            RunState::Missed { .. } => "missed",
        }
    }
}

/// Why a run's task is being killed; decides its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillCause {
    /// A user asked (`task/kill`): final state `Killed`, counted as an error.
    User,
    /// `Replace`: a newer run of the job took its place; `Killed`.
    Replaced,
    /// It exceeded `max_completion_time`: `TimedOut`.
    Timeout,
}

/// A run's identity: its job and scheduled time (a manual run's is when it was asked
/// for). Attempts of one run share it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunKey {
    pub job: JobName,
    #[serde(with = "timestamp")]
    pub scheduled: Timestamp,
}

impl RunKey {
    /// The task id of `attempt` (1 for the first) of this run: the same inputs always
    /// give the same id, so that a launch repeated after a failover is recognised.
    /// `cron.<name escaped>.<scheduled ms>.<attempt>`, where the escape writes
    /// `%XX` for every byte other than a letter, digit, `_` or `-`.
    pub fn task_id(&self, attempt: u32) -> TaskId {
        let mut id = String::with_capacity(self.job.as_str().len() + 32);
        id.push_str("cron.");
        for byte in self.job.as_str().bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                id.push(char::from(byte));
            } else {
                id.push_str(&format!("%{byte:02X}"));
            }
        }
        id.push_str(&format!(".{}.{attempt}", self.scheduled.as_millisecond()));
        TaskId::new(id)
    }
}

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.job, self.scheduled)
    }
}

/// One run of a job, across its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub key: RunKey,
    pub trigger: RunTrigger,
    /// The current attempt, 1 for the first; a retry starts the next.
    pub attempt: u32,
    /// The current attempt's task id, `key.task_id(attempt)`.
    pub task_id: TaskId,
    /// Attempts that failed (each a retry when `retries` allows). A launch the master
    /// dropped is tried again under the next attempt without counting here.
    #[serde(default)]
    pub failures: u32,
    pub state: RunState,
    /// Set while the run's task is being killed.
    pub killing: Option<KillCause>,
    /// When the run was recorded.
    #[serde(with = "timestamp")]
    pub recorded_at: Timestamp,
    /// The current attempt must be launched by then, or the run is missed (`None`: no
    /// bound, for manual and dependency runs and retries).
    #[serde(with = "option_timestamp")]
    pub deadline: Option<Timestamp>,
    /// The agent of the current attempt's task.
    pub agent: Option<AgentId>,
    /// When the first attempt was launched.
    #[serde(with = "option_timestamp")]
    pub started: Option<Timestamp>,
    /// When the current attempt was launched.
    #[serde(with = "option_timestamp")]
    pub attempt_started: Option<Timestamp>,
    /// When the run reached its final state.
    #[serde(with = "option_timestamp")]
    pub ended: Option<Timestamp>,
    pub exit_code: Option<i32>,
    /// The last status message (at most [`MAX_MESSAGE_LEN`] bytes).
    pub message: String,
}

impl RunRecord {
    /// Lateness of the start: first launch minus scheduled time.
    pub fn lateness(&self) -> Option<jiff::SignedDuration> {
        self.started.map(|started| started.duration_since(self.key.scheduled))
    }

    /// How long a run that succeeded ran, from the launch of its last attempt to its end,
    /// in milliseconds; `None` for any other run.
    pub fn succeeded_ms(&self) -> Option<f64> {
        if self.state != RunState::Succeeded {
            return None;
        }
        let ms = self.ended?.duration_since(self.attempt_started.or(self.started)?).as_millis_f64();
        (ms >= 0.0).then_some(ms)
    }
}

/// A finished run as the core keeps it in memory: what it decides with (the retention,
/// a fresh key, run-time statistics). The whole [`RunRecord`] stays in the store and is
/// read from there on demand, so that a month of history for many jobs costs tens of
/// bytes a run in memory, not a record of hundreds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinishedRun {
    pub scheduled: Timestamp,
    /// [`RunState::name`] of its final state.
    pub state: &'static str,
    /// [`RunRecord::succeeded_ms`].
    pub succeeded_ms: Option<f64>,
}

impl FinishedRun {
    pub fn of(run: &RunRecord) -> Self {
        Self { scheduled: run.key.scheduled, state: run.state.name(), succeeded_ms: run.succeeded_ms() }
    }
}

// ---------------------------------------------------------------------------------------
// Serde helpers: times as RFC 3339 text, durations as whole seconds
// ---------------------------------------------------------------------------------------

impl Serialize for JobName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(JobName::new)
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSchedule {
    schedule: String,
    time_zone: String,
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredSchedule { schedule: self.canonical(), time_zone: self.time_zone_text().to_string() }
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredSchedule::deserialize(deserializer)?;
        // The canonical form has its start written in full, so the creation time that
        // stands in for an empty start is never read here.
        let zone = (!stored.time_zone.is_empty()).then_some(stored.time_zone.as_str());
        Schedule::parse(&stored.schedule, zone, Timestamp::UNIX_EPOCH).map_err(serde::de::Error::custom)
    }
}

mod timestamp {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod option_timestamp {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serializer.collect_str(t),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

mod option_duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serializer.serialize_u64(d.as_secs()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_secs))
    }
}

mod missed_policy {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::MissedRunPolicy;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Stored {
        Skip,
        Latest,
        All(u32),
    }

    pub fn serialize<S: Serializer>(p: &MissedRunPolicy, serializer: S) -> Result<S::Ok, S::Error> {
        match *p {
            MissedRunPolicy::Skip => Stored::Skip,
            MissedRunPolicy::Latest => Stored::Latest,
            MissedRunPolicy::All(n) => Stored::All(n),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MissedRunPolicy, D::Error> {
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Skip => MissedRunPolicy::Skip,
            Stored::Latest => MissedRunPolicy::Latest,
            Stored::All(n) => MissedRunPolicy::All(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(trigger: Trigger) -> JobSpec {
        let at: Timestamp = "2026-03-01T00:00:00Z".parse().expect("a valid time");
        JobSpec {
            name: JobName::new("nightly report #2"),
            command: "echo hi".into(),
            shell: true,
            arguments: vec!["-v".into()],
            cpus_milli: 100,
            mem_mib: 128,
            disk_mib: 256,
            owner: "ops@example.com".into(),
            owner_name: "Ops".into(),
            description: "".into(),
            run_as_user: None,
            retries: 2,
            disabled: false,
            concurrent: false,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            constraints: vec![Constraint { attribute: "rack".into(), op: ConstraintOp::Like, value: "r[12]".into() }],
            environment: BTreeMap::from([("A".into(), "1".into())]),
            epsilon: DEFAULT_EPSILON,
            trigger,
            starting_deadline: Some(Duration::from_secs(30)),
            missed_runs: MissedRunPolicy::All(3),
            max_completion_time: None,
            fetch: Vec::new(),
            created_at: at,
            version: at,
        }
    }

    #[test]
    fn a_job_survives_its_stored_form_unchanged() {
        let at: Timestamp = "2026-03-01T00:00:00Z".parse().expect("a valid time");
        let schedule =
            Schedule::parse("R/2026-03-01T02:00:00/P1D", Some("Europe/London"), at).expect("a valid schedule");
        for spec in
            [job(Trigger::Schedule(schedule)), job(Trigger::Parents(vec![JobName::new("a"), JobName::new("b")]))]
        {
            let text = serde_json::to_string(&spec).expect("serializable");
            let back: JobSpec = serde_json::from_str(&text).expect("readable");
            assert_eq!(back, spec, "{text}");
        }
    }

    #[test]
    fn a_task_id_names_the_job_time_and_attempt_and_escapes_the_rest() {
        let key = RunKey {
            job: JobName::new("nightly report #2"),
            scheduled: "2026-03-01T02:00:00Z".parse().expect("valid"),
        };
        assert_eq!(key.task_id(3).as_str(), "cron.nightly%20report%20%232.1772330400000.3");
        let other = RunKey { job: JobName::new("nightly_report_2"), scheduled: key.scheduled };
        assert_ne!(key.task_id(1), other.task_id(1));
    }

    #[test]
    fn the_longest_name_of_escaped_bytes_still_makes_a_valid_task_id() {
        let key = RunKey { job: JobName::new("#".repeat(MAX_JOB_NAME_LEN)), scheduled: Timestamp::MAX };
        assert!(key.task_id(MAX_RETRIES + 1).as_str().len() <= agora_proto::convert::MAX_ID_LEN);
    }

    #[test]
    fn job_names_outside_chronos_characters_are_refused_with_the_character() {
        assert!(check_job_name("nightly-report_2 #a.b").is_ok());
        assert!(check_job_name("").is_err());
        assert!(check_job_name("a/b").expect_err("refused").contains("'/'"));
        assert!(check_job_name(&"x".repeat(MAX_JOB_NAME_LEN + 1)).is_err());
    }
}
