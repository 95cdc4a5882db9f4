//! Task states, reasons and status updates, following Mesos.

use super::{AgentId, TaskId, UpdateId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    TaskStaging,
    TaskStarting,
    TaskRunning,
    TaskKilling,
    TaskFinished,
    TaskFailed,
    TaskKilled,
    TaskError,
    TaskLost,
    TaskDropped,
    TaskUnreachable,
    TaskGone,
    TaskGoneByOperator,
    TaskUnknown,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::TaskStaging,
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskKilling,
        TaskState::TaskFinished,
        TaskState::TaskFailed,
        TaskState::TaskKilled,
        TaskState::TaskError,
        TaskState::TaskLost,
        TaskState::TaskDropped,
        TaskState::TaskUnreachable,
        TaskState::TaskGone,
        TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown,
    ];

    /// A terminal state is final: the task's resources are free and it never runs again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::TaskFinished
                | TaskState::TaskFailed
                | TaskState::TaskKilled
                | TaskState::TaskError
                | TaskState::TaskLost
                | TaskState::TaskDropped
                | TaskState::TaskGone
                | TaskState::TaskGoneByOperator
        )
    }

    /// The name used on the wire and in JSON, as Mesos spells it (`TASK_RUNNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::TaskStaging => "TASK_STAGING",
            TaskState::TaskStarting => "TASK_STARTING",
            TaskState::TaskRunning => "TASK_RUNNING",
            TaskState::TaskKilling => "TASK_KILLING",
            TaskState::TaskFinished => "TASK_FINISHED",
            TaskState::TaskFailed => "TASK_FAILED",
            TaskState::TaskKilled => "TASK_KILLED",
            TaskState::TaskError => "TASK_ERROR",
            TaskState::TaskLost => "TASK_LOST",
            TaskState::TaskDropped => "TASK_DROPPED",
            TaskState::TaskUnreachable => "TASK_UNREACHABLE",
            TaskState::TaskGone => "TASK_GONE",
            TaskState::TaskGoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::TaskUnknown => "TASK_UNKNOWN",
        }
    }

    /// Whether a task may move from `self` to `next`. Terminal states are final; a task
    /// never goes back to staging or starting once it has run; an unreachable task may
    /// come back to running when its agent returns.
    pub fn may_become(self, next: TaskState) -> bool {
        use TaskState::*;
        if self.is_terminal() {
            return false;
        }
        match next {
            TaskStaging => false,
            TaskStarting => self == TaskStaging,
            TaskRunning => matches!(self, TaskStaging | TaskStarting | TaskRunning | TaskUnreachable),
            TaskKilling => matches!(self, TaskStaging | TaskStarting | TaskRunning | TaskKilling | TaskUnreachable),
            TaskUnknown => true,
            _ => true,
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatusReason {
    #[default]
    Unspecified,
    CommandExited,
    CommandLaunchFailed,
    TaskKilled,
    TaskInvalid,
    InvalidOffers,
    ResourcesExceededOffer,
    AgentUnknown,
    AgentRemoved,
    AgentDisconnected,
    AgentRestarted,
    Reconciliation,
    FrameworkRemoved,
    TaskUnknown,
    TaskKilledDuringLaunch,
    DuplicateTaskId,
    /// A RUNNING update whose news is the task's health.
    TaskHealthCheckStatusUpdated,
    /// A RUNNING update whose news is the task's readiness.
    TaskCheckStatusUpdated,
    /// The task's processes went over its memory limit and were OOM-killed.
    ContainerLimitationMemory,
    /// The task's sandbox grew over its disk resource.
    ContainerLimitationDisk,
    /// An ACL does not let the framework's principal run the task as its user.
    TaskUnauthorized,
}

impl TaskStatusReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatusReason::Unspecified => "REASON_UNSPECIFIED",
            TaskStatusReason::CommandExited => "REASON_COMMAND_EXITED",
            TaskStatusReason::CommandLaunchFailed => "REASON_COMMAND_LAUNCH_FAILED",
            TaskStatusReason::TaskKilled => "REASON_TASK_KILLED",
            TaskStatusReason::TaskInvalid => "REASON_TASK_INVALID",
            TaskStatusReason::InvalidOffers => "REASON_INVALID_OFFERS",
            TaskStatusReason::ResourcesExceededOffer => "REASON_RESOURCES_EXCEEDED_OFFER",
            TaskStatusReason::AgentUnknown => "REASON_AGENT_UNKNOWN",
            TaskStatusReason::AgentRemoved => "REASON_AGENT_REMOVED",
            TaskStatusReason::AgentDisconnected => "REASON_AGENT_DISCONNECTED",
            TaskStatusReason::AgentRestarted => "REASON_AGENT_RESTARTED",
            TaskStatusReason::Reconciliation => "REASON_RECONCILIATION",
            TaskStatusReason::FrameworkRemoved => "REASON_FRAMEWORK_REMOVED",
            TaskStatusReason::TaskUnknown => "REASON_TASK_UNKNOWN",
            TaskStatusReason::TaskKilledDuringLaunch => "REASON_TASK_KILLED_DURING_LAUNCH",
            TaskStatusReason::DuplicateTaskId => "REASON_DUPLICATE_TASK_ID",
            TaskStatusReason::TaskHealthCheckStatusUpdated => "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
            TaskStatusReason::TaskCheckStatusUpdated => "REASON_TASK_CHECK_STATUS_UPDATED",
            TaskStatusReason::ContainerLimitationMemory => "REASON_CONTAINER_LIMITATION_MEMORY",
            TaskStatusReason::ContainerLimitationDisk => "REASON_CONTAINER_LIMITATION_DISK",
            TaskStatusReason::TaskUnauthorized => "REASON_TASK_UNAUTHORIZED",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatusSource {
    #[default]
    Master,
    Agent,
    Executor,
}

impl TaskStatusSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatusSource::Master => "SOURCE_MASTER",
            TaskStatusSource::Agent => "SOURCE_AGENT",
            TaskStatusSource::Executor => "SOURCE_EXECUTOR",
        }
    }
}

