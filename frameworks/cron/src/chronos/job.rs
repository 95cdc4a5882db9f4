//! A job definition in, as `POST /v1/scheduler/iso8601` and `/dependency` receive it:
//! every Chronos field read, checked and defaulted as Chronos does, every problem named
//! by its field at once.
//!
//! Chronos' defaults: `shell` true, `retries` 2, `cpus` 0.1, `mem` 128, `disk` 256 (a 0
//! counts as unset), `concurrent` false, `epsilon` PT60S (Chronos 2's default; Chronos 3
//! took it from a flag). A schedule-based job without `schedule` runs once, now
//! (`R1//PT24H` from the time it is posted), as Chronos' deserializer makes it.
//!
//! `fetch` (and the older `uris`) become the files the agent fetches into each run's
//! sandbox. Fields Chronos has that Agora does not implement (`container`,
//! custom `executor`s, `async`, `dataProcessingJobType`, `highPriority`, `softError`) are
//! accepted at their default values only, so that a job read back from Chronos and posted
//! here as it is loads, but nothing is silently ignored. The counters (`successCount`,
//! `lastError`, …) are the framework's: accepted in a body (clients post back what they
//! read) and not taken from it.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_proto::model::{FetchUri, MAX_FETCH_URI_LEN, MAX_FETCH_URIS, MAX_OUTPUT_FILE_LEN};
use jiff::Timestamp;
use serde_json::Value;

use super::error::ApiError;
use crate::evaluator::MAX_CATCH_UP;
use crate::model::{
    ConcurrencyPolicy, Constraint, ConstraintOp, DEFAULT_EPSILON, JobName, JobSpec, MAX_ARGUMENT_LEN, MAX_ARGUMENTS,
    MAX_COMMAND_LEN, MAX_CONSTRAINTS, MAX_ENVIRONMENT, MAX_JOB_NAME_LEN, MAX_PARENTS, MAX_RETRIES, MAX_TEXT_LEN,
    MAX_WINDOW, MissedRunPolicy, Schedule, Trigger, check_job_name,
};
use agora_sdk::json::{Obj, Problems, as_string};

/// The longest environment variable name, and value.
pub const MAX_ENV_NAME_LEN: usize = 256;
pub const MAX_ENV_VALUE_LEN: usize = 16 * 1024;
/// The most CPUs, MiB of memory and MiB of disk one run may ask for.
pub const MAX_CPUS: f64 = 1024.0;
pub const MAX_MEM_MIB: f64 = 4.0 * 1024.0 * 1024.0;
pub const MAX_DISK_MIB: f64 = 64.0 * 1024.0 * 1024.0;
/// What `missedRunPolicy: "All"` catches up when `missedRunLimit` is not given.
pub const DEFAULT_MISSED_RUN_LIMIT: u32 = 10;

/// The widest `startingDeadlineSeconds` and `maxCompletionTimeSeconds`.
const MAX_WINDOW_SECS: i64 = MAX_WINDOW.as_secs() as i64;

/// Chronos' resource defaults (`--mesos_task_cpu`, `_mem`, `_disk`) and retries.
pub const DEFAULT_CPUS: f64 = 0.1;
pub const DEFAULT_MEM_MIB: f64 = 128.0;
pub const DEFAULT_DISK_MIB: f64 = 256.0;
pub const DEFAULT_RETRIES: u32 = 2;

/// Every field a Chronos job has had (3.x and the 2.x `async` and `epsilon`), and ours.
const KNOWN_FIELDS: &[&str] = &[
    "name",
    "command",
    "shell",
    "arguments",
    "cpus",
    "mem",
    "disk",
    "owner",
    "ownerName",
    "description",
    "runAsUser",
    "retries",
    "disabled",
    "concurrent",
    "constraints",
    "environmentVariables",
    "epsilon",
    "schedule",
    "scheduleTimeZone",
    "parents",
    "maxCompletionTime",
    // The framework's counters, shown in every job and posted back by clients.
    "successCount",
    "errorCount",
    "lastSuccess",
    "lastError",
    "errorsSinceLastSuccess",
    // Chronos features Agora has not, accepted at their defaults only.
    "executor",
    "executorFlags",
    "taskInfoData",
    "fetch",
    "uris",
    "container",
    "async",
    "dataProcessingJobType",
    "dataJob",
    "highPriority",
    "softError",
    // Agora's additions.
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "missedRunPolicy",
    "missedRunLimit",
    "maxCompletionTimeSeconds",
];

/// Chronos' spelling of a concurrency policy (`concurrencyPolicy`).
pub fn policy_name(policy: ConcurrencyPolicy) -> &'static str {
    match policy {
        ConcurrencyPolicy::Allow => "Allow",
        ConcurrencyPolicy::Forbid => "Forbid",
        ConcurrencyPolicy::Replace => "Replace",
    }
}

