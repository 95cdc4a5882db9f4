//! Tasks run as their user, with an environment of their own, out of the agent's
//! checkpoint. Run as root (as CI does: there a missing privilege fails the test instead of
//! skipping it).

#![allow(clippy::unwrap_used)]

mod common;

use agora_proto::model::TaskState;
use agora_proto::pb;
use common::*;

fn root_allowed(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: CI runs the user tests as root");
    eprintln!("{test}: skipped, not root (switching users needs it)");
    false
}

async fn cluster(user: &str, tweak: impl FnOnce(&mut agora_agent::AgentConfig)) -> (FakeMaster, TestAgent) {
    let mut master = FakeMaster::start().await;
    master.user = user.to_owned();
    let agent = TestAgent::start(&master, tweak).await;
    master.next_registration().await;
    (master, agent)
}

fn stdout(agent: &TestAgent, task: &str) -> String {
    std::fs::read_to_string(agent.sandbox(&format!("{task}/stdout"))).unwrap()
}

#[tokio::test]
async fn a_task_runs_as_its_frameworks_user_in_a_sandbox_that_user_owns() {
    if !root_allowed("framework user") {
        return;
    }
    let (mut master, mut agent) = cluster("nobody", |_| {}).await;
    master.run_task(shell_task("who", "id -un; echo $HOME $USER; touch mine && stat -c %U mine ."));
    master.updates_until("who", TaskState::TaskFinished).await;
    let out = stdout(&agent, "who");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "nobody", "{out}");
    assert!(lines[1].ends_with(" nobody"), "{out}");
    assert_eq!(&lines[2..], ["nobody", "nobody"], "{out}");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_tasks_own_user_wins_over_its_frameworks() {
    if !root_allowed("command user") {
        return;
    }
    let (mut master, mut agent) = cluster("root", |config| config.allow_root_tasks = true).await;
    let mut task = shell_task("own", "id -u");
    task.command.as_mut().unwrap().user = "nobody".into();
    master.run_task(task);
    master.updates_until("own", TaskState::TaskFinished).await;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    assert_eq!(stdout(&agent, "own").trim(), nobody.to_string());
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_root_agent_refuses_a_root_task_by_default_and_runs_it_when_allowed_or_as_the_stand_in() {
    if !root_allowed("root task") {
        return;
    }
    let (mut master, mut agent) = cluster("root", |_| {}).await;
    master.run_task(shell_task("rooted", "id -u"));
    let failed = master.updates_until("rooted", TaskState::TaskFailed).await.pop().unwrap();
    assert_eq!(failed.reason, pb::TaskStatusReason::ReasonCommandLaunchFailed as i32);
    assert!(failed.message.contains("refuses to run tasks as root"), "{}", failed.message);
    assert!(failed.message.contains("--allow-root-tasks"), "{}", failed.message);
    agent.stop().await.unwrap();

    let (mut master, mut agent) = cluster("root", |config| config.allow_root_tasks = true).await;
    master.run_task(shell_task("rooted", "id -u"));
    master.updates_until("rooted", TaskState::TaskFinished).await;
    assert_eq!(stdout(&agent, "rooted").trim(), "0");
    agent.stop().await.unwrap();

    let (mut master, mut agent) = cluster("root", |config| config.root_tasks_as = Some("nobody".into())).await;
    master.run_task(shell_task("rooted", "id -un"));
    master.updates_until("rooted", TaskState::TaskFinished).await;
    assert_eq!(stdout(&agent, "rooted").trim(), "nobody");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_user_fails_the_task_naming_the_user() {
    if !root_allowed("unknown user") {
        return;
    }
    let (mut master, mut agent) = cluster("agora-no-such-user", |_| {}).await;
    master.run_task(shell_task("ghost", "true"));
    let failed = master.updates_until("ghost", TaskState::TaskFailed).await.pop().unwrap();
    assert!(failed.message.contains("user \"agora-no-such-user\": no such user on this agent"), "{}", failed.message);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_inherits_nothing_of_the_agents_environment_and_cannot_read_its_checkpoint() {
    if !root_allowed("environment") {
        return;
    }
    // The test process (the agent's) has cargo's variables; the task must not.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok() || std::env::var("CARGO").is_ok(), "cargo's environment");
    let (mut master, mut agent) = cluster("nobody", |_| {}).await;
    let mut task =
        shell_task("env", "env | cut -d= -f1 | sort; cat ../../../meta/journal >/dev/null 2>&1 && echo READ; true");
    task.command.as_mut().unwrap().environment.insert("MINE".into(), "1".into());
    master.run_task(task);
    master.updates_until("env", TaskState::TaskFinished).await;
    let out = stdout(&agent, "env");
    let names: Vec<&str> = out.lines().collect();
    assert!(!names.iter().any(|n| n.starts_with("CARGO") || n.starts_with("RUST")), "{out}");
    for expected in ["PATH", "HOME", "USER", "MESOS_SANDBOX", "MESOS_TASK_ID", "MINE"] {
        assert!(names.contains(&expected), "{expected} in {out}");
    }
    assert!(!names.contains(&"READ"), "the task read the agent's journal");
    agent.stop().await.unwrap();
}
