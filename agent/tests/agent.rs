//! The agent against a fake master, with real processes, real sandboxes and real HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use agora_agent::Masters;
use agora_proto::model::TaskState;
use agora_proto::pb;
use common::*;

fn reason_of(status: &pb::TaskStatus) -> pb::TaskStatusReason {
    pb::TaskStatusReason::try_from(status.reason).unwrap()
}

fn states(statuses: &[pb::TaskStatus]) -> Vec<TaskState> {
    statuses.iter().map(state_of).collect()
}

/// Starts a master and an agent and waits for the agent's first registration.
async fn cluster() -> (FakeMaster, TestAgent) {
    let mut master = FakeMaster::start().await;
    let agent = TestAgent::start(&master, |_| {}).await;
    let register = master.next_registration().await;
    assert_eq!(register.agent_id, "", "a first registration names no id");
    (master, agent)
}

/// Reads the agent's `/state` and returns the pid of `task_id`.
async fn pid_of(agent: &TestAgent, task_id: &str) -> i32 {
    let state: serde_json::Value = reqwest::get(agent.url("/state")).await.unwrap().json().await.unwrap();
    let task = state["tasks"].as_array().unwrap().iter().find(|t| t["id"] == task_id).expect("the task is in /state");
    i32::try_from(task["pid"].as_u64().expect("a running task has a pid")).unwrap()
}

