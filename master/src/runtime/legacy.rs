//! Mesos' older read endpoints, in their shapes, each also under `/master/…`:
//! `/state-summary`, `/frameworks`, `/slaves`, `/tasks` (paged: `limit`, `offset`,
//! `order`, `framework_id`, `task_id`, and ours: `agent_id`, `state` as TASK_* names
//! comma-separated), `/flags`, `/metrics/snapshot` (Mesos' metric
//! names) and `/redirect`. All read the read model
//! (`read_model.rs`), never the owner; `/state-summary` and `/tasks` read only its kept
//! tallies and index, so their cost does not grow with the number of tasks. A query
//! parameter that does not parse is a 400 naming it. See `docs/http-api.md`.

use std::collections::BTreeMap;

use agora_proto::acl::Action;
use agora_proto::model::{AgentId, FrameworkId, Scalars, TaskId, TaskState};
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::http::{
    AgentDto, ApiError, FrameworkDto, TaskDto, VERSION, json_response, render_blocking, render_turn, resources_json,
    seconds,
};
use super::read_model::{ReadModel, StateCounts, Summary, TaskQuery};
use crate::core::AgentView;

/// `/tasks` lists this many tasks unless asked for another number, as Mesos.
pub const DEFAULT_TASKS_LIMIT: usize = 100;
/// Most tasks one `/tasks` page holds (Mesos has no bound; pages are cheap, answers of
/// 500,000 tasks are not).
pub const MAX_TASKS_LIMIT: usize = 1_000;

pub fn router() -> axum::Router<ReadModel> {
    let mut router = axum::Router::new();
    for prefix in ["", "/master"] {
        router = router
            .route(&format!("{prefix}/state-summary"), get(state_summary))
            .route(&format!("{prefix}/frameworks"), get(frameworks))
            .route(&format!("{prefix}/slaves"), get(slaves))
            .route(&format!("{prefix}/tasks"), get(tasks))
            .route(&format!("{prefix}/tasks.json"), get(tasks))
            .route(&format!("{prefix}/redirect"), get(redirect))
            .route(&format!("{prefix}/flags"), get(flags))
            .route(&format!("{prefix}/metrics/snapshot"), get(metrics_snapshot));
    }
    router
}

type Params = Query<BTreeMap<String, String>>;

fn bad_param(name: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("query parameter {name}: {reason}"),
        json!([{"field": name, "reason": reason}]),
    )
}

fn render(value: impl serde::Serialize) -> Result<Response, ApiError> {
    serde_json::to_vec(&value)
        .map(json_response)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), json!([])))
}

/// Mesos' `TASK_STAGING: n, …` keys of an agent or a framework.
fn state_counts(states: &StateCounts, into: &mut Map<String, Value>) {
    for (state, n) in TaskState::ALL.iter().zip(states) {
        into.insert(state.as_str().to_owned(), json!(n));
    }
}

