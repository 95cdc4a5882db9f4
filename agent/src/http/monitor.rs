//! `GET /monitor/statistics`: each running task's usage in Mesos' shape (an array of
//! `{executor_id, executor_name, framework_id, source, statistics}`; a task is its own
//! executor, as under Mesos' command executor), and `GET /metrics`: the same figures and the
//! agent's own in Prometheus' text format. Usage comes from each task's cgroup, or from
//! `/proc` under posix isolation; disk from the disk watcher's latest measure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::oneshot;

use super::{HttpError, HttpState};
use crate::runtime::cgroups::{self, Usage};
use crate::runtime::{Event, StateView, usage};

#[derive(Debug, Serialize)]
pub(crate) struct StatisticsDto {
    executor_id: String,
    executor_name: String,
    framework_id: String,
    source: String,
    statistics: ResourceStatistics,
}

/// Mesos' `ResourceStatistics` fields Agora measures.
#[derive(Debug, Serialize)]
struct ResourceStatistics {
    /// Seconds since the Unix epoch.
    timestamp: f64,
    processes: u64,
    cpus_user_time_secs: f64,
    cpus_system_time_secs: f64,
    cpus_limit: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus_nr_throttled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus_throttled_time_secs: Option<f64>,
    mem_rss_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_cache_bytes: Option<u64>,
    mem_limit_bytes: u64,
    disk_limit_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_used_bytes: Option<u64>,
}

/// One running task's figures.
struct TaskUsage {
    task_id: String,
    name: String,
    framework_id: String,
    cpus_limit: f64,
    mem_limit_bytes: u64,
    disk_limit_bytes: u64,
    disk_used_bytes: Option<u64>,
    usage: Usage,
}

async fn view(state: &HttpState) -> Result<StateView, HttpError> {
    let (reply, answer) = oneshot::channel();
    state.events.send(Event::State { reply }).await.map_err(|_| HttpError::Stopping)?;
    answer.await.map_err(|_| HttpError::Stopping)
}

/// Reads every running task's usage, on a blocking thread (files under `/sys` and `/proc`).
async fn collect(view: StateView) -> Result<(StateView, Vec<TaskUsage>), HttpError> {
    tokio::task::spawn_blocking(move || {
        let running: Vec<_> = view.tasks.iter().filter_map(|task| Some((task, task.pid?))).collect();
        let posix_groups: BTreeSet<u32> =
            running.iter().filter(|(task, _)| !view.cgroups.contains_key(&task.run)).map(|(_, pid)| *pid).collect();
        let by_group = usage::process_groups(&posix_groups);
        let figures = running
            .iter()
            .map(|(task, pid)| {
                let scalars = task.info.resources.scalars();
                let measured = match view.cgroups.get(&task.run) {
                    Some(cgroup) => cgroups::usage(cgroup),
                    None => by_group.get(pid).cloned().unwrap_or_default(),
                };
                TaskUsage {
                    task_id: task.info.task_id.to_string(),
                    name: task.info.name.clone(),
                    framework_id: task.framework_id.to_string(),
                    cpus_limit: scalars.cpus_milli as f64 / 1000.0,
                    mem_limit_bytes: measured.mem_limit_bytes.unwrap_or(scalars.mem_mib << 20),
                    disk_limit_bytes: scalars.disk_mib << 20,
                    disk_used_bytes: view.disk_used.get(&task.run).copied(),
                    usage: measured,
                }
            })
            .collect();
        (view, figures)
    })
    .await
    .map_err(|_| HttpError::Stopping)
}

pub(crate) async fn statistics(State(state): State<HttpState>) -> Result<Json<Vec<StatisticsDto>>, HttpError> {
    let (_, figures) = collect(view(&state).await?).await?;
    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Ok(Json(
        figures
            .into_iter()
            .map(|task| StatisticsDto {
                executor_name: format!("Command Executor (Task: {})", task.task_id),
                executor_id: task.task_id.clone(),
                source: task.task_id,
                framework_id: task.framework_id,
                statistics: ResourceStatistics {
                    timestamp,
                    processes: task.usage.processes,
                    cpus_user_time_secs: task.usage.cpus_user_time_secs,
                    cpus_system_time_secs: task.usage.cpus_system_time_secs,
                    cpus_limit: task.cpus_limit,
                    cpus_nr_throttled: task.usage.cpus_nr_throttled,
                    cpus_throttled_time_secs: task.usage.cpus_throttled_time_secs,
                    mem_rss_bytes: task.usage.mem_rss_bytes,
                    mem_cache_bytes: task.usage.mem_cache_bytes,
                    mem_limit_bytes: task.mem_limit_bytes,
                    disk_limit_bytes: task.disk_limit_bytes,
                    disk_used_bytes: task.disk_used_bytes,
                },
            })
            .collect(),
    ))
}

