//! Marathon's Python client (marathon 0.13.0, the one many deployment scripts use) against
//! a real cluster: a master, two agents (attributes `rack:r1` and `rack:r2`) and
//! `agora services`, all on loopback with ephemeral ports and temporary directories. The
//! client's calls and checks are in `tests/python/marathon_client.py`; it runs with the
//! virtualenv `.ci/python-venv` builds (`AGORA_TEST_PYTHON`, or `target/py-venv`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::etcd::Etcd;
use common::services::{Services, free_port_block};
use common::{Cluster, Proc, eventually, free_port, get_json};

/// The whole script usually takes about 10 s; this bounds a wedged run, not a slow one.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// The venv's python, or `None` when it is missing outside CI (the test then says so and
/// passes without running; with `CI=true` a missing venv fails it).
fn test_python() -> Option<PathBuf> {
    let path = match std::env::var_os("AGORA_TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python"),
    };
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "no Python test environment at {} (build it with `bash .ci/python-venv`, or set AGORA_TEST_PYTHON)",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}; required in CI");
    eprintln!("SKIPPED: {message}");
    None
}

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

/// Runs the script to its end (or kills it after [`SCRIPT_TIMEOUT`]); returns whether it
/// passed and everything it printed.
fn run_script(python: &PathBuf, args: &[&str]) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/marathon_client.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // requests honours proxy variables; nothing here may leave loopback.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = std::time::Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        if status.is_none() { format!("\nkilled after {SCRIPT_TIMEOUT:?}") } else { String::new() }
    );
    (status.is_some_and(|s| s.success()), output)
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

    let (passed, output) = tokio::task::spawn_blocking(move || run_script(&python, &[&url])).await.expect("join");
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
    let (passed, output) =
        tokio::task::spawn_blocking(move || run_script(&python, &["--follower", &follower, &leader]))
            .await
            .expect("join");
    if !passed {
        let logs = format!("{}{}", a.all_logs(), b.all_logs());
        panic!("marathon-python failed through a follower:\n{output}\n{logs}");
    }
    assert!(output.contains("PASSED"), "the script ended without its verdict:\n{output}");
    println!("{output}");
}
