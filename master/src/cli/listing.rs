//! `agora agents`, `agora agent show`, `agora frameworks`, `agora tasks` and `agora task
//! show`: tables for people, the API's JSON with `--json`. They read `/state-summary`,
//! `/slaves?slave_id=`, `/frameworks` (only with `--all`) and `/tasks` with its filters,
//! the endpoints whose cost does not grow with the whole registry.

use std::time::{SystemTime, UNIX_EPOCH};

use agora_proto::model::TaskState;
use agora_sdk::cli::{cell, row, table};
use serde_json::{Value, json};

use super::sandbox::{self, Location};
use super::{CliError, MasterClient};

/// Tasks one `/tasks` page holds at most (the master's bound).
const PAGE: usize = 1_000;
/// Most tasks `agora tasks` lists, whatever `--limit` says.
pub const MAX_TASKS: usize = 100_000;

/// Which tasks `agora tasks` lists.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// `TASK_*` names; empty: the live states, or every state with `all`.
    pub states: Vec<TaskState>,
    pub framework_id: Option<String>,
    pub agent_id: Option<String>,
    /// Ended tasks too.
    pub all: bool,
    /// The newest this many.
    pub limit: usize,
}

/// A task state as the user wrote it: `running`, `TASK_RUNNING` or `task_running`.
pub fn parse_state(text: &str) -> Result<TaskState, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("TASK_") { upper } else { format!("TASK_{upper}") };
    TaskState::ALL.into_iter().find(|s| s.as_str() == name).ok_or_else(|| {
        let names: Vec<String> =
            TaskState::ALL.iter().map(|s| s.as_str().trim_start_matches("TASK_").to_ascii_lowercase()).collect();
        format!("{text:?} is not a task state; one of {}", names.join(", "))
    })
}

/// A JSON document as printed by `--json`: indented, for people and `jq` alike.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `used/total` of one resource of two Mesos resource objects (`{"cpus": 0.5, …}`).
fn share(used: &Value, total: &Value, name: &str) -> String {
    format!("{}/{}", number(&used[name]), number(&total[name]))
}

/// A number as people write it: `32`, not `32.0`; `0.1`; `-` when absent.
pub(crate) fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(n) => format!("{n}"),
        None => cell(value),
    }
}

fn count(object: &Value, states: &[&str]) -> u64 {
    states.iter().map(|s| object[*s].as_u64().unwrap_or(0)).sum()
}

const LIVE_STATES: [&str; 4] = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"];

/// How an agent stands, in a word.
fn agent_state(agent: &Value) -> String {
    if agent["reachable"] == false {
        return "unreachable".to_owned();
    }
    if let Some(drain) = agent["drain_info"]["state"].as_str() {
        return drain.to_ascii_lowercase();
    }
    if agent["deactivated"] == true { "deactivated".to_owned() } else { "active".to_owned() }
}

fn attributes(agent: &Value) -> String {
    match agent["attributes"].as_object() {
        Some(map) if !map.is_empty() => {
            map.iter().map(|(k, v)| format!("{k}:{}", cell(v))).collect::<Vec<_>>().join(";")
        }
        _ => "-".to_owned(),
    }
}

/// `agora agents`: every agent the master knows.
pub async fn agents(client: &MasterClient, json: bool) -> Result<String, CliError> {
    let summary = client.get("/state-summary").await?;
    let agents = summary["slaves"].as_array().cloned().unwrap_or_default();
    if json {
        return Ok(pretty(&json!({ "agents": agents })));
    }
    if agents.is_empty() {
        return Ok("no agents".to_owned());
    }
    let mut rows = vec![row(["ID", "ADDRESS", "STATE", "CPUS", "MEM", "DISK", "TASKS", "ATTRIBUTES"])];
    for agent in &agents {
        let (used, total) = (&agent["used_resources"], &agent["resources"]);
        rows.push(vec![
            cell(&agent["id"]),
            format!("{}:{}", cell(&agent["hostname"]), cell(&agent["port"])),
            agent_state(agent),
            share(used, total, "cpus"),
            share(used, total, "mem"),
            share(used, total, "disk"),
            count(agent, &LIVE_STATES).to_string(),
            attributes(agent),
        ]);
    }
    Ok(table(&rows))
}

