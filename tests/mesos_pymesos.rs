//! pymesos 0.3.15, an unmodified Mesos framework library, against Agora's master through
//! Mesos' v1 scheduler HTTP API. The framework (`tests/python/pymesos_framework.py`) runs
//! in two lives: the first subscribes, launches tasks that finish (acknowledging every
//! update), suppresses and revives, launches a long task and stops without tearing down;
//! the second subscribes again with the framework id, reconciles the long task, kills it
//! and tears the framework down. With several masters on etcd, the client is given a
//! follower and follows its 307 to the leader, and again after the leader is killed. It
//! runs with the virtualenv `.ci/python-venv` builds (`AGORA_TEST_PYTHON`, or
//! `target/py-venv`).

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use common::agent::Agent;
use common::etcd::Etcd;
use common::masters::Masters;
use common::python::test_python;
use common::{Cluster, eventually, get_json};

/// One life of the script usually takes a few seconds; this bounds a wedged run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// Starts one life of the framework; its output goes to `log`.
fn spawn_script(python: &PathBuf, args: &[&str], log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).expect("create the script's log");
    common::python::script_command(python, "pymesos_framework.py", args)
        .stdout(out.try_clone().expect("clone the log"))
        .stderr(out)
        .spawn()
        .expect("start the pymesos framework")
}

/// Waits for the script to end (killing it after [`SCRIPT_TIMEOUT`]); returns whether it
/// passed and everything it printed.
async fn finish_script(mut child: Child, log: &std::path::Path) -> (bool, String) {
    let deadline = std::time::Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut output = std::fs::read_to_string(log).unwrap_or_default();
    if status.is_none() {
        output.push_str(&format!("\nkilled after {SCRIPT_TIMEOUT:?}"));
    }
    (status.is_some_and(|s| s.success()) && output.contains("PASSED"), output)
}

async fn run_script(python: &PathBuf, args: &[&str], log: &std::path::Path) -> String {
    let child = spawn_script(python, args, log);
    let (passed, output) = finish_script(child, log).await;
    assert!(passed, "pymesos framework {args:?} failed:\n{output}");
    println!("{output}");
    output
}

fn framework_id(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("FRAMEWORK_ID="))
        .expect("the first life prints its framework id")
        .trim()
        .to_owned()
}

/// The states of a framework's tasks in `/state` (live and completed), by task id.
fn task_states(framework: &serde_json::Value) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = ["tasks", "completed_tasks"]
        .iter()
        .flat_map(|list| framework[list].as_array().cloned().unwrap_or_default())
        .map(|t| (t["id"].as_str().unwrap_or_default().to_owned(), t["state"].as_str().unwrap_or_default().to_owned()))
        .collect();
    states.sort();
    states
}

fn find_framework<'a>(state: &'a serde_json::Value, list: &str, id: &str) -> Option<&'a serde_json::Value> {
    state[list].as_array()?.iter().find(|f| f["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pymesos_framework_launches_acknowledges_fails_over_and_tears_down_on_agora_local() {
    let Some(python) = test_python() else { return };
    let cluster = Cluster::local(2).await;
    let dir = cluster.dir.path().to_owned();

    let first = run_script(&python, &["first", &cluster.master], &dir.join("first.log")).await;
    let id = framework_id(&first);
    // Failed over, not gone: the master keeps the framework and its running task.
    let state = cluster.state().await;
    let framework = find_framework(&state, "frameworks", &id).expect("the framework outlives its first life");
    assert_eq!(framework["active"], false, "no subscription between the lives: {framework}");
    assert!(task_states(framework).contains(&("pymesos-long".to_owned(), "TASK_RUNNING".to_owned())));

    run_script(&python, &["second", &cluster.master, &id], &dir.join("second.log")).await;
    let url = cluster.url("/state");
    let done = eventually("the framework torn down", async || {
        let state = get_json(&url).await?;
        find_framework(&state, "completed_frameworks", &id).cloned()
    })
    .await;
    assert_eq!(
        task_states(&done),
        [
            ("pymesos-long".to_owned(), "TASK_KILLED".to_owned()),
            ("pymesos-short-0".to_owned(), "TASK_FINISHED".to_owned()),
            ("pymesos-short-1".to_owned(), "TASK_FINISHED".to_owned()),
        ]
    );
}

/// Three masters on etcd, the client given a follower: it follows the 307 to the leader;
/// the leader is killed, and once another leads it is started again (as a supervisor
/// would; now a follower); the client reconnects to the address it had, follows the 307
/// to the new leader, re-subscribes with its id, finds its task still running, kills it
/// and tears down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pymesos_framework_follows_redirects_to_a_new_leader_after_the_leader_is_killed() {
    let Some(python) = test_python() else { return };
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--etcd-lease-ttl", "2s", "--agent-heartbeat-interval", "200ms", "--agent-timeout", "10s"];
    let mut masters = Masters::start(&etcd, dir.path(), 3, &flags);
    let leader = masters.leader().await;
    let _agent = Agent::start(dir.path(), "agent", &masters.list(), "cpus:2;mem:1024;disk:100");
    let follower = masters.addrs[(leader + 1) % 3].clone();
    let log = dir.path().join("ha.log");
    let child = spawn_script(&python, &["ha", &follower], &log);
    let ready = eventually("the framework running its task", async || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines().find_map(|l| l.strip_prefix("READY=")).map(str::to_owned)
    })
    .await;
    let state = get_json(&format!("http://{}/state", masters.addrs[leader])).await.expect("the leader's state");
    assert!(find_framework(&state, "frameworks", ready.trim()).is_some(), "subscribed at the leader");

    masters.kill(leader);
    let new_leader =
        eventually("another master leading", async || masters.leading().await.filter(|&i| i != leader)).await;
    masters.restart(leader);
    let (passed, output) = finish_script(child, &log).await;
    if !passed {
        let logs: Vec<String> = (0..3).map(|i| masters.log_text(i)).collect();
        panic!("pymesos failed across a leader change:\n{output}\n---- masters ----\n{}", logs.join("\n"));
    }
    println!("{output}");
    assert!(
        output.contains(&format!("now subscribed at {}", masters.addrs[new_leader])),
        "the client re-subscribed at the new leader:\n{output}"
    );
}
