//! End to end, exactly once: a job every two seconds on a real master and agent, its runs
//! proven by their own evidence (each appends its scheduled time to a file), through a
//! SIGKILL and restart of `agora cron`, and through a leader failover between two
//! `agora cron --etcd` on a real etcd. Every scheduled time in the window runs exactly once:
//! none missed (runs due while nobody led start late, within the job's epsilon), none twice.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::etcd::Etcd;
use common::masters::no_redirects;
use common::services::agent_resources;
use common::{Proc, free_port};
use serde_json::{Value, json};

/// The job's period.
const PERIOD_MS: i64 = 2_000;

/// An `agora cron` process that keeps its port and work directory across SIGKILLs.
struct Cron {
    name: String,
    port: u16,
    url: String,
    args: Vec<String>,
    dir: PathBuf,
    lives: usize,
    proc: Option<Proc>,
}

impl Cron {
    fn start(dir: &Path, name: &str, master: &str, extra: &[&str]) -> Cron {
        let port = free_port();
        let work_dir = dir.join(name);
        let mut args: Vec<String> =
            ["cron", "--master", master, "--port", &port.to_string(), "--work-dir", work_dir.to_str().expect("utf-8")]
                .iter()
                .map(|a| a.to_string())
                .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cron = Cron {
            name: name.into(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            args,
            dir: dir.into(),
            lives: 0,
            proc: None,
        };
        cron.spawn();
        cron
    }

    fn spawn(&mut self) {
        self.lives += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(&format!("{}-{}", self.name, self.lives), &self.dir, &args);
        proc.print_log_on_panic = false;
        self.proc = Some(proc);
    }

    fn kill(&mut self) {
        if let Some(proc) = self.proc.as_mut() {
            proc.kill();
        }
    }

    fn logs(&self) -> String {
        (1..=self.lives)
            .map(|life| {
                let path = self.dir.join(format!("{}-{life}.log", self.name));
                format!("---- {} life {life} ----\n{}", self.name, std::fs::read_to_string(path).unwrap_or_default())
            })
            .collect()
    }
}

/// A job every two seconds from the next whole second after `now + 2 s`; each run appends
/// its scheduled time (ms) to `evidence` as it starts. Runs may overlap (a slow start never makes the
/// next one missed), and a run may start up to 60 s late.
fn job(evidence: &Path) -> (Value, i64) {
    let start_ms = (jiff::Timestamp::now().as_millisecond() / 1000 + 3) * 1000;
    let start = jiff::Timestamp::from_millisecond(start_ms).expect("a valid time");
    // Each run lasts a second, so that a crash 700 ms after a due time finds one in flight.
    let command = format!("echo $AGORA_CRON_SCHEDULED_MS >> {}; sleep 1", evidence.display());
    let job = json!({
        "name": "tick",
        "command": command,
        "schedule": format!("R/{start}/PT2S"),
        "epsilon": "PT60S",
        "concurrent": true,
        "retries": 0,
        "cpus": 0.01,
        "mem": 8,
        "disk": 0,
    });
    (job, start_ms)
}

async fn post_job(client: &reqwest::Client, url: &str, job: &Value) {
    let answer =
        client.post(format!("{url}/v1/scheduler/iso8601")).json(job).send().await.expect("POST /v1/scheduler/iso8601");
    let status = answer.status();
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{}", answer.text().await.unwrap_or_default());
}

/// The scheduled times in the evidence file, with how often each ran.
fn evidence(path: &Path) -> BTreeMap<i64, usize> {
    let mut times = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        if let Ok(ms) = line.trim().parse::<i64>() {
            *times.entry(ms).or_insert(0) += 1;
        }
    }
    times
}

