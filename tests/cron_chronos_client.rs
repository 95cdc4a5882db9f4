//! Chronos' Python client (chronos-python 1.2.1, the one Chronos users' scripts use)
//! against a real cluster: a master, an agent and `agora cron`, all on loopback with
//! ephemeral ports and temporary directories. The client's calls and checks are in
//! `tests/python/chronos_client.py`; it runs with the virtualenv `.ci/python-venv` builds
//! (`AGORA_TEST_PYTHON`, or `target/py-venv`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::etcd::Etcd;
use common::{Cluster, Proc, eventually, free_port, get_json};

/// The whole script usually takes about 15 s; this bounds a wedged run, not a slow one.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

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

/// Runs the script to its end (or kills it after [`SCRIPT_TIMEOUT`]); returns whether it
/// passed and everything it printed.
fn run_script(python: &PathBuf, args: &[&str]) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/chronos_client.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Nothing here may leave loopback.
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
        tokio::task::spawn_blocking(move || run_script(&python, &[&url])).await.expect("join")
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
        tokio::task::spawn_blocking(move || run_script(&python, &[&follower])).await.expect("join")
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