async fn state_summary(
    State(read): State<ReadModel>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let turn = render_turn(&read).await?;
    read.caught_up().await;
    let summary = read.summary();
    let body = render_blocking(turn, move || {
        let facts = summary.facts.clone();
        let hostname = facts.as_ref().map(|f| f.advertise.rsplit_once(':').map_or(f.advertise.as_str(), |(h, _)| h));
        let slaves: Vec<Value> = summary
            .agents
            .iter()
            .map(|(agent, tally)| {
                let mut value = serde_json::to_value(AgentDto::from(&**agent)).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    state_counts(&tally.states, object);
                    let ids: Vec<String> = tally.peers.keys().map(ToString::to_string).collect();
                    object.insert("framework_ids".to_owned(), json!(ids));
                }
                value
            })
            .collect();
        let frameworks: Vec<Value> = summary
            .frameworks
            .iter()
            .filter(|(view, _, _)| caller.may_view(Action::ViewFrameworks, &view.info.user))
            .map(|(view, used, tally)| {
                let info = &view.info;
                let mut object = Map::new();
                object.insert("id".to_owned(), json!(view.id.to_string()));
                object.insert("name".to_owned(), json!(info.name));
                object.insert("hostname".to_owned(), json!(info.hostname));
                object.insert("user".to_owned(), json!(info.user));
                object
                    .insert("roles".to_owned(), json!(info.roles.iter().map(ToString::to_string).collect::<Vec<_>>()));
                object.insert("active".to_owned(), json!(view.active));
                object.insert("connected".to_owned(), json!(view.active));
                object.insert("recovered".to_owned(), json!(false));
                object.insert("capabilities".to_owned(), json!(["MULTI_ROLE"]));
                object.insert("webui_url".to_owned(), json!(""));
                object.insert("used_resources".to_owned(), resources_json(used));
                object.insert("offered_resources".to_owned(), resources_json(&view.offered));
                state_counts(&tally.states, &mut object);
                let ids: Vec<String> = tally.peers.keys().map(ToString::to_string).collect();
                object.insert("slave_ids".to_owned(), json!(ids));
                Value::Object(object)
            })
            .collect();
        serde_json::to_vec(&json!({
            "hostname": hostname,
            "version": VERSION,
            "start_time": facts.as_ref().map(|f| seconds(f.start_time_ms)),
            "slaves": slaves,
            "frameworks": frameworks,
        }))
    })
    .await?;
    body.map(json_response).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), json!([])))
}

async fn frameworks(
    State(read): State<ReadModel>,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let wanted = params.get("framework_id").cloned();
    let turn = render_turn(&read).await?;
    read.caught_up().await;
    let copy = caller.visible_state(read.state());
    let keep = move |id: &FrameworkId| wanted.as_deref().is_none_or(|w| id.as_str() == w);
    let body = render_blocking(turn, move || {
        let live: Vec<FrameworkDto> =
            copy.frameworks.iter().filter(|f| keep(&f.view.id)).map(FrameworkDto::from).collect();
        let completed: Vec<FrameworkDto> =
            copy.completed_frameworks.iter().filter(|f| keep(&f.view.id)).map(|f| FrameworkDto::from(&**f)).collect();
        serde_json::to_vec(&json!({
            "frameworks": live,
            "completed_frameworks": completed,
            "unregistered_frameworks": [],
        }))
    })
    .await?;
    body.map(json_response).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), json!([])))
}

async fn slaves(State(read): State<ReadModel>, Query(params): Params) -> Result<Response, ApiError> {
    let wanted = params.get("slave_id").cloned();
    read.caught_up().await;
    let summary = read.summary();
    let agents: Vec<AgentDto> = summary
        .agents
        .iter()
        .filter(|(agent, _)| wanted.as_deref().is_none_or(|w| agent.id.as_str() == w))
        .map(|(agent, _)| AgentDto::from(&**agent))
        .collect();
    render(json!({"slaves": agents, "recovered_slaves": []}))
}

/// Mesos' `/tasks` query, every parameter checked.
fn task_query(params: &BTreeMap<String, String>) -> Result<TaskQuery, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| bad_param(name, format!("{text:?} is not a whole number"))),
        }
    };
    let limit = number("limit", DEFAULT_TASKS_LIMIT)?;
    if limit > MAX_TASKS_LIMIT {
        return Err(bad_param("limit", format!("{limit} is more than the {MAX_TASKS_LIMIT} tasks a page holds")));
    }
    let ascending = match params.get("order").map(String::as_str) {
        None | Some("des" | "desc") => false,
        Some("asc") => true,
        Some(other) => return Err(bad_param("order", format!("{other:?} is neither asc nor desc"))),
    };
    let id = |name: &str| match params.get(name) {
        Some(text) if text.is_empty() => Err(bad_param(name, "empty")),
        other => Ok(other.cloned()),
    };
    let states = match params.get("state") {
        None => Vec::new(),
        Some(text) => text
            .split(',')
            .map(|name| {
                let name = name.trim();
                TaskState::ALL.into_iter().find(|s| s.as_str() == name).ok_or_else(|| {
                    bad_param("state", format!("{name:?} is not a task state (TASK_RUNNING, TASK_FINISHED, …)"))
                })
            })
            .collect::<Result<Vec<TaskState>, ApiError>>()?,
    };
    Ok(TaskQuery {
        framework_id: id("framework_id")?.map(FrameworkId::new),
        task_id: id("task_id")?.map(TaskId::from),
        agent_id: id("agent_id")?.map(AgentId::new),
        states,
        offset: number("offset", 0)?,
        limit,
        ascending,
    })
}

