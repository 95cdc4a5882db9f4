//! End to end: killing tasks, and agents dying under running tasks. A framework built on
//! the SDK watches what a real master and real agents report.

mod common;

use std::time::Duration;

use agora_proto::model::{TaskId, TaskState};
use common::framework::Framework;
use common::{Cluster, WAIT};

/// A master that notices a silent agent within a second (plus `extra` flags), one agent
/// process, and a framework whose one task runs `command`; returns once it is RUNNING.
/// Tasks outliving a SIGKILLed agent are cleaned up when the cluster is dropped.
async fn one_agent_running(extra: &[&str], command: &str) -> (Cluster, usize, Framework) {
    let mut flags = vec!["--agent-heartbeat-interval", "200ms", "--agent-timeout", "1s"];
    flags.extend_from_slice(extra);
    let mut cluster = Cluster::master_only(&flags).await;
    let agent = cluster.add_agent("agent", "cpus:1;mem:256;disk:100;ports:[31000-31010]");
    cluster.wait_for_agents(1).await;
    let mut framework = Framework::start(&cluster.master, command);
    framework.wait_for(TaskState::TaskRunning).await;
    (cluster, agent, framework)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_task_reports_task_killed_and_its_process_is_gone() {
    let cluster = Cluster::local(1).await;
    let marker = cluster.dir.path().join("pid");
    let command = format!("echo $$ > {}; exec sleep 1000", marker.display());
    let mut framework = Framework::start(&cluster.master, &command);
    let running = framework.wait_for(TaskState::TaskRunning).await;

    framework.handle.kill(&TaskId::new("sleeper"), running.agent_id.as_ref()).await.expect("kill");
    let killed = framework.wait_for(TaskState::TaskKilled).await;
    assert_eq!(killed.task_id.as_str(), "sleeper");

    let pid: i32 = std::fs::read_to_string(&marker).expect("pid file").trim().parse().expect("a pid");
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ");
    assert!(!alive, "process {pid} outlived its kill");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_agent_turns_its_tasks_unreachable_at_the_framework() {
    let (mut cluster, agent, mut framework) = one_agent_running(&[], "sleep 1000").await;

    cluster.procs[agent].kill();
    let unreachable = framework.wait_for(TaskState::TaskUnreachable).await;
    assert_eq!(unreachable.task_id.as_str(), "sleeper");

    let state = cluster.state().await;
    assert_eq!(state["unreachable_slaves"], 1, "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_agora_run_kills_its_task() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let cluster = Cluster::local(1).await;
    let mut child = Command::new(common::AGORA)
        .args(["run", "--master", &cluster.master, "--", "sleep", "1000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agora run");
    // One instance: the task's output is on stdout, the state changes on stderr.
    let stdout = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("TASK_RUNNING")) {
        seen.push(lines.recv_timeout(WAIT).unwrap_or_else(|_| panic!("no TASK_RUNNING in {seen:?}")));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    while !seen.iter().any(|l| l.contains("TASK_KILLED")) {
        seen.push(lines.recv_timeout(WAIT).unwrap_or_else(|_| panic!("no TASK_KILLED in {seen:?}")));
    }
    let deadline = std::time::Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(std::time::Instant::now() < deadline, "agora run did not exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_agent_that_returns_brings_its_tasks_back_as_running() {
    let (cluster, agent, mut framework) = one_agent_running(&[], "sleep 1000").await;

    cluster.procs[agent].signal("STOP");
    framework.wait_for(TaskState::TaskUnreachable).await;
    cluster.procs[agent].signal("CONT");
    let back = framework.wait_for(TaskState::TaskRunning).await;
    assert_eq!(back.task_id.as_str(), "sleeper");
    cluster.wait_for_agents(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_paused_past_the_reregister_timeout_is_gone_and_comes_back_afresh() {
    let (cluster, agent, mut framework) = one_agent_running(&["--agent-reregister-timeout", "1s"], "sleep 1000").await;
    let old_id = cluster.state().await["slaves"][0]["id"].clone();

    cluster.procs[agent].signal("STOP");
    framework.wait_for(TaskState::TaskUnreachable).await;
    let gone = framework.wait_for(TaskState::TaskGone).await;
    assert_eq!(gone.task_id.as_str(), "sleeper");
    cluster.procs[agent].signal("CONT");

    // Refused under its old id, the agent kills what it ran and registers as a new agent.
    let url = cluster.url("/state");
    common::eventually("the agent to register afresh", async || {
        let state = common::get_json(&url).await?;
        let agents = state["slaves"].as_array()?;
        (agents.len() == 1 && agents[0]["id"] != old_id && agents[0]["active"] == true).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_framework_leaves_its_tasks_running_within_its_failover_timeout() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let cluster = Cluster::local(1).await;
    let mut child = Command::new(common::AGORA)
        .args(["run", "--master", &cluster.master, "--name", "orphan", "--", "sleep", "1000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agora run");
    // One instance: the state changes are on stderr.
    let stdout = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let line = lines.next().expect("agora run printed a line").expect("utf-8");
        if line.contains("TASK_RUNNING") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no TASK_RUNNING");
    }

    // SIGKILL: the framework cannot clean up; the master must keep its task running.
    child.kill().expect("kill");
    child.wait().expect("reap");
    let url = cluster.url("/state");
    let state = common::eventually("the framework to be seen as disconnected", async || {
        let state = common::get_json(&url).await?;
        let framework = state["frameworks"].as_array()?.iter().find(|f| f["name"] == "orphan")?.clone();
        (framework["active"] == false).then_some(framework)
    })
    .await;
    assert_eq!(state["tasks"][0]["state"], "TASK_RUNNING", "{state}");
    assert_eq!(state["failover_timeout"], 60.0, "{state}");
    let agents = common::get_json(&url).await.expect("/state")["slaves"].clone();
    assert!(agents[0]["used_resources"]["cpus"].as_f64().is_some_and(|c| c > 0.0), "{agents}");
}