/// `agora agent show ID`: one agent and its live tasks.
pub async fn agent_show(client: &MasterClient, agent_id: &str, json: bool) -> Result<String, CliError> {
    let agent_id = agent_id.trim();
    if agent_id.is_empty() {
        return Err(CliError::AgentId);
    }
    let listed = client.get(&format!("/slaves?slave_id={}", encode(agent_id))).await?;
    let Some(agent) = listed["slaves"].as_array().and_then(|a| a.first()).cloned() else {
        return Err(CliError::NotFound(format!("no agent {agent_id} (`agora agents` lists them)")));
    };
    let filter = TaskFilter { agent_id: Some(agent_id.to_owned()), limit: PAGE, ..TaskFilter::default() };
    let tasks = task_page(client, &filter).await?;
    if json {
        let mut agent = agent;
        agent["tasks"] = Value::Array(tasks);
        return Ok(pretty(&agent));
    }
    let (used, total) = (&agent["used_resources"], &agent["resources"]);
    let mut lines = vec![
        row(["id", &cell(&agent["id"])]),
        row(["address", &format!("{}:{}", cell(&agent["hostname"]), cell(&agent["port"]))]),
        row(["state", &agent_state(&agent)]),
        row(["cpus", &share(used, total, "cpus")]),
        row(["mem (MiB)", &share(used, total, "mem")]),
        row(["disk (MiB)", &share(used, total, "disk")]),
        row(["ports", &cell(&total["ports"])]),
        row(["attributes", &attributes(&agent)]),
        row(["registered", &when(agent["registered_time"].as_f64())]),
    ];
    for line in &mut lines {
        line[0].push(':');
    }
    let mut text = table(&lines);
    text.push_str("\n\n");
    text.push_str(&task_table(&tasks, None));
    Ok(text)
}

/// `agora frameworks [--all]`: the live frameworks, and with `all` the removed ones kept.
pub async fn frameworks(client: &MasterClient, all: bool, json: bool) -> Result<String, CliError> {
    let summary = client.get("/state-summary").await?;
    let mut frameworks = summary["frameworks"].as_array().cloned().unwrap_or_default();
    let mut completed = Vec::new();
    if all {
        let listed = client.get("/frameworks").await?;
        completed = listed["completed_frameworks"].as_array().cloned().unwrap_or_default();
        for framework in &mut completed {
            if let Some(object) = framework.as_object_mut() {
                // Their task lists are long and not what this command is for.
                object.remove("tasks");
                object.remove("completed_tasks");
            }
        }
    }
    if json {
        return Ok(pretty(&json!({ "frameworks": frameworks, "completed_frameworks": completed })));
    }
    if frameworks.is_empty() && completed.is_empty() {
        return Ok("no frameworks".to_owned());
    }
    let mut rows = vec![row(["ID", "NAME", "USER", "ROLES", "STATE", "CPUS", "MEM", "TASKS"])];
    let roles =
        |f: &Value| f["roles"].as_array().map(|r| r.iter().map(cell).collect::<Vec<_>>().join(",")).unwrap_or_default();
    for framework in &mut frameworks {
        rows.push(vec![
            cell(&framework["id"]),
            cell(&framework["name"]),
            cell(&framework["user"]),
            roles(framework),
            if framework["active"] == true { "active" } else { "disconnected" }.to_owned(),
            number(&framework["used_resources"]["cpus"]),
            number(&framework["used_resources"]["mem"]),
            count(framework, &LIVE_STATES).to_string(),
        ]);
    }
    for framework in &completed {
        rows.push(vec![
            cell(&framework["id"]),
            cell(&framework["name"]),
            cell(&framework["user"]),
            roles(framework),
            "completed".to_owned(),
            "0".to_owned(),
            "0".to_owned(),
            "0".to_owned(),
        ]);
    }
    Ok(table(&rows))
}