/// Chronos' spelling of a constraint operator.
pub fn op_name(op: ConstraintOp) -> &'static str {
    match op {
        ConstraintOp::Equals => "EQUALS",
        ConstraintOp::Like => "LIKE",
        ConstraintOp::Unlike => "UNLIKE",
    }
}

/// Which endpoint a definition came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/iso8601`: a scheduled job.
    Iso8601,
    /// `/dependency`: a dependent job.
    Dependency,
}

fn name_problem(name: &str) -> Option<String> {
    check_job_name(name).err().map(|why| format!("'{name}' is not a valid job name: {why}"))
}

/// Parses a request body into a definition: 400 for JSON that is not JSON, and one 400
/// naming every field at fault otherwise.
pub fn parse_body(body: &[u8], endpoint: Endpoint, now: Timestamp) -> Result<JobSpec, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::malformed_json(&e))?;
    parse_job(&value, endpoint, now)
}

/// Reads a job definition; `now` stands in for an ISO 8601 schedule's empty start and
/// is the definition's `created_at` and `version` (the core keeps the first `created_at`
/// when a job is replaced).
pub fn parse_job(value: &Value, endpoint: Endpoint, now: Timestamp) -> Result<JobSpec, ApiError> {
    let mut problems = Problems::new();
    let Some(job) = Obj::of(value, "", &mut problems).map(Obj::lenient) else {
        return Err(ApiError::invalid(&problems));
    };
    job.reject_unknown(KNOWN_FIELDS, &mut problems);
    let p = &mut problems;

    let name = match job.get("name") {
        None => {
            p.add("/name", "is required");
            None
        }
        Some(value) => match as_string(value, "/name", MAX_JOB_NAME_LEN * 4, p) {
            Some(name) => match name_problem(name) {
                None => Some(JobName::new(name)),
                Some(problem) => {
                    p.add("/name", problem);
                    None
                }
            },
            None => None,
        },
    };
    let command = job.string("command", MAX_COMMAND_LEN, p).map(str::to_owned);
    if !job.has("command") || command.as_deref().is_some_and(|c| c.trim().is_empty()) {
        p.add("/command", "is required: the command the job runs");
    }
    let shell = job.bool("shell", p).unwrap_or(true);
    let arguments = job.strings("arguments", MAX_ARGUMENTS, MAX_ARGUMENT_LEN, p).unwrap_or_default();
    let cpus = resource(&job, "cpus", MAX_CPUS, DEFAULT_CPUS, p);
    if cpus > 0.0 && cpus < 0.001 {
        p.add("/cpus", "is less than 0.001 CPU, the smallest share a task may have");
    }
    let mem_mib = resource(&job, "mem", MAX_MEM_MIB, DEFAULT_MEM_MIB, p);
    let disk_mib = resource(&job, "disk", MAX_DISK_MIB, DEFAULT_DISK_MIB, p);
    let owner = job.string("owner", MAX_TEXT_LEN, p).unwrap_or_default().to_owned();
    let owner_name = job.string("ownerName", MAX_TEXT_LEN, p).unwrap_or_default().to_owned();
    let description = job.string("description", MAX_TEXT_LEN, p).unwrap_or_default().to_owned();
    let run_as_user =
        job.string("runAsUser", MAX_TEXT_LEN, p).map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned);
    let retries = job
        .integer("retries", 0, i64::from(MAX_RETRIES), p)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(DEFAULT_RETRIES);
    let disabled = job.bool("disabled", p).unwrap_or(false);
    let (concurrent, concurrency_policy) = concurrency(&job, p);
    let constraints = constraints(&job, p);
    let environment = environment(&job, p);
    let epsilon = match job.string("epsilon", 64, p) {
        Some(text) => match parse_iso_duration(text) {
            Ok(d) if d.is_zero() || d > MAX_WINDOW => {
                p.add("/epsilon", format!("{text} is out of range: it must be between PT1S and P366D"));
                DEFAULT_EPSILON
            }
            Ok(d) => d,
            Err(problem) => {
                p.add("/epsilon", format!("{text}: {problem}"));
                DEFAULT_EPSILON
            }
        },
        None => DEFAULT_EPSILON,
    };
    let starting_deadline =
        job.integer("startingDeadlineSeconds", 1, MAX_WINDOW_SECS, p).map(|s| Duration::from_secs(s.unsigned_abs()));
    let missed_runs = missed_runs(&job, p);
    let max_completion_time = max_completion(&job, p);
    let fetch = fetch(&job, p);
    unsupported(&job, p);

    let trigger = trigger(&job, endpoint, name.as_ref(), now, p);

    match (name, command, trigger) {
        (Some(name), Some(command), Some(trigger)) if problems.is_empty() => Ok(JobSpec {
            name,
            command,
            shell,
            arguments,
            // Whole milli-CPUs and MiB, rounded up: a job never gets less than it asked.
            cpus_milli: (cpus * 1000.0).ceil() as u64,
            mem_mib: mem_mib.ceil() as u64,
            disk_mib: disk_mib.ceil() as u64,
            owner,
            owner_name,
            description,
            run_as_user,
            retries,
            disabled,
            concurrent,
            concurrency_policy,
            constraints,
            environment,
            epsilon,
            trigger,
            starting_deadline,
            missed_runs,
            max_completion_time,
            fetch,
            created_at: now,
            version: now,
        }),
        _ => {
            if problems.is_empty() {
                problems.add("/", "the job is not valid");
            }
            Err(ApiError::invalid(&problems))
        }
    }
}

