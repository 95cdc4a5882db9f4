//! Chronos' Python client (chronos-python 1.2.1, the one Chronos users' scripts use)
//! against a real cluster: a master, an agent and `agora cron`, all on loopback with
//! ephemeral ports and temporary directories. The client's calls and checks are in
//! `tests/python/chronos_client.py`; it runs with the virtualenv `.ci/python-venv` builds
//! (`AGORA_TEST_PYTHON`, or `target/py-venv`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cluster, Proc, eventually, free_port};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chronos_python_adds_runs_updates_kills_and_deletes_jobs_on_agora_cron() {
    let Some(python) = test_python() else { return };
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent", "cpus:4;mem:2048;disk:1000");
    cluster.wait_for_agents(1).await;

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let work = cluster.dir.path().join("cron");
    let args = [
        "cron",
        "--master",
        &cluster.master,
        "--port",
        &port.to_string(),
        "--work-dir",
        work.to_str().expect("utf-8 path"),
    ];
    let cron = Proc::spawn("cron", cluster.dir.path(), &args);
    let metrics = format!("{url}/metrics");
    eventually("agora cron to subscribe", async || {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.lines().any(|line| line == "cron_subscribed 1").then_some(())
    })
    .await;

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