/// Waits until the evidence holds every scheduled time up to `until_ms`.
async fn wait_for_runs_until(path: &Path, start_ms: i64, until_ms: i64, logs: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let times = evidence(path);
        let all = (start_ms..=until_ms).step_by(PERIOD_MS as usize).all(|t| times.contains_key(&t));
        if all {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "runs up to {until_ms} never all ran: {times:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every scheduled time from the first to `until_ms` ran exactly once.
fn assert_exactly_once(path: &Path, start_ms: i64, until_ms: i64, logs: &str) {
    let times = evidence(path);
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "runs started twice: {twice:?}\n{logs}");
    let missing: Vec<i64> =
        (start_ms..=until_ms).step_by(PERIOD_MS as usize).filter(|t| !times.contains_key(t)).collect();
    assert!(missing.is_empty(), "runs never started: {missing:?} (ran: {times:?})\n{logs}");
    let strays: Vec<_> = times.keys().filter(|t| (*t - start_ms) % PERIOD_MS != 0 || **t < start_ms).collect();
    assert!(strays.is_empty(), "runs at times the schedule never gave: {strays:?}");
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_every_two_seconds_runs_once_per_time_across_a_sigkill_and_restart_of_agora_cron() {
    let cluster = common::Cluster::master_only(&[]).await;
    let dir = cluster.dir.path().to_owned();
    let _agent = common::agent::Agent::start(&dir, "agent", &cluster.master, &agent_resources());
    cluster.wait_for_agents(1).await;
    let mut cron = Cron::start(&dir, "cron", &cluster.master, &[]);
    let client = reqwest::Client::new();
    let evidence_file = dir.join("evidence");
    let (job, start_ms) = job(&evidence_file);
    common::eventually("agora cron to answer", async || {
        client.get(format!("{}/ping", cron.url)).send().await.ok().filter(|a| a.status().is_success())
    })
    .await;
    post_job(&client, &cron.url, &job).await;
    wait_for_runs_until(&evidence_file, start_ms, start_ms + 3 * PERIOD_MS, || cron.logs()).await;

    // A crash between runs' due times and starts: a second or three down, then back on the
    // same work directory. The runs due meanwhile start late, once.
    tokio::time::sleep(Duration::from_millis(700)).await;
    cron.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cron.spawn();
    let restarted_ms = now_ms();
    let until_ms = start_ms + ((restarted_ms - start_ms) / PERIOD_MS + 4) * PERIOD_MS;
    wait_for_runs_until(&evidence_file, start_ms, until_ms, || cron.logs()).await;
    assert_exactly_once(&evidence_file, start_ms, until_ms, &cron.logs());

    // The history agrees with the evidence: each of those times once, succeeded.
    let history: Value = client
        .get(format!("{}/v1/scheduler/job/tick/history?limit=1000", cron.url))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("JSON");
    let runs = history.as_array().cloned().unwrap_or_default();
    for t in (start_ms..=until_ms).step_by(PERIOD_MS as usize) {
        let at = |r: &Value| r["scheduled"].as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
        let matching: Vec<&Value> = runs.iter().filter(|r| at(r).map(|a| a.as_millisecond()) == Some(t)).collect();
        let all: Vec<&Value> = runs.iter().map(|r| &r["scheduled"]).collect();
        assert_eq!(matching.len(), 1, "{t}: {matching:?} among {all:?}");
        assert!(matches!(matching[0]["state"].as_str(), Some("succeeded" | "running" | "launched")), "{}", matching[0]);
    }
}

/// The index of the process that says it leads.
async fn leader_of(client: &reqwest::Client, crons: &[&Cron]) -> Option<usize> {
    for (i, cron) in crons.iter().enumerate() {
        let Ok(answer) = client.get(format!("{}/leader", cron.url)).send().await else { continue };
        let Ok(body) = answer.json::<Value>().await else { continue };
        if body["leader"] == format!("127.0.0.1:{}", cron.port) {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_every_two_seconds_runs_once_per_time_across_a_leader_failover_on_etcd() {
    let etcd = Etcd::start();
    let cluster = common::Cluster::master_only(&[]).await;
    let dir = cluster.dir.path().to_owned();
    let _agent = common::agent::Agent::start(&dir, "agent", &cluster.master, &agent_resources());
    cluster.wait_for_agents(1).await;
    let flags = ["--etcd", etcd.url.as_str(), "--etcd-lease-ttl", "2s"];
    let mut a = Cron::start(&dir, "cron-a", &cluster.master, &flags);
    let mut b = Cron::start(&dir, "cron-b", &cluster.master, &flags);
    let client = no_redirects();
    let first = common::eventually("a leader", async || leader_of(&client, &[&a, &b]).await).await;
    let (leader, follower) = if first == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };

    // The follower learns who leads (from the leader key), then sends readers to the
    // leader and forwards changes to it: the job is posted to the follower.
    let leader_address = format!("127.0.0.1:{}", leader.port);
    common::eventually("the follower to know the leader", async || {
        let answer = client.get(format!("{}/leader", follower.url)).send().await.ok()?;
        let body: Value = answer.json().await.ok()?;
        (body["leader"] == leader_address.as_str()).then_some(())
    })
    .await;
    let redirected = client.get(format!("{}/v1/scheduler/jobs", follower.url)).send().await.expect("answer");
    assert_eq!(redirected.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let location = format!("http://127.0.0.1:{}/v1/scheduler/jobs", leader.port);
    assert_eq!(redirected.headers()["location"], location.as_str());
    let evidence_file = dir.join("evidence");
    let (job, start_ms) = job(&evidence_file);
    post_job(&client, &follower.url, &job).await;
    let logs = |a: &Cron, b: &Cron| format!("{}{}", a.logs(), b.logs());
    wait_for_runs_until(&evidence_file, start_ms, start_ms + 3 * PERIOD_MS, || logs(leader, follower)).await;

    // SIGKILL the leader: within the lease (2 s) the follower leads, recovers the job and
    // its runs in flight from etcd, and starts the runs due meanwhile, late, once.
    tokio::time::sleep(Duration::from_millis(700)).await;
    leader.kill();
    let killed_ms = now_ms();
    common::eventually("the follower to lead", async || {
        (leader_of(&client, &[follower]).await == Some(0)).then_some(())
    })
    .await;
    let until_ms = start_ms + ((now_ms() - start_ms) / PERIOD_MS + 4) * PERIOD_MS;
    wait_for_runs_until(&evidence_file, start_ms, until_ms, || logs(leader, follower)).await;
    assert_exactly_once(&evidence_file, start_ms, until_ms, &logs(leader, follower));
    assert!(until_ms > killed_ms, "the window covers the takeover");
}

/// The Jepsen-style series: a seeded sequence of SIGKILLs of `agora cron`, of the agent and
/// of the master, each back after a seeded pause, while a job runs every two seconds; then
/// every scheduled time from the first to well after the last fault ran exactly once. The
/// seed is `CRON_CHAOS_SEED` or random, and printed with any failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_every_two_seconds_runs_once_per_time_through_seeded_kills_of_cron_the_agent_and_the_master() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("CRON_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut cluster = common::Cluster::master_only(&[]).await;
    let dir = cluster.dir.path().to_owned();
    let mut agent = common::agent::Agent::start(&dir, "agent", &cluster.master, &agent_resources());
    cluster.wait_for_agents(1).await;
    let mut cron = Cron::start(&dir, "cron", &cluster.master, &[]);
    let client = reqwest::Client::new();
    let evidence_file = dir.join("evidence");
    let (job, start_ms) = job(&evidence_file);
    common::eventually("agora cron to answer", async || {
        client.get(format!("{}/ping", cron.url)).send().await.ok().filter(|a| a.status().is_success())
    })
    .await;
    post_job(&client, &cron.url, &job).await;
    wait_for_runs_until(&evidence_file, start_ms, start_ms + PERIOD_MS, || cron.logs()).await;

    let mut faults = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
        let down = Duration::from_millis(rng.random_range(200..2_500));
        match rng.random_range(0..3) {
            0 => {
                faults.push(format!("cron down {down:?}"));
                cron.kill();
                tokio::time::sleep(down).await;
                cron.spawn();
            }
            1 => {
                faults.push(format!("agent down {down:?}"));
                agent.kill();
                tokio::time::sleep(down).await;
                agent.spawn();
            }
            _ => {
                faults.push(format!("master down {down:?}"));
                cluster.procs[0].kill();
                tokio::time::sleep(down).await;
                cluster.restart_master().await;
            }
        }
    }
    let until_ms = start_ms + ((now_ms() - start_ms) / PERIOD_MS + 4) * PERIOD_MS;
    let logs = || format!("seed {seed} (CRON_CHAOS_SEED={seed} repeats it), faults {faults:?}\n{}", cron.logs());
    wait_for_runs_until(&evidence_file, start_ms, until_ms, logs).await;
    assert_exactly_once(&evidence_file, start_ms, until_ms, &logs());
}