async fn tasks(
    State(read): State<ReadModel>,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let query = task_query(&params)?;
    read.caught_up().await;
    let mut page = read.tasks(&query);
    if caller.views_filtered() {
        // A page is cut before it is filtered: a caller who may not see every task gets
        // shorter pages, never another's tasks.
        let state = read.state();
        let users: BTreeMap<FrameworkId, (String, bool)> = state
            .frameworks
            .iter()
            .chain(state.completed_frameworks.iter().map(|f| &**f))
            .map(|f| {
                let user = f.view.info.user.clone();
                let visible = caller.may_view(Action::ViewFrameworks, &user);
                (f.view.id.clone(), (user, visible))
            })
            .collect();
        page.retain(|task| {
            users.get(&task.framework_id).is_some_and(|(user, visible)| *visible && caller.may_view_task(task, user))
        });
    }
    let page: Vec<TaskDto> = page.iter().map(|t| TaskDto::from(&**t)).collect();
    render(json!({"tasks": page}))
}

/// Mesos' `/flags`: the master's settings by flag name, values as text.
async fn flags(State(read): State<ReadModel>) -> Result<Response, ApiError> {
    let facts = read.facts();
    let flags: Map<String, Value> = facts.flags.iter().map(|(name, value)| (name.clone(), json!(value))).collect();
    render(json!({ "flags": flags }))
}

/// Mesos' `/metrics/snapshot`: `{"master/…": number}` from the read model (nothing is
/// asked of the owner).
async fn metrics_snapshot(State(read): State<ReadModel>) -> Result<Response, ApiError> {
    read.caught_up().await;
    let summary = read.summary();
    let (subscribers, _) = read.subscribers();
    let metrics: Map<String, Value> =
        mesos_metrics(&summary, subscribers, super::clock::wall_ms()).into_iter().map(|(k, v)| (k, json!(v))).collect();
    render(Value::Object(metrics))
}