#[tokio::test]
async fn a_task_reports_starting_running_finished_in_order_resends_until_acknowledged_and_keeps_its_output() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("echo", "echo hello from agora"));

    let first = master.next_update().await;
    let starting = first.status.clone().unwrap();
    assert_eq!(state_of(&starting), TaskState::TaskStarting);
    assert_eq!(first.framework_id, FRAMEWORK);
    assert_eq!(starting.agent_id, AGENT_ID);
    assert!(!starting.uuid.is_empty());
    // Not acknowledged: the same update comes again, with the same uuid.
    let again = master.next_update().await.status.unwrap();
    assert_eq!(again, starting);
    master.ack(&first);

    let rest = master.updates_until("echo", TaskState::TaskFinished).await;
    assert_eq!(states(&rest), [TaskState::TaskRunning, TaskState::TaskFinished]);
    let finished = &rest[1];
    assert_eq!(finished.exit_code, Some(0));
    assert_eq!(finished.message, "Command exited with status 0");
    assert_ne!(rest[0].uuid, starting.uuid);
    assert_ne!(rest[1].uuid, rest[0].uuid);
    assert_eq!(std::fs::read_to_string(agent.sandbox("echo/stdout")).unwrap(), "hello from agora\n");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_command_exiting_with_status_3_fails_the_task_with_exit_code_3() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("three", "echo oops >&2; exit 3"));
    let statuses = master.updates_until("three", TaskState::TaskFailed).await;
    assert_eq!(states(&statuses), [TaskState::TaskStarting, TaskState::TaskRunning, TaskState::TaskFailed]);
    let failed = &statuses[2];
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.message, "Command exited with status 3");
    assert_eq!(reason_of(failed), pb::TaskStatusReason::ReasonCommandExited);
    assert_eq!(std::fs::read_to_string(agent.sandbox("three/stderr")).unwrap(), "oops\n");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn killing_a_task_kills_its_whole_process_group_and_reports_killed() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("sleepy", "echo $$ > pids; sleep 1000 & echo $! >> pids; wait"));
    master.updates_until("sleepy", TaskState::TaskRunning).await;
    let pids_file = agent.sandbox("sleepy/pids");
    eventually("both pids written", || std::fs::read_to_string(&pids_file).is_ok_and(|s| s.lines().count() == 2)).await;
    let pids: Vec<i32> = std::fs::read_to_string(&pids_file).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.iter().all(|pid| !process_gone(*pid)), "both processes run before the kill");

    master.kill_task("sleepy", 0);
    let statuses = master.updates_until("sleepy", TaskState::TaskKilled).await;
    let killed = statuses.last().unwrap();
    assert_eq!(reason_of(killed), pb::TaskStatusReason::ReasonTaskKilled);
    assert_eq!(killed.signal, Some(15), "SIGTERM was enough: {killed:?}");
    for pid in pids {
        eventually(&format!("process {pid} gone"), || process_gone(pid)).await;
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_that_ignores_sigterm_is_killed_with_sigkill_after_the_grace_period() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("stubborn", "trap '' TERM; echo $$ > ready; while true; do sleep 1; done"));
    master.updates_until("stubborn", TaskState::TaskRunning).await;
    let ready = agent.sandbox("stubborn/ready");
    eventually("the trap installed", || std::fs::read_to_string(&ready).is_ok_and(|s| s.ends_with('\n'))).await;
    let pid: i32 = std::fs::read_to_string(&ready).unwrap().trim().parse().unwrap();

    let killed_at = Instant::now();
    master.kill_task("stubborn", 300);
    let statuses = master.updates_until("stubborn", TaskState::TaskKilled).await;
    assert!(killed_at.elapsed().as_millis() >= 300, "SIGKILL waited for the grace period");
    let killed = statuses.last().unwrap();
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    assert_eq!(killed.message, "Task killed: command terminated by signal 9 (SIGKILL)");
    eventually("the shell gone", || process_gone(pid)).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_task_gets_its_ports_sandbox_task_id_and_host_in_its_environment() {
    let (mut master, mut agent) = cluster().await;
    let mut task = shell_task(
        "env",
        r#"echo "$PORT $PORT0 $PORT1 $PORTS $MESOS_TASK_ID $AGORA_TASK_ID $HOST $EXTRA"; pwd; echo "$MESOS_SANDBOX"; echo "$AGORA_SANDBOX""#,
    );
    let mut resources = task.resources.take().unwrap();
    resources.pools[0].ports = vec![pb::Range { begin: 31_007, end: 31_007 }, pb::Range { begin: 31_002, end: 31_002 }];
    task.resources = Some(resources);
    task.command.as_mut().unwrap().environment.insert("EXTRA".into(), "x=1".into());
    master.run_task(task);
    master.updates_until("env", TaskState::TaskFinished).await;

    let output = std::fs::read_to_string(agent.sandbox("env/stdout")).unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "31002 31002 31007 31002,31007 env env 127.0.0.1 x=1");
    let sandbox = std::fs::canonicalize(agent.sandbox("env")).unwrap();
    assert_eq!(lines[1..], [sandbox.to_str().unwrap(); 3]);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_executable_fails_the_task_with_command_launch_failed() {
    let (mut master, mut agent) = cluster().await;
    let mut task = shell_task("missing", "");
    task.command = Some(pb::CommandInfo { argv: vec!["/no/such/program".into(), "arg".into()], ..Default::default() });
    master.run_task(task);
    let statuses = master.updates_until("missing", TaskState::TaskFailed).await;
    assert_eq!(states(&statuses), [TaskState::TaskStarting, TaskState::TaskFailed]);
    let failed = &statuses[1];
    assert_eq!(reason_of(failed), pb::TaskStatusReason::ReasonCommandLaunchFailed);
    assert!(failed.message.contains("/no/such/program"), "{}", failed.message);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn argv_commands_run_without_a_shell() {
    let (mut master, mut agent) = cluster().await;
    let mut task = shell_task("argv", "");
    task.command =
        Some(pb::CommandInfo { argv: vec!["echo".into(), "$HOME".into(), "two words".into()], ..Default::default() });
    master.run_task(task);
    master.updates_until("argv", TaskState::TaskFinished).await;
    assert_eq!(std::fs::read_to_string(agent.sandbox("argv/stdout")).unwrap(), "$HOME two words\n");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn an_argv_program_is_searched_for_in_the_tasks_own_path_and_one_found_nowhere_fails_the_launch() {
    let (mut master, mut agent) = cluster().await;
    let tools = tempfile::tempdir().unwrap();
    let tool = tools.path().join("agora-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho \"tool $1\"\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("/nonexistent-dir:{}", tools.path().display());
    let mut task = shell_task("found", "");
    task.command = Some(pb::CommandInfo {
        argv: vec!["agora-test-tool".into(), "ran".into()],
        environment: [("PATH".to_owned(), path)].into_iter().collect(),
        ..Default::default()
    });
    master.run_task(task);
    master.updates_until("found", TaskState::TaskFinished).await;
    assert_eq!(std::fs::read_to_string(agent.sandbox("found/stdout")).unwrap(), "tool ran\n");

    let mut task = shell_task("missing", "");
    // A PATH of directories anyone may search: the agent's own may hold some the task's
    // user may not enter, which would make the answer "permission denied".
    task.command = Some(pb::CommandInfo {
        argv: vec!["agora-no-such-program".into()],
        environment: [("PATH".to_owned(), "/nonexistent-dir:/usr/bin:/bin".to_owned())].into_iter().collect(),
        ..Default::default()
    });
    master.run_task(task);
    let updates = master.updates_until("missing", TaskState::TaskFailed).await;
    let failed = updates.last().unwrap();
    assert_eq!(failed.reason, pb::TaskStatusReason::ReasonCommandLaunchFailed as i32, "{failed:?}");
    assert!(failed.message.contains("cannot run \"agora-no-such-program\""), "{}", failed.message);
    assert!(failed.message.contains("No such file or directory"), "{}", failed.message);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_sandbox_can_be_browsed_read_and_downloaded_over_http_and_escapes_are_refused() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("files", "printf 'hello world'"));
    master.updates_until("files", TaskState::TaskFinished).await;
    let base = agent.url("");
    let get = |path: &str| reqwest::get(format!("{base}{path}"));

    assert_eq!(get("/health").await.unwrap().text().await.unwrap(), "ok");
    let listing: serde_json::Value =
        get(&format!("/files/browse?path={FRAMEWORK}/files")).await.unwrap().json().await.unwrap();
    let entries = listing.as_array().unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [format!("{FRAMEWORK}/files/stderr"), format!("{FRAMEWORK}/files/stdout")]);
    assert_eq!(entries[1]["size"], 11);
    assert!(entries[1]["mode"].as_str().unwrap().starts_with("-rw"));
    assert!(entries[1]["mtime"].as_i64().unwrap() > 0);
    assert_eq!(entries[1]["nlink"], 1);

    let read = |query: &str| {
        let url = format!("{base}/files/read?path={FRAMEWORK}/files/stdout{query}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    assert_eq!(read("&offset=0").await, serde_json::json!({"data": "hello world", "offset": 0}));
    assert_eq!(read("&offset=6&length=3").await, serde_json::json!({"data": "wor", "offset": 6}));
    assert_eq!(read("&offset=-1").await, serde_json::json!({"data": "", "offset": 11}));
    assert_eq!(read("").await, serde_json::json!({"data": "", "offset": 11}));
    assert_eq!(read("&offset=50").await, serde_json::json!({"data": "", "offset": 50}));

    let download = get(&format!("/files/download?path={FRAMEWORK}/files/stdout")).await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"hello world");

    // A task could plant a symlink in its sandbox; following it must not leave the root.
    std::os::unix::fs::symlink("/etc/passwd", agent.sandbox("files/passwd")).unwrap();
    for (path, status) in [
        ("/files/read?path=../LOCK&offset=0", 400),
        (&format!("/files/read?path={FRAMEWORK}/files/../../../LOCK&offset=0"), 400),
        ("/files/read?path=/etc/passwd&offset=0", 400),
        (&format!("/files/read?path={FRAMEWORK}/files/passwd&offset=0"), 400),
        (&format!("/files/download?path={FRAMEWORK}/files/passwd"), 400),
        ("/files/browse?path=..", 400),
        (&format!("/files/read?path={FRAMEWORK}/files/nope&offset=0"), 404),
        (&format!("/files/read?path={FRAMEWORK}/files/stdout&offset=x"), 400),
        (&format!("/files/read?path={FRAMEWORK}/files&offset=0"), 400),
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["message"].is_string() && body.get("details").is_some(), "{path}: {body}");
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_state_shows_the_agent_its_resources_and_its_running_tasks() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("long", "sleep 1000"));
    master.updates_until("long", TaskState::TaskRunning).await;
    let state: serde_json::Value = reqwest::get(agent.url("/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["id"], AGENT_ID);
    assert_eq!(state["connected"], true);
    assert_eq!(state["resources"]["cpus"], 2.0);
    assert_eq!(state["resources"]["ports"], "[31000-31010]");
    assert_eq!(state["tasks"][0]["state"], "TASK_RUNNING");
    assert_eq!(state["tasks"][0]["sandbox"], format!("{FRAMEWORK}/long"));
    let pid = pid_of(&agent, "long").await;
    agent.stop().await.unwrap();
    eventually("the task killed at shutdown", || process_gone(pid)).await;
}

#[tokio::test]
async fn the_agent_reregisters_with_its_id_and_running_tasks_when_the_master_drops_the_stream() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("survivor", "sleep 1000"));
    master.updates_until("survivor", TaskState::TaskRunning).await;
    let pid = pid_of(&agent, "survivor").await;

    master.drop_stream();
    let register = master.next_registration().await;
    assert_eq!(register.agent_id, AGENT_ID);
    let tasks: Vec<(String, String, i32)> = register
        .tasks
        .iter()
        .map(|t| (t.framework_id.clone(), t.task.as_ref().unwrap().task_id.clone(), t.state))
        .collect();
    assert_eq!(tasks, [(FRAMEWORK.to_owned(), "survivor".to_owned(), pb::TaskState::TaskRunning as i32)]);
    assert!(!process_gone(pid), "the task kept running while the agent was away");

    // The new stream works: a kill goes through and its update arrives.
    master.kill_task("survivor", 0);
    master.updates_until("survivor", TaskState::TaskKilled).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn an_update_that_was_not_acknowledged_before_the_stream_broke_is_sent_again_on_the_new_stream() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("t", "sleep 1000"));
    let starting = master.next_update().await;
    master.drop_stream();
    let register = master.next_registration().await;
    assert_eq!(register.tasks.len(), 1);
    let again = master.next_update().await;
    assert_eq!(again.status, starting.status, "the outstanding update, unchanged");
    master.ack(&again);
    master.updates_until("t", TaskState::TaskRunning).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_agent_kills_its_tasks_and_registers_afresh_without_an_id() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("doomed", "sleep 1000"));
    master.updates_until("doomed", TaskState::TaskRunning).await;
    let pid = pid_of(&agent, "doomed").await;

    master.refuse_next(1);
    master.drop_stream();
    let refused = master.next_registration().await;
    assert_eq!(refused.agent_id, AGENT_ID);
    let fresh = master.next_registration().await;
    assert_eq!(fresh.agent_id, "");
    assert!(fresh.tasks.is_empty());
    eventually("the task killed", || process_gone(pid)).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn killing_a_task_the_agent_does_not_know_reports_it_lost() {
    let (mut master, mut agent) = cluster().await;
    master.kill_task("ghost", 0);
    let update = master.next_update().await;
    let status = update.status.unwrap();
    assert_eq!((status.task_id.as_str(), state_of(&status)), ("ghost", TaskState::TaskLost));
    assert_eq!(status.uuid, "", "nothing to acknowledge");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_reused_task_id_runs_in_a_fresh_sandbox() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("again", "echo first"));
    master.updates_until("again", TaskState::TaskFinished).await;
    master.run_task(shell_task("again", "echo second"));
    master.updates_until("again", TaskState::TaskFinished).await;
    assert_eq!(std::fs::read_to_string(agent.sandbox("again/stdout")).unwrap(), "first\n");
    assert_eq!(std::fs::read_to_string(agent.sandbox("again.run-2/stdout")).unwrap(), "second\n");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn heartbeats_arrive_at_the_interval_the_master_asks_for() {
    let mut master = FakeMaster::start_with_heartbeat(100).await;
    let mut agent = TestAgent::start(&master, |_| {}).await;
    master.next_registration().await;
    let started = Instant::now();
    for _ in 0..3 {
        match master.next().await {
            Seen::Message {
                message: pb::AgentMessage { message: Some(pb::agent_message::Message::Heartbeat(_)) },
                ..
            } => {}
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    assert!(started.elapsed().as_millis() >= 200, "three heartbeats 100 ms apart");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_agent_keeps_trying_until_the_master_is_up() {
    // Reserve a port, then free it: the agent dials a master that is not there yet.
    let addr = port_outside_the_ephemeral_range();
    let placeholder = FakeMaster::start().await;
    let mut agent = TestAgent::start(&placeholder, |config| config.masters = Masters::one(addr.to_string())).await;
    let state: serde_json::Value = reqwest::get(agent.url("/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["connected"], false);
    assert_eq!(state["id"], serde_json::Value::Null);

    let mut master = FakeMaster::start_at(addr).await;
    let register = master.next_registration().await;
    assert_eq!(register.agent_id, "");
    assert_eq!(register.info.unwrap().port, u32::from(agent.http.port()));
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn two_agents_cannot_share_a_work_dir() {
    let mut master = FakeMaster::start().await;
    let mut first = TestAgent::start(&master, |_| {}).await;
    master.next_registration().await;
    let dir = first.work_dir.path().to_owned();
    let mut second = TestAgent::start(&master, |config| config.work_dir = dir).await;
    let error = second.stop().await.expect_err("the work dir is locked");
    assert!(error.to_string().contains("another agent is using it"), "{error}");
    first.stop().await.unwrap();
}

#[tokio::test]
async fn shutting_down_a_framework_kills_its_tasks_and_drops_its_updates_and_its_ended_tasks() {
    let (mut master, mut agent) = cluster().await;
    master.run_task(shell_task("one", "sleep 1000"));
    master.updates_until("one", TaskState::TaskRunning).await;
    master.run_task(shell_task("two", "sleep 1000"));
    master.updates_until("two", TaskState::TaskRunning).await;
    let pids = [pid_of(&agent, "one").await, pid_of(&agent, "two").await];
    // A task whose last update its framework never acknowledged: `agora run` tears down in
    // the callback of that update.
    master.run_task(shell_task("done", "true"));
    let mut last = master.next_update().await;
    while state_of(last.status.as_ref().unwrap()) != TaskState::TaskFinished {
        master.ack(&last);
        last = master.next_update().await;
    }
    assert_eq!(last.status.as_ref().unwrap().task_id, "done");

    master
        .send(pb::master_message::Message::ShutdownFramework(pb::ShutdownFramework { framework_id: FRAMEWORK.into() }));
    for pid in pids {
        eventually(&format!("process {pid} killed"), || process_gone(pid)).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let state: serde_json::Value = reqwest::get(agent.url("/state")).await.unwrap().json().await.unwrap();
        if state["tasks"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "the framework's tasks are still held: {state}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The runs' directories go after their removal is journaled, off the owner's path.
    let runs = agent.work_dir.path().join("meta/runs");
    eventually("the runs' directories to be deleted", || std::fs::read_dir(&runs).unwrap().next().is_none()).await;
    // Neither a TASK_KILLED nor the unacknowledged TASK_FINISHED goes out again, even after
    // the longest resend delay (1 s).
    let heard = tokio::time::timeout(std::time::Duration::from_millis(2_000), master.next_update()).await;
    assert!(heard.is_err(), "an update of the removed framework was sent: {heard:?}");
    agent.stop().await.unwrap();
}

/// A free loopback address to start a master on later. Taken below Linux's ephemeral range
/// (32768 and up): a port picked there can be taken meanwhile by any outgoing connection of
/// the tests running alongside, which made this test fail with "address in use".
fn port_outside_the_ephemeral_range() -> std::net::SocketAddr {
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos());
    for attempt in 0..1_000u64 {
        let port = 20_000 + u16::try_from((seed.wrapping_add(attempt * 7_919)) % 12_000).unwrap();
        if let Ok(probe) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return probe.local_addr().unwrap();
        }
    }
    panic!("no free port between 20000 and 32000");
}
