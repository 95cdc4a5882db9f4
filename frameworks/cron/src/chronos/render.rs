//! Jobs, statistics, runs and the dependency graph as Chronos' clients read them.
//!
//! A job is written with Chronos' fields in Chronos' order (its `JobSerializer`): the
//! counters (`lastSuccess`/`lastError` as `""` until the first one, times as
//! `2014-03-08T16:57:17.507Z`), the fields Agora does not implement at their defaults
//! (`executor: ""`, `fetch: []`, …), then `parents` or `schedule` and `scheduleTimeZone`,
//! then Agora's additions (`epsilon`, `concurrencyPolicy`, `startingDeadlineSeconds`,
//! `missedRunPolicy`, `maxCompletionTimeSeconds`). `job/stat` has Chronos' `histogram` and
//! `taskStatHistory` (times as `MM/dd/yy HH:mm:ss` in UTC, durations as `1h2m3s`); the
//! per-run history and the next times are Agora's own.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::job::{format_iso_duration, op_name, policy_name};
use crate::model::{JobCounters, JobName, JobSpec, MissedRunPolicy, RunRecord, RunState, RunTrigger, Trigger};

/// A time as Chronos writes it: UTC with milliseconds, `2014-03-08T16:57:17.507Z`.
pub fn chronos_time(t: Timestamp) -> String {
    t.to_zoned_datetime(TimeZone::UTC).strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A job with its counters, as `GET /v1/scheduler/jobs` lists it: a struct, so that the
/// fields keep Chronos' order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView<'a> {
    name: &'a str,
    command: &'a str,
    shell: bool,
    executor: &'static str,
    executor_flags: &'static str,
    task_info_data: &'static str,
    retries: u32,
    owner: &'a str,
    owner_name: &'a str,
    description: &'a str,
    success_count: u64,
    error_count: u64,
    last_success: String,
    last_error: String,
    cpus: f64,
    disk: f64,
    mem: f64,
    disabled: bool,
    soft_error: bool,
    data_processing_job_type: bool,
    errors_since_last_success: u64,
    fetch: Vec<Fetch<'a>>,
    /// Always empty: what a job fetches is shown in `fetch` (a job posted with `uris`
    /// shows them there), so that a job read back and posted again names them once.
    uris: [(); 0],
    environment_variables: Vec<EnvironmentVariable<'a>>,
    arguments: &'a [String],
    high_priority: bool,
    run_as_user: &'a str,
    concurrent: bool,
    max_completion_time: u64,
    constraints: Vec<[&'a str; 3]>,
    /// Chronos 2 wrote it, and chronos-python's legacy mode refuses a job without it
    /// (so a job read back and sent again needs it).
    #[serde(rename = "async")]
    asynchronous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    parents: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_time_zone: Option<&'a str>,
    epsilon: String,
    concurrency_policy: &'static str,
    starting_deadline_seconds: Option<u64>,
    missed_run_policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed_run_limit: Option<u32>,
    max_completion_time_seconds: Option<u64>,
}

/// One of `fetch`, as Chronos writes it (`outputFile` only when set).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Fetch<'a> {
    uri: &'a str,
    executable: bool,
    extract: bool,
    cache: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_file: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct EnvironmentVariable<'a> {
    name: &'a str,
    value: &'a str,
}

