//! End to end: `agora local` with real agents, and `agora run` launching real processes.

mod common;

use common::Cluster;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn describe(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_task_runs_and_finishes() {
    let cluster = Cluster::local(2).await;
    let output = cluster.run(&["--name", "hello", "--", "echo", "hello"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // One instance: its output is ours, the state changes are on stderr.
    assert_eq!(stdout(&output), "hello\n", "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("TASK_RUNNING"), "{}", describe(&output));
    assert!(text.contains("TASK_FINISHED"), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_exit_code_is_propagated() {
    let cluster = Cluster::local(1).await;
    let output = cluster.run(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(stderr(&output).contains("TASK_FAILED"), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_instances_all_finish_and_are_recorded_in_state() {
    let cluster = Cluster::local(2).await;
    let output = cluster.run(&["--name", "many", "--instances", "20", "--cpus", "0.05", "--mem", "16", "--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(stdout(&output).matches("TASK_FINISHED").count(), 20, "{}", describe(&output));

    let state = cluster.state().await;
    let framework = state["completed_frameworks"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == "many"))
        .unwrap_or_else(|| panic!("the torn-down framework is in completed_frameworks: {state}"));
    let finished = framework["completed_tasks"]
        .as_array()
        .map(|tasks| tasks.iter().filter(|t| t["state"] == "TASK_FINISHED").count())
        .unwrap_or(0);
    assert_eq!(finished, 20, "{framework}");
    // Every resource came back: nothing is used once all tasks are done.
    for agent in state["slaves"].as_array().expect("slaves") {
        assert_eq!(agent["used_resources"]["cpus"], 0.0, "{agent}");
        assert_eq!(agent["used_resources"]["mem"], 0.0, "{agent}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_of_several_failing_fails_the_run() {
    let cluster = Cluster::local(1).await;
    let output = cluster.run(&[
        "--instances",
        "3",
        "--cpus",
        "0.1",
        "--",
        "sh",
        "-c",
        "case $AGORA_TASK_ID in *-1) exit 7;; esac",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_endpoints_describe_the_cluster() {
    let cluster = Cluster::local(2).await;
    let health = reqwest::get(cluster.url("/health")).await.expect("health");
    assert!(health.status().is_success());
    let version = common::get_json(&cluster.url("/version")).await.expect("version");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    let state = cluster.state().await;
    let agents = state["slaves"].as_array().expect("slaves");
    assert_eq!(agents.len(), 2);
    for agent in agents {
        assert!(agent["resources"]["cpus"].as_f64().is_some_and(|c| c > 0.0), "{agent}");
        assert!(agent["resources"]["ports"].as_str().is_some_and(|p| p.starts_with("[31")), "{agent}");
    }
    // Agents sharing one machine get disjoint shares of its ports.
    assert_ne!(agents[0]["resources"]["ports"], agents[1]["resources"]["ports"]);

    let metrics = reqwest::get(cluster.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("agora_master_agents 2"), "{metrics}");
    assert!(metrics.contains("agora_master_allocation_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("agora_master_tasks{state=\"TASK_RUNNING\"}"), "{metrics}");
    let requests = stats_value(&metrics, "agora_master_owner_requests_total");
    assert!(requests.is_some_and(|n| n > 0.0), "the owner applied the registrations: {metrics}");
    assert!(stats_value(&metrics, "agora_master_owner_busy_seconds_total").is_some_and(|s| s > 0.0), "{metrics}");
    assert!(metrics.contains("agora_master_event_queue{lane=\"reports\"}"), "{metrics}");

    let missing = reqwest::get(cluster.url("/no/such/thing")).await.expect("404");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json error");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("/no/such/thing")), "{body}");
}

/// Starts `agora ARGS` with `cwd` as its current directory, its output in `DIR/NAME.log`.
fn spawn_in(dir: &std::path::Path, name: &str, cwd: &std::path::Path, args: &[&str]) -> common::Proc {
    std::fs::create_dir_all(cwd).expect("create the current directory");
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("create log file");
    // As `Proc::spawn` does: these tasks write into the test's directories, root's alone.
    let allow_root: &[&str] = match args.first() {
        Some(&"agent") | Some(&"local") => &["--allow-root-tasks"],
        _ => &[],
    };
    let child = std::process::Command::new(common::AGORA)
        .current_dir(cwd)
        .args(args)
        .args(allow_root)
        .env("USER", "root")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("clone log file"))
        .stderr(file)
        .spawn()
        .expect("spawn agora");
    common::Proc { child, name: name.to_owned(), log, out: None, print_log_on_panic: true }
}

/// Starts an agent process registering with `cluster`'s master, working in `cwd` on
/// `work_dir` (relative to `cwd` or absolute); returns the port of its HTTP endpoint.
fn start_agent(cluster: &mut Cluster, name: &str, cwd: &std::path::Path, work_dir: &str) -> u16 {
    let port = common::free_port();
    let args = [
        "agent",
        "--master",
        &cluster.master,
        "--port",
        &port.to_string(),
        "--work-dir",
        work_dir,
        "--resources",
        "cpus:1;mem:256;disk:100;ports:[31000-31010]",
    ];
    let proc = spawn_in(cluster.dir.path(), name, cwd, &args);
    cluster.procs.push(proc);
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_on_a_relative_work_dir_runs_tasks_to_their_end() {
    let mut cluster = Cluster::master_only(&[]).await;
    let home = cluster.dir.path().join("home");
    start_agent(&mut cluster, "agent", &home, "work");
    cluster.wait_for_agents(1).await;

    let output = cluster.run(&["--", "sh", "-c", "exit 0"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stderr(&output).contains("TASK_FINISHED"), "{}", describe(&output));
    let failing = cluster.run(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(failing.status.code(), Some(3), "the real exit status: {}", describe(&failing));
    assert!(home.join("work/meta/agent.json").is_file(), "the work dir is under the agent's current directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn agora_local_on_a_relative_work_dir_runs_tasks_to_their_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let home = dir.path().join("home");
    let proc = spawn_in(
        dir.path(),
        "local",
        &home,
        &["local", "--port", &port.to_string(), "--agents", "1", "--work-dir", "rel", "--no-services", "--no-cron"],
    );
    let cluster = Cluster { dir, master: format!("127.0.0.1:{port}"), procs: vec![proc], master_args: Vec::new() };
    cluster.wait_for_agents(1).await;

    let output = cluster.run(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stderr(&output).contains("TASK_FINISHED"), "{}", describe(&output));
    assert!(home.join("rel/agent-0/meta/agent.json").is_file(), "the work dir is under the current directory");
}

/// `agora run` tears its framework down in the callback of its task's last update, which
/// the SDK therefore never acknowledges: the agent must not hold (and resend) it forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_finished_run_leaves_no_update_pending_on_its_agent() {
    let mut cluster = Cluster::master_only(&[]).await;
    let home = cluster.dir.path().to_owned();
    let work_dir = home.join("agent");
    let port = start_agent(&mut cluster, "agent", &home, work_dir.to_str().expect("utf-8 path"));
    cluster.wait_for_agents(1).await;

    let output = cluster.run(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let url = format!("http://127.0.0.1:{port}/state");
    common::eventually_with("the agent to hold no task of the torn-down framework", async || {
        let state = common::get_json(&url).await.ok_or("no /state")?;
        match state["tasks"].as_array() {
            Some(tasks) if tasks.is_empty() => Ok(()),
            _ => Err(state.to_string()),
        }
    })
    .await;
    // The record leaves the journal with the task; its run directory is deleted after that
    // by the agent's sweeper, in the background.
    let runs_dir = work_dir.join("meta/runs");
    common::eventually_with("the task's run directory to be deleted", async || {
        let runs: Vec<_> = std::fs::read_dir(&runs_dir).map_err(|e| e.to_string())?.filter_map(Result::ok).collect();
        if runs.is_empty() { Ok(()) } else { Err(format!("{} run directories left", runs.len())) }
    })
    .await;
}

/// The value of an unlabelled series in Prometheus text.
fn stats_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The README's first hour: `agora local` serves the services framework too, and
/// `agora services deploy app.json` against it deploys an app that then runs.
#[tokio::test(flavor = "multi_thread")]
async fn agora_local_runs_services_and_cron_and_an_app_deploys_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, services_port, cron_port) = (common::free_port(), common::free_port(), common::free_port());
    let work = dir.path().join("local");
    let mut proc = common::Proc::spawn(
        "local",
        dir.path(),
        &[
            "local",
            "--port",
            &port.to_string(),
            "--agents",
            "1",
            "--work-dir",
            work.to_str().expect("utf-8 path"),
            "--services-port",
            &services_port.to_string(),
            "--cron-port",
            &cron_port.to_string(),
        ],
    );
    let url = format!("http://127.0.0.1:{services_port}");
    let api = common::services::Api::new(&url);
    common::eventually_with("services to subscribe", async || {
        let info = api.get("/v2/info").await?;
        info["frameworkId"].as_str().map(|_| ()).ok_or_else(|| info.to_string())
    })
    .await;
    let app = serde_json::json!({ "id": "/sleepy", "cmd": "sleep 1000", "cpus": 0.01, "mem": 8, "instances": 2 });
    let file = common::services::write_json(dir.path(), "app", &app);
    let output = common::services::cli(&url, &["deploy", file.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stdout(&output).contains("finished"), "{}", describe(&output));
    let tasks = api.tasks("/sleepy").await.expect("tasks");
    assert_eq!(tasks.iter().filter(|t| t["state"] == "TASK_RUNNING").count(), 2, "{tasks:?}");
    let list = common::services::cli(&url, &["list"]);
    assert!(stdout(&list).contains("/sleepy"), "{}", describe(&list));
    // For scripts: one JSON object per line, the last saying how it ended.
    let scaled = common::services::cli(&url, &["scale", "/sleepy", "3", "--json"]);
    assert_eq!(scaled.status.code(), Some(0), "{}", describe(&scaled));
    let lines: Vec<serde_json::Value> = stdout(&scaled)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert_eq!(lines.first().map(|l| l["event"].clone()), Some("accepted".into()), "{lines:?}");
    assert_eq!(lines.last().map(|l| l["event"].clone()), Some("finished".into()), "{lines:?}");
    assert!(work.join("services/services.redb").is_file(), "services keeps its state under the cluster's folder");
    // Cron runs beside it, its state under the cluster's folder too.
    let jobs = common::get_json(&format!("http://127.0.0.1:{cron_port}/v1/scheduler/jobs")).await;
    assert_eq!(jobs, Some(serde_json::json!([])), "cron answers on --cron-port");
    assert!(work.join("cron/cron.redb").is_file(), "cron keeps its state under the cluster's folder");

    // Ctrl-C stops it all: the app's tasks are killed, and `agora local` exits 0.
    proc.signal("INT");
    let status = common::eventually("agora local to exit", async || proc.exited()).await;
    assert!(status.success(), "{status:?}\n{}", proc.log_text());
}

/// Run as root, `agora local` runs a task whose user would be root (frameworks name the user
/// who started them) as nobody, and as root only with `--allow-root-tasks`.
#[tokio::test(flavor = "multi_thread")]
async fn agora_local_started_as_root_runs_root_tasks_as_nobody() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let root = status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"));
    if !root {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the end-to-end tests as root");
        eprintln!("skipped: not root");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let work = dir.path().join("local");
    let log = dir.path().join("local.log");
    let file = std::fs::File::create(&log).expect("create log file");
    // Not through `Proc::spawn`, which allows root tasks.
    let child = std::process::Command::new(common::AGORA)
        .args(["local", "--port", &port.to_string(), "--agents", "1", "--no-services", "--no-cron", "--work-dir"])
        .arg(&work)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("clone log file"))
        .stderr(file)
        .spawn()
        .expect("spawn agora local");
    let proc = common::Proc { child, name: "local".to_owned(), log, out: None, print_log_on_panic: true };
    let cluster = Cluster { dir, master: format!("127.0.0.1:{port}"), procs: vec![proc], master_args: Vec::new() };
    cluster.wait_for_agents(1).await;
    for user in ["root", "nobody"] {
        let output = cluster.run(&["--user", user, "--", "sh", "-c", "test \"$(id -un)\" = nobody"]);
        assert_eq!(output.status.code(), Some(0), "as {user}: {}", describe(&output));
    }
}

/// `agora local` with `ARGS` in a fresh work dir; its output once it has exited.
fn local_refused(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let work = dir.join("work");
    let mut command = std::process::Command::new(common::AGORA);
    command
        .args(["local", "--work-dir", work.to_str().expect("utf-8 path"), "--no-services", "--no-cron"])
        .args(args)
        .env("RUST_LOG", "info");
    common::run_bounded(command)
}

#[test]
fn agora_local_on_a_busy_port_leaves_no_lock_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("address").port().to_string();
    let output = local_refused(dir.path(), &["--port", &port]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains(&format!("--port {port}: cannot listen on 127.0.0.1:{port}")),
        "{}",
        describe(&output)
    );
    assert!(!dir.path().join("work/master/LOCK").exists(), "no master/LOCK left behind");
}

#[test]
fn agora_local_with_bad_resources_stops_before_the_master_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port().to_string();
    let output = local_refused(dir.path(), &["--port", &port, "--resources", "cpus:many"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let said = stderr(&output);
    assert!(said.contains("--resources: "), "{said}");
    assert!(!said.contains("listening"), "nothing started: {said}");
    assert!(!dir.path().join("work/master/LOCK").exists(), "nothing written");
}