/// `cpus`, `mem` or `disk`: absent or 0 takes the default, as in Chronos.
fn resource(job: &Obj<'_>, key: &str, max: f64, default: f64, p: &mut Problems) -> f64 {
    match job.number(key, 0.0, max, p) {
        Some(v) if v > 0.0 => v,
        _ => default,
    }
}

/// `concurrent` as given (rendered back as it was) and the policy: `concurrencyPolicy`
/// when given, else derived from `concurrent` (true is Allow, false Forbid).
fn concurrency(job: &Obj<'_>, p: &mut Problems) -> (bool, ConcurrencyPolicy) {
    let concurrent = job.bool("concurrent", p);
    let policy = match job.string("concurrencyPolicy", 32, p) {
        None => None,
        Some("Allow") => Some(ConcurrencyPolicy::Allow),
        Some("Forbid") => Some(ConcurrencyPolicy::Forbid),
        Some("Replace") => Some(ConcurrencyPolicy::Replace),
        Some(other) => {
            p.add("/concurrencyPolicy", format!("'{other}' is not one of Allow, Forbid, Replace"));
            None
        }
    };
    match (concurrent, policy) {
        (Some(true), Some(policy @ (ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Replace))) => {
            p.add(
                "/concurrent",
                format!("true contradicts concurrencyPolicy {}: concurrent runs are Allow", policy_name(policy)),
            );
            (true, policy)
        }
        (Some(false), Some(ConcurrencyPolicy::Allow)) => {
            p.add("/concurrent", "false contradicts concurrencyPolicy Allow");
            (false, ConcurrencyPolicy::Allow)
        }
        (Some(concurrent), Some(policy)) => (concurrent, policy),
        (None, Some(policy)) => (policy == ConcurrencyPolicy::Allow, policy),
        (Some(true), None) => (true, ConcurrencyPolicy::Allow),
        (Some(false) | None, None) => (false, ConcurrencyPolicy::Forbid),
    }
}

fn constraints(job: &Obj<'_>, p: &mut Problems) -> Vec<Constraint> {
    let Some(items) = job.array("constraints", MAX_CONSTRAINTS, p) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("/constraints({i})");
        let parts = match item {
            Value::Array(parts) if parts.len() == 3 => parts,
            _ => {
                p.add(path, "expected [attribute, operator, value], such as [\"rack\", \"EQUALS\", \"rack-1\"]");
                continue;
            }
        };
        let attribute = as_string(&parts[0], &format!("{path}(0)"), MAX_TEXT_LEN, p);
        let op = match as_string(&parts[1], &format!("{path}(1)"), 16, p) {
            Some("EQUALS") => Some(ConstraintOp::Equals),
            Some("LIKE") => Some(ConstraintOp::Like),
            Some("UNLIKE") => Some(ConstraintOp::Unlike),
            Some(other) => {
                p.add(format!("{path}(1)"), format!("'{other}' is not one of EQUALS, LIKE, UNLIKE"));
                None
            }
            None => None,
        };
        let value = as_string(&parts[2], &format!("{path}(2)"), MAX_TEXT_LEN, p);
        let (Some(attribute), Some(op), Some(value)) = (attribute, op, value) else { continue };
        if attribute.is_empty() {
            p.add(format!("{path}(0)"), "the attribute name is empty");
            continue;
        }
        if op != ConstraintOp::Equals {
            // The whole attribute must match, as Chronos' Java `matches()` asks.
            if let Err(e) = regex::Regex::new(&format!("^(?:{value})$")) {
                p.add(format!("{path}(2)"), format!("'{value}' is not a valid regular expression: {e}"));
                continue;
            }
        }
        out.push(Constraint { attribute: attribute.to_owned(), op, value: value.to_owned() });
    }
    out
}