/// A job with its counters, ready to serialize.
pub fn job_view<'a>(spec: &'a JobSpec, counters: &JobCounters) -> JobView<'a> {
    let (parents, schedule, schedule_time_zone) = match &spec.trigger {
        Trigger::Parents(parents) => (Some(parents.iter().map(JobName::as_str).collect()), None, None),
        Trigger::Schedule(schedule) => (None, Some(schedule.canonical()), Some(schedule.time_zone_text())),
    };
    let (missed_run_policy, missed_run_limit) = match spec.missed_runs {
        MissedRunPolicy::Skip => ("Skip", None),
        MissedRunPolicy::Latest => ("Latest", None),
        MissedRunPolicy::All(limit) => ("All", Some(limit)),
    };
    JobView {
        name: spec.name.as_str(),
        command: &spec.command,
        shell: spec.shell,
        executor: "",
        executor_flags: "",
        task_info_data: "",
        retries: spec.retries,
        owner: &spec.owner,
        owner_name: &spec.owner_name,
        description: &spec.description,
        success_count: counters.success_count,
        error_count: counters.error_count,
        last_success: counters.last_success.map(chronos_time).unwrap_or_default(),
        last_error: counters.last_error.map(chronos_time).unwrap_or_default(),
        cpus: spec.cpus_milli as f64 / 1000.0,
        disk: spec.disk_mib as f64,
        mem: spec.mem_mib as f64,
        disabled: spec.disabled,
        soft_error: false,
        data_processing_job_type: false,
        errors_since_last_success: counters.errors_since_last_success,
        fetch: spec
            .fetch
            .iter()
            .map(|f| Fetch {
                uri: &f.uri,
                executable: f.executable,
                extract: f.extract,
                cache: f.cache,
                output_file: f.output_file.as_deref(),
            })
            .collect(),
        uris: [],
        environment_variables: spec
            .environment
            .iter()
            .map(|(name, value)| EnvironmentVariable { name, value })
            .collect(),
        arguments: &spec.arguments,
        high_priority: false,
        run_as_user: spec.run_as_user.as_deref().unwrap_or(""),
        concurrent: spec.concurrent,
        max_completion_time: spec.max_completion_time.map_or(0, |d| d.as_secs()),
        constraints: spec.constraints.iter().map(|c| [c.attribute.as_str(), op_name(c.op), c.value.as_str()]).collect(),
        asynchronous: false,
        parents,
        schedule,
        schedule_time_zone,
        epsilon: format_iso_duration(spec.epsilon),
        concurrency_policy: policy_name(spec.concurrency_policy),
        starting_deadline_seconds: spec.starting_deadline.map(|d| d.as_secs()),
        missed_run_policy,
        missed_run_limit,
        max_completion_time_seconds: spec.max_completion_time.map(|d| d.as_secs()),
    }
}

/// A job with its counters as a JSON value (for tests and the CLI's `--json`).
pub fn job(spec: &JobSpec, counters: &JobCounters) -> Value {
    serde_json::to_value(job_view(spec, counters)).unwrap_or(Value::Null)
}

/// Chronos' last state of a job in the graph and the summary: `fresh` before any run
/// ended, else `success` or `failure` by which came last.
pub fn last_state(counters: &JobCounters) -> &'static str {
    match (counters.last_success, counters.last_error) {
        (None, None) => "fresh",
        (Some(_), None) => "success",
        (None, Some(_)) => "failure",
        (Some(success), Some(error)) if success > error => "success",
        (Some(_), Some(_)) => "failure",
    }
}

/// Chronos' current state of a job: `idle`, `queued` (a run waits for resources) or
/// `N running`.
pub fn current_state(runs_in_flight: &[&RunRecord]) -> String {
    let running = runs_in_flight.iter().filter(|r| r.state.has_task()).count();
    if running > 0 {
        format!("{running} running")
    } else if runs_in_flight.iter().any(|r| r.state == RunState::Pending) {
        "queued".to_owned()
    } else {
        "idle".to_owned()
    }
}

/// One job of `jobs/summary`, the list Chronos' web UI draws.
pub fn summary(spec: &JobSpec, counters: &JobCounters, state: &str) -> Value {
    let (schedule, parents) = match &spec.trigger {
        Trigger::Schedule(schedule) => (schedule.canonical(), Vec::new()),
        Trigger::Parents(parents) => (String::new(), parents.iter().map(|p| p.as_str().to_owned()).collect()),
    };
    json!({
        "name": spec.name.as_str(), "status": last_state(counters), "state": state,
        "schedule": schedule, "parents": parents, "disabled": spec.disabled,
    })
}

