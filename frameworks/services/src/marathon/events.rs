//! Events as Marathon's event stream shows them: each has an `eventType` and a
//! `timestamp`, and the fields Marathon gives that type.
//!
//! marathon-python turns every event it reads into a model and fails on an `eventType` it
//! does not know, so the events Marathon does not have (`launch_delayed_event`) reach only
//! clients that ask for them by name.

use agora_proto::model::TaskState;
use serde_json::{Value, json};

use super::render::{AppView, StepView};
use crate::core::ServiceEvent;
use crate::model::Deployment;
use crate::runtime::{Published, StampedEvent};

/// Event types Marathon does not have; sent only to clients that name them.
pub const AGORA_ONLY_TYPES: &[&str] = &["launch_delayed_event"];

/// Which events a client wants (`event_type=` parameters; all of Marathon's when none).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    types: Vec<String>,
}

impl EventFilter {
    pub fn new(types: impl IntoIterator<Item = String>) -> Self {
        Self { types: types.into_iter().filter(|t| !t.is_empty()).collect() }
    }

    pub fn wants(&self, event_type: &str) -> bool {
        if self.types.is_empty() {
            !AGORA_ONLY_TYPES.contains(&event_type)
        } else {
            self.types.iter().any(|t| t == event_type)
        }
    }
}

/// The Marathon events one of ours becomes, as `(eventType, JSON)`, in order.
pub fn render(event: &StampedEvent) -> Vec<(&'static str, Value)> {
    let at = event.at.to_string();
    let mut out: Vec<(&'static str, Value)> = match &event.event {
        Published::ApiPost { uri, client_ip, app } => vec![(
            "api_post_event",
            json!({"clientIp": client_ip, "uri": uri, "appDefinition": AppView::definition(app)}),
        )],
        Published::Service(service) => render_service(service),
    };
    for (event_type, value) in &mut out {
        if let Value::Object(map) = value {
            map.insert("eventType".into(), Value::String((*event_type).to_owned()));
            map.insert("timestamp".into(), Value::String(at.clone()));
        }
    }
    out
}

/// `event_stream_attached`, sent first on every new stream.
pub fn attached(remote_address: &str, at: crate::model::Timestamp) -> Value {
    json!({"remoteAddress": remote_address, "eventType": "event_stream_attached", "timestamp": at.to_string()})
}

