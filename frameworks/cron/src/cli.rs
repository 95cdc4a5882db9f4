//! `agora cron add|list|show|run|next|history|kill|delete`: a client of the REST API, as
//! any script would be, speaking Chronos' `/v1/scheduler` and Agora's additions (`next`,
//! `history`).
//!
//! Readable tables and lines by default; `--json` prints the API's JSON for scripts.

use std::path::Path;
use std::time::Duration;

use agora_sdk::cli::{RestClient, RestError, cell as text, print_table, read_file, row};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest job file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most jobs one file may hold.
const MAX_JOBS_PER_FILE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Rest(#[from] RestError),
}

/// A client of one cron REST API.
#[derive(Debug, Clone)]
pub struct Client {
    rest: RestClient,
    json: bool,
}

impl Client {
    /// A client of `base` (`http://host:port`); `json` selects machine-readable output.
    pub fn new(base: &str, json: bool) -> Result<Client, CliError> {
        Self::with_tls(base, json, None)
    }

    /// [`new`](Self::new) for an `https://` API verified with `tls` (`--tls-ca`).
    pub fn with_tls(base: &str, json: bool, tls: Option<&agora_proto::tls::ClientTls>) -> Result<Client, CliError> {
        Ok(Client { rest: RestClient::with_tls("cron", base, CALL_TIMEOUT, tls).map_err(CliError::Usage)?, json })
    }

    /// `add FILE`: creates or replaces the job (or each job of an array, in order) the
    /// file holds, as `/iso8601` or `/dependency` by whether it has `parents`.
    pub async fn add(&self, file: &Path) -> Result<(), CliError> {
        let text = read_file(file, MAX_FILE_BYTES).map_err(CliError::Usage)?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: not valid JSON: {e}", file.display())))?;
        let jobs = match value {
            Value::Array(jobs) if jobs.len() > MAX_JOBS_PER_FILE => {
                return Err(CliError::Usage(format!(
                    "{}: {} jobs; at most {MAX_JOBS_PER_FILE} per file",
                    file.display(),
                    jobs.len()
                )));
            }
            Value::Array(jobs) => jobs,
            job @ Value::Object(_) => vec![job],
            _ => {
                return Err(CliError::Usage(format!(
                    "{}: expected a job (a JSON object) or a list of jobs",
                    file.display()
                )));
            }
        };
        for job in &jobs {
            let Some(name) = job["name"].as_str() else {
                return Err(CliError::Usage(format!("{}: a job needs a \"name\"", file.display())));
            };
            let existed = self.get_optional(&job_path(name, "")).await?.is_some();
            let endpoint = if job.get("parents").is_some_and(|p| !p.is_null()) { "dependency" } else { "iso8601" };
            self.send(Method::POST, &format!("/v1/scheduler/{endpoint}"), Some(job)).await?;
            let stored = self.get(&job_path(name, "")).await?;
            if self.json {
                println!("{stored}");
            } else {
                println!("{} {name}: {}", if existed { "replaced" } else { "added" }, trigger(&stored));
            }
        }
        Ok(())
    }

