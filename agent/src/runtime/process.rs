//! Task processes: the sandbox directory, the environment, spawning in a process group of
//! its own, waiting for the exit, and signalling the whole group.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use agora_proto::model::{FrameworkId, TaskInfo};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::{Event, ProcessEvent};
use crate::core::{KillSignal, ProcessExit, RunId};

/// Most sandboxes one task id may have under one framework (each reuse of the id gets a
/// fresh one); bounds the search for a free directory name.
const MAX_RUNS_PER_TASK_ID: u32 = 10_000;
/// Most `PORTn` variables set; `PORTS` still lists these first ports only, which keeps the
/// environment of a task holding a huge range within what `execve` accepts.
const MAX_PORT_VARIABLES: usize = 1_024;

/// What the runtime needs to start one task's process.
#[derive(Clone, Debug)]
pub(crate) struct LaunchSpec {
    pub run: RunId,
    pub framework_id: FrameworkId,
    pub task: TaskInfo,
    /// `<work_dir>/sandboxes`, canonical.
    pub sandboxes: PathBuf,
    pub hostname: String,
}

/// Starts the task's process and reports on it until it exits: `Started` or
/// `LaunchFailed`, then `Exited`. Runs as a task of its own so that the owner never waits
/// on the file system or on a process.
pub(crate) async fn supervise(spec: LaunchSpec, events: mpsc::Sender<Event>) {
    let run = spec.run;
    let report = |event| Event::Process { run, event };
    let (mut child, pid, sandbox) = match launch(&spec).await {
        Ok(launched) => launched,
        Err(error) => {
            tracing::info!(task_id = %spec.task.task_id, %error, "task launch failed");
            let _ = events.send(report(ProcessEvent::LaunchFailed { error: error.to_string() })).await;
            return;
        }
    };
    tracing::info!(task_id = %spec.task.task_id, pid, %sandbox, "task started");
    if events.send(report(ProcessEvent::Started { pid, sandbox })).await.is_err() {
        // The agent is stopping; it kills what is left itself.
        return;
    }
    let exit = match child.wait().await {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ProcessExit::Code(code),
            (None, Some(signal)) => ProcessExit::Signal(signal),
            // Neither an exit code nor a signal: not a state `wait` returns on Unix.
            (None, None) => ProcessExit::Code(-1),
        },
        Err(error) => {
            // The child can no longer be waited for, so it is treated as dead; the group is
            // killed below to make that true.
            tracing::warn!(task_id = %spec.task.task_id, %error, "cannot wait for the task's process");
            ProcessExit::Signal(Signal::SIGKILL as i32)
        }
    };
    // The task is its process group: anything the command left running in the background
    // dies with it, as a container's processes do when it stops.
    if let Err(error) = signal_group(pid, KillSignal::Kill)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, %error, "cannot kill what is left of the task's process group");
    }
    tracing::info!(task_id = %spec.task.task_id, pid, ?exit, "task exited");
    let _ = events.send(report(ProcessEvent::Exited(exit))).await;
}

/// Sends `signal` to the process group `pid`.
pub(crate) fn signal_group(pid: u32, signal: KillSignal) -> Result<(), nix::errno::Errno> {
    // Group 0 would be the agent's own group and 1 is init's: never a task's.
    let pgid = i32::try_from(pid).ok().filter(|p| *p > 1).ok_or(nix::errno::Errno::EINVAL)?;
    let signal = match signal {
        KillSignal::Term => Signal::SIGTERM,
        KillSignal::Kill => Signal::SIGKILL,
    };
    killpg(Pid::from_raw(pgid), signal)
}

async fn launch(spec: &LaunchSpec) -> io::Result<(tokio::process::Child, u32, String)> {
    let (dir, sandbox) = create_sandbox(&spec.sandboxes, &spec.framework_id, spec.task.task_id.as_str()).await?;
    let stdout = tokio::fs::File::create(dir.join("stdout")).await?.into_std().await;
    let stderr = tokio::fs::File::create(dir.join("stderr")).await?.into_std().await;
    let command_info = &spec.task.command;
    let mut command = match &command_info.shell {
        Some(shell) => {
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg("-c").arg(shell);
            command
        }
        None => {
            let (program, args) = command_info
                .argv
                .split_first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the command has neither a shell nor an argv"))?;
            let mut command = tokio::process::Command::new(program);
            command.args(args);
            command
        }
    };
    command
        .current_dir(&dir)
        .envs(environment(&spec.task, &dir, &spec.hostname))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // A group of its own, so that a kill reaches every process the task starts.
        .process_group(0)
        // The agent decides when a task dies, not the drop of a handle.
        .kill_on_drop(false);
    let child = command.spawn().map_err(|error| match &command_info.shell {
        Some(_) => io::Error::new(error.kind(), format!("cannot run /bin/sh: {error}")),
        None => io::Error::new(error.kind(), format!("cannot run {:?}: {error}", command_info.argv[0])),
    })?;
    let pid = child.id().ok_or_else(|| io::Error::other("the process exited before its id was read"))?;
    Ok((child, pid, sandbox))
}

