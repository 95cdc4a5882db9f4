//! End-to-end tests of `agora bench`: the real binary, a master in its process, emulated
//! agents and frameworks over loopback gRPC, and the one JSON line it ends with.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

const AGORA: &str = env!("CARGO_BIN_EXE_agora");
/// Longest a bench run in these tests may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// Runs `agora bench` with `args`, killing it if it outlives `WAIT`.
fn bench(args: &[&str]) -> (Output, serde_json::Value) {
    let child = Command::new(AGORA)
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agora bench");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("collect output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("agora bench {args:?} did not finish within {WAIT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let json =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr:\n{stderr}", lines[0]));
    (output, json)
}

fn number(json: &serde_json::Value, field: &str) -> f64 {
    json[field].as_f64().unwrap_or_else(|| panic!("{field} is not a number in {json}"))
}

#[test]
fn a_small_run_finishes_every_task_and_reports_the_measurements() {
    let (output, json) = bench(&[
        "--agents",
        "50",
        "--frameworks",
        "3",
        "--tasks",
        "500",
        "--task-duration-ms-mean",
        "20",
        "--seed",
        "7",
    ]);
    assert!(
        output.status.success(),
        "exit status {:?}, {json}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["lost_tasks"], 0, "{json}");
    assert_eq!(json["agents"], 50);
    assert_eq!(json["frameworks"], 3);
    assert_eq!(json["seed"], 7);
    assert!(number(&json, "tasks_launched") >= 500.0, "{json}");
    assert_eq!(json["tasks_finished"], 500, "{json}");
    assert!(number(&json, "tasks_per_s") > 0.0, "{json}");
    // Every task was launched before the run ended with the last one's end.
    let launch_s = number(&json, "launch_s");
    assert!(0.0 < launch_s && launch_s <= number(&json, "duration_s"), "{json}");
    assert!(number(&json, "launch_tasks_per_s") >= number(&json, "tasks_per_s"), "{json}");
    let p50 = number(&json, "offer_to_launch_ms_p50");
    let p99 = number(&json, "offer_to_launch_ms_p99");
    assert!(0.0 < p50 && p50 <= p99, "{json}");
    assert!(number(&json, "allocation_ms_p50") <= number(&json, "allocation_ms_p99"), "{json}");
    assert!(number(&json, "master_rss_mib") > 1.0, "{json}");
    assert_eq!(json["duration_limit_hit"], false);
    // The progress lines go to stderr, never to stdout.
    assert!(String::from_utf8_lossy(&output.stderr).contains("agents registered"));
}

#[test]
fn agents_that_disconnect_and_restart_lose_no_task() {
    let (output, json) = bench(&[
        "--agents",
        "30",
        "--frameworks",
        "2",
        "--tasks",
        "1500",
        "--task-duration-ms-mean",
        "300",
        "--chaos",
        "20",
        "--seed",
        "11",
        "--duration-limit",
        "40",
    ]);
    assert!(
        output.status.success(),
        "exit status {:?}, {json}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["lost_tasks"], 0, "{json}");
    assert_eq!(json["tasks_finished"], 1500, "{json}");
    assert!(number(&json, "chaos_disconnects") + number(&json, "chaos_restarts") > 0.0, "{json}");
    // Restarted agents fail their running tasks, which the frameworks launch again.
    assert!(number(&json, "tasks_launched") >= 1500.0 + number(&json, "relaunches") - 1.0, "{json}");
}

#[test]
fn a_run_that_outlives_its_duration_limit_fails_but_still_reports() {
    let (output, json) = bench(&[
        "--agents",
        "5",
        "--frameworks",
        "1",
        "--tasks",
        "20",
        "--task-duration-ms-mean",
        "5000",
        "--duration-limit",
        "1",
        "--seed",
        "3",
    ]);
    assert!(!output.status.success(), "{json}");
    assert_eq!(json["duration_limit_hit"], true, "{json}");
    assert!(number(&json, "lost_tasks") > 0.0, "{json}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--duration-limit"));
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let output = Command::new(AGORA).args(["bench", "--agents", "0"]).output().expect("run agora bench");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--agents"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_leader_failover_loses_no_task_and_is_timed() {
    // Three master processes electing their leader in an etcd the bench starts itself.
    let (output, json) = bench(&[
        "--masters",
        "3",
        "--failover",
        "--etcd-lease-ttl",
        "2s",
        "--agents",
        "40",
        "--frameworks",
        "2",
        "--tasks",
        "400",
        "--seed",
        "3",
        "--duration-limit",
        "50",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit status {:?}, {json}\n{stderr}", output.status);
    assert_eq!(json["masters"], 3, "{json}");
    assert_eq!(json["lost_tasks"], 0, "{json}");
    assert_eq!(json["relaunches"], 0, "no task ended: {json}");
    assert_eq!(json["tasks_running"], 400, "{json}");
    assert_eq!(json["tasks_running_after_failover"], 400, "the new leader knows every task: {json}");
    let leader = number(&json, "failover_leader_ms");
    let agents = number(&json, "failover_agents_ms");
    assert!(leader > 0.0 && agents > 0.0 && number(&json, "failover_frameworks_ms") > 0.0, "{json}");
    assert!(number(&json, "failover_tasks_known_ms") >= agents, "{json}");
    assert!(stderr.contains("SIGKILLing the leading master"), "{stderr}");
}

#[test]
fn a_held_run_on_a_master_process_reports_that_process_memory() {
    let (output, json) =
        bench(&["--masters", "1", "--hold", "--agents", "20", "--frameworks", "2", "--tasks", "200", "--seed", "5"]);
    assert!(
        output.status.success(),
        "exit status {:?}, {json}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["tasks_running"], 200, "{json}");
    assert_eq!(json["tasks_finished"], 0, "held tasks never finish: {json}");
    assert_eq!(json["lost_tasks"], 0, "{json}");
    assert_eq!(json["master_rss_note"], "the leading master process, alone", "{json}");
    assert!(number(&json, "master_rss_mib") > 1.0, "{json}");
}

#[test]
fn a_failover_needs_several_masters() {
    let output = Command::new(AGORA).args(["bench", "--failover", "--masters", "1"]).output().expect("run agora bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--failover needs --masters 2 or more"), "{stderr}");
    let output =
        Command::new(AGORA).args(["bench", "--master", "127.0.0.1:1", "--masters", "2"]).output().expect("run");
    assert!(!output.status.success(), "--master and --masters conflict");
}

#[test]
fn an_interrupted_run_stops_the_masters_it_started() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(AGORA)
        .args(["bench", "--masters", "2", "--agents", "5", "--tasks", "1000000", "--task-duration-ms-mean", "100000"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agora bench");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // "agora bench: master A,B (2 processes …)", then the agents register.
    let mut masters = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        if let Some(rest) = line.strip_prefix("agora bench: master ") {
            masters = rest.split_whitespace().next().unwrap_or_default().split(',').map(str::to_owned).collect();
        }
        if line.contains("agents registered") {
            break;
        }
    }
    assert_eq!(masters.len(), 2, "the bench named its two masters");
    for master in &masters {
        assert!(std::net::TcpStream::connect(master).is_ok(), "{master} serves while the bench runs");
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().expect("wait for agora bench");
    assert_eq!(status.code(), Some(130), "an interrupted bench exits 130");
    for master in &masters {
        assert!(std::net::TcpStream::connect(master).is_err(), "{master} was left running");
    }
}

#[test]
fn the_services_mode_deploys_restarts_and_times_the_real_framework() {
    let (output, json) = bench(&[
        "--services",
        "--agents",
        "10",
        "--apps",
        "5",
        "--instances-per-app",
        "4",
        "--restart-apps",
        "1",
        "--big-app",
        "20",
        "--check-ms",
        "50",
        "--seed",
        "3",
        "--duration-limit",
        "50",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit status {:?}, {json}\n{stderr}", output.status);
    assert_eq!(json["services"], true, "{json}");
    assert_eq!(json["tasks"], 40, "5 × 4 and the big app's 20: {json}");
    assert_eq!(json["tasks_healthy"], 40, "{json}");
    assert!(number(&json, "services_deploy_s") > 0.0, "{json}");
    assert_eq!(json["restarts_completed"], 1, "{json}");
    assert!(number(&json, "restart_s") > 0.0, "{json}");
    for read in ["apps_embed_tasks", "app_get"] {
        let (p50, p99) = (number(&json, &format!("{read}_ms_p50")), number(&json, &format!("{read}_ms_p99")));
        assert!(0.0 < p50 && p50 <= p99, "{read}: {json}");
        assert!(number(&json, &format!("{read}_samples")) >= 1.0, "{read}: {json}");
    }
    assert_eq!(json["read_errors"], 0, "{json}");
    assert_eq!(json["big_restart_completed"], true, "{json}");
    assert!(number(&json, "big_restart_s") > 0.0, "{json}");
    // At least ceil(20 × 0.9) = 18 healthy throughout; the first sample, taken as the
    // restart began, saw at most the 20 old ones.
    let min_healthy = number(&json, "big_restart_min_healthy");
    assert!((18.0..=20.0).contains(&min_healthy), "{json}");
    assert!(number(&json, "big_restart_samples") >= 1.0, "{json}");
    assert_eq!(json["duration_limit_hit"], false, "{json}");
}

#[test]
fn services_flags_are_checked_and_need_the_services_mode() {
    let run = |args: &[&str]| Command::new(AGORA).arg("bench").args(args).output().expect("run agora bench");
    let output = run(&["--services", "--apps", "3", "--restart-apps", "4"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--restart-apps"), "{output:?}");
    let output = run(&["--services", "--min-health-capacity", "1.5"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--min-health-capacity"), "{output:?}");
    let output = run(&["--apps", "3"]);
    assert!(!output.status.success(), "--apps without --services is refused");
    let output = run(&["--services", "--chaos", "1"]);
    assert!(!output.status.success(), "--services and --chaos conflict");
}

#[test]
fn a_bench_against_an_absent_master_fails_at_once_in_one_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("address").to_string();
    drop(closed);
    let started = std::time::Instant::now();
    let output = Command::new(AGORA)
        .args(["bench", "--master", &address, "--duration-limit", "5", "--agents", "2", "--tasks", "10"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agora bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().starts_with(&format!("agora: --master: cannot reach the master at {address}: ")), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "at once: {:?}", started.elapsed());
}

#[test]
fn a_bench_against_a_master_that_never_answers_ends_at_its_duration_limit() {
    // Accepts connections and says nothing, as a hung master would.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = silent.local_addr().expect("address").to_string();
    let started = std::time::Instant::now();
    let output = Command::new(AGORA)
        .args(["bench", "--master", &address, "--duration-limit", "3", "--agents", "2", "--tasks", "10"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agora bench");
    let elapsed = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--duration-limit 3 s reached"), "{stderr}");
    assert!(elapsed < std::time::Duration::from_secs(15), "the limit is kept: {elapsed:?}\n{stderr}");
    drop(silent);
}