/// The dependency graph in Graphviz' DOT: every job a node, every parent an edge to its
/// child, in name order.
pub fn graph_dot(jobs: &[&JobSpec]) -> String {
    let mut out = String::from("digraph G {\n");
    for spec in jobs {
        out.push_str(&format!("  \"{}\";\n", dot_escape(spec.name.as_str())));
    }
    for spec in jobs {
        for parent in spec.parents() {
            out.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                dot_escape(parent.as_str()),
                dot_escape(spec.name.as_str())
            ));
        }
    }
    out.push_str("}\n");
    out
}

fn dot_escape(name: &str) -> String {
    name.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph as Chronos' CSV: `node,<name>,<last state>,<current state>` for every job,
/// then `link,<parent>,<child>` for every dependency.
pub fn graph_csv<'a>(jobs: impl Iterator<Item = (&'a JobSpec, &'a JobCounters, String)>) -> String {
    let mut nodes = String::new();
    let mut links = String::new();
    for (spec, counters, state) in jobs {
        nodes.push_str(&format!("node,{},{},{}\n", spec.name, last_state(counters), state));
        for parent in spec.parents() {
            links.push_str(&format!("link,{parent},{}\n", spec.name));
        }
    }
    nodes + &links
}

/// The percentiles `stats/{percentile}` and `job/stat` know, in Chronos' names.
pub const PERCENTILES: [&str; 6] =
    ["75thPercentile", "95thPercentile", "98thPercentile", "99thPercentile", "median", "mean"];

/// Durations of successful runs, in milliseconds, and Chronos' statistics of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    sorted_ms: Vec<f64>,
}

impl Durations {
    /// The run times (start of the last attempt to the end) of the runs that succeeded.
    pub fn of<'a>(runs: impl Iterator<Item = &'a RunRecord>) -> Self {
        Self::from_millis(runs.filter_map(RunRecord::succeeded_ms))
    }

    /// The run times given, in milliseconds.
    pub fn from_millis(times_ms: impl Iterator<Item = f64>) -> Self {
        let mut sorted_ms: Vec<f64> = times_ms.collect();
        sorted_ms.sort_by(f64::total_cmp);
        Durations { sorted_ms }
    }

    pub fn count(&self) -> usize {
        self.sorted_ms.len()
    }

    /// A percentile by Chronos' name (`99thPercentile`, `median`, `mean`), in ms; `None`
    /// for an unknown name or no runs.
    pub fn get(&self, name: &str) -> Option<f64> {
        if self.sorted_ms.is_empty() {
            return None;
        }
        let quantile = match name {
            "75thPercentile" => 0.75,
            "95thPercentile" => 0.95,
            "98thPercentile" => 0.98,
            "99thPercentile" => 0.99,
            "median" => 0.5,
            "mean" => return Some(self.sorted_ms.iter().sum::<f64>() / self.sorted_ms.len() as f64),
            _ => return None,
        };
        // Linear interpolation between the closest ranks, as Dropwizard's snapshots do.
        let position = quantile * (self.sorted_ms.len() + 1) as f64;
        let index = position.floor() as usize;
        if index < 1 {
            return self.sorted_ms.first().copied();
        }
        if index >= self.sorted_ms.len() {
            return self.sorted_ms.last().copied();
        }
        let lower = self.sorted_ms[index - 1];
        let upper = self.sorted_ms[index];
        Some(lower + (position - position.floor()) * (upper - lower))
    }

    /// Chronos' `histogram` object (0 for every figure before the first success).
    pub fn histogram(&self) -> Value {
        let mut out = Map::new();
        for name in PERCENTILES {
            out.insert(name.to_owned(), json!(self.get(name).unwrap_or(0.0)));
        }
        out.insert("count".to_owned(), json!(self.count()));
        Value::Object(out)
    }
}

/// `stats/{percentile}`: the jobs with at least one success, slowest first, their time in
/// seconds.
pub fn stats(percentile: &str, jobs: impl Iterator<Item = (JobName, Durations)>) -> Value {
    let mut rows: Vec<(JobName, f64)> =
        jobs.filter_map(|(name, durations)| Some((name, durations.get(percentile)? / 1000.0))).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Value::Array(rows.into_iter().map(|(name, time)| json!({"jobNameLabel": name.as_str(), "time": time})).collect())
}