fn environment(job: &Obj<'_>, p: &mut Problems) -> BTreeMap<String, String> {
    let Some(items) = job.array("environmentVariables", MAX_ENVIRONMENT, p) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("/environmentVariables({i})");
        let Some(var) = Obj::of(item, &path, p).map(Obj::lenient) else { continue };
        var.reject_unknown(&["name", "value"], p);
        let name = var.string("name", MAX_ENV_NAME_LEN, p);
        let value = var.string("value", MAX_ENV_VALUE_LEN, p).unwrap_or_default();
        match name {
            None if !var.has("name") => p.add(var.at("name"), "is required"),
            None => {}
            Some(name) if name.is_empty() || name.contains('=') || name.contains('\0') => {
                p.add(var.at("name"), format!("'{name}' is not a valid variable name"));
            }
            Some(name) if out.contains_key(name) => {
                p.add(var.at("name"), format!("'{name}' is given twice"));
            }
            Some(name) => {
                out.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    out
}

fn missed_runs(job: &Obj<'_>, p: &mut Problems) -> MissedRunPolicy {
    let limit = job.integer("missedRunLimit", 1, i64::from(MAX_CATCH_UP), p).and_then(|n| u32::try_from(n).ok());
    let policy = match job.string("missedRunPolicy", 32, p) {
        None | Some("Skip") => MissedRunPolicy::Skip,
        Some("Latest") => MissedRunPolicy::Latest,
        Some("All") => MissedRunPolicy::All(limit.unwrap_or(DEFAULT_MISSED_RUN_LIMIT)),
        Some(other) => {
            p.add("/missedRunPolicy", format!("'{other}' is not one of Skip, Latest, All"));
            MissedRunPolicy::Skip
        }
    };
    if limit.is_some() && !matches!(policy, MissedRunPolicy::All(_)) {
        p.add("/missedRunLimit", "applies only to missedRunPolicy All");
    }
    policy
}

fn max_completion(job: &Obj<'_>, p: &mut Problems) -> Option<Duration> {
    let ours = job.integer("maxCompletionTimeSeconds", 0, MAX_WINDOW_SECS, p);
    let chronos = job.integer("maxCompletionTime", 0, MAX_WINDOW_SECS, p);
    let secs = match (ours, chronos) {
        (Some(a), Some(b)) if a != b => {
            p.add("/maxCompletionTime", format!("{b} contradicts maxCompletionTimeSeconds {a}"));
            Some(a)
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    secs.filter(|s| *s > 0).map(|s| Duration::from_secs(s.unsigned_abs()))
}

/// What each run fetches into its sandbox: Chronos' `fetch` (objects with `uri`,
/// `executable`, `extract` (true), `cache`, `outputFile`) or its older `uris` (strings, each
/// unpacked when an archive). Both may come together when a job read back is posted again:
/// then `uris` must name the same URIs as `fetch`.
fn fetch(job: &Obj<'_>, p: &mut Problems) -> Vec<FetchUri> {
    let uris = job.strings("uris", MAX_FETCH_URIS, MAX_FETCH_URI_LEN, p).unwrap_or_default();
    let entries = job.array("fetch", MAX_FETCH_URIS, p).map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::with_capacity(entries.len().max(uris.len()));
    for (i, entry) in entries.iter().enumerate() {
        let Some(entry) = Obj::of(entry, &format!("{}({i})", job.at("fetch")), p).map(Obj::lenient) else { continue };
        let uri = match entry.string("uri", MAX_FETCH_URI_LEN, p) {
            Some(uri) => uri.to_owned(),
            None => {
                p.add(entry.at("uri"), "is required");
                continue;
            }
        };
        let output_file = entry.string("outputFile", MAX_OUTPUT_FILE_LEN, p).filter(|f| !f.is_empty());
        let fetched = FetchUri {
            uri,
            executable: entry.bool("executable", p).unwrap_or(false),
            extract: entry.bool("extract", p).unwrap_or(true),
            cache: entry.bool("cache", p).unwrap_or(false),
            output_file: output_file.map(str::to_owned),
        };
        match fetched.check() {
            Ok(()) => out.push(fetched),
            Err(("output_file", message)) => p.add(entry.at("outputFile"), message),
            Err((_, message)) => p.add(entry.at("uri"), message),
        }
    }
    if !entries.is_empty() {
        let same = uris.is_empty() || uris.iter().eq(out.iter().map(|f| &f.uri));
        if !same {
            p.add(job.at("uris"), "names other URIs than fetch: give one or the other");
        }
        return out;
    }
    for (i, uri) in uris.into_iter().enumerate() {
        let fetched = FetchUri::plain(uri);
        match fetched.check() {
            Ok(()) => out.push(fetched),
            Err((_, message)) => p.add(format!("{}({i})", job.at("uris")), message),
        }
    }
    out
}

/// Chronos fields Agora does not implement: accepted only at their defaults.
fn unsupported(job: &Obj<'_>, p: &mut Problems) {
    for key in ["executor", "executorFlags", "taskInfoData"] {
        if job.string(key, MAX_TEXT_LEN, p).is_some_and(|s| !s.is_empty()) {
            p.add(job.at(key), "is not supported: Agora runs the command with its own executor");
        }
    }
    if job.get("container").is_some_and(|c| !c.as_object().is_some_and(|c| c.is_empty())) {
        p.add("/container", "is not supported: Agora runs the command on the agent's host, in its cgroup");
    }
    for (key, what) in [
        ("async", "asynchronous jobs are not supported"),
        ("dataProcessingJobType", "data-tracking jobs are not supported"),
        ("dataJob", "data-tracking jobs are not supported"),
        ("highPriority", "Agora has no high-priority queue"),
        ("softError", "Agora has no soft errors: a run that fails counts as an error"),
    ] {
        if job.bool(key, p) == Some(true) {
            p.add(job.at(key), format!("true is not supported: {what}"));
        }
    }
}

fn trigger(
    job: &Obj<'_>,
    endpoint: Endpoint,
    name: Option<&JobName>,
    now: Timestamp,
    p: &mut Problems,
) -> Option<Trigger> {
    // Tools that write every field send the one not used empty (`"schedule": ""` beside
    // parents, `"parents": []` beside a schedule): an empty one counts as absent.
    let has_schedule = job.get("schedule").is_some_and(|s| s.as_str().is_none_or(|s| !s.trim().is_empty()));
    let has_parents = job.get("parents").is_some_and(|p| p.as_array().is_none_or(|p| !p.is_empty()))
        || (endpoint == Endpoint::Dependency && job.has("parents") && !has_schedule);
    if has_parents && has_schedule {
        p.add("/parents", "a job has either a schedule or parents, not both");
        return None;
    }
    if has_parents || endpoint == Endpoint::Dependency {
        if !has_parents {
            p.add("/parents", "is required: a dependent job names the jobs it runs after");
            return None;
        }
        let parents = job.strings("parents", MAX_PARENTS, MAX_JOB_NAME_LEN * 4, p)?;
        if parents.is_empty() {
            p.add("/parents", "is empty: a dependent job names at least one parent");
            return None;
        }
        let mut out: Vec<JobName> = Vec::with_capacity(parents.len());
        for (i, parent) in parents.iter().enumerate() {
            if let Some(problem) = name_problem(parent) {
                p.add(format!("/parents({i})"), problem);
            } else if name.is_some_and(|n| n.as_str() == parent) {
                p.add(format!("/parents({i})"), format!("'{parent}' is the job itself: a job cannot depend on itself"));
            } else if !out.iter().any(|n| n.as_str() == parent) {
                // Chronos keeps parents as a set: a repeated name counts once.
                out.push(JobName::new(parent.as_str()));
            }
        }
        return Some(Trigger::Parents(out));
    }
    let zone = job.string("scheduleTimeZone", crate::schedule::MAX_TIME_ZONE_LEN * 4, p).map(java_zone_alias);
    let text = if has_schedule {
        job.string("schedule", crate::schedule::MAX_SCHEDULE_LEN * 4, p)?.to_owned()
    } else {
        // Chronos runs a job posted without a schedule once, at once.
        "R1//PT24H".to_owned()
    };
    match Schedule::parse(&text, zone, now) {
        Ok(schedule) => Some(Trigger::Schedule(schedule)),
        Err(e) => {
            let problem = match &e {
                crate::ScheduleError::Schedule { value, problem }
                | crate::ScheduleError::TimeZone { value, problem } => {
                    format!("{value}: {problem}")
                }
            };
            p.add(format!("/{}", e.field()), problem);
            None
        }
    }
}

/// The IANA zone a Java short zone id names (`java.time.ZoneId.SHORT_IDS`), for the ids
/// that are not IANA names themselves: Chronos read `scheduleTimeZone` with Java's
/// `TimeZone`, and its own documentation's example uses `PST`. Any other text is kept.
fn java_zone_alias(zone: &str) -> &str {
    if jiff::tz::TimeZone::get(zone.trim()).is_ok() {
        return zone;
    }
    match zone.trim() {
        "ACT" => "Australia/Darwin",
        "AET" => "Australia/Sydney",
        "AGT" => "America/Argentina/Buenos_Aires",
        "ART" => "Africa/Cairo",
        "AST" => "America/Anchorage",
        "BET" => "America/Sao_Paulo",
        "BST" => "Asia/Dhaka",
        "CAT" => "Africa/Harare",
        "CNT" => "America/St_Johns",
        "CST" => "America/Chicago",
        "CTT" => "Asia/Shanghai",
        "EAT" => "Africa/Addis_Ababa",
        "ECT" => "Europe/Paris",
        "IET" => "America/Indiana/Indianapolis",
        "IST" => "Asia/Kolkata",
        "JST" => "Asia/Tokyo",
        "MIT" => "Pacific/Apia",
        "NET" => "Asia/Yerevan",
        "NST" => "Pacific/Auckland",
        "PLT" => "Asia/Karachi",
        "PNT" => "America/Phoenix",
        "PRT" => "America/Puerto_Rico",
        "PST" => "America/Los_Angeles",
        "SST" => "Pacific/Guadalcanal",
        "VST" => "Asia/Ho_Chi_Minh",
        _ => zone,
    }
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`PT60S`, `PT15M`, `P1DT2H`;
/// weeks too): years and months have no fixed length.
pub fn parse_iso_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::Span =
        text.trim().parse().map_err(|_| "is not an ISO 8601 duration such as PT60S, PT15M or P1D".to_owned())?;
    if span.is_negative() {
        return Err("is negative".into());
    }
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err("years and months have no fixed length: use days, hours, minutes or seconds".into());
    }
    let seconds = span
        .total((jiff::Unit::Second, jiff::SpanRelativeTo::days_are_24_hours()))
        .map_err(|e| format!("cannot be measured: {e}"))?;
    if !seconds.is_finite() || !(0.0..=1.0e12).contains(&seconds) {
        return Err("is out of range".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration as ISO 8601, in its largest whole unit (`PT60S` stays seconds below an hour
/// only when it is not whole minutes): `PT1M`, `PT90S`, `PT2H`, `P1D`.
pub fn format_iso_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        "PT0S".to_owned()
    } else if secs.is_multiple_of(86_400) {
        format!("P{}D", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("PT{}H", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("PT{}M", secs / 60)
    } else {
        format!("PT{secs}S")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().expect("a timestamp")
    }

    fn parse(value: Value) -> Result<JobSpec, ApiError> {
        parse_job(&value, Endpoint::Iso8601, now())
    }

    fn problems(value: Value, endpoint: Endpoint) -> Vec<(String, Vec<String>)> {
        let error = parse_job(&value, endpoint, now()).expect_err("refused");
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        error.details.into_iter().map(|d| (d.path, d.errors)).collect()
    }

    fn paths(value: Value) -> Vec<String> {
        problems(value, Endpoint::Iso8601).into_iter().map(|(path, _)| path).collect()
    }

    #[test]
    fn a_minimal_scheduled_job_gets_chronos_defaults() {
        let job = parse(json!({"name": "nightly", "command": "backup.sh", "schedule": "R/2026-03-02T02:00:00Z/P1D"}))
            .expect("valid");
        assert_eq!(job.name.as_str(), "nightly");
        assert!(job.shell);
        assert_eq!((job.cpus_milli, job.mem_mib, job.disk_mib), (100, 128, 256));
        assert_eq!(job.retries, 2);
        assert_eq!(job.epsilon, Duration::from_secs(60));
        assert_eq!(job.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!(job.missed_runs, MissedRunPolicy::Skip);
        assert_eq!(job.max_completion_time, None);
        let Trigger::Schedule(schedule) = &job.trigger else { panic!("scheduled") };
        assert_eq!(schedule.canonical(), "R/2026-03-02T02:00:00+00:00/P1D");
    }

    #[test]
    fn zero_resources_take_the_defaults_as_in_chronos() {
        let job = parse(json!({"name": "a", "command": "x", "schedule": "@daily", "cpus": 0, "mem": "0", "disk": 512}))
            .expect("valid");
        assert_eq!((job.cpus_milli, job.mem_mib, job.disk_mib), (100, 128, 512));
    }

    #[test]
    fn a_job_without_a_schedule_runs_once_from_the_time_it_is_posted() {
        let job = parse(json!({"name": "once", "command": "x"})).expect("valid");
        let Trigger::Schedule(schedule) = &job.trigger else { panic!("scheduled") };
        assert_eq!(schedule.next_n(now() - jiff::SignedDuration::from_secs(1), 5), vec![now()]);
    }

    #[test]
    fn every_field_is_read_in_its_chronos_spelling() {
        let job = parse(json!({
            "name": "report.daily-1 #2", "command": "report", "shell": false, "arguments": ["--day", "today"],
            "cpus": "0.5", "mem": 512, "disk": 1024, "owner": "ops@example.com", "ownerName": "Ops",
            "description": "the daily report", "runAsUser": "reports", "retries": 5, "disabled": true,
            "concurrent": true, "constraints": [["rack", "LIKE", "rack-[1-3]"], ["os", "EQUALS", "linux"]],
            "environmentVariables": [{"name": "TZ", "value": "UTC"}], "epsilon": "PT15M",
            "schedule": "0 2 * * *", "scheduleTimeZone": "Europe/London",
            "startingDeadlineSeconds": 300, "missedRunPolicy": "All", "missedRunLimit": 3,
            "maxCompletionTimeSeconds": 3600,
            "successCount": 7, "errorCount": 1, "lastSuccess": "2014-03-08T16:57:17.507Z", "lastError": "",
            "errorsSinceLastSuccess": 0, "executor": "", "fetch": [], "uris": [], "async": false,
            "highPriority": false, "softError": false, "dataProcessingJobType": false
        }))
        .expect("valid");
        assert!(!job.shell);
        assert_eq!(job.arguments, ["--day", "today"]);
        assert_eq!((job.cpus_milli, job.mem_mib, job.disk_mib), (500, 512, 1024));
        assert_eq!(job.run_as_user.as_deref(), Some("reports"));
        assert_eq!(job.retries, 5);
        assert!(job.disabled);
        assert_eq!((job.concurrent, job.concurrency_policy), (true, ConcurrencyPolicy::Allow));
        assert_eq!(job.constraints.len(), 2);
        assert_eq!(job.constraints[0].op, ConstraintOp::Like);
        assert_eq!(job.environment, BTreeMap::from([("TZ".to_owned(), "UTC".to_owned())]));
        assert_eq!(job.epsilon, Duration::from_secs(900));
        assert_eq!(job.starting_deadline, Some(Duration::from_secs(300)));
        assert_eq!(job.missed_runs, MissedRunPolicy::All(3));
        assert_eq!(job.max_completion_time, Some(Duration::from_secs(3600)));
        let Trigger::Schedule(schedule) = &job.trigger else { panic!("scheduled") };
        assert_eq!(schedule.time_zone_text(), "Europe/London");
    }

    #[test]
    fn a_dependent_job_lists_its_parents_once_each() {
        let job = parse_job(
            &json!({"name": "report", "command": "r", "parents": ["etl", "export", "etl"]}),
            Endpoint::Dependency,
            now(),
        )
        .expect("valid");
        let Trigger::Parents(parents) = job.trigger else { panic!("dependent") };
        assert_eq!(parents, [JobName::new("etl"), JobName::new("export")]);
    }

    #[test]
    fn impossible_schedules_and_unknown_zones_name_their_field() {
        assert_eq!(
            problems(json!({"name": "a", "command": "x", "schedule": "61 * * * *"}), Endpoint::Iso8601)[0].0,
            "/schedule"
        );
        assert_eq!(
            paths(json!({"name": "a", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT0S"})),
            ["/schedule"]
        );
        assert_eq!(
            paths(json!({"name": "a", "command": "x", "schedule": "@daily", "scheduleTimeZone": "Mars/Olympus"})),
            ["/scheduleTimeZone"]
        );
    }

    #[test]
    fn every_problem_of_a_job_is_named_at_once() {
        let found = paths(json!({
            "name": "no/slashes", "retries": 1000000, "cpus": "lots", "colour": "red",
            "environmentVariables": [{"value": "x"}], "constraints": [["rack", "NEAR", "r1"]],
            "epsilon": "P1M", "concurrencyPolicy": "Sometimes", "schedule": "@daily"
        }));
        assert_eq!(
            found,
            [
                "/colour",
                "/name",
                "/command",
                "/cpus",
                "/retries",
                "/concurrencyPolicy",
                "/constraints(0)(1)",
                "/environmentVariables(0)/name",
                "/epsilon"
            ]
        );
    }

    #[test]
    fn huge_retries_are_refused_naming_the_bound() {
        let found =
            problems(json!({"name": "a", "command": "x", "schedule": "@daily", "retries": 5000}), Endpoint::Iso8601);
        assert_eq!(
            found,
            [("/retries".to_owned(), vec!["5000 is out of range: it must be between 0 and 100".to_owned()])]
        );
    }

    #[test]
    fn chronos_features_agora_lacks_are_refused_unless_left_at_their_defaults() {
        let found = paths(json!({
            "name": "a", "command": "x", "schedule": "@daily", "container": {"type": "DOCKER", "image": "busybox"},
            "executor": "custom", "async": true, "highPriority": true
        }));
        assert_eq!(found, ["/executor", "/container", "/async", "/highPriority"]);
    }

    #[test]
    fn fetch_and_uris_become_the_files_each_run_fetches() {
        let job = parse(json!({"name": "etl", "command": "./etl.sh", "schedule": "@daily", "fetch": [
            {"uri": "http://repo/etl.sh", "executable": true, "extract": false},
            {"uri": "file:///srv/data.tgz", "cache": true, "outputFile": "data.tgz"},
        ]}))
        .expect("valid");
        assert_eq!(
            job.fetch,
            vec![
                FetchUri { uri: "http://repo/etl.sh".into(), executable: true, ..FetchUri::default() },
                FetchUri {
                    cache: true,
                    output_file: Some("data.tgz".into()),
                    ..FetchUri::plain("file:///srv/data.tgz")
                },
            ]
        );
        let legacy =
            parse(json!({"name": "etl", "command": "x", "schedule": "@daily", "uris": ["/srv/a.tgz"]})).expect("valid");
        assert_eq!(legacy.fetch, vec![FetchUri::plain("/srv/a.tgz")]);
        let both = parse(json!({"name": "etl", "command": "x", "schedule": "@daily",
            "fetch": [{"uri": "/srv/a.tgz"}], "uris": ["/srv/a.tgz"]}))
        .expect("the same URIs twice, as a job read back may carry them");
        assert_eq!(both.fetch, vec![FetchUri::plain("/srv/a.tgz")]);
        for (bad, path) in [
            (json!({"fetch": [{"uri": "ftp://x/a"}]}), "/fetch(0)/uri"),
            (json!({"fetch": [{"executable": true}]}), "/fetch(0)/uri"),
            (json!({"fetch": [{"uri": "/a", "outputFile": "../b"}]}), "/fetch(0)/outputFile"),
            (json!({"uris": ["relative"]}), "/uris(0)"),
            (json!({"fetch": [{"uri": "/a"}], "uris": ["/b"]}), "/uris"),
        ] {
            let mut body = json!({"name": "etl", "command": "x", "schedule": "@daily"});
            for (k, v) in bad.as_object().expect("object") {
                body[k] = v.clone();
            }
            assert_eq!(paths(body), [path], "{bad}");
        }
    }

    #[test]
    fn a_dependent_job_needs_parents_and_no_schedule() {
        let missing = problems(json!({"name": "a", "command": "x"}), Endpoint::Dependency);
        assert_eq!(missing[0].0, "/parents");
        let both =
            problems(json!({"name": "a", "command": "x", "parents": ["b"], "schedule": "@daily"}), Endpoint::Iso8601);
        assert_eq!(both[0].0, "/parents");
        let itself = problems(json!({"name": "a", "command": "x", "parents": ["a"]}), Endpoint::Dependency);
        assert_eq!(itself[0].0, "/parents(0)");
        let empty = problems(json!({"name": "a", "command": "x", "parents": []}), Endpoint::Dependency);
        assert_eq!(empty[0].0, "/parents");
    }

    #[test]
    fn java_short_zone_ids_chronos_accepted_name_their_iana_zone() {
        let job = parse(json!({"name": "a", "command": "x", "schedule": "R/2026-03-02T02:00:00Z/P1D",
                               "scheduleTimeZone": "PST"}))
        .expect("valid");
        let Trigger::Schedule(schedule) = &job.trigger else { panic!("scheduled") };
        assert_eq!(schedule.time_zone_text(), "America/Los_Angeles");
        let est = parse(json!({"name": "a", "command": "x", "schedule": "@daily", "scheduleTimeZone": "EST"}))
            .expect("an IANA name itself");
        let Trigger::Schedule(schedule) = &est.trigger else { panic!("scheduled") };
        assert_eq!(schedule.time_zone_text(), "EST");
    }

    #[test]
    fn an_empty_schedule_beside_parents_and_empty_parents_beside_a_schedule_count_as_absent() {
        let dependent = parse_job(
            &json!({"name": "a", "command": "x", "parents": ["b"], "schedule": ""}),
            Endpoint::Dependency,
            now(),
        )
        .expect("valid");
        assert_eq!(dependent.parents(), [JobName::new("b")]);
        let scheduled =
            parse(json!({"name": "a", "command": "x", "parents": [], "schedule": "@daily"})).expect("valid");
        assert!(scheduled.schedule().is_some());
    }

    #[test]
    fn concurrent_and_concurrency_policy_must_agree() {
        assert_eq!(
            paths(
                json!({"name": "a", "command": "x", "schedule": "@daily", "concurrent": true, "concurrencyPolicy": "Forbid"})
            ),
            ["/concurrent"]
        );
        let replace = parse(json!({"name": "a", "command": "x", "schedule": "@daily", "concurrencyPolicy": "Replace"}))
            .expect("valid");
        assert_eq!(replace.concurrency_policy, ConcurrencyPolicy::Replace);
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let error = parse_body(b"{\"name\": ", Endpoint::Iso8601, now()).expect_err("refused");
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("the body is not valid JSON"), "{}", error.message);
    }

    #[test]
    fn iso_durations_round_trip_in_their_largest_unit() {
        assert_eq!(parse_iso_duration("PT60S"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_iso_duration("P1DT2H"), Ok(Duration::from_secs(93_600)));
        assert_eq!(parse_iso_duration("P1W"), Ok(Duration::from_secs(604_800)));
        assert!(parse_iso_duration("P1M").is_err());
        assert!(parse_iso_duration("soon").is_err());
        assert_eq!(format_iso_duration(Duration::from_secs(60)), "PT1M");
        assert_eq!(format_iso_duration(Duration::from_secs(90)), "PT90S");
        assert_eq!(format_iso_duration(Duration::from_secs(86_400)), "P1D");
    }
}
