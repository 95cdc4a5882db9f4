//! Agent recovery against a fake master: the agent is dropped mid-flight (what SIGKILL does
//! to an agent process) and a new one started on the same work dir, with real processes.

#![allow(clippy::unwrap_used)]

mod common;

use agora_proto::model::TaskState;
use agora_proto::pb;
use common::*;

/// Reads the agent's `/state` until it shows a pid for `task_id`, and returns it.
async fn pid_of(agent: &TestAgent, task_id: &str) -> i32 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state: serde_json::Value = reqwest::get(agent.url("/state")).await.unwrap().json().await.unwrap();
        let task =
            state["tasks"].as_array().unwrap().iter().find(|t| t["id"] == task_id).expect("the task is in /state");
        if let Some(pid) = task["pid"].as_u64() {
            return i32::try_from(pid).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no pid for {task_id} in time");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn reason_of(status: &pb::TaskStatus) -> pb::TaskStatusReason {
    pb::TaskStatusReason::try_from(status.reason).unwrap()
}

/// A master, and an agent running `shell` as task `task_id`, RUNNING and acknowledged.
async fn running(task_id: &str, shell: &str) -> (FakeMaster, TestAgent, i32) {
    let mut master = FakeMaster::start().await;
    let agent = TestAgent::start(&master, |_| {}).await;
    master.next_registration().await;
    master.run_task(shell_task(task_id, shell));
    master.updates_until(task_id, TaskState::TaskRunning).await;
    let pid = pid_of(&agent, task_id).await;
    (master, agent, pid)
}

/// Starts a new agent on `work_dir`, with another seed as a new process would have, and
/// returns it with its registration.
async fn restart(master: &mut FakeMaster, work_dir: tempfile::TempDir) -> (TestAgent, pb::Register) {
    let agent = TestAgent::start_in(master, work_dir, |config| config.seed = 8).await;
    let register = master.next_registration().await;
    (agent, register)
}