fn stat_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "N/A".to_owned(), |t| t.to_zoned_datetime(TimeZone::UTC).strftime("%m/%d/%y %H:%M:%S").to_string())
}

/// A duration as Chronos' `taskStatHistory` writes it: `26h3m5s`, `5s`.
fn stat_duration(seconds: i64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// `job/stat/{name}`: the histogram of successful run times and the latest runs, newest
/// first, in Chronos' `TaskStat` shape.
pub fn job_stat(name: &JobName, runs: &[RunRecord]) -> Value {
    let history: Vec<Value> = runs
        .iter()
        .rev()
        .filter(|r| r.started.is_some())
        .map(|r| {
            let status = match r.state {
                RunState::Succeeded => "Success",
                RunState::Failed | RunState::Killed | RunState::TimedOut => "Fail",
                RunState::Launched | RunState::Running => "Running",
                RunState::Pending | RunState::Missed { .. } => "Idle",
            };
            let mut stat = json!({
                "taskId": r.task_id.as_str(),
                "jobName": name.as_str(),
                "slaveId": r.agent.as_ref().map_or("", |a| a.as_str()),
                "startTime": stat_time(r.attempt_started.or(r.started)),
                "endTime": stat_time(r.ended),
            });
            if let (Some(start), Some(end)) = (r.attempt_started.or(r.started), r.ended) {
                stat["duration"] = json!(stat_duration(end.duration_since(start).as_secs().max(0)));
            }
            stat["status"] = json!(status);
            stat
        })
        .collect();
    json!({"histogram": Durations::of(runs.iter()).histogram(), "taskStatHistory": history})
}

/// What started a run, for the history.
fn trigger_name(trigger: &RunTrigger) -> &'static str {
    match trigger {
        RunTrigger::Schedule => "schedule",
        RunTrigger::Dependency => "dependency",
        RunTrigger::Manual { .. } => "manual",
    }
}

/// A run's time: RFC 3339 in UTC to the millisecond, as the job's counters are written.
fn rfc3339(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(chronos_time(t)))
}

/// One run of Agora's per-run history (`job/{name}/history`), newest first in the list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub job_name: String,
    pub scheduled: Value,
    pub trigger: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    pub attempt: u32,
    pub task_id: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub agent: Option<String>,
    pub started: Value,
    pub ended: Value,
    pub exit_code: Option<i32>,
    /// Start minus scheduled time, in milliseconds, once started.
    pub lateness_ms: Option<i64>,
    pub message: String,
}

pub fn run(record: &RunRecord) -> RunView {
    RunView {
        job_name: record.key.job.as_str().to_owned(),
        scheduled: rfc3339(Some(record.key.scheduled)),
        trigger: trigger_name(&record.trigger),
        arguments: match &record.trigger {
            RunTrigger::Manual { arguments } => arguments.clone(),
            _ => Vec::new(),
        },
        attempt: record.attempt,
        task_id: record.task_id.as_str().to_owned(),
        state: record.state.name(),
        reason: match &record.state {
            RunState::Missed { reason } => Some(reason.clone()),
            _ => None,
        },
        agent: record.agent.as_ref().map(|a| a.as_str().to_owned()),
        started: rfc3339(record.started),
        ended: rfc3339(record.ended),
        exit_code: record.exit_code,
        lateness_ms: record.lateness().map(|d| d.as_millis() as i64),
        message: record.message.clone(),
    }
}

/// The history of a job: its runs, newest first.
pub fn history(runs: &[RunRecord]) -> Value {
    serde_json::to_value(runs.iter().rev().map(run).collect::<Vec<_>>()).unwrap_or(Value::Null)
}

