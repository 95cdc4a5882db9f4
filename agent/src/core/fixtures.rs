//! What the core's handler tests share: a fixed seed and agent, a small configuration and
//! task descriptions.

use agora_proto::model::{
    AgentId, CommandInfo, FrameworkId, Resources, TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason,
    TaskStatusSource, UpdateId,
};

use super::CoreConfig;

pub const SEED: u64 = 42;
pub const AGENT: &str = "agent-1";

pub fn config() -> CoreConfig {
    CoreConfig {
        default_kill_grace_period_ms: 3_000,
        update_retry_initial_ms: 1_000,
        update_retry_max_ms: 60_000,
        max_tasks: 10,
    }
}

pub fn fw(id: &str) -> FrameworkId {
    FrameworkId::new(id)
}

/// A task of `agent-1` running `shell`.
pub fn task_running(id: &str, shell: &str) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        agent_id: AgentId::new(AGENT),
        resources: Resources::parse("cpus:0.1;mem:32").expect("valid"),
        command: CommandInfo { shell: Some(shell.into()), ..CommandInfo::default() },
        labels: vec![],
        kill_grace_period_ms: None,
        health_check: None,
        readiness_check: None,
    }
}

/// A plain agent-sourced update of `agent-1`, as the core emits it.
pub fn status(id: &str, state: TaskState, now_ms: u64, uuid: &UpdateId) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(id),
        agent_id: Some(AgentId::new(AGENT)),
        state,
        reason: TaskStatusReason::Unspecified,
        source: TaskStatusSource::Agent,
        message: String::new(),
        timestamp_ms: now_ms,
        uuid: Some(uuid.clone()),
        exit_code: None,
        signal: None,
        healthy: None,
        ready: None,
    }
}
