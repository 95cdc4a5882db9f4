//! A builder for [`TaskInfo`], validated by the same rules the master applies, so that a
//! mistake shows up where the task is written rather than as a TASK_ERROR later.

use agora_proto::model::{AgentId, CommandInfo, FetchUri, HealthCheck, ReadinessCheck, Resources, TaskId, TaskInfo};
use agora_proto::pb;

use crate::Error;

/// Builds one task: its command (shell or argv), environment, labels, kill grace period,
/// and the health and readiness checks the agent runs on it.
#[derive(Clone, Debug)]
pub struct TaskBuilder {
    task_id: TaskId,
    name: String,
    command: CommandInfo,
    labels: Vec<(String, String)>,
    kill_grace_period_ms: Option<u64>,
    health_check: Option<HealthCheck>,
    readiness_check: Option<ReadinessCheck>,
}

impl TaskBuilder {
    /// A task run as `/bin/sh -c <command>`.
    pub fn shell(task_id: impl Into<TaskId>, command: impl Into<String>) -> Self {
        let command = CommandInfo { shell: Some(command.into()), ..CommandInfo::default() };
        Self::with_command(task_id.into(), command)
    }

    /// A task whose `argv[0]` is executed directly, without a shell.
    pub fn argv<I, A>(task_id: impl Into<TaskId>, argv: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        let command = CommandInfo { argv: argv.into_iter().map(Into::into).collect(), ..CommandInfo::default() };
        Self::with_command(task_id.into(), command)
    }

    fn with_command(task_id: TaskId, command: CommandInfo) -> Self {
        Self {
            name: task_id.to_string(),
            task_id,
            command,
            labels: Vec::new(),
            kill_grace_period_ms: None,
            health_check: None,
            readiness_check: None,
        }
    }

    /// A human-readable name; the task id when not set.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets one environment variable of the command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.command.environment.insert(key.into(), value.into());
        self
    }

    /// The user the command runs as on the agent; the framework's user when never set.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.command.user = Some(user.into());
        self
    }

    /// A file the agent fetches into the sandbox before the command starts (in the order
    /// given).
    pub fn fetch(mut self, uri: FetchUri) -> Self {
        self.command.uris.push(uri);
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// How long a kill waits between SIGTERM and SIGKILL; the agent's default when unset.
    pub fn kill_grace_period_ms(mut self, grace_ms: u64) -> Self {
        self.kill_grace_period_ms = (grace_ms > 0).then_some(grace_ms);
        self
    }

    /// A health check the agent runs while the task runs: updates then carry `healthy`, and
    /// the agent kills the task after the check's `max_consecutive_failures`.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// A readiness check the agent runs until it passes once; the RUNNING update that
    /// follows carries `ready: Some(true)`.
    pub fn readiness_check(mut self, check: ReadinessCheck) -> Self {
        self.readiness_check = Some(check);
        self
    }

    /// The task, to run on `agent_id` with `resources` (typically a piece from
    /// [`carve`](crate::carve)). Fails with [`Error::InvalidTask`] naming the field the
    /// master would reject.
    pub fn build(self, agent_id: &AgentId, resources: Resources) -> Result<TaskInfo, Error> {
        let task = TaskInfo {
            task_id: self.task_id,
            name: self.name,
            agent_id: agent_id.clone(),
            resources,
            command: self.command,
            labels: self.labels,
            kill_grace_period_ms: self.kill_grace_period_ms,
            health_check: self.health_check,
            readiness_check: self.readiness_check,
        };
        // Round-tripping through the wire form runs exactly the master's validation.
        TaskInfo::try_from(pb::TaskInfo::from(&task)).map_err(|e| Error::InvalidTask(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_task_carries_its_environment_labels_and_grace_period() {
        let task = TaskBuilder::shell("hello-0", "echo hi")
            .name("hello")
            .env("GREETING", "hi")
            .label("team", "a")
            .kill_grace_period_ms(3_000)
            .build(&AgentId::new("agent-1"), Resources::parse("cpus:0.1;mem:32").expect("valid"))
            .expect("valid task");
        assert_eq!(task.command.shell.as_deref(), Some("echo hi"));
        assert_eq!(task.command.environment.get("GREETING").map(String::as_str), Some("hi"));
        assert_eq!(task.labels, vec![("team".to_owned(), "a".to_owned())]);
        assert_eq!(task.kill_grace_period_ms, Some(3_000));
        assert_eq!(task.name, "hello");
    }

    #[test]
    fn an_argv_task_is_named_after_its_id_by_default() {
        let task =
            TaskBuilder::argv("t1", ["/bin/echo", "a b"]).build(&AgentId::new("a"), Resources::new()).expect("valid");
        assert_eq!(task.command.argv, vec!["/bin/echo", "a b"]);
        assert_eq!(task.command.shell, None);
        assert_eq!(task.name, "t1");
    }

    #[test]
    fn a_task_carries_its_health_and_readiness_checks_and_a_bad_one_names_its_field() {
        let agent = AgentId::new("a");
        let task = TaskBuilder::shell("web", "serve")
            .health_check(HealthCheck::tcp(8080))
            .readiness_check(ReadinessCheck::http(8080, "/ready"))
            .build(&agent, Resources::new())
            .expect("valid");
        assert_eq!(task.health_check, Some(HealthCheck::tcp(8080)));
        assert_eq!(task.readiness_check, Some(ReadinessCheck::http(8080, "/ready")));
        let bad = TaskBuilder::shell("web", "serve")
            .health_check(HealthCheck { interval_ms: 0, ..HealthCheck::http(8080, "/health") })
            .build(&agent, Resources::new());
        assert!(matches!(&bad, Err(Error::InvalidTask(m)) if m.contains("health_check.interval_ms")), "{bad:?}");
        let bad = TaskBuilder::shell("web", "serve")
            .readiness_check(ReadinessCheck::http(8080, "ready"))
            .build(&agent, Resources::new());
        assert!(matches!(&bad, Err(Error::InvalidTask(m)) if m.contains("readiness_check.path")), "{bad:?}");
    }

    #[test]
    fn invalid_tasks_name_the_offending_field() {
        let empty_argv = TaskBuilder::argv("t1", Vec::<String>::new()).build(&AgentId::new("a"), Resources::new());
        assert!(matches!(&empty_argv, Err(Error::InvalidTask(m)) if m.contains("command.argv")), "{empty_argv:?}");
        let bad_id = TaskBuilder::shell("a/b", "true").build(&AgentId::new("a"), Resources::new());
        assert!(matches!(&bad_id, Err(Error::InvalidTask(m)) if m.contains("task_id")), "{bad_id:?}");
        let bad_env = TaskBuilder::shell("t", "true").env("A=B", "c").build(&AgentId::new("a"), Resources::new());
        assert!(matches!(&bad_env, Err(Error::InvalidTask(m)) if m.contains("environment")), "{bad_env:?}");
        let bad_fetch = TaskBuilder::shell("t", "true")
            .fetch(FetchUri::plain("http://repo/app.tgz"))
            .fetch(FetchUri::plain("ftp://repo/app.tgz"))
            .build(&AgentId::new("a"), Resources::new());
        assert!(matches!(&bad_fetch, Err(Error::InvalidTask(m)) if m.contains("command.uris[1].uri")), "{bad_fetch:?}");
    }
}