fn render_service(event: &ServiceEvent) -> Vec<(&'static str, Value)> {
    match event {
        ServiceEvent::StatusUpdate { instance, status } => vec![
            (
                "status_update_event",
                json!({
                    "slaveId": instance.agent_id.as_str(),
                    "taskId": instance.task_id.as_str(),
                    "taskStatus": status.state.as_str(),
                    "message": status.message,
                    "appId": instance.app_id.as_str(),
                    "host": instance.host,
                    "ipAddresses": [],
                    "ports": instance.ports,
                    "version": instance.app_version.to_string(),
                }),
            ),
            (
                "instance_changed_event",
                json!({
                    "instanceId": instance.task_id.as_str(),
                    "slaveId": instance.agent_id.as_str(),
                    "condition": condition(status.state),
                    "host": instance.host,
                    "runSpecId": instance.app_id.as_str(),
                    "runSpecVersion": instance.app_version.to_string(),
                }),
            ),
        ],
        ServiceEvent::HealthChanged { instance, healthy } => vec![
            (
                "health_status_changed_event",
                json!({
                    "appId": instance.app_id.as_str(),
                    "taskId": instance.task_id.as_str(),
                    "instanceId": instance.task_id.as_str(),
                    "version": instance.app_version.to_string(),
                    "alive": healthy,
                }),
            ),
            (
                "instance_health_changed_event",
                json!({
                    "instanceId": instance.task_id.as_str(),
                    "runSpecId": instance.app_id.as_str(),
                    "runSpecVersion": instance.app_version.to_string(),
                    "healthy": healthy,
                }),
            ),
        ],
        ServiceEvent::UnhealthyKilled { instance, message } => vec![(
            "unhealthy_instance_kill_event",
            json!({
                "appId": instance.app_id.as_str(),
                "taskId": instance.task_id.as_str(),
                "instanceId": instance.task_id.as_str(),
                "version": instance.app_version.to_string(),
                "reason": message,
                "host": instance.host,
                "slaveId": instance.agent_id.as_str(),
            }),
        )],
        ServiceEvent::DeploymentInfo { deployment } => {
            vec![("deployment_info", json!({"plan": plan(deployment), "currentStep": current_step(deployment)}))]
        }
        ServiceEvent::DeploymentStepSuccess { deployment } => vec![(
            "deployment_step_success",
            json!({"plan": plan(deployment), "currentStep": current_step(deployment)}),
        )],
        ServiceEvent::DeploymentStepFailure { deployment } => vec![(
            "deployment_step_failure",
            json!({"plan": plan(deployment), "currentStep": current_step(deployment)}),
        )],
        ServiceEvent::DeploymentSuccess { deployment } => {
            vec![("deployment_success", json!({"id": deployment.id.0, "plan": plan(deployment)}))]
        }
        ServiceEvent::DeploymentFailed { deployment, reason, rollback } => vec![(
            "deployment_failed",
            json!({
                "id": deployment.id.0,
                "plan": plan(deployment),
                "reason": reason,
                // Ours: the deployment that rolls this one back, when there is one.
                "rollbackDeploymentId": rollback.as_ref().map(|r| r.0.clone()),
            }),
        )],
        ServiceEvent::AppTerminated { app } => vec![("app_terminated_event", json!({"appId": app.as_str()}))],
        ServiceEvent::GroupChangeSuccess { group, version } => {
            vec![("group_change_success", json!({"groupId": group.as_str(), "version": version.to_string()}))]
        }
        ServiceEvent::LaunchDelayed { app, until } => {
            vec![("launch_delayed_event", json!({"appId": app.as_str(), "delayedUntil": until.to_string()}))]
        }
        ServiceEvent::Subscription { callback_url, client_ip, subscribed } => vec![(
            if *subscribed { "subscribe_event" } else { "unsubscribe_event" },
            json!({"callbackUrl": callback_url, "clientIp": client_ip}),
        )],
    }
}

/// Marathon's instance condition for a task state.
fn condition(state: TaskState) -> &'static str {
    match state {
        TaskState::TaskStaging => "Staging",
        TaskState::TaskStarting => "Starting",
        TaskState::TaskRunning => "Running",
        TaskState::TaskKilling => "Killing",
        TaskState::TaskFinished => "Finished",
        TaskState::TaskFailed => "Failed",
        TaskState::TaskKilled => "Killed",
        TaskState::TaskError => "Error",
        TaskState::TaskDropped => "Dropped",
        TaskState::TaskUnreachable => "Unreachable",
        TaskState::TaskLost | TaskState::TaskGone | TaskState::TaskGoneByOperator => "Gone",
        TaskState::TaskUnknown => "Unknown",
    }
}

/// A deployment plan as Marathon's events carry it: the steps, and the original and
/// target state of the apps it touches (clients read `original` and `target` as groups).
fn plan(d: &Deployment) -> Value {
    let side = |specs: &std::collections::BTreeMap<
        crate::model::AppId,
        Option<std::sync::Arc<crate::model::AppSpec>>,
    >| {
        let apps: Vec<Value> =
            specs.values().flatten().filter_map(|spec| serde_json::to_value(AppView::definition(spec)).ok()).collect();
        json!({"id": "/", "apps": apps, "groups": [], "dependencies": [], "version": d.version.to_string()})
    };
    json!({
        "id": d.id.0,
        "version": d.version.to_string(),
        "steps": d.steps.iter().map(StepView).collect::<Vec<_>>(),
        "original": side(&d.original),
        "target": side(&d.target),
    })
}

fn current_step(d: &Deployment) -> Value {
    let step = d.steps.get(d.current_step).or_else(|| d.steps.last());
    match step {
        Some(step) => serde_json::to_value(StepView(step)).unwrap_or_else(|_| json!({"actions": []})),
        None => json!({"actions": []}),
    }
}
