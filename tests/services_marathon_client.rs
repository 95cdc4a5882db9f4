//! Marathon's Python client (marathon 0.13.0, the one many deployment scripts use) against
//! a real cluster: a master, two agents (attributes `rack:r1` and `rack:r2`) and
//! `agora services`, all on loopback with ephemeral ports and temporary directories. The
//! client's calls and checks are in `tests/python/marathon_client.py`; it runs with the
//! virtualenv `.ci/python-venv` builds (`AGORA_TEST_PYTHON`, or `target/py-venv`).

mod common;

use std::time::Duration;

use common::etcd::Etcd;
use common::python::{run_script, test_python};
use common::services::{Services, free_port_block};
use common::{Cluster, Proc, eventually, free_port, get_json};

/// The whole script usually takes about 10 s; this bounds a wedged run, not a slow one.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

fn add_agent(cluster: &mut Cluster, name: &str, rack: &str) {
    let work = cluster.dir.path().join(name);
    let port = free_port().to_string();
    // Tasks bind their ports: a block no other test's agents offer.
    let (first, last) = free_port_block(10);
    let resources = format!("cpus:2;mem:1024;disk:100;ports:[{first}-{last}]");
    let attributes = format!("rack:{rack}");
    let master = cluster.master.clone();
    let args = [
        "agent",
        "--master",
        &master,
        "--port",
        &port,
        "--work-dir",
        work.to_str().expect("utf-8 path"),
        "--resources",
        &resources,
        "--attributes",
        &attributes,
    ];
    let proc = Proc::spawn(name, cluster.dir.path(), &args);
    cluster.procs.push(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_python_manages_apps_tasks_deployments_groups_and_events_on_agora_services() {
    let Some(python) = test_python() else { return };
    let mut cluster = Cluster::master_only(&[]).await;
    add_agent(&mut cluster, "agent-r1", "r1");
    add_agent(&mut cluster, "agent-r2", "r2");
    cluster.wait_for_agents(2).await;

    let services =
        Services::start(cluster.dir.path(), "services", &cluster.master, &["--event-subscriber", "http_callback"]);
    services.wait_subscribed().await;
    let url = services.url.clone();

    let (passed, output) =
        tokio::task::spawn_blocking(move || run_script(&python, "marathon_client.py", &[&url], SCRIPT_TIMEOUT))
            .await
            .expect("join");
    if !passed {
        let logs = services.all_logs();
        let tail: Vec<&str> = logs.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // The master's and agents' logs follow, printed as the cluster is dropped.
        panic!(
            "marathon-python failed against agora services:\n{output}\n---- services (last lines) ----\n{}",
            tail.join("\n")
        );
    }
    assert!(output.contains("PASSED"), "the script ended without its verdict:\n{output}");
    println!("{output}");
}

/// Two `agora services` on etcd: the client, given the follower (after a server that is
/// down), reaches the leader through the follower's redirects, its event stream included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_python_given_a_follower_reaches_the_leader_through_its_redirects() {
    let Some(python) = test_python() else { return };
    let etcd = Etcd::start();
    let mut cluster = Cluster::master_only(&[]).await;
    add_agent(&mut cluster, "agent", "r1");
    cluster.wait_for_agents(1).await;
    let flags = ["--etcd", etcd.url.as_str(), "--etcd-lease-ttl", "2s"];
    let a = Services::start(cluster.dir.path(), "services-a", &cluster.master, &flags);
    let b = Services::start(cluster.dir.path(), "services-b", &cluster.master, &flags);
    let leader = eventually("a leader named by both", async || {
        let named_by_a = get_json(&format!("{}/v2/leader", a.url)).await?;
        let named_by_b = get_json(&format!("{}/v2/leader", b.url)).await?;
        (named_by_a == named_by_b).then(|| named_by_a["leader"].as_str().map(str::to_owned)).flatten()
    })
    .await;
    let (leading, following) = if leader == format!("127.0.0.1:{}", a.port) { (&a, &b) } else { (&b, &a) };
    assert_eq!(leader, format!("127.0.0.1:{}", leading.port), "the leader is one of the two");
    leading.wait_subscribed().await;

    let follower = following.url.clone();
    let (passed, output) = tokio::task::spawn_blocking(move || {
        run_script(&python, "marathon_client.py", &["--follower", &follower, &leader], SCRIPT_TIMEOUT)
    })
    .await
    .expect("join");
    if !passed {
        let logs = format!("{}{}", a.all_logs(), b.all_logs());
        panic!("marathon-python failed through a follower:\n{output}\n{logs}");
    }
    assert!(output.contains("PASSED"), "the script ended without its verdict:\n{output}");
    println!("{output}");
}
