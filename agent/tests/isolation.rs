//! Task isolation with real cgroups (run as root, as CI does: there a missing privilege
//! fails the test instead of skipping it), the disk quota, and the usage statistics.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use agora_agent::{CgroupsConfig, Isolation};
use agora_proto::model::{Resources, TaskState};
use agora_proto::pb;
use common::*;

/// True when this test may use cgroups: the process is root. Without root the test is
/// skipped, except under CI (`CI=true`), where that is a failure.
fn cgroups_allowed(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: CI runs the cgroup tests as root");
    eprintln!("{test}: skipped, not root (cgroups need it)");
    false
}

fn task(task_id: &str, resources: &str, shell: &str) -> pb::TaskInfo {
    pb::TaskInfo { resources: Some((&Resources::parse(resources).unwrap()).into()), ..shell_task(task_id, shell) }
}

fn reason_of(status: &pb::TaskStatus) -> pb::TaskStatusReason {
    pb::TaskStatusReason::try_from(status.reason).unwrap()
}

async fn statistics(agent: &TestAgent) -> Vec<serde_json::Value> {
    reqwest::get(agent.url("/monitor/statistics")).await.unwrap().json().await.unwrap()
}

async fn statistics_of(agent: &TestAgent, task_id: &str) -> serde_json::Value {
    let all = statistics(agent).await;
    let entry = all.into_iter().find(|s| s["executor_id"] == task_id).expect("the task has statistics");
    assert_eq!(entry["framework_id"], FRAMEWORK);
    assert_eq!(entry["source"], task_id);
    entry["statistics"].clone()
}

/// The cgroup record the launch of the agent's only run wrote (`meta/runs/<run>/cgroup`):
/// the memory cgroup's directory.
fn memory_cgroup(work_dir: &std::path::Path) -> PathBuf {
    let runs = work_dir.join("meta/runs");
    let record = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .find_map(|run| std::fs::read_to_string(run.path().join("cgroup")).ok())
        .expect("the run recorded its cgroup");
    let line = record.lines().find(|l| l.starts_with("memory ")).expect("a memory line");
    PathBuf::from(line.trim_start_matches("memory "))
}

async fn cgroup_agent(master: &mut FakeMaster, tweak: impl FnOnce(&mut agora_agent::AgentConfig)) -> TestAgent {
    let agent = TestAgent::start(master, |config| {
        config.isolation = Isolation::Cgroups;
        tweak(config);
    })
    .await;
    master.next_registration().await;
    agent
}