    /// `list`: every job with its trigger, state and counters.
    pub async fn list(&self) -> Result<(), CliError> {
        let jobs = self.get("/v1/scheduler/jobs").await?;
        if self.json {
            println!("{jobs}");
            return Ok(());
        }
        let summary = self.get("/v1/scheduler/jobs/summary").await?;
        let state_of = |name: &str| -> String {
            summary["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|j| j["name"] == name)
                .map_or_else(|| "-".to_owned(), |j| text(&j["state"]))
        };
        let mut rows = vec![row(["NAME", "TRIGGER", "STATE", "LAST", "OK", "FAILED", "LAST SUCCESS", "LAST ERROR"])];
        for job in jobs.as_array().into_iter().flatten() {
            let name = text(&job["name"]);
            let disabled = job["disabled"].as_bool().unwrap_or(false);
            rows.push(vec![
                name.clone(),
                trigger(job),
                if disabled { "disabled".to_owned() } else { state_of(&name) },
                last_state(job).to_owned(),
                text(&job["successCount"]),
                text(&job["errorCount"]),
                or_dash(&job["lastSuccess"]),
                or_dash(&job["lastError"]),
            ]);
        }
        if rows.len() == 1 {
            println!("no jobs");
        } else {
            print_table(&rows);
        }
        Ok(())
    }

    /// `show NAME`: one job's definition and counters.
    pub async fn show(&self, name: &str) -> Result<(), CliError> {
        let job = self.get(&job_path(name, "")).await?;
        if self.json {
            println!("{job}");
            return Ok(());
        }
        let mut lines: Vec<(&str, String)> = vec![("name", text(&job["name"]))];
        if !job["description"].as_str().unwrap_or_default().is_empty() {
            lines.push(("description", text(&job["description"])));
        }
        let arguments: Vec<String> = job["arguments"].as_array().into_iter().flatten().map(text).collect();
        let shell = if job["shell"].as_bool().unwrap_or(true) { "shell" } else { "exec" };
        lines.push(("command", format!("{} ({shell})", text(&job["command"]))));
        if !arguments.is_empty() {
            lines.push(("arguments", arguments.join(" ")));
        }
        lines.push(("trigger", trigger(&job)));
        if job["schedule"].is_string() {
            // The next time, in the job's zone; a schedule that has ended has none.
            let next = self.get(&job_path(name, "/next?count=1")).await.ok();
            let when = next.as_ref().and_then(|n| {
                let zone = jiff::tz::TimeZone::get(n["scheduleTimeZone"].as_str()?).ok()?;
                let at: jiff::Timestamp = n["times"][0].as_str()?.parse().ok()?;
                Some(at.to_zoned_datetime(zone).strftime("%a %Y-%m-%d %H:%M:%S %:z (%Z)").to_string())
            });
            lines.push(("next run", when.unwrap_or_else(|| "-".into())));
        }
        lines.push((
            "resources",
            format!(
                "cpus {}, mem {} MiB, disk {} MiB",
                number(&job["cpus"]),
                number(&job["mem"]),
                number(&job["disk"])
            ),
        ));
        lines.push(("owner", or_dash(&job["owner"])));
        lines.push(("disabled", text(&job["disabled"])));
        lines.push(("retries", text(&job["retries"])));
        lines.push(("epsilon", text(&job["epsilon"])));
        lines.push(("concurrency", text(&job["concurrencyPolicy"])));
        let missed = match job["missedRunLimit"].as_u64() {
            Some(limit) => format!("{} (up to {limit})", text(&job["missedRunPolicy"])),
            None => text(&job["missedRunPolicy"]),
        };
        lines.push(("missed runs", missed));
        if let Some(secs) = job["startingDeadlineSeconds"].as_u64() {
            lines.push(("starting deadline", format!("{secs}s")));
        }
        if let Some(secs) = job["maxCompletionTimeSeconds"].as_u64() {
            lines.push(("max completion", format!("{secs}s")));
        }
        let constraints: Vec<String> = job["constraints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_array().into_iter().flatten().map(text).collect::<Vec<_>>().join(" "))
            .collect();
        if !constraints.is_empty() {
            lines.push(("constraints", constraints.join(", ")));
        }
        let environment: Vec<String> = job["environmentVariables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{}={}", text(&v["name"]), text(&v["value"])))
            .collect();
        if !environment.is_empty() {
            lines.push(("environment", environment.join(" ")));
        }
        lines.push((
            "runs",
            format!(
                "{} succeeded, {} failed ({} since the last success); last {}",
                text(&job["successCount"]),
                text(&job["errorCount"]),
                text(&job["errorsSinceLastSuccess"]),
                last_state(&job)
            ),
        ));
        lines.push(("last success", or_dash(&job["lastSuccess"])));
        lines.push(("last error", or_dash(&job["lastError"])));
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in lines {
            println!("{key:<width$}  {value}");
        }
        Ok(())
    }

    /// `run NAME [ARGS…]`: starts a run now, each argument passed as it is.
    pub async fn run(&self, name: &str, arguments: &[String]) -> Result<(), CliError> {
        let query: String = arguments.iter().map(|a| format!("argument={}", encode(a))).collect::<Vec<_>>().join("&");
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        self.send(Method::PUT, &job_path(name, &query), None).await?;
        if self.json {
            println!("{}", serde_json::json!({ "name": name, "started": true, "arguments": arguments }));
        } else {
            println!("started a run of {name} now; `agora cron history {name}` follows it");
        }
        Ok(())
    }

    /// `next NAME`: the next scheduled times, in the job's zone (or `zone`).
    pub async fn next(&self, name: &str, count: usize, from: Option<&str>, zone: Option<&str>) -> Result<(), CliError> {
        let mut query = format!("?count={count}");
        if let Some(from) = from {
            query.push_str(&format!("&from={}", encode(from)));
        }
        let answer = self.get(&job_path(name, &format!("/next{query}"))).await?;
        if self.json {
            println!("{answer}");
            return Ok(());
        }
        let zone_name = zone.map(str::to_owned).unwrap_or_else(|| text(&answer["scheduleTimeZone"]));
        let tz = jiff::tz::TimeZone::get(&zone_name)
            .map_err(|e| CliError::Usage(format!("--tz {zone_name}: not a time zone we know: {e}")))?;
        let times = answer["times"].as_array().cloned().unwrap_or_default();
        if times.is_empty() {
            println!("{name} has no more scheduled runs");
            return Ok(());
        }
        println!("next runs of {name} ({zone_name}):");
        for time in times {
            let text = text(&time);
            match text.parse::<jiff::Timestamp>() {
                Ok(t) => {
                    let local = t.to_zoned_datetime(tz.clone());
                    println!("  {}", local.strftime("%a %Y-%m-%d %H:%M:%S %:z (%Z)"));
                }
                Err(_) => println!("  {text}"),
            }
        }
        Ok(())
    }

    /// `history NAME`: the job's runs, newest first.
    pub async fn history(&self, name: &str, limit: usize) -> Result<(), CliError> {
        let runs = self.get(&job_path(name, &format!("/history?limit={limit}"))).await?;
        if self.json {
            println!("{runs}");
            return Ok(());
        }
        let mut rows =
            vec![row(["SCHEDULED", "TRIGGER", "STATE", "ATTEMPT", "STARTED", "ENDED", "EXIT", "LATE", "AGENT"])];
        for run in runs.as_array().into_iter().flatten() {
            let late =
                run["latenessMs"].as_i64().map_or_else(|| "-".to_owned(), |ms| format!("{:.3}s", ms as f64 / 1000.0));
            let state = match run["reason"].as_str() {
                Some(reason) => format!("{} ({reason})", text(&run["state"])),
                None => text(&run["state"]),
            };
            rows.push(vec![
                text(&run["scheduled"]),
                text(&run["trigger"]),
                state,
                text(&run["attempt"]),
                text(&run["started"]),
                text(&run["ended"]),
                text(&run["exitCode"]),
                late,
                text(&run["agent"]),
            ]);
        }
        if rows.len() == 1 {
            println!("{name} has not run yet");
        } else {
            print_table(&rows);
        }
        Ok(())
    }

    /// `kill NAME`: kills every run of the job in flight.
    pub async fn kill(&self, name: &str) -> Result<(), CliError> {
        self.send(Method::DELETE, &format!("/v1/scheduler/task/kill/{}", encode(name)), None).await?;
        if !self.json {
            println!("killing the runs of {name} in flight");
        }
        Ok(())
    }

    /// `delete NAME [--force]`.
    pub async fn delete(&self, name: &str, force: bool) -> Result<(), CliError> {
        let query = if force { "?force=true" } else { "" };
        self.send(Method::DELETE, &job_path(name, query), None).await?;
        if !self.json {
            println!("deleted {name}");
        }
        Ok(())
    }

    // ----- Calls -----

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    /// A job, or `None` when the API says it does not exist (Chronos' 400 "not found").
    async fn get_optional(&self, path: &str) -> Result<Option<Value>, CliError> {
        match self.send(Method::GET, path, None).await {
            Ok(value) => Ok(Some(value)),
            Err(CliError::Rest(RestError::Api { status: StatusCode::BAD_REQUEST, message, .. }))
                if message.contains("not found") =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        Ok(self.rest.send(method, path, body).await?)
    }
}

/// `/v1/scheduler/job/{name}{rest}`, the name percent-encoded.
fn job_path(name: &str, rest: &str) -> String {
    format!("/v1/scheduler/job/{}{rest}", encode(name))
}

/// Percent-encodes everything but unreserved characters, for a path segment or a query
/// value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What starts a job, as one line: its schedule and zone, or its parents.
fn trigger(job: &Value) -> String {
    if let Some(parents) = job["parents"].as_array() {
        let parents: Vec<String> = parents.iter().map(text).collect();
        return format!("after {}", parents.join(", "));
    }
    match job["scheduleTimeZone"].as_str() {
        Some(zone) if !zone.is_empty() => format!("{} ({zone})", text(&job["schedule"])),
        _ => text(&job["schedule"]),
    }
}

/// Chronos' last state: `fresh`, `success` or `failure`, by which came last.
fn last_state(job: &Value) -> &'static str {
    let success = job["lastSuccess"].as_str().unwrap_or_default();
    let error = job["lastError"].as_str().unwrap_or_default();
    match (success.is_empty(), error.is_empty()) {
        (true, true) => "fresh",
        (false, true) => "success",
        (true, false) => "failure",
        // Both written as UTC with milliseconds, one width: text order is time order.
        (false, false) if success > error => "success",
        (false, false) => "failure",
    }
}

/// A number as a person writes it: `256`, not `256.0`.
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        Some(n) => n.to_string(),
        None => text(value),
    }
}

