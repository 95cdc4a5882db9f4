//! Translation between the agent-link messages (`pb`) and the core's inputs and outputs.
//! Malformed messages from the master are rejected here, naming the field.

use agora_proto::convert::{WireError, id};
use agora_proto::model::{
    AgentId, AgentInfo, FrameworkId, FrameworkInfo, TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason,
    TaskStatusSource, UpdateId,
};
use agora_proto::pb;

use crate::core::{Input, TaskView};

/// The registration for a new connection: the agent's id and tasks when it has registered
/// before, so the master keeps them; neither on a first registration.
pub(crate) fn registration<'a>(
    info: &AgentInfo,
    agent_id: Option<&AgentId>,
    tasks: impl Iterator<Item = TaskView> + 'a,
) -> pb::Register {
    pb::Register {
        info: Some(info.into()),
        agent_id: agent_id.map(ToString::to_string).unwrap_or_default(),
        tasks: tasks
            .map(|task| pb::AgentTask {
                framework_id: task.framework_id.to_string(),
                task: Some((&task.info).into()),
                state: pb::TaskState::from(task.state) as i32,
                healthy: task.healthy,
                ready: task.ready,
            })
            .collect(),
    }
}

pub(crate) fn status_update(framework_id: &FrameworkId, status: &TaskStatus) -> pb::AgentMessage {
    pb::AgentMessage {
        message: Some(pb::agent_message::Message::StatusUpdate(pb::StatusUpdate {
            framework_id: framework_id.to_string(),
            status: Some(status.into()),
        })),
    }
}

/// A master message that could not be understood, with the ids needed to answer it when
/// they could be read.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub error: WireError,
    pub task: Option<(FrameworkId, TaskId)>,
}

impl Rejected {
    /// The TASK_ERROR that tells the framework why its task was not run, when the task can
    /// be named. It needs no acknowledgement: the agent keeps no task to retry it for.
    pub fn into_error_update(self, agent_id: Option<AgentId>, now_ms: u64) -> Option<(FrameworkId, TaskStatus)> {
        let (framework_id, task_id) = self.task?;
        let status = TaskStatus {
            task_id,
            agent_id,
            state: TaskState::TaskError,
            reason: TaskStatusReason::TaskInvalid,
            source: TaskStatusSource::Agent,
            message: self.error.to_string(),
            timestamp_ms: now_ms,
            uuid: None,
            exit_code: None,
            signal: None,
            healthy: None,
            ready: None,
        };
        Some((framework_id, status))
    }
}

/// The core input a master message asks for; `None` for messages that need nothing (a
/// stray registration answer).
pub(crate) fn master_input(message: pb::MasterMessage) -> Result<Option<Input>, Rejected> {
    use pb::master_message::Message as M;
    let plain = |error: WireError| Rejected { error, task: None };
    Ok(Some(match message.message {
        Some(M::RunTask(run)) => run_task(run)?,
        Some(M::KillTask(kill)) => Input::KillTask {
            framework_id: id("kill_task.framework_id", &kill.framework_id).map_err(plain)?,
            task_id: id("kill_task.task_id", &kill.task_id).map_err(plain)?,
            grace_period_ms: (kill.grace_period_ms > 0).then_some(kill.grace_period_ms),
        },
        Some(M::Acknowledge(ack)) => Input::Acknowledge {
            framework_id: id("acknowledge.framework_id", &ack.framework_id).map_err(plain)?,
            task_id: id("acknowledge.task_id", &ack.task_id).map_err(plain)?,
            uuid: id::<UpdateId>("acknowledge.uuid", &ack.uuid).map_err(plain)?,
        },
        Some(M::ShutdownFramework(shutdown)) => Input::ShutdownFramework {
            framework_id: id("shutdown_framework.framework_id", &shutdown.framework_id).map_err(plain)?,
        },
        Some(M::Registered(_)) | Some(M::Refused(_)) => {
            tracing::warn!("registration answer on an established stream ignored");
            return Ok(None);
        }
        None => return Err(plain(WireError::new("message", "is required"))),
    }))
}

fn run_task(run: pb::RunTask) -> Result<Input, Rejected> {
    let plain = |error: WireError| Rejected { error, task: None };
    let framework_id: FrameworkId = id("run_task.framework_id", &run.framework_id).map_err(plain)?;
    let task = run.task.ok_or_else(|| plain(WireError::new("run_task.task", "is required")))?;
    let task_id: TaskId = id("run_task.task.task_id", &task.task_id).map_err(plain)?;
    let task = TaskInfo::try_from(task).map_err(|error| Rejected {
        error: error.in_field("run_task.task"),
        task: Some((framework_id.clone(), task_id)),
    })?;
    // The framework's description is kept with the task for the record only; a malformed
    // one is dropped rather than failing a task the master already accepted.
    let framework = run.framework.and_then(|info| FrameworkInfo::try_from(info).ok()).map(Box::new);
    Ok(Input::RunTask { framework_id, framework, task: Box::new(task) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_without_a_command_is_answered_with_task_error_naming_the_field() {
        let message = pb::MasterMessage {
            message: Some(pb::master_message::Message::RunTask(pb::RunTask {
                framework_id: "f".into(),
                framework: None,
                task: Some(pb::TaskInfo { task_id: "t".into(), agent_id: "a".into(), ..Default::default() }),
            })),
        };
        let rejected = master_input(message).expect_err("no command");
        assert_eq!(rejected.error.field, "run_task.task.command");
        let (framework_id, status) = rejected.into_error_update(None, 5).expect("the task can be named");
        assert_eq!(framework_id, FrameworkId::new("f"));
        assert_eq!(status.state, TaskState::TaskError);
        assert_eq!(status.uuid, None);
    }

    #[test]
    fn a_kill_with_a_zero_grace_period_uses_the_default() {
        let message = pb::MasterMessage {
            message: Some(pb::master_message::Message::KillTask(pb::KillTask {
                framework_id: "f".into(),
                task_id: "t".into(),
                grace_period_ms: 0,
            })),
        };
        let input = master_input(message).expect("valid").expect("an input");
        assert_eq!(
            input,
            Input::KillTask { framework_id: FrameworkId::new("f"), task_id: TaskId::new("t"), grace_period_ms: None }
        );
    }
}
