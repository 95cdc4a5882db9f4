//! End to end: an agent process SIGKILLed, or stopped with SIGTERM, under a running task
//! and restarted on the same work dir re-attaches to the task, which never stops; a task
//! that ends while the agent is down is reported with its real exit code once the agent is
//! back; SIGUSR1 drains the agent, killing its task; an agent SIGKILLed in the middle of a
//! launch batch loses no task it acknowledged and starts none twice. A real master, real
//! agent processes and a framework on the SDK (or `agora run`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agora_proto::model::TaskState;
use common::framework::Framework;
use common::run::RunProc;
use common::{Cluster, Proc, eventually, eventually_with, free_port, get_json};

const RESOURCES: &str = "cpus:1;mem:256;disk:100;ports:[31000-31010]";

/// One agent process whose work dir and port outlive it, so it can be started again.
struct Agent {
    name: String,
    port: u16,
    work_dir: PathBuf,
    proc: Option<Proc>,
}

impl Agent {
    fn start(cluster: &Cluster, name: &str) -> Agent {
        let mut agent =
            Agent { name: name.to_owned(), port: free_port(), work_dir: cluster.dir.path().join(name), proc: None };
        agent.spawn(cluster);
        agent
    }

    fn spawn(&mut self, cluster: &Cluster) {
        let port = self.port.to_string();
        let work_dir = self.work_dir.to_str().expect("utf-8 path");
        let args =
            ["agent", "--master", &cluster.master, "--port", &port, "--work-dir", work_dir, "--resources", RESOURCES];
        // Each life logs to a file of its own, so a failure shows both.
        let lives = std::fs::read_dir(cluster.dir.path()).map(|d| d.count()).unwrap_or(0);
        self.proc = Some(Proc::spawn(&format!("{}-{lives}", self.name), cluster.dir.path(), &args));
    }

    /// Sends `signal` (`TERM`, `USR1`, …) and waits for the agent to exit by itself;
    /// returns its exit code.
    async fn stop_with(&mut self, signal: &str) -> Option<i32> {
        let proc = self.proc.as_mut().expect("a running agent");
        proc.signal(signal);
        eventually("the agent to exit", async || proc.child.try_wait().ok().flatten()).await.code()
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(proc) = self.proc.as_mut() {
            proc.kill();
        }
    }