/// One status update of one task.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub agent_id: Option<AgentId>,
    pub state: TaskState,
    pub reason: TaskStatusReason,
    pub source: TaskStatusSource,
    pub message: String,
    pub timestamp_ms: u64,
    /// Present on reliable updates, which the framework must acknowledge.
    pub uuid: Option<UpdateId>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Present once the task has a health check result: Mesos' TaskStatus.healthy.
    /// Defaulted: absent from updates checkpointed before checks existed.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Present once a readiness check has passed (true) on tasks that have one.
    #[serde(default)]
    pub ready: Option<bool>,
}

impl TaskStatus {
    /// A status the master produces itself (never acknowledged, never retried).
    pub fn from_master(
        task_id: TaskId,
        agent_id: Option<AgentId>,
        state: TaskState,
        reason: TaskStatusReason,
        message: impl Into<String>,
        timestamp_ms: u64,
    ) -> Self {
        Self {
            task_id,
            agent_id,
            state,
            reason,
            source: TaskStatusSource::Master,
            message: message.into(),
            timestamp_ms,
            uuid: None,
            exit_code: None,
            signal: None,
            healthy: None,
            ready: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;

    #[test]
    fn terminal_states_are_final() {
        for state in super::TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(!state.may_become(TaskRunning), "{state}");
        }
    }

    #[test]
    fn tasks_move_forward_and_come_back_from_unreachable() {
        assert!(TaskStaging.may_become(TaskStarting));
        assert!(TaskStarting.may_become(TaskRunning));
        assert!(!TaskRunning.may_become(TaskStarting));
        assert!(TaskUnreachable.may_become(TaskRunning));
        assert!(TaskRunning.may_become(TaskFinished));
    }
}