/// A string, or `-` when empty (Chronos' "never").
fn or_dash(value: &Value) -> String {
    match value.as_str() {
        Some("") | None => "-".into(),
        Some(s) => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_percent_encoded_in_paths_and_queries() {
        assert_eq!(job_path("nightly report #2", "/next"), "/v1/scheduler/job/nightly%20report%20%232/next");
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn a_job_trigger_reads_as_its_schedule_or_its_parents() {
        assert_eq!(
            trigger(&json!({"schedule": "0 2 * * *", "scheduleTimeZone": "Europe/Paris"})),
            "0 2 * * * (Europe/Paris)"
        );
        assert_eq!(trigger(&json!({"schedule": "@daily", "scheduleTimeZone": ""})), "@daily");
        assert_eq!(trigger(&json!({"parents": ["etl", "export"]})), "after etl, export");
    }

    #[test]
    fn whole_numbers_print_without_a_fraction() {
        assert_eq!(number(&json!(256.0)), "256");
        assert_eq!(number(&json!(0.5)), "0.5");
        assert_eq!(number(&json!("x")), "x");
    }

    #[test]
    fn the_last_state_is_whichever_came_last() {
        assert_eq!(last_state(&json!({"lastSuccess": "", "lastError": ""})), "fresh");
        assert_eq!(
            last_state(&json!({"lastSuccess": "2026-03-02T02:00:01.000Z", "lastError": "2026-03-01T02:00:01.000Z"})),
            "success"
        );
        assert_eq!(last_state(&json!({"lastSuccess": "", "lastError": "2026-03-01T02:00:01.000Z"})), "failure");
    }
}
