//! Chronos' Python client (chronos-python 1.2.1, the one Chronos users' scripts use)
//! against a real cluster: a master, an agent and `agora cron`, all on loopback with
//! ephemeral ports and temporary directories. The client's calls and checks are in
//! `tests/python/chronos_client.py`; it runs with the virtualenv `.ci/python-venv` builds
//! (`AGORA_TEST_PYTHON`, or `target/py-venv`).

mod common;

use std::time::Duration;

use common::etcd::Etcd;
use common::python::{run_script, test_python};
use common::{Cluster, Proc, eventually, free_port, get_json};

/// The whole script usually takes about 15 s; this bounds a wedged run, not a slow one.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts `agora cron` against the cluster's master with `extra` flags; answers the
/// process and its URL.
fn start_cron(cluster: &Cluster, name: &str, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let work = cluster.dir.path().join(name);
    let port_text = port.to_string();
    let mut args = vec![
        "cron",
        "--master",
        &cluster.master,
        "--port",
        &port_text,
        "--work-dir",
        work.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    (Proc::spawn(name, cluster.dir.path(), &args), format!("http://127.0.0.1:{port}"))
}

/// Waits until the process at `url` (or the leader it redirects to) is subscribed.
async fn wait_subscribed(url: &str) {
    let metrics = format!("{url}/metrics");
    eventually("agora cron to subscribe", async || {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.lines().any(|line| line == "cron_subscribed 1").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chronos_python_adds_runs_updates_kills_and_deletes_jobs_on_agora_cron() {
    let Some(python) = test_python() else { return };
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent", "cpus:4;mem:2048;disk:1000");
    cluster.wait_for_agents(1).await;
    let (cron, url) = start_cron(&cluster, "cron", &[]);
    wait_subscribed(&url).await;

    let (passed, output) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || run_script(&python, "chronos_client.py", &[&url], SCRIPT_TIMEOUT))
            .await
            .expect("join")
    };
    if !passed {
        let logs = cron.log_text();
        let tail: Vec<&str> = logs.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("chronos-python failed against agora cron:\n{output}\n---- cron (last lines) ----\n{}", tail.join("\n"));
    }
    assert!(output.contains("PASSED"), "the script ended without its verdict:\n{output}");
    println!("{output}");
}

/// Two `agora cron` on etcd: the client, given only the follower, works as against the
/// leader — its reads follow the follower's redirects and its changes are forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chronos_python_given_a_follower_reaches_the_leader() {
    let Some(python) = test_python() else { return };
    let etcd = Etcd::start();
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent", "cpus:4;mem:2048;disk:1000");
    cluster.wait_for_agents(1).await;
    let flags = ["--etcd", etcd.url.as_str(), "--etcd-lease-ttl", "2s"];
    let (a, a_url) = start_cron(&cluster, "cron-a", &flags);
    let (b, b_url) = start_cron(&cluster, "cron-b", &flags);
    let leader = eventually("a leader named by both", async || {
        let named_by_a = get_json(&format!("{a_url}/leader")).await?;
        let named_by_b = get_json(&format!("{b_url}/leader")).await?;
        (named_by_a == named_by_b).then(|| named_by_a["leader"].as_str().map(str::to_owned)).flatten()
    })
    .await;
    let follower = if a_url.ends_with(&leader) { b_url.clone() } else { a_url.clone() };
    assert_ne!(format!("http://{leader}"), follower, "the follower is the other process");
    wait_subscribed(&format!("http://{leader}")).await;

    let (passed, output) = {
        let follower = follower.clone();
        tokio::task::spawn_blocking(move || run_script(&python, "chronos_client.py", &[&follower], SCRIPT_TIMEOUT))
            .await
            .expect("join")
    };
    if !passed {
        panic!(
            "chronos-python failed through a follower ({follower}, leader {leader}):\n{output}\n---- cron-a ----\n{}\n---- cron-b ----\n{}",
            a.log_text(),
            b.log_text()
        );
    }
    assert!(output.contains("PASSED"), "the script ended without its verdict:\n{output}");
    println!("{output}");
}