    /// The agent's `/state`, once it answers.
    async fn state(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/state", self.port);
        eventually("the agent's /state", async || get_json(&url).await).await
    }
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// The pid a task wrote to `marker` (the shell's `$$`, which `exec` keeps for the command).
async fn pid_in(marker: &Path) -> i32 {
    eventually("the task to write its pid", async || std::fs::read_to_string(marker).ok()?.trim().parse().ok()).await
}

/// A cluster whose agent runs one `sleep 1000` task that wrote its pid to a file; returns
/// the cluster, agent and framework and that pid (the marker's directory lives as long as
/// the returned guard).
async fn cluster_with_sleeper() -> (Cluster, Agent, Framework, i32, tempfile::TempDir) {
    let marker_dir = tempfile::tempdir().expect("temp dir");
    let marker = marker_dir.path().join("pid");
    let command = format!("echo $$ > {}; exec sleep 1000", marker.display());
    let (cluster, agent, framework) = cluster_with_task(&command).await;
    let pid = pid_in(&marker).await;
    (cluster, agent, framework, pid, marker_dir)
}

/// A master with quick heartbeats but an agent timeout long enough to restart an agent in,
/// one agent, and a framework whose task runs `command`, RUNNING.
async fn cluster_with_task(command: &str) -> (Cluster, Agent, Framework) {
    let cluster = Cluster::master_only(&["--agent-heartbeat-interval", "200ms", "--agent-timeout", "5s"]).await;
    let agent = Agent::start(&cluster, "agent");
    cluster.wait_for_agents(1).await;
    let mut framework = Framework::start(&cluster.master, command);
    framework.wait_for(TaskState::TaskRunning).await;
    (cluster, agent, framework)
}

/// The master's view of task `sleeper`: its state and the agent it is on.
async fn master_task(cluster: &Cluster) -> Option<(String, String)> {
    let state = get_json(&cluster.url("/state")).await?;
    let task = state["frameworks"]
        .as_array()?
        .iter()
        .flat_map(|f| f["tasks"].as_array().into_iter().flatten())
        .next()?
        .clone();
    Some((task["state"].as_str()?.to_owned(), task["slave_id"].as_str()?.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_agent_restarted_on_its_work_dir_keeps_its_task_running_under_the_same_id_and_pid() {
    let (cluster, mut agent, mut framework, pid, marker) = cluster_with_sleeper().await;
    let agent_id = cluster.state().await["slaves"][0]["id"].as_str().expect("an agent id").to_owned();
    let group = agent.state().await["tasks"][0]["pid"].as_u64().expect("the task's process group");

    agent.kill();
    assert!(alive(pid), "the task outlives its agent");
    agent.spawn(&cluster);

    let restarted = agent.state().await;
    assert_eq!(restarted["id"], agent_id.as_str(), "{restarted}");
    assert_eq!(restarted["tasks"][0]["pid"].as_u64(), Some(group), "the same process group, re-attached");
    eventually("the agent to re-register", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let slave = state["slaves"].as_array()?.first()?.clone();
        (slave["id"] == agent_id.as_str() && slave["active"] == true && slave["used_resources"]["cpus"] == 0.1)
            .then_some(())
    })
    .await;
    assert_eq!(master_task(&cluster).await, Some(("TASK_RUNNING".to_owned(), agent_id.clone())));
    assert!(alive(pid), "process {pid} still runs");
    assert_eq!(
        std::fs::read_to_string(marker.path().join("pid")).expect("marker").trim(),
        pid.to_string(),
        "never restarted"
    );

    // Nothing terminal reached the framework: whatever it saw since is not an end.
    while let Ok(status) = framework.updates.try_recv() {
        assert!(!status.state.is_terminal(), "the framework saw {status:?}");
    }
    // The task still answers to its framework through the new agent.
    let running = master_task(&cluster).await.expect("the task");
    assert_eq!(running.0, "TASK_RUNNING");
    framework
        .handle
        .kill(&agora_proto::model::TaskId::new("sleeper"), Some(&agora_proto::model::AgentId::new(agent_id)))
        .await
        .expect("kill");
    framework.wait_for(TaskState::TaskKilled).await;
    eventually("the killed task's process to be gone", async || (!alive(pid)).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_exiting_with_code_3_while_its_agent_is_down_is_reported_failed_with_exit_code_3_after_the_restart() {
    let marker_dir = tempfile::tempdir().expect("temp dir");
    let marker = marker_dir.path().join("pid");
    let go = marker_dir.path().join("go");
    let command =
        format!("echo $$ > {}; while [ ! -e {} ]; do sleep 0.05; done; exit 3", marker.display(), go.display());
    let (cluster, mut agent, mut framework) = cluster_with_task(&command).await;
    let pid = pid_in(&marker).await;

    agent.kill();
    std::fs::write(&go, "").expect("write the go file");
    eventually("the task to exit while its agent is down", async || (!alive(pid)).then_some(())).await;
    agent.spawn(&cluster);

    let failed = framework.wait_for(TaskState::TaskFailed).await;
    assert_eq!(failed.exit_code, Some(3), "{failed:?}");
    assert_eq!(failed.message, "Command exited with status 3");
    eventually("the master to see the task failed", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let completed = state["frameworks"][0]["completed_tasks"].as_array()?.first()?.clone();
        (completed["state"] == "TASK_FAILED").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigtermed_agent_exits_leaving_its_task_running_and_the_next_one_takes_it_back_under_the_same_id_and_pid() {
    let (cluster, mut agent, mut framework, pid, marker) = cluster_with_sleeper().await;
    let agent_id = cluster.state().await["slaves"][0]["id"].as_str().expect("an agent id").to_owned();
    let group = agent.state().await["tasks"][0]["pid"].as_u64().expect("the task's process group");

    assert_eq!(agent.stop_with("TERM").await, Some(0), "a clean stop");
    let log = agent.proc.as_ref().expect("the agent").log_text();
    assert!(log.contains("the tasks keep running"), "{log}");
    assert!(alive(pid), "the task outlives its agent");
    agent.spawn(&cluster);

    let restarted = agent.state().await;
    assert_eq!(restarted["id"], agent_id.as_str(), "{restarted}");
    assert_eq!(restarted["tasks"][0]["pid"].as_u64(), Some(group), "the same process group, re-attached");
    eventually("the agent to re-register with its task running", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let slave = state["slaves"].as_array()?.first()?.clone();
        (slave["id"] == agent_id.as_str() && slave["active"] == true).then_some(())
    })
    .await;
    assert_eq!(master_task(&cluster).await, Some(("TASK_RUNNING".to_owned(), agent_id.clone())));
    assert!(alive(pid), "process {pid} still runs");
    assert_eq!(
        std::fs::read_to_string(marker.path().join("pid")).expect("marker").trim(),
        pid.to_string(),
        "never restarted"
    );
    while let Ok(status) = framework.updates.try_recv() {
        assert!(!status.state.is_terminal(), "the framework saw {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigusr1_drains_the_agent_its_task_is_killed_and_reported_killed_then_the_agent_exits() {
    let (cluster, mut agent, mut framework, pid, _marker) = cluster_with_sleeper().await;

    let code = agent.stop_with("USR1").await;
    let log = agent.proc.as_ref().expect("the agent").log_text();
    assert_eq!(code, Some(0), "{log}");
    let killed = framework.wait_for(TaskState::TaskKilled).await;
    assert_eq!(killed.task_id.as_str(), "sleeper");
    assert!(!alive(pid), "the task's process is gone once the agent has exited");
    assert!(log.contains("drained: every task ended and its last update was acknowledged"), "{log}");
    eventually("the master to see the task killed", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let completed = state["frameworks"][0]["completed_tasks"].as_array()?.first()?.clone();
        (completed["state"] == "TASK_KILLED").then_some(())
    })
    .await;
    // Nothing is left in the checkpoint for a next agent to take back.
    let runs = std::fs::read_dir(agent.work_dir.join("meta/runs")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(runs, 0, "the drained task's record is deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_agora_local_kills_its_tasks_reports_them_killed_and_stops_everything() {
    let marker_dir = tempfile::tempdir().expect("temp dir");
    let marker = marker_dir.path().join("pid");
    let mut cluster = Cluster::local(1).await;
    let mut framework = Framework::start(&cluster.master, &format!("echo $$ > {}; exec sleep 1000", marker.display()));
    framework.wait_for(TaskState::TaskRunning).await;
    let pid = pid_in(&marker).await;

    let local = &mut cluster.procs[0];
    local.signal("INT");
    framework.wait_for(TaskState::TaskKilled).await;
    let code = eventually("agora local to exit", async || local.child.try_wait().ok().flatten()).await.code();
    assert_eq!(code, Some(0), "{}", local.log_text());
    assert!(!alive(pid), "the task's process is gone");
}

/// Tasks in the launch that the agent is SIGKILLed in the middle of: enough that launching
/// them takes many of the agent's batches (at most 8 launches run at once).
const BATCH_TASKS: usize = 200;
/// RUNNING updates the framework has heard before the agent is killed.
const RUNNING_BEFORE_KILL: usize = 10;

/// The last state `run` heard for each task that it heard of.
fn last_states(run: &RunProc) -> BTreeMap<String, TaskState> {
    let mut last = BTreeMap::new();
    for update in run.events().into_iter().filter(|e| e["event"] == "update") {
        let task_id = update["task_id"].as_str().expect("a task id").to_owned();
        let state: TaskState = serde_json::from_value(update["state"].clone()).expect("a task state");
        last.insert(task_id, state);
    }
    last
}

/// The pids each task's command wrote to its file in `starts` (one line per start).
fn starts_of(starts: &Path) -> BTreeMap<String, Vec<i32>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(starts).expect("the starts directory").flatten() {
        let task_id = entry.file_name().to_str().expect("utf-8 name").to_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // A line being written as the file is read is left for the next read.
        let pids = text.lines().filter_map(|line| line.trim().parse().ok()).collect();
        all.insert(task_id, pids);
    }
    all
}

/// The tasks the master holds as TASK_RUNNING.
async fn running_at_master(cluster: &Cluster) -> Option<BTreeSet<String>> {
    let state = get_json(&cluster.url("/state")).await?;
    let tasks = state["frameworks"].as_array()?.iter().flat_map(|f| f["tasks"].as_array().into_iter().flatten());
    Some(tasks.filter(|t| t["state"] == "TASK_RUNNING").filter_map(|t| Some(t["id"].as_str()?.to_owned())).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_sigkilled_in_the_middle_of_a_launch_batch_loses_no_acknowledged_task_and_starts_none_twice() {
    let cluster = Cluster::master_only(&["--agent-heartbeat-interval", "200ms", "--agent-timeout", "10s"]).await;
    let mut agent = Agent::start(&cluster, "agent");
    cluster.wait_for_agents(1).await;
    let agent_id = cluster.state().await["slaves"][0]["id"].as_str().expect("an agent id").to_owned();
    let starts = cluster.dir.path().join("starts");
    std::fs::create_dir(&starts).expect("the starts directory");
    // Each start of a task appends the pid its command keeps (`exec`) to a file named after
    // the task: two lines in one file would be one task started twice.
    let command = format!("echo $$ >> {}/$AGORA_TASK_ID; exec sleep 1000", starts.display());
    let instances = BATCH_TASKS.to_string();
    let flags = ["--instances", instances.as_str(), "--cpus", "0.001", "--mem", "1", "--shell"];
    let mut run = RunProc::start(cluster.dir.path(), "batch", &cluster.master, &flags, &[command.as_str()]);

    // Killed as soon as some tasks are RUNNING at the framework (and so acknowledged, or
    // about to be), while the rest of the launch is under way.
    let deadline = std::time::Instant::now() + common::WAIT;
    let running_before = loop {
        let running: BTreeSet<String> =
            last_states(&run).into_iter().filter(|(_, s)| *s == TaskState::TaskRunning).map(|(t, _)| t).collect();
        if running.len() >= RUNNING_BEFORE_KILL {
            agent.kill();
            break running;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for tasks to run: {}", run.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert!(
        running_before.len() < BATCH_TASKS,
        "the agent was to be killed with part of the launch still under way, but all {BATCH_TASKS} ran"
    );
    agent.spawn(&cluster);

    // Once the agent is back, every task settles: RUNNING at the framework and the master
    // alike, or ended at the framework.
    let settled = eventually_with("every task to settle after the restart", async || {
        let state = get_json(&cluster.url("/state")).await.ok_or_else(|| "no /state".to_owned())?;
        let slave = state["slaves"].as_array().and_then(|s| s.first()).cloned().unwrap_or_default();
        if slave["id"] != agent_id.as_str() || slave["active"] != true {
            return Err(format!("the agent is not back under its id: {slave}"));
        }
        let last = last_states(&run);
        let unsettled: Vec<_> =
            last.iter().filter(|(_, s)| **s != TaskState::TaskRunning && !s.is_terminal()).collect();
        if last.len() < BATCH_TASKS || !unsettled.is_empty() {
            return Err(format!("{} tasks heard of, unsettled: {unsettled:?}", last.len()));
        }
        let running: BTreeSet<String> =
            last.iter().filter(|(_, s)| **s == TaskState::TaskRunning).map(|(t, _)| t.clone()).collect();
        let at_master = running_at_master(&cluster).await.ok_or_else(|| "no tasks at the master".to_owned())?;
        if running != at_master {
            return Err(format!("RUNNING at the framework {running:?}, at the master {at_master:?}"));
        }
        Ok(last)
    })
    .await;

    let started = starts_of(&starts);
    for task_id in &running_before {
        assert_eq!(settled[task_id], TaskState::TaskRunning, "{task_id}, RUNNING before the kill, is lost");
        let pids = &started[task_id];
        assert!(pids.len() == 1 && common::alive(pids[0] as u32), "{task_id} keeps its one process: {pids:?}");
    }
    for (task_id, pids) in &started {
        assert!(pids.len() <= 1, "{task_id} was started {} times: {pids:?}", pids.len());
        // A process left running is a task the cluster knows as RUNNING, never one it
        // gave up on (which a framework would start again elsewhere).
        let alive = pids.iter().any(|pid| common::alive(*pid as u32));
        let running = settled.get(task_id) == Some(&TaskState::TaskRunning);
        assert_eq!(alive, running, "{task_id}: process alive {alive}, RUNNING {running}, {:?}", settled.get(task_id));
    }
    for (task_id, state) in &settled {
        if *state == TaskState::TaskRunning {
            assert!(started.contains_key(task_id), "{task_id} is RUNNING but its command never started");
        }
    }
    let mut outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for state in settled.values() {
        *outcome.entry(state.as_str()).or_default() += 1;
    }
    eprintln!(
        "killed with {} of {BATCH_TASKS} tasks RUNNING at the framework; after the restart {outcome:?}",
        running_before.len()
    );
    run.kill();
}