#[tokio::test]
async fn an_agent_restarted_on_its_work_dir_re_registers_under_its_id_with_the_same_running_process() {
    let (mut master, agent, pid) = running("sleeper", "sleep 1000").await;
    let work_dir = agent.crash().await;
    assert!(!process_gone(pid), "the task outlives its agent");

    let (mut agent, register) = restart(&mut master, work_dir).await;
    assert_eq!(register.agent_id, AGENT_ID);
    let reported: Vec<(String, i32)> =
        register.tasks.iter().map(|t| (t.task.as_ref().unwrap().task_id.clone(), t.state)).collect();
    assert_eq!(reported, [("sleeper".to_owned(), pb::TaskState::TaskRunning as i32)]);
    assert_eq!(pid_of(&agent, "sleeper").await, pid, "the same process, re-attached");
    assert!(!process_gone(pid));

    // The recovered task is watched again: killing it is reported as for any other.
    master.kill_task("sleeper", 1_000);
    let statuses = master.updates_until("sleeper", TaskState::TaskKilled).await;
    assert_eq!(statuses.len(), 1, "no other update: {statuses:?}");
    assert_eq!(statuses[0].signal, Some(15));
    eventually("the killed task's process to be gone", || process_gone(pid)).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn an_update_not_acknowledged_before_the_restart_is_resent_after_it_with_the_same_uuid() {
    let mut master = FakeMaster::start().await;
    let agent = TestAgent::start(&master, |_| {}).await;
    master.next_registration().await;
    master.run_task(shell_task("sleeper", "sleep 1000"));
    let starting = master.next_update().await.status.unwrap();
    assert_eq!(state_of(&starting), TaskState::TaskStarting);
    // Crashed once the process runs, with STARTING unacknowledged and RUNNING queued.
    let pid = pid_of(&agent, "sleeper").await;
    let work_dir = agent.crash().await;

    let (mut agent, register) = restart(&mut master, work_dir).await;
    assert_eq!(register.tasks.len(), 1);
    let again = master.next_update().await;
    assert_eq!(again.status.as_ref().unwrap(), &starting, "the same update, uuid and all");
    master.ack(&again);
    let rest = master.updates_until("sleeper", TaskState::TaskRunning).await;
    assert_eq!(rest.len(), 1, "then RUNNING, queued before the restart: {rest:?}");
    assert_ne!(rest[0].uuid, starting.uuid);
    assert_eq!(pid_of(&agent, "sleeper").await, pid);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_that_exits_with_status_3_while_the_agent_is_down_is_reported_failed_with_exit_code_3() {
    // The task waits for a file the test creates while no agent runs.
    let (mut master, agent, pid) = running("three", "while [ ! -e go ]; do sleep 0.02; done; exit 3").await;
    let sandbox = agent.sandbox("three");
    let work_dir = agent.crash().await;
    std::fs::write(sandbox.join("go"), "").unwrap();
    eventually("the task to exit while the agent is down", || process_gone(pid)).await;

    let (mut agent, register) = restart(&mut master, work_dir).await;
    assert_eq!(register.tasks[0].state, pb::TaskState::TaskFailed as i32);
    let statuses = master.updates_until("three", TaskState::TaskFailed).await;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].exit_code, Some(3));
    assert_eq!(statuses[0].message, "Command exited with status 3");
    assert_eq!(reason_of(&statuses[0]), pb::TaskStatusReason::ReasonCommandExited);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_killed_with_its_supervisor_while_the_agent_is_down_fails_with_reason_agent_restarted() {
    let (mut master, agent, pid) = running("sleeper", "sleep 1000").await;
    let work_dir = agent.crash().await;
    // SIGKILL to the whole group takes the supervisor too: nothing records the exit.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    eventually("the task's group to be gone", || process_gone(pid)).await;

    let (mut agent, _) = restart(&mut master, work_dir).await;
    let statuses = master.updates_until("sleeper", TaskState::TaskFailed).await;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(reason_of(&statuses[0]), pb::TaskStatusReason::ReasonAgentRestarted);
    assert_eq!(
        statuses[0].message,
        "The agent restarted and the task's process is gone without a recorded exit status"
    );
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_exiting_after_the_restart_is_reported_with_its_exit_code() {
    let (mut master, agent, pid) = running("later", "while [ ! -e go ]; do sleep 0.02; done; exit 4").await;
    let sandbox = agent.sandbox("later");
    let work_dir = agent.crash().await;
    let (mut agent, _) = restart(&mut master, work_dir).await;
    assert_eq!(pid_of(&agent, "later").await, pid);
    std::fs::write(sandbox.join("go"), "").unwrap();
    let statuses = master.updates_until("later", TaskState::TaskFailed).await;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].exit_code, Some(4));
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_finished_task_leaves_no_checkpoint_once_acknowledged() {
    let mut master = FakeMaster::start().await;
    let mut agent = TestAgent::start(&master, |_| {}).await;
    master.next_registration().await;
    master.run_task(shell_task("echo", "echo hi"));
    master.updates_until("echo", TaskState::TaskFinished).await;
    let runs = agent.work_dir.path().join("meta/runs");
    eventually("the run's checkpoint to be deleted", || std::fs::read_dir(&runs).unwrap().next().is_none()).await;
    assert!(agent.work_dir.path().join("meta/agent.json").exists());
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_whose_pid_the_dead_agent_never_recorded_is_adopted_through_the_pid_its_supervisor_wrote() {
    let mut master = FakeMaster::start().await;
    let agent = TestAgent::start(&master, |_| {}).await;
    master.next_registration().await;
    master.run_task(shell_task("sleeper", "sleep 1000"));
    let starting = master.next_update().await.status.unwrap();
    let pid = pid_of(&agent, "sleeper").await;
    let work_dir = agent.crash().await;
    // Back to what the checkpoint holds if the agent dies right after spawning the
    // supervisor: the journal's first entry, written before the launch (STARTING, no pid,
    // no sandbox); the supervisor's pid and the records after it never made it.
    let journal = work_dir.path().join("meta/journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    let first = text.lines().next().expect("the launch's entry");
    assert!(first.contains("\"save\"") && first.contains("\"pid\":null"), "{first}");
    std::fs::write(&journal, format!("{first}\n")).unwrap();

    let (mut agent, register) = restart(&mut master, work_dir).await;
    assert_eq!(register.tasks[0].state, pb::TaskState::TaskRunning as i32);
    let again = master.next_update().await;
    assert_eq!(again.status.as_ref().unwrap(), &starting);
    master.ack(&again);
    assert_eq!(master.updates_until("sleeper", TaskState::TaskRunning).await.len(), 1);
    assert_eq!(pid_of(&agent, "sleeper").await, pid);
    let state: serde_json::Value = reqwest::get(agent.url("/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["tasks"][0]["sandbox"], "fw-1/sleeper");
    agent.stop().await.unwrap();
    eventually("the task to be killed with its agent", || process_gone(pid)).await;
}

#[tokio::test]
async fn an_agent_stopped_leaving_its_tasks_returns_at_once_and_the_next_one_takes_the_same_process_back() {
    let (mut master, mut agent, pid) = running("sleeper", "sleep 1000").await;
    let started = tokio::time::Instant::now();
    agent.shut_down(agora_agent::Shutdown::LeaveTasks).await.unwrap();
    // Far below the kill grace period (1 s): nothing was killed or waited for.
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "took {:?}", started.elapsed());
    assert!(!process_gone(pid), "the task outlives its agent");
    let work_dir = std::mem::replace(&mut agent.work_dir, tempfile::tempdir().unwrap());

    let (mut agent, register) = restart(&mut master, work_dir).await;
    assert_eq!(register.agent_id, AGENT_ID);
    assert_eq!(register.tasks.len(), 1, "{register:?}");
    assert_eq!(register.tasks[0].state, pb::TaskState::TaskRunning as i32);
    assert_eq!(pid_of(&agent, "sleeper").await, pid, "the same process, re-attached");
    agent.stop().await.unwrap();
    assert!(process_gone(pid), "a drain kills the task before it returns");
}

#[tokio::test]
async fn a_draining_agent_kills_its_tasks_and_returns_once_their_updates_are_acknowledged() {
    let mut master = FakeMaster::start().await;
    // A long acknowledgement timeout: the drain must end on the acknowledgement.
    let agent = TestAgent::start(&master, |config| config.drain_updates_timeout_ms = 60_000).await;
    master.next_registration().await;
    master.run_task(shell_task("sleeper", "sleep 1000"));
    master.updates_until("sleeper", TaskState::TaskRunning).await;
    let pid = pid_of(&agent, "sleeper").await;

    let mut agent = agent;
    let drained = tokio::spawn(async move {
        agent.stop().await.unwrap();
        agent
    });
    let killed = master.next_update().await;
    assert_eq!(state_of(killed.status.as_ref().unwrap()), TaskState::TaskKilled);
    eventually("the killed task's process to be gone", || process_gone(pid)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!drained.is_finished(), "the drain waits for the acknowledgement");
    master.ack(&killed);
    let agent = tokio::time::timeout(std::time::Duration::from_secs(10), drained)
        .await
        .expect("the agent stops soon after the acknowledgement")
        .unwrap();
    // Nothing is left for a next agent to recover.
    let runs = std::fs::read_dir(agent.work_dir.path().join("meta/runs")).unwrap().count();
    assert_eq!(runs, 0, "the acknowledged task's record is deleted");
}

#[tokio::test]
async fn a_drain_whose_updates_are_never_acknowledged_stops_after_its_timeout_keeping_them_for_the_next_agent() {
    let (mut master, mut agent, pid) = running("sleeper", "sleep 1000").await;
    let started = tokio::time::Instant::now();
    agent.stop().await.unwrap();
    // The grace period is 1 s and the acknowledgement timeout 300 ms; sleep dies on SIGTERM.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(process_gone(pid));
    let work_dir = std::mem::replace(&mut agent.work_dir, tempfile::tempdir().unwrap());

    let (mut agent, register) = restart(&mut master, work_dir).await;
    assert_eq!(register.tasks.len(), 1);
    assert_eq!(register.tasks[0].state, pb::TaskState::TaskKilled as i32);
    let again = master.updates_until("sleeper", TaskState::TaskKilled).await;
    assert_eq!(again.len(), 1, "the kill is reported by the next agent: {again:?}");
    agent.stop().await.unwrap();
}
