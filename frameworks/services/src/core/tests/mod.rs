//! The planner's rules, one test per rule, with the exact outputs they produce; fixtures
//! here, the rules by topic in the files beside.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::model::{
    AgentDescription, AgentId, Attribute, FrameworkId, Offer, OfferId, Resources, Role, TaskId, TaskInfo, TaskState,
    TaskStatus, TaskStatusReason,
};

use super::*;
use crate::model::{
    AppCommand, AppSpec, BackoffSpec, KillSelection, PathId, PortDefinition, UnreachableStrategy, UpgradeStrategy,
};

mod deployments;
mod healing;
mod launching;

pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn id(path: &str) -> PathId {
    PathId::parse(path).expect("test path is valid")
}

/// A small app: `sleep 3600`, 0.1 CPU, 32 MiB, no ports, no checks.
pub(super) fn spec(path: &str, instances: u32) -> AppSpec {
    AppSpec {
        id: id(path),
        command: AppCommand::Shell("sleep 3600".into()),
        cpus_milli: 100,
        mem_mib: 32,
        disk_mib: 0,
        instances,
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
        user: None,
        role: None,
        accepted_resource_roles: Vec::new(),
        port_definitions: Vec::new(),
        require_ports: false,
        constraints: Vec::new(),
        health_checks: Vec::new(),
        readiness_checks: Vec::new(),
        upgrade_strategy: UpgradeStrategy::default(),
        backoff: BackoffSpec::default(),
        kill_selection: KillSelection::default(),
        unreachable_strategy: UnreachableStrategy::default(),
        task_kill_grace_period_ms: None,
        dependencies: Vec::new(),
        deployment_timeout_ms: None,
        fetch: Vec::new(),
    }
}

pub(super) fn port(port: u16, name: Option<&str>) -> PortDefinition {
    PortDefinition { port, protocol: "tcp".into(), name: name.map(str::to_owned), labels: BTreeMap::new() }
}

/// A subscribed planner with its first outputs taken.
pub(super) fn planner() -> Planner {
    let mut planner = Planner::new(PlannerConfig { seed: 7, ..PlannerConfig::default() });
    planner.input(T0, Input::Subscribed { framework_id: FrameworkId::new("fw-1"), reconnected: false });
    planner.take_outputs();
    planner
}

pub(super) fn offer(n: u32, host: &str, resources: &str) -> Offer {
    offer_with(n, host, resources, &[])
}

pub(super) fn offer_with(n: u32, host: &str, resources: &str, attributes: &[(&str, &str)]) -> Offer {
    Offer {
        id: OfferId::new(format!("offer-{n}")),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new(format!("agent-{host}")),
        resources: Resources::parse(resources).expect("test resources parse"),
        agent: Arc::new(AgentDescription {
            unavailability: None,
            hostname: host.into(),
            attributes: attributes
                .iter()
                .map(|(name, value)| Attribute { name: (*name).into(), value: (*value).into() })
                .collect(),
            url: format!("http://{host}:5051"),
        }),
        allocation_role: Role::unreserved(),
    }
}

pub(super) fn status(task_id: &TaskId, state: TaskState) -> TaskStatus {
    TaskStatus::from_master(task_id.clone(), None, state, TaskStatusReason::Unspecified, "", 0)
}

pub(super) fn healthy(task_id: &TaskId, healthy: bool) -> TaskStatus {
    TaskStatus { healthy: Some(healthy), ..status(task_id, TaskState::TaskRunning) }
}

pub(super) fn launched(outputs: &[Output]) -> Vec<TaskInfo> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Launch { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub(super) fn killed(outputs: &[Output]) -> Vec<TaskId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Kill { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn events(outputs: &[Output]) -> Vec<&ServiceEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// The kind of each output, for checking order: `Persist(PutInstance)`, `Launch`, ...
pub(super) fn shape(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| match o {
            Output::Persist(op) => {
                let text = format!("{op:?}");
                format!("Persist({})", text.split(['(', ' ', '{']).next().unwrap_or(""))
            }
            Output::Event(e) => {
                let text = format!("{e:?}");
                format!("Event({})", text.split([' ', '{', '(']).next().unwrap_or(""))
            }
            other => format!("{other:?}").split([' ', '{', '(']).next().unwrap_or("").to_owned(),
        })
        .collect()
}

pub(super) fn deploy(planner: &mut Planner, now: u64, specs: Vec<AppSpec>) -> DeploymentId {
    match planner.command(now, Command::PutApps { apps: specs, force: false, expect: Default::default() }) {
        Ok(Reply::Deployment { id, .. }) => id,
        other => panic!("expected a deployment, got {other:?}"),
    }
}

/// Offers a big agent and answers every launch with TASK_RUNNING (healthy when asked).
/// Returns the tasks launched.
pub(super) fn launch_and_run(planner: &mut Planner, now: u64, host: &str, healthy_too: Option<bool>) -> Vec<TaskId> {
    planner.input(now, Input::Offers(vec![offer(1, host, "cpus:100;mem:100000;ports:[31000-32000]")]));
    let tasks = launched(&planner.take_outputs());
    for task in &tasks {
        let mut running = status(&task.task_id, TaskState::TaskRunning);
        running.healthy = healthy_too;
        planner.input(now, Input::Update(running));
    }
    planner.take_outputs();
    tasks.into_iter().map(|t| t.task_id).collect()
}