pub(crate) async fn metrics(State(state): State<HttpState>) -> Result<Response, HttpError> {
    let (view, figures) = collect(view(&state).await?).await?;
    let text = prometheus(&view, &figures);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// A label value with Prometheus' escapes (backslash, quote, newline).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prometheus(view: &StateView, figures: &[TaskUsage]) -> String {
    let mut out = String::new();
    let scalars = view.info.resources.scalars();
    let _ = writeln!(out, "# HELP agora_agent_registered 1 while the agent is registered with a master.");
    let _ = writeln!(out, "# TYPE agora_agent_registered gauge");
    let _ = writeln!(out, "agora_agent_registered {}", u8::from(view.connected));
    let _ = writeln!(out, "# HELP agora_agent_isolation The isolation in use (label), always 1.");
    let _ = writeln!(out, "# TYPE agora_agent_isolation gauge");
    let _ = writeln!(out, "agora_agent_isolation{{isolation=\"{}\"}} 1", view.isolation);
    let _ = writeln!(out, "# HELP agora_agent_resources What the agent offers.");
    let _ = writeln!(out, "# TYPE agora_agent_resources gauge");
    let _ = writeln!(out, "agora_agent_resources{{resource=\"cpus\"}} {}", scalars.cpus_milli as f64 / 1000.0);
    let _ = writeln!(out, "agora_agent_resources{{resource=\"mem_bytes\"}} {}", scalars.mem_mib << 20);
    let _ = writeln!(out, "agora_agent_resources{{resource=\"disk_bytes\"}} {}", scalars.disk_mib << 20);
    let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
    for task in &view.tasks {
        *by_state.entry(task.state.as_str()).or_default() += 1;
    }
    let _ = writeln!(out, "# HELP agora_agent_tasks Tasks the agent holds, by state.");
    let _ = writeln!(out, "# TYPE agora_agent_tasks gauge");
    for (state, count) in by_state {
        let _ = writeln!(out, "agora_agent_tasks{{state=\"{state}\"}} {count}");
    }
    type Figure = fn(&TaskUsage) -> Option<f64>;
    let series: [(&str, &str, &str, Figure); 8] = [
        ("agora_task_cpu_user_seconds_total", "counter", "CPU time in user mode.", |t| {
            Some(t.usage.cpus_user_time_secs)
        }),
        ("agora_task_cpu_system_seconds_total", "counter", "CPU time in kernel mode.", |t| {
            Some(t.usage.cpus_system_time_secs)
        }),
        ("agora_task_cpu_limit", "gauge", "CPUs the task holds.", |t| Some(t.cpus_limit)),
        ("agora_task_memory_rss_bytes", "gauge", "Resident anonymous memory.", |t| Some(t.usage.mem_rss_bytes as f64)),
        ("agora_task_memory_limit_bytes", "gauge", "The memory limit.", |t| Some(t.mem_limit_bytes as f64)),
        ("agora_task_processes", "gauge", "Processes and threads.", |t| Some(t.usage.processes as f64)),
        ("agora_task_disk_used_bytes", "gauge", "The sandbox's size at its latest measure.", |t| {
            t.disk_used_bytes.map(|b| b as f64)
        }),
        ("agora_task_disk_limit_bytes", "gauge", "The task's disk resource.", |t| Some(t.disk_limit_bytes as f64)),
    ];
    for (name, kind, help, figure) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for task in figures {
            if let Some(value) = figure(task) {
                let _ = writeln!(
                    out,
                    "{name}{{framework_id=\"{}\",task_id=\"{}\",name=\"{}\"}} {value}",
                    label(&task.framework_id),
                    label(&task.task_id),
                    label(&task.name)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