/// `job/{name}/next`: the next scheduled times, each written with the offset of the
/// schedule's zone at that time.
pub fn next_times(spec: &JobSpec, times: &[Timestamp]) -> Value {
    let zone = spec.schedule().map(|s| s.time_zone().clone()).unwrap_or(TimeZone::UTC);
    let zone_name = spec.schedule().map(|s| s.time_zone_text()).filter(|z| !z.is_empty()).unwrap_or("UTC");
    json!({
        "name": spec.name.as_str(),
        "scheduleTimeZone": zone_name,
        "times": times.iter().map(|t| t.to_zoned_datetime(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use agora_proto::model::{FetchUri, TaskId};

    use super::*;
    use crate::model::{ConcurrencyPolicy, Constraint, ConstraintOp, RunKey, Schedule};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn spec(trigger: Trigger) -> JobSpec {
        JobSpec {
            name: JobName::new("report"),
            command: "make report".into(),
            shell: true,
            arguments: vec![],
            cpus_milli: 100,
            mem_mib: 128,
            disk_mib: 256,
            owner: "ops@example.com".into(),
            owner_name: "".into(),
            description: "".into(),
            run_as_user: None,
            retries: 2,
            disabled: false,
            concurrent: false,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            constraints: vec![Constraint { attribute: "rack".into(), op: ConstraintOp::Like, value: "r[12]".into() }],
            environment: BTreeMap::from([("TZ".into(), "UTC".into())]),
            epsilon: Duration::from_secs(60),
            trigger,
            starting_deadline: None,
            missed_runs: MissedRunPolicy::Skip,
            max_completion_time: Some(Duration::from_secs(600)),
            fetch: vec![FetchUri { executable: true, ..FetchUri::plain("http://repo/etl.sh") }],
            created_at: at("2026-03-01T00:00:00Z"),
            version: at("2026-03-01T00:00:00Z"),
        }
    }

    fn scheduled() -> JobSpec {
        let schedule = Schedule::parse("0 2 * * *", Some("Europe/London"), at("2026-03-01T00:00:00Z")).expect("valid");
        spec(Trigger::Schedule(schedule))
    }

    fn record(job: &str, scheduled: &str, state: RunState, start: Option<&str>, end: Option<&str>) -> RunRecord {
        let key = RunKey { job: JobName::new(job), scheduled: at(scheduled) };
        // Built from its stored form, so that fields this module does not read keep their
        // defaults.
        let mut record: RunRecord = serde_json::from_value(json!({
            "key": key, "trigger": "schedule", "attempt": 1, "task_id": key.task_id(1), "state": "pending",
            "killing": null, "recorded_at": scheduled, "deadline": null, "agent": "agent-1",
            "started": start, "attempt_started": start, "ended": end, "exit_code": 0, "message": ""
        }))
        .expect("a stored run");
        record.state = state;
        record
    }

    #[test]
    fn a_job_is_written_with_chronos_fields_in_chronos_order_then_ours() {
        let counters = JobCounters {
            success_count: 3,
            error_count: 1,
            last_success: Some(at("2014-03-08T16:57:17.507Z")),
            last_error: None,
            errors_since_last_success: 0,
        };
        // Top-level keys only: no nested object in this job.
        let flat = JobSpec { environment: BTreeMap::new(), fetch: Vec::new(), ..scheduled() };
        let text = serde_json::to_string(&job_view(&flat, &counters)).expect("serializable");
        let keys: Vec<String> = text
            .split(&[',', '{'][..])
            .filter_map(|piece| piece.strip_prefix('"').and_then(|p| p.split_once("\":")).map(|(k, _)| k.to_owned()))
            .filter(|k| k.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            .collect();
        let value = job(&scheduled(), &counters);
        assert_eq!(
            keys,
            [
                "name",
                "command",
                "shell",
                "executor",
                "executorFlags",
                "taskInfoData",
                "retries",
                "owner",
                "ownerName",
                "description",
                "successCount",
                "errorCount",
                "lastSuccess",
                "lastError",
                "cpus",
                "disk",
                "mem",
                "disabled",
                "softError",
                "dataProcessingJobType",
                "errorsSinceLastSuccess",
                "fetch",
                "uris",
                "environmentVariables",
                "arguments",
                "highPriority",
                "runAsUser",
                "concurrent",
                "maxCompletionTime",
                "constraints",
                "async",
                "schedule",
                "scheduleTimeZone",
                "epsilon",
                "concurrencyPolicy",
                "startingDeadlineSeconds",
                "missedRunPolicy",
                "maxCompletionTimeSeconds"
            ]
        );
        assert_eq!(value["lastSuccess"], "2014-03-08T16:57:17.507Z");
        assert_eq!(value["lastError"], "");
        assert_eq!(value["cpus"], 0.1);
        assert_eq!(value["mem"], 128.0);
        assert_eq!(value["constraints"], json!([["rack", "LIKE", "r[12]"]]));
        assert_eq!(value["environmentVariables"], json!([{"name": "TZ", "value": "UTC"}]));
        assert_eq!(
            value["fetch"],
            json!([{"uri": "http://repo/etl.sh", "executable": true, "extract": true, "cache": false}])
        );
        assert_eq!(value["uris"], json!([]));
        assert_eq!(value["schedule"], "0 2 * * *");
        assert_eq!(value["scheduleTimeZone"], "Europe/London");
        assert_eq!(value["epsilon"], "PT1M");
        assert_eq!(value["maxCompletionTime"], 600);
    }

    #[test]
    fn a_dependent_job_has_parents_and_no_schedule() {
        let value = job(&spec(Trigger::Parents(vec![JobName::new("etl")])), &JobCounters::default());
        assert_eq!(value["parents"], json!(["etl"]));
        assert!(value.get("schedule").is_none());
        assert_eq!(value["lastSuccess"], "");
    }

    #[test]
    fn a_rendered_job_parses_back_to_the_same_definition() {
        for original in [scheduled(), spec(Trigger::Parents(vec![JobName::new("etl")]))] {
            let value = job(&original, &JobCounters::default());
            let back = super::super::job::parse_job(&value, super::super::job::Endpoint::Iso8601, original.created_at)
                .expect("what we write, we read");
            assert_eq!(back, original);
        }
    }

    #[test]
    fn the_last_state_is_whichever_of_success_and_error_came_last() {
        let mut counters = JobCounters::default();
        assert_eq!(last_state(&counters), "fresh");
        counters.last_error = Some(at("2026-01-01T00:00:00Z"));
        assert_eq!(last_state(&counters), "failure");
        counters.last_success = Some(at("2026-01-02T00:00:00Z"));
        assert_eq!(last_state(&counters), "success");
    }

    #[test]
    fn the_graph_lists_nodes_then_links_in_chronos_csv_and_in_dot() {
        let etl = JobSpec { name: JobName::new("etl"), ..scheduled() };
        let report = spec(Trigger::Parents(vec![JobName::new("etl")]));
        let counters = JobCounters::default();
        let csv =
            graph_csv([(&etl, &counters, "idle".to_owned()), (&report, &counters, "1 running".to_owned())].into_iter());
        assert_eq!(csv, "node,etl,fresh,idle\nnode,report,fresh,1 running\nlink,etl,report\n");
        let dot = graph_dot(&[&etl, &report]);
        assert_eq!(dot, "digraph G {\n  \"etl\";\n  \"report\";\n  \"etl\" -> \"report\";\n}\n");
    }

    #[test]
    fn job_stat_has_the_histogram_and_the_runs_newest_first_in_chronos_shape() {
        let runs = [
            record(
                "report",
                "2026-03-01T02:00:00Z",
                RunState::Succeeded,
                Some("2026-03-01T02:00:00Z"),
                Some("2026-03-01T02:01:05Z"),
            ),
            record(
                "report",
                "2026-03-02T02:00:00Z",
                RunState::Failed,
                Some("2026-03-02T02:00:00Z"),
                Some("2026-03-02T03:00:07Z"),
            ),
            record("report", "2026-03-03T02:00:00Z", RunState::Running, Some("2026-03-03T02:00:01Z"), None),
        ];
        let value = job_stat(&JobName::new("report"), &runs);
        assert_eq!(value["histogram"]["count"], 1);
        assert_eq!(value["histogram"]["median"], 65_000.0);
        let history = value["taskStatHistory"].as_array().expect("a list");
        assert_eq!(history.len(), 3);
        assert_eq!(history[0]["status"], "Running");
        assert_eq!(history[0]["endTime"], "N/A");
        assert_eq!(history[1]["status"], "Fail");
        assert_eq!(history[1]["duration"], "1h7s");
        assert_eq!(history[2]["startTime"], "03/01/26 02:00:00");
        assert_eq!(history[2]["duration"], "1m5s");
        assert_eq!(history[2]["slaveId"], "agent-1");
        assert_eq!(history[2]["taskId"], runs[0].task_id.as_str());
    }

    #[test]
    fn stats_list_jobs_slowest_first_in_seconds() {
        let fast = [record(
            "a",
            "2026-03-01T02:00:00Z",
            RunState::Succeeded,
            Some("2026-03-01T02:00:00Z"),
            Some("2026-03-01T02:00:02Z"),
        )];
        let slow = [record(
            "b",
            "2026-03-01T02:00:00Z",
            RunState::Succeeded,
            Some("2026-03-01T02:00:00Z"),
            Some("2026-03-01T02:00:30Z"),
        )];
        let value = stats(
            "99thPercentile",
            [
                (JobName::new("a"), Durations::of(fast.iter())),
                (JobName::new("b"), Durations::of(slow.iter())),
                (JobName::new("c"), Durations::default()),
            ]
            .into_iter(),
        );
        assert_eq!(value, json!([{"jobNameLabel": "b", "time": 30.0}, {"jobNameLabel": "a", "time": 2.0}]));
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let runs: Vec<RunRecord> = (1..=4)
            .map(|s| {
                record(
                    "a",
                    "2026-03-01T02:00:00Z",
                    RunState::Succeeded,
                    Some("2026-03-01T02:00:00Z"),
                    Some(&format!("2026-03-01T02:00:0{s}Z")),
                )
            })
            .collect();
        let durations = Durations::of(runs.iter());
        assert_eq!(durations.get("median"), Some(2500.0));
        assert_eq!(durations.get("mean"), Some(2500.0));
        assert_eq!(durations.get("99thPercentile"), Some(4000.0));
        assert_eq!(durations.get("fastest"), None);
    }

    #[test]
    fn the_history_shows_each_run_with_its_lateness_and_reason() {
        let mut missed =
            record("a", "2026-03-01T03:00:00Z", RunState::Missed { reason: "agora cron was down".into() }, None, None);
        missed.agent = None;
        missed.exit_code = None;
        let late = record(
            "a",
            "2026-03-01T02:00:00Z",
            RunState::Succeeded,
            Some("2026-03-01T02:00:00.250Z"),
            Some("2026-03-01T02:00:03Z"),
        );
        let value = history(&[late, missed]);
        assert_eq!(value[0]["state"], "missed");
        assert_eq!(value[0]["reason"], "agora cron was down");
        assert_eq!(value[0]["started"], Value::Null);
        assert_eq!(value[1]["latenessMs"], 250);
        assert_eq!(value[1]["trigger"], "schedule");
        assert_eq!(value[1]["scheduled"], "2026-03-01T02:00:00.000Z");
        assert_eq!(value[1]["started"], "2026-03-01T02:00:00.250Z");
        assert_eq!(value[1]["taskId"], TaskId::new("cron.a.1772330400000.1").as_str());
    }

    #[test]
    fn next_times_carry_the_offset_of_the_schedule_zone_across_dst() {
        let spec = scheduled();
        let times = spec.schedule().expect("scheduled").next_n(at("2026-03-28T12:00:00Z"), 2);
        let value = next_times(&spec, &times);
        assert_eq!(value["times"], json!(["2026-03-29T02:00:00+01:00", "2026-03-30T02:00:00+01:00"]));
        assert_eq!(value["scheduleTimeZone"], "Europe/London");
    }
}