/// The `/tasks` query of a filter, without paging.
fn task_query(filter: &TaskFilter) -> String {
    let mut query = Vec::new();
    let states: Vec<&str> = if !filter.states.is_empty() {
        filter.states.iter().map(|s| s.as_str()).collect()
    } else if filter.all {
        Vec::new()
    } else {
        TaskState::ALL.iter().filter(|s| !s.is_terminal()).map(|s| s.as_str()).collect()
    };
    if !states.is_empty() {
        query.push(format!("state={}", states.join(",")));
    }
    if let Some(id) = &filter.framework_id {
        query.push(format!("framework_id={}", encode(id)));
    }
    if let Some(id) = &filter.agent_id {
        query.push(format!("agent_id={}", encode(id)));
    }
    query.join("&")
}

/// The newest `filter.limit` tasks the filter selects, page by page.
async fn task_page(client: &MasterClient, filter: &TaskFilter) -> Result<Vec<Value>, CliError> {
    let query = task_query(filter);
    let limit = filter.limit.min(MAX_TASKS);
    let mut tasks = Vec::new();
    while tasks.len() < limit {
        let page = PAGE.min(limit - tasks.len());
        let path = format!("/tasks?limit={page}&offset={}&{query}", tasks.len());
        let answer = client.get(&path).await?;
        let got = answer["tasks"].as_array().cloned().unwrap_or_default();
        let done = got.len() < page;
        tasks.extend(got);
        if done {
            break;
        }
    }
    Ok(tasks)
}

/// `agora tasks`: the newest tasks the filter selects.
pub async fn tasks(client: &MasterClient, filter: &TaskFilter, json: bool) -> Result<String, CliError> {
    let tasks = task_page(client, filter).await?;
    if json {
        return Ok(pretty(&json!({ "tasks": tasks })));
    }
    let summary = client.get("/state-summary").await?;
    let mut text = task_table(&tasks, Some(&summary));
    if tasks.len() == filter.limit {
        text.push_str(&format!("\n(the newest {}; --limit N for more)", filter.limit));
    }
    Ok(text)
}

/// Tasks as a table; with the master's summary, agents by their address and frameworks by
/// their name.
fn task_table(tasks: &[Value], summary: Option<&Value>) -> String {
    if tasks.is_empty() {
        return "no tasks".to_owned();
    }
    let lookup = |list: &str, id: &Value, show: &dyn Fn(&Value) -> String| -> String {
        summary
            .and_then(|s| s[list].as_array())
            .and_then(|items| items.iter().find(|i| i["id"] == *id))
            .map_or_else(|| cell(id), show)
    };
    let mut rows = vec![row(["ID", "FRAMEWORK", "AGENT", "STATE", "CPUS", "MEM", "SINCE"])];
    for task in tasks {
        rows.push(vec![
            cell(&task["id"]),
            lookup("frameworks", &task["framework_id"], &|f| cell(&f["name"])),
            lookup("slaves", &task["slave_id"], &|a| format!("{}:{}", cell(&a["hostname"]), cell(&a["port"]))),
            cell(&task["state"]),
            number(&task["resources"]["cpus"]),
            number(&task["resources"]["mem"]),
            ago(last_status_time(task)),
        ]);
    }
    table(&rows)
}