#[tokio::test]
async fn a_task_over_its_memory_limit_is_oom_killed_and_fails_with_the_memory_limitation_and_its_cgroup_goes() {
    if !cgroups_allowed("memory") {
        return;
    }
    let mut master = FakeMaster::start().await;
    let mut agent = cgroup_agent(&mut master, |_| {}).await;
    // dd reads 200 MiB into one buffer: far over the 32 MiB the task holds.
    master.run_task(task("hog", "cpus:0.1;mem:32", "sleep 0.3; dd if=/dev/zero of=/dev/null bs=200M count=1"));
    master.updates_until("hog", TaskState::TaskRunning).await;
    let cgroup = memory_cgroup(agent.work_dir.path());
    assert_eq!(
        std::fs::read_to_string(cgroup.join("memory.limit_in_bytes")).unwrap().trim(),
        (32u64 << 20).to_string()
    );
    let statuses = master.updates_until("hog", TaskState::TaskFailed).await;
    let failed = statuses.last().unwrap();
    assert_eq!(reason_of(failed), pb::TaskStatusReason::ReasonContainerLimitationMemory, "{failed:?}");
    assert!(failed.message.starts_with("Memory limit exceeded"), "{}", failed.message);
    assert!(failed.message.contains("32 MiB"), "{}", failed.message);
    eventually("the task's cgroup is removed", || !cgroup.exists()).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_fork_bomb_stays_under_its_pids_limit() {
    if !cgroups_allowed("pids") {
        return;
    }
    let mut master = FakeMaster::start().await;
    let mut agent = cgroup_agent(&mut master, |config| {
        config.cgroups = CgroupsConfig { max_pids: 16, ..CgroupsConfig::default() };
    })
    .await;
    // The subshell forks until it cannot, and dies of it; what it started stays. The outer
    // shell then neither forks (`:` is a builtin) nor needs to: it becomes `sleep`.
    master.run_task(task(
        "bomb",
        "cpus:0.1;mem:64",
        "(for i in $(seq 1 64); do sleep 60 & done); : > started; exec sleep 60",
    ));
    master.updates_until("bomb", TaskState::TaskRunning).await;
    let started = agent.sandbox("bomb/started");
    eventually("the loop is over", || started.exists()).await;
    let stats = statistics_of(&agent, "bomb").await;
    let processes = stats["processes"].as_u64().unwrap();
    assert!((8..=16).contains(&processes), "{stats}");
    let stderr = std::fs::read_to_string(agent.sandbox("bomb/stderr")).unwrap();
    assert!(stderr.to_lowercase().contains("fork"), "the shell could not fork past the limit: {stderr}");
    master.kill_task("bomb", 0);
    master.updates_until("bomb", TaskState::TaskKilled).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_cpu_bound_task_with_a_cfs_quota_uses_no_more_than_its_share_and_its_statistics_move() {
    if !cgroups_allowed("cfs") {
        return;
    }
    let mut master = FakeMaster::start().await;
    let mut agent = cgroup_agent(&mut master, |config| {
        config.cgroups = CgroupsConfig { enable_cfs: true, ..CgroupsConfig::default() };
    })
    .await;
    master.run_task(task("spin", "cpus:0.2;mem:32", "while :; do :; done"));
    master.updates_until("spin", TaskState::TaskRunning).await;
    let cpu = |stats: &serde_json::Value| {
        stats["cpus_user_time_secs"].as_f64().unwrap() + stats["cpus_system_time_secs"].as_f64().unwrap()
    };
    let first = statistics_of(&agent, "spin").await;
    let began = std::time::Instant::now();
    // Measuring a rate takes wall time: two seconds of it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = statistics_of(&agent, "spin").await;
    let wall = began.elapsed().as_secs_f64();
    let used = cpu(&second) - cpu(&first);
    assert!(used > 0.05, "the statistics move: {first} then {second}");
    assert!(used <= 0.2 * wall + 0.1, "{used:.2} s of CPU in {wall:.2} s at 0.2 CPUs");
    assert_eq!(second["cpus_limit"], 0.2);
    assert_eq!(second["mem_limit_bytes"], 32u64 << 20);
    assert!(second["cpus_nr_throttled"].as_u64().unwrap() > 0, "{second}");
    let metrics = reqwest::get(agent.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("agora_task_cpu_user_seconds_total{framework_id=\"fw-1\",task_id=\"spin\""), "{metrics}");
    assert!(metrics.contains("agora_agent_isolation{isolation=\"cgroups v1\"} 1") || metrics.contains("cgroups v2"));
    master.kill_task("spin", 0);
    master.updates_until("spin", TaskState::TaskKilled).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn an_agent_killed_and_restarted_still_enforces_the_memory_limit_of_its_surviving_task() {
    if !cgroups_allowed("recovery") {
        return;
    }
    let mut master = FakeMaster::start().await;
    let agent = cgroup_agent(&mut master, |_| {}).await;
    master.run_task(task(
        "later",
        "cpus:0.1;mem:32",
        "while [ ! -f go ]; do sleep 0.05; done; dd if=/dev/zero of=/dev/null bs=200M count=1",
    ));
    master.updates_until("later", TaskState::TaskRunning).await;
    let cgroup = memory_cgroup(agent.work_dir.path());
    let go = agent.sandbox("later/go");
    let work_dir = agent.crash().await;

    let mut agent = TestAgent::start_in(&master, work_dir, |config| config.isolation = Isolation::Cgroups).await;
    let register = master.next_registration().await;
    assert_eq!(register.tasks.len(), 1, "the task survived the agent");
    assert!(cgroup.exists(), "the task's cgroup survived the agent");
    let stats = statistics_of(&agent, "later").await;
    assert_eq!(stats["mem_limit_bytes"], 32u64 << 20, "{stats}");
    std::fs::write(&go, "").unwrap();
    // The RUNNING update may come again first: its acknowledgement may not have been
    // written when the agent died.
    let statuses = master.updates_until("later", TaskState::TaskFailed).await;
    let status = statuses.last().unwrap().clone();
    assert_eq!(state_of(&status), TaskState::TaskFailed, "{status:?}");
    assert_eq!(reason_of(&status), pb::TaskStatusReason::ReasonContainerLimitationMemory, "{status:?}");
    eventually("the task's cgroup is removed", || !cgroup.exists()).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_sandbox_over_its_disk_fails_the_task_with_the_disk_limitation_when_the_quota_is_enforced() {
    let mut master = FakeMaster::start().await;
    let mut agent = TestAgent::start(&master, |config| {
        config.isolation = Isolation::Posix;
        config.enforce_container_disk_quota = true;
        config.disk_watch_interval_ms = 100;
    })
    .await;
    master.next_registration().await;
    master.run_task(task("filler", "cpus:0.1;mem:32;disk:1", "head -c 3000000 /dev/zero > big; sleep 60"));
    let statuses = master.updates_until("filler", TaskState::TaskFailed).await;
    let failed = statuses.last().unwrap();
    assert_eq!(reason_of(failed), pb::TaskStatusReason::ReasonContainerLimitationDisk, "{failed:?}");
    assert!(failed.message.contains("exceeds the task's disk resource (1 MiB)"), "{}", failed.message);
    assert_eq!(failed.signal, Some(9), "killed at once: {failed:?}");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn without_cgroups_the_statistics_come_from_the_tasks_processes() {
    let mut master = FakeMaster::start().await;
    let mut agent = TestAgent::start(&master, |config| {
        config.isolation = Isolation::Posix;
        config.disk_watch_interval_ms = 100;
    })
    .await;
    master.next_registration().await;
    master.run_task(task("plain", "cpus:0.1;mem:32;disk:8", "head -c 100000 /dev/zero > some; sleep 60 & wait"));
    master.updates_until("plain", TaskState::TaskRunning).await;
    eventually_async(|| async {
        let stats = statistics_of(&agent, "plain").await;
        stats["processes"].as_u64().is_some_and(|n| n >= 2)
            && stats["mem_rss_bytes"].as_u64().unwrap() > 0
            && stats["disk_used_bytes"].as_u64().is_some_and(|b| b >= 100_000)
    })
    .await;
    let stats = statistics_of(&agent, "plain").await;
    assert_eq!(stats["disk_limit_bytes"], 8u64 << 20);
    master.kill_task("plain", 0);
    master.updates_until("plain", TaskState::TaskKilled).await;
    agent.stop().await.unwrap();
}

/// Waits until the async `condition` holds, for at most [`WAIT`].
async fn eventually_async<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_task_oom_killed_while_no_agent_runs_is_reported_with_the_memory_limitation_after_the_restart() {
    if !cgroups_allowed("oom while down") {
        return;
    }
    let mut master = FakeMaster::start().await;
    let agent = cgroup_agent(&mut master, |_| {}).await;
    master.run_task(task(
        "alone",
        "cpus:0.1;mem:32",
        "while [ ! -f go ]; do sleep 0.05; done; dd if=/dev/zero of=/dev/null bs=200M count=1",
    ));
    master.updates_until("alone", TaskState::TaskRunning).await;
    let cgroup = memory_cgroup(agent.work_dir.path());
    let go = agent.sandbox("alone/go");
    let work_dir = agent.crash().await;
    std::fs::write(&go, "").unwrap();
    let oom = cgroup.join("memory.oom_control");
    eventually("the kernel kills the task", || {
        std::fs::read_to_string(&oom).is_ok_and(|text| text.contains("oom_kill 1"))
    })
    .await;
    let exit_status = std::fs::read_dir(work_dir.path().join("meta/runs")).unwrap().flatten().next().unwrap().path();
    eventually("its supervisor records the end", || exit_status.join("exit_status").exists()).await;

    let mut agent = TestAgent::start_in(&master, work_dir, |config| config.isolation = Isolation::Cgroups).await;
    master.next_registration().await;
    let statuses = master.updates_until("alone", TaskState::TaskFailed).await;
    let failed = statuses.last().unwrap();
    assert_eq!(reason_of(failed), pb::TaskStatusReason::ReasonContainerLimitationMemory, "{failed:?}");
    eventually("the ended task's cgroup is removed", || !cgroup.exists()).await;
    agent.stop().await.unwrap();
}