/// The figures the read model has under Mesos' metric names. Resources count reachable
/// agents; `_used` is what tasks hold plus what is offered (Mesos' "allocated").
pub fn mesos_metrics(summary: &Summary, subscribers: usize, now_ms: u64) -> Vec<(String, f64)> {
    let n = |v: usize| v as f64;
    let agents = &summary.agents;
    let count = |keep: &dyn Fn(&AgentView) -> bool| n(agents.iter().filter(|(a, _)| keep(a)).count());
    let frameworks = &summary.frameworks;
    let active_frameworks = frameworks.iter().filter(|(f, _, _)| f.active).count();
    let (mut total, mut used) = (Scalars::ZERO, Scalars::ZERO);
    for (agent, _) in agents.iter().filter(|(a, _)| a.reachable) {
        total = total.saturating_add(&agent.info.resources.scalars());
        used = used.saturating_add(&agent.used.scalars()).saturating_add(&agent.offered.scalars());
    }
    let percent = |used: u64, total: u64| if total == 0 { 0.0 } else { used as f64 / total as f64 };
    let start_ms = summary.facts.as_ref().map_or(now_ms, |f| f.start_time_ms);
    let mut out = vec![
        ("master/elected".to_owned(), 1.0),
        ("master/uptime_secs".to_owned(), now_ms.saturating_sub(start_ms) as f64 / 1000.0),
        ("master/slaves_active".to_owned(), count(&|a| a.active)),
        ("master/slaves_inactive".to_owned(), count(&|a| !a.active)),
        ("master/slaves_connected".to_owned(), count(&|a| a.reachable)),
        ("master/slaves_disconnected".to_owned(), count(&|a| !a.reachable)),
        ("master/slaves_unreachable".to_owned(), count(&|a| !a.reachable)),
        ("master/slave_removals".to_owned(), summary.counters.agents_removed as f64),
        ("master/frameworks_active".to_owned(), n(active_frameworks)),
        ("master/frameworks_inactive".to_owned(), n(frameworks.len() - active_frameworks)),
        ("master/frameworks_connected".to_owned(), n(active_frameworks)),
        ("master/frameworks_disconnected".to_owned(), n(frameworks.len() - active_frameworks)),
        ("master/outstanding_offers".to_owned(), n(summary.outstanding_offers)),
        ("master/operator_event_stream_subscribers".to_owned(), n(subscribers)),
        ("master/cpus_total".to_owned(), total.cpus_milli as f64 / 1000.0),
        ("master/cpus_used".to_owned(), used.cpus_milli as f64 / 1000.0),
        ("master/cpus_percent".to_owned(), percent(used.cpus_milli, total.cpus_milli)),
        ("master/mem_total".to_owned(), total.mem_mib as f64),
        ("master/mem_used".to_owned(), used.mem_mib as f64),
        ("master/mem_percent".to_owned(), percent(used.mem_mib, total.mem_mib)),
        ("master/disk_total".to_owned(), total.disk_mib as f64),
        ("master/disk_used".to_owned(), used.disk_mib as f64),
        ("master/disk_percent".to_owned(), percent(used.disk_mib, total.disk_mib)),
        ("master/tasks_launched".to_owned(), summary.counters.tasks_launched as f64),
        ("allocator/mesos/allocation_runs".to_owned(), summary.counters.allocation_runs as f64),
        ("allocator/mesos/offers_sent".to_owned(), summary.counters.offers_sent as f64),
    ];
    for state in TaskState::ALL {
        let name = state.as_str().trim_start_matches("TASK_").to_ascii_lowercase();
        out.push((format!("master/tasks_{name}"), n(summary.task_states.get(&state).copied().unwrap_or(0))));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Mesos' `/redirect`: 307 to the leading master. A follower's answer already sends the
/// client to the leader (see `election.rs`); the leader names itself.
async fn redirect(State(read): State<ReadModel>) -> Response {
    let location = format!("//{}", read.facts().advertise);
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_task_query_takes_mesos_defaults_and_names_each_bad_parameter() {
        let query = task_query(&params(&[])).expect("defaults");
        assert_eq!((query.limit, query.offset, query.ascending), (DEFAULT_TASKS_LIMIT, 0, false));
        let query = task_query(&params(&[("limit", "5"), ("offset", "10"), ("order", "asc"), ("framework_id", "f")]))
            .expect("valid");
        assert_eq!((query.limit, query.offset, query.ascending), (5, 10, true));
        assert_eq!(query.framework_id, Some(FrameworkId::new("f")));
        let query = task_query(&params(&[("state", "TASK_RUNNING,TASK_KILLING"), ("agent_id", "a1")])).expect("valid");
        assert_eq!(query.states, [TaskState::TaskRunning, TaskState::TaskKilling]);
        assert_eq!(query.agent_id, Some(AgentId::new("a1")));
        for (bad, name) in [
            (("limit", "ten"), "limit"),
            (("limit", "1001"), "limit"),
            (("offset", "-1"), "offset"),
            (("order", "up"), "order"),
            (("task_id", ""), "task_id"),
            (("agent_id", ""), "agent_id"),
            (("state", "TASK_RUNNING,RUNNING"), "state"),
        ] {
            let refused = task_query(&params(&[bad])).expect_err("refused");
            let text = format!("{refused:?}");
            assert!(text.contains(&format!("query parameter {name}")), "{text}");
        }
    }
}
