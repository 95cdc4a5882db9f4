//! `GET /state`: the agent's id, host, resources and tasks, as JSON.

use std::collections::BTreeMap;

use agora_proto::model::Resources;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{HttpError, HttpState};
use crate::runtime::{Event, StateView};

#[derive(Debug, Serialize)]
pub(crate) struct StateDto {
    /// Absent until the master first accepts the agent.
    id: Option<String>,
    hostname: String,
    port: u16,
    master: String,
    /// Registered with the master right now.
    connected: bool,
    resources: ResourcesDto,
    attributes: BTreeMap<String, String>,
    tasks: Vec<TaskDto>,
}

/// Resources as Mesos' agent `/state` shows them; `text` is the `--resources` syntax,
/// with roles.
#[derive(Debug, Serialize)]
struct ResourcesDto {
    cpus: f64,
    mem: u64,
    disk: u64,
    ports: String,
    text: String,
}

#[derive(Debug, Serialize)]
struct TaskDto {
    id: String,
    framework_id: String,
    name: String,
    state: &'static str,
    /// The process group, while the process runs.
    pid: Option<u32>,
    /// Relative to the sandboxes root: feed it to `/files/browse?path=`.
    sandbox: Option<String>,
    resources: ResourcesDto,
    /// Status updates the master has not acknowledged yet.
    pending_updates: usize,
    /// The latest health check result, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy: Option<bool>,
    /// True once the readiness check passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
}

fn resources(r: &Resources) -> ResourcesDto {
    let scalars = r.scalars();
    ResourcesDto {
        // For display only; the exact value is `cpus_milli` in the agent.
        cpus: scalars.cpus_milli as f64 / 1000.0,
        mem: scalars.mem_mib,
        disk: scalars.disk_mib,
        ports: r.ports().to_string(),
        text: r.to_string(),
    }
}

fn dto(view: StateView) -> StateDto {
    StateDto {
        id: view.agent_id.map(|id| id.to_string()),
        hostname: view.info.hostname.clone(),
        port: view.info.port,
        master: view.master,
        connected: view.connected,
        resources: resources(&view.info.resources),
        attributes: view.info.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect(),
        tasks: view
            .tasks
            .into_iter()
            .map(|t| TaskDto {
                id: t.info.task_id.to_string(),
                framework_id: t.framework_id.to_string(),
                name: t.info.name.clone(),
                state: t.state.as_str(),
                pid: t.pid,
                sandbox: t.sandbox,
                resources: resources(&t.info.resources),
                pending_updates: t.pending_updates,
                healthy: t.healthy,
                ready: t.ready,
            })
            .collect(),
    }
}

pub(crate) async fn state(State(state): State<HttpState>) -> Result<Json<StateDto>, HttpError> {
    let (reply, answer) = oneshot::channel();
    state.events.send(Event::State { reply }).await.map_err(|_| HttpError::Stopping)?;
    let view = answer.await.map_err(|_| HttpError::Stopping)?;
    Ok(Json(dto(view)))
}