fn last_status_time(task: &Value) -> Option<f64> {
    task["statuses"].as_array().and_then(|s| s.last()).and_then(|s| s["timestamp"].as_f64())
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// How long ago a time (seconds since the epoch) was, in its largest unit: `5s`, `3m`, `2h`.
fn ago(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds else { return "-".to_owned() };
    let elapsed = (now_seconds() - seconds).max(0.0) as u64;
    match elapsed {
        0..60 => format!("{elapsed}s"),
        60..3_600 => format!("{}m", elapsed / 60),
        3_600..86_400 => format!("{}h", elapsed / 3_600),
        _ => format!("{}d", elapsed / 86_400),
    }
}

/// A time as `2026-12-08 01:02:03 UTC (5m ago)`.
fn when(seconds: Option<f64>) -> String {
    match seconds.filter(|s| *s > 0.0) {
        Some(seconds) => format!("{} UTC ({} ago)", date_time(seconds), ago(Some(seconds))),
        None => "-".to_owned(),
    }
}

/// Seconds since the epoch as `2026-12-08 01:02:03` (UTC).
pub(crate) fn date_time(seconds: f64) -> String {
    let secs = seconds.max(0.0) as u64;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3_600, rest % 3_600 / 60, rest % 60)
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `agora task show ID`: the task, where it runs, its sandbox and its history.
pub async fn task_show(
    client: &MasterClient,
    task_id: &str,
    framework_id: Option<&str>,
    json: bool,
) -> Result<String, CliError> {
    let location = sandbox::locate(client, task_id, framework_id).await?;
    if json {
        let mut task = location.task.clone();
        task["agent"] = json!({"id": location.agent_id, "url": location.agent_url});
        task["sandbox"] = json!(location.sandbox);
        return Ok(pretty(&task));
    }
    Ok(describe_task(&location))
}

fn describe_task(location: &Location) -> String {
    let task = &location.task;
    let mut lines = vec![
        row(["id", &cell(&task["id"])]),
        row(["name", &cell(&task["name"])]),
        row(["framework", &cell(&task["framework_id"])]),
        row(["agent", &format!("{} ({})", location.agent_id, location.agent_url)]),
        row(["state", &cell(&task["state"])]),
        row(["cpus", &number(&task["resources"]["cpus"])]),
        row(["mem (MiB)", &number(&task["resources"]["mem"])]),
        row(["disk (MiB)", &number(&task["resources"]["disk"])]),
        row(["sandbox", location.sandbox.as_deref().unwrap_or("- (not made yet, or removed)")]),
    ];
    if let Some(ports) = task["resources"]["ports"].as_str() {
        lines.insert(8, row(["ports", ports]));
    }
    for line in &mut lines {
        line[0].push(':');
    }
    let mut text = table(&lines);
    let mut history = vec![row(["TIME", "STATE", "SOURCE", "REASON", "MESSAGE"])];
    for status in task["statuses"].as_array().into_iter().flatten() {
        let mut message = cell(&status["message"]);
        if let Some(code) = status["exit_code"].as_i64().filter(|_| !message.contains("exit")) {
            message = format!("{message} (exit code {code})").trim().to_owned();
        }
        history.push(vec![
            when(status["timestamp"].as_f64()),
            cell(&status["state"]),
            cell(&status["source"]),
            cell(&status["reason"]),
            message,
        ]);
    }
    text.push_str("\n\n");
    text.push_str(&table(&history));
    if location.sandbox.is_some() {
        text.push_str(&format!(
            "\n\nits output: agora task log {} (--stderr for its standard error)",
            location.task_id
        ));
    }
    text
}

/// A query parameter's value, percent-encoded.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_taken_with_or_without_their_prefix_in_any_case() {
        assert_eq!(parse_state("running"), Ok(TaskState::TaskRunning));
        assert_eq!(parse_state("TASK_FINISHED"), Ok(TaskState::TaskFinished));
        assert_eq!(parse_state("task_failed"), Ok(TaskState::TaskFailed));
        let error = parse_state("done").expect_err("not a state");
        assert!(error.contains("\"done\" is not a task state; one of staging, starting, running"), "{error}");
    }

    #[test]
    fn the_default_query_asks_for_live_tasks_and_all_for_every_state() {
        let live = task_query(&TaskFilter { agent_id: Some("a 1".into()), ..TaskFilter::default() });
        assert!(live.starts_with("state=TASK_STAGING,TASK_STARTING,TASK_RUNNING"), "{live}");
        assert!(!live.contains("TASK_FINISHED"), "{live}");
        assert!(live.ends_with("&agent_id=a%201"), "{live}");
        assert_eq!(task_query(&TaskFilter { all: true, ..TaskFilter::default() }), "");
        let failed = TaskFilter { states: vec![TaskState::TaskFailed], all: true, ..TaskFilter::default() };
        assert_eq!(task_query(&failed), "state=TASK_FAILED");
    }

    #[test]
    fn times_are_shown_as_dates_and_ages() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_795), (2026, 12, 8));
        assert!(when(Some(86_400.0 + 3_661.0)).starts_with("1970-01-02 01:01:01 UTC ("));
        assert_eq!(ago(None), "-");
        assert_eq!(ago(Some(now_seconds() - 125.0)), "2m");
    }
}