/// Creates the task's sandbox, `<framework_id>/<task_id>` under `root`, and returns its path
/// and its name relative to `root`. A task id the framework used before on this agent gets
/// `<task_id>.run-2`, `.run-3`, …: the first name not taken. `create_dir` fails on an
/// existing directory, so two runs never share a sandbox even if a task is named like
/// another's second run.
async fn create_sandbox(root: &Path, framework_id: &FrameworkId, task_id: &str) -> io::Result<(PathBuf, String)> {
    let framework_dir = root.join(framework_id.as_str());
    tokio::fs::create_dir_all(&framework_dir).await?;
    for n in 1..=MAX_RUNS_PER_TASK_ID {
        let name = if n == 1 { task_id.to_owned() } else { format!("{task_id}.run-{n}") };
        let dir = framework_dir.join(&name);
        match tokio::fs::create_dir(&dir).await {
            Ok(()) => return Ok((dir, format!("{framework_id}/{name}"))),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other(format!("task {task_id} already has {MAX_RUNS_PER_TASK_ID} sandboxes")))
}

/// The task's environment on top of the agent's: the agent's variables first, then the
/// task's own, which win, since the framework knows best what its command needs.
pub(crate) fn environment(task: &TaskInfo, sandbox: &Path, hostname: &str) -> Vec<(String, String)> {
    let sandbox = sandbox.display().to_string();
    let mut env = vec![
        ("MESOS_SANDBOX".to_owned(), sandbox.clone()),
        ("AGORA_SANDBOX".to_owned(), sandbox),
        ("MESOS_TASK_ID".to_owned(), task.task_id.to_string()),
        ("AGORA_TASK_ID".to_owned(), task.task_id.to_string()),
        ("HOST".to_owned(), hostname.to_owned()),
    ];
    let ports: Vec<String> = task.resources.ports().iter().take(MAX_PORT_VARIABLES).map(|p| p.to_string()).collect();
    if let Some(first) = ports.first() {
        env.push(("PORT".to_owned(), first.clone()));
    }
    for (i, port) in ports.iter().enumerate() {
        env.push((format!("PORT{i}"), port.clone()));
    }
    if !ports.is_empty() {
        env.push(("PORTS".to_owned(), ports.join(",")));
    }
    env.extend(task.command.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::model::{AgentId, CommandInfo, Resources, TaskId};

    #[test]
    fn ports_become_numbered_variables_lowest_first_and_the_task_environment_wins() {
        let task = TaskInfo {
            task_id: TaskId::new("web"),
            name: "web".into(),
            agent_id: AgentId::new("a"),
            resources: Resources::parse("ports:[31005-31006,31001-31001]").expect("valid"),
            command: CommandInfo {
                shell: Some("true".into()),
                argv: vec![],
                environment: [("HOST".to_owned(), "mine".to_owned())].into_iter().collect(),
            },
            labels: vec![],
            kill_grace_period_ms: None,
        };
        let env = environment(&task, Path::new("/s"), "h");
        let get = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT"), Some("31001"));
        assert_eq!(get("PORT0"), Some("31001"));
        assert_eq!(get("PORT2"), Some("31006"));
        assert_eq!(get("PORTS"), Some("31001,31005,31006"));
        assert_eq!(get("MESOS_SANDBOX"), Some("/s"));
        assert_eq!(get("AGORA_TASK_ID"), Some("web"));
        assert_eq!(get("HOST"), Some("mine"));
    }

    #[test]
    fn signalling_group_zero_or_one_is_refused() {
        assert_eq!(signal_group(0, KillSignal::Kill), Err(nix::errno::Errno::EINVAL));
        assert_eq!(signal_group(1, KillSignal::Kill), Err(nix::errno::Errno::EINVAL));
    }
}
