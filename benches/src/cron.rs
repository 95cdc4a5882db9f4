//! `agora bench --cron`: the real cron framework (`agora cron`, a child process of this
//! binary, so that its memory is its own) against a master in this process and emulated
//! agents whose tasks finish after a seeded duration. It creates `--jobs` jobs that run
//! every minute through Chronos' REST API, lets `--minutes` scheduled minutes pass, and
//! checks from two sides that every run due in those minutes started once: the launches
//! the agents received (task ids are `cron.<job>.<scheduled ms>.<attempt>`) and the jobs'
//! own history. Lateness is start minus scheduled time, both as the history records it
//! (`latenessMs`: when cron launched) and as the agents saw it (when the launch arrived).
//!
//! With `--history-days D`, the store is first filled through `agora_cron::store` with
//! what D days of these jobs leave at the default retention (each job's last
//! `HISTORY_PER_JOB` runs, its counters), so that `agora cron` starts by recovering it:
//! its memory then includes whatever it keeps of a month of history.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agora_cron::chronos::job::{Endpoint, parse_job};
use agora_cron::core::StoreOp;
use agora_cron::model::{HISTORY_PER_JOB, JobCounters, JobRecord, RunKey, RunRecord, RunState, RunTrigger};
use agora_proto::model::AgentId;
use agora_proto::pb;
use anyhow::{Context, bail};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::agents::{Fleet, FleetSpec, LaunchLog, wall_ms};
use crate::masters::Masters;
use crate::rest::Api;
use crate::stats::{self, Durations};
use crate::{Args, InProcessMaster, STOP_GRACE};

/// Bounds on the flags of the cron mode.
const MAX_JOBS: usize = agora_cron::model::MAX_JOBS;
const MAX_MINUTES: u64 = 24 * 60;
const MAX_HISTORY_DAYS: u64 = 366;
/// Requests to the REST API in flight at once (job creation, history reads).
const CONCURRENCY: usize = 32;
/// How long `agora cron` gets to serve its REST API.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// Store operations per commit while pre-filling the history.
const PREFILL_BATCH: usize = 10_000;
/// How often the child's memory is sampled and progress printed.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// One minute, the jobs' period.
const MINUTE_MS: u64 = 60_000;
/// Most launches the agents write down.
const MAX_LAUNCHES: usize = 20_000_000;
/// The jobs' names: `bench-00000`, ….
fn job_name(index: usize) -> String {
    format!("bench-{index:05}")
}

/// The cron mode's own flag checks (called from [`Args::check`]).
pub(crate) fn check(args: &Args) -> anyhow::Result<()> {
    if args.jobs == 0 || args.jobs > MAX_JOBS {
        bail!("--jobs must be between 1 and {MAX_JOBS}");
    }
    if args.minutes == 0 || args.minutes > MAX_MINUTES {
        bail!("--minutes must be between 1 and {MAX_MINUTES}");
    }
    if args.history_days > MAX_HISTORY_DAYS {
        bail!("--history-days must be at most {MAX_HISTORY_DAYS}");
    }
    // Creation, the wait for the first whole minute and the last runs' end come on top.
    let needed = args.minutes * 60 + 240;
    if args.duration_limit < needed {
        bail!("--duration-limit must be at least {needed} s for --minutes {}", args.minutes);
    }
    if args.task_duration_ms_mean > 20_000 {
        bail!("--task-duration-ms-mean must be at most 20000 with --cron: runs every minute must end within it");
    }
    Ok(())
}

/// Runs the cron mode to its end and prints its JSON line: success when every run due
/// in the measured minutes started, none twice, and nothing failed on the way.
pub(crate) async fn run(args: &Args, seed: u64, resources: pb::Resources) -> anyhow::Result<ExitCode> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_limit);

    let (master, addresses) = InProcessMaster::unless_given(args, seed, stop_rx.clone()).await?;
    eprintln!(
        "agora bench: cron against master {}{}; {} agents, {} jobs every minute for {} minutes{}, seed {seed}",
        addresses.join(","),
        if master.is_some() { " (in this process)" } else { "" },
        args.agents,
        args.jobs,
        args.minutes,
        if args.history_days > 0 { format!(", {} days of history", args.history_days) } else { String::new() },
    );

    let agent_slots = args.agents.div_ceil(args.agents_per_connection);
    let masters = Arc::new(Masters::new(addresses.clone(), agent_slots, 0, &tokio::runtime::Handle::current())?);
    let launches = Arc::new(LaunchLog::new(MAX_LAUNCHES));
    let fleet_spec = FleetSpec {
        count: args.agents,
        resources,
        seed,
        durations: Some(Durations::new(args.task_duration_ms_mean)),
        check_ms: args.check_ms,
        agents_per_connection: args.agents_per_connection,
        launches: Some(launches.clone()),
    };
    let fleet = Fleet::start(fleet_spec, masters, stop_rx.clone()).await;
    let registered = fleet.wait_registered(args.agents as u64, Duration::from_secs(30)).await;
    eprintln!(
        "agora bench: {registered}/{} agents registered in {:.1} s",
        args.agents,
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::Builder::new()
        .prefix("agora-bench-cron-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let work_dir = dir.path().join("cron");
    std::fs::create_dir_all(&work_dir).context("cannot create cron's work directory")?;
    let shape = JobShape { cpus: args.task_cpus, mem_mib: args.task_mem };
    let prefill = if args.history_days > 0 {
        let began = Instant::now();
        let runs = prefill(&work_dir, args.jobs, args.history_days, shape).await?;
        let seconds = began.elapsed().as_secs_f64();
        eprintln!(
            "agora bench: {runs} finished runs of {} days written to the store in {seconds:.1} s",
            args.history_days
        );
        Some((runs, seconds))
    } else {
        None
    };

    let outcome = measure(args, &addresses[0], dir.path(), &work_dir, shape, &launches, deadline).await;
    let _ = stop_tx.send(true);
    fleet.join(STOP_GRACE).await;
    if let Some(master) = master {
        let _ = tokio::time::timeout(STOP_GRACE, master.task).await;
        drop(master.runtime);
    }
    let (report, error) = match outcome {
        Ok(report) => (report, None),
        Err((report, error)) => {
            let mut dir = dir;
            dir.disable_cleanup(true);
            eprintln!("agora bench: cron's log kept in {}", dir.path().display());
            (report, Some(format!("{error:#}")))
        }
    };

    let (entries, launches_dropped) = launches.snapshot();
    let window = report.window;
    let agents = window.map(|w| from_launches(&entries, w, args.jobs)).unwrap_or_default();
    let history = window.map(|w| from_history(&report.history, w, args.jobs)).unwrap_or_default();
    let round = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
    let pct = |sorted: &[f64], p| round(stats::percentile(sorted, p));
    let expected = window.map_or(0, |w| w.minutes * args.jobs as u64);
    let all_started = expected > 0 && agents.started == expected && history.started == expected;
    let doubled = agents.doubled + history.doubled;
    let failed = error.is_some() || !all_started || doubled > 0 || launches_dropped > 0;
    let line = json!({
        "cron": true,
        "agents": args.agents,
        "agents_registered": registered,
        "jobs": args.jobs,
        "minutes": args.minutes,
        "runs_expected": expected,
        "runs_started": agents.started,
        "runs_doubled": agents.doubled,
        "launches_outside_window": agents.outside,
        "history_runs": history.found,
        "history_started": history.started,
        "history_succeeded": history.succeeded,
        "history_missed": history.missed,
        "history_doubled": history.doubled,
        "lateness_ms_p50": pct(&history.lateness_ms, 50.0),
        "lateness_ms_p99": pct(&history.lateness_ms, 99.0),
        "lateness_ms_max": round(history.lateness_ms.last().copied()),
        "agent_lateness_ms_p50": pct(&agents.lateness_ms, 50.0),
        "agent_lateness_ms_p99": pct(&agents.lateness_ms, 99.0),
        "agent_lateness_ms_max": round(agents.lateness_ms.last().copied()),
        "cron_rss_mib": round(report.rss_end_mib),
        "cron_rss_max_sampled_mib": round(report.rss_max_mib),
        "cron_hwm_mib": round(report.hwm_mib),
        "cron_rss_before_jobs_mib": round(report.rss_before_jobs_mib),
        "history_days": args.history_days,
        "history_prefilled_runs": prefill.map(|(runs, _)| runs),
        "prefill_s": round(prefill.map(|(_, s)| s)),
        "cron_ready_s": round(report.ready_s),
        "jobs_created_s": round(report.create_s),
        "task_duration_ms_mean": args.task_duration_ms_mean,
        "launches_dropped": launches_dropped,
        "seed": seed,
        "duration_s": round(Some(started.elapsed().as_secs_f64())),
        "error": error,
    });
    println!("{line}");
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The jobs' resources.
#[derive(Clone, Copy, Debug)]
struct JobShape {
    cpus: f64,
    mem_mib: u64,
}

impl JobShape {
    /// Job `index` in Chronos' JSON: every minute, UTC, `true`, disk 1 MiB (Chronos'
    /// default of 256 would make disk what bounds the runs per agent).
    fn json(&self, index: usize) -> Value {
        json!({
            "name": job_name(index),
            "command": "true",
            "schedule": "* * * * *",
            "scheduleTimeZone": "UTC",
            "cpus": self.cpus,
            "mem": self.mem_mib,
            "disk": 1,
            "owner": "bench@localhost",
        })
    }
}

/// The scheduled minutes checked: `minutes` of them from `first_ms`.
#[derive(Clone, Copy, Debug)]
struct Window {
    first_ms: u64,
    minutes: u64,
}

impl Window {
    fn contains(&self, scheduled_ms: u64) -> bool {
        scheduled_ms >= self.first_ms
            && scheduled_ms.is_multiple_of(MINUTE_MS)
            && (scheduled_ms - self.first_ms) / MINUTE_MS < self.minutes
    }
}

/// What the run against `agora cron` measured; what it did not reach stays `None`.
#[derive(Debug, Default)]
struct Report {
    ready_s: Option<f64>,
    create_s: Option<f64>,
    window: Option<Window>,
    /// Each job's history as the API answered it.
    history: Vec<Value>,
    rss_before_jobs_mib: Option<f64>,
    rss_max_mib: Option<f64>,
    rss_end_mib: Option<f64>,
    hwm_mib: Option<f64>,
}

/// Starts `agora cron`, creates the jobs, waits out the window and reads the history;
/// on an error, what was measured so far with it.
async fn measure(
    args: &Args,
    master: &str,
    dir: &Path,
    work_dir: &Path,
    shape: JobShape,
    launches: &LaunchLog,
    deadline: Instant,
) -> Result<Report, (Report, anyhow::Error)> {
    let mut report = Report::default();
    let mut process = match CronProcess::start(master, dir, work_dir) {
        Ok(process) => process,
        Err(error) => return Err((report, error)),
    };
    match drive(args, &mut process, shape, launches, deadline, &mut report).await {
        Ok(()) => Ok(report),
        Err(error) => Err((report, error)),
    }
}

async fn drive(
    args: &Args,
    process: &mut CronProcess,
    shape: JobShape,
    launches: &LaunchLog,
    deadline: Instant,
    report: &mut Report,
) -> anyhow::Result<()> {
    let api = Api::new(&process.address)?;
    let began = Instant::now();
    loop {
        process.check_alive()?;
        // Recovery is where a large history would cost memory: seen even if it never ends.
        report.hwm_mib = process.memory("VmHWM:");
        if let Ok((200, _)) = api.call(reqwest::Method::GET, "/v1/scheduler/jobs", None).await {
            break;
        }
        if began.elapsed() > READY_WITHIN {
            bail!("agora cron did not answer GET /v1/scheduler/jobs within {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.ready_s = Some(began.elapsed().as_secs_f64());
    report.rss_before_jobs_mib = process.memory("VmRSS:");
    eprintln!(
        "agora bench: agora cron ready in {:.1} s (pid {}, RSS {:.0} MiB, peak {:.0} MiB)",
        began.elapsed().as_secs_f64(),
        process.child.id(),
        report.rss_before_jobs_mib.unwrap_or(0.0),
        process.memory("VmHWM:").unwrap_or(0.0)
    );

    let began = Instant::now();
    let answers: Vec<anyhow::Result<()>> = futures::stream::iter(0..args.jobs)
        .map(|index| {
            let (api, body) = (&api, shape.json(index));
            async move {
                let (status, answer) = api.call(reqwest::Method::POST, "/v1/scheduler/iso8601", Some(&body)).await?;
                if status != 204 {
                    bail!("POST /v1/scheduler/iso8601 {}: {status} {answer}", job_name(index));
                }
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    answers.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let created_ms = wall_ms();
    report.create_s = Some(began.elapsed().as_secs_f64());
    // The first whole minute after every job exists; a job created just before an earlier
    // minute runs then too, outside the window.
    let first_ms = (created_ms / MINUTE_MS + 1) * MINUTE_MS;
    let window = Window { first_ms, minutes: args.minutes };
    report.window = Some(window);
    let last_ms = first_ms + (args.minutes - 1) * MINUTE_MS;
    // The last minute's runs must have launched and ended (a task lasts at most ten times
    // the mean), well before the minute after it.
    let settle_ms = (Durations::new(args.task_duration_ms_mean).max_ms() + 5_000).min(50_000);
    let end_ms = last_ms + settle_ms;
    eprintln!(
        "agora bench: {} jobs created in {:.1} s; measuring the runs due at {} to {}",
        args.jobs,
        began.elapsed().as_secs_f64(),
        Timestamp::from_millisecond(first_ms as i64).unwrap_or_default(),
        Timestamp::from_millisecond(last_ms as i64).unwrap_or_default(),
    );

    let mut rss_max = 0.0_f64;
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    while wall_ms() < end_ms {
        process.check_alive()?;
        if Instant::now() >= deadline {
            bail!("--duration-limit {} s reached", args.duration_limit);
        }
        if let Some(rss) = process.memory("VmRSS:") {
            rss_max = rss_max.max(rss);
            report.rss_max_mib = Some(rss_max);
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            eprintln!(
                "agora bench: {:>6.1} s  launches {}  cron RSS {:.0} MiB (max {rss_max:.0})",
                began.elapsed().as_secs_f64(),
                launches.len(),
                process.memory("VmRSS:").unwrap_or(0.0),
            );
        }
        let left = Duration::from_millis(end_ms.saturating_sub(wall_ms()));
        tokio::time::sleep(SAMPLE_EVERY.min(left)).await;
    }
    report.rss_end_mib = process.memory("VmRSS:");
    report.hwm_mib = process.memory("VmHWM:");

    // The history: the window's runs and a few before it.
    let limit = (args.minutes + 5).min(agora_cron::model::MAX_HISTORY_REQUEST as u64);
    let histories: Vec<anyhow::Result<Value>> = futures::stream::iter(0..args.jobs)
        .map(|index| {
            let api = &api;
            async move {
                let path = format!("/v1/scheduler/job/{}/history?limit={limit}", job_name(index));
                let (status, body) = api.call(reqwest::Method::GET, &path, None).await?;
                if status != 200 {
                    bail!("GET {path}: {status} {body}");
                }
                Ok(body)
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    report.history = histories.into_iter().collect::<anyhow::Result<_>>()?;
    let rss = process.memory("VmRSS:");
    let hwm = process.memory("VmHWM:");
    eprintln!("agora bench: history read; cron RSS {:.0} MiB, peak {:.0} MiB", rss.unwrap_or(0.0), hwm.unwrap_or(0.0));
    Ok(())
}

/// What the agents' launches say about the window.
#[derive(Debug, Default)]
struct FromLaunches {
    /// Runs of the window launched at least once.
    started: u64,
    /// Runs (in the window or not) launched more than once, under any attempt.
    doubled: u64,
    /// Launches of runs outside the window (before it, or the minute after).
    outside: u64,
    /// First launch's arrival minus scheduled time, sorted.
    lateness_ms: Vec<f64>,
}

/// The job and scheduled millisecond of a task id `cron.<job>.<ms>.<attempt>`.
fn run_of(task_id: &str) -> Option<(&str, u64)> {
    let mut parts = task_id.rsplitn(3, '.');
    let _attempt: u32 = parts.next()?.parse().ok()?;
    let scheduled_ms = parts.next()?.parse().ok()?;
    Some((parts.next()?.strip_prefix("cron.")?, scheduled_ms))
}

fn from_launches(entries: &[(String, u64)], window: Window, jobs: usize) -> FromLaunches {
    let mut first: BTreeMap<(&str, u64), (u64, u32)> = BTreeMap::new();
    let mut report = FromLaunches::default();
    for (task_id, at_ms) in entries {
        let Some(run) = run_of(task_id) else { continue };
        let seen = first.entry(run).or_insert((*at_ms, 0));
        seen.0 = seen.0.min(*at_ms);
        seen.1 += 1;
    }
    let names: std::collections::BTreeSet<String> = (0..jobs).map(job_name).collect();
    for ((job, scheduled_ms), (at_ms, count)) in first {
        if count > 1 {
            report.doubled += 1;
        }
        if !names.contains(job) || !window.contains(scheduled_ms) {
            report.outside += 1;
            continue;
        }
        report.started += 1;
        report.lateness_ms.push(at_ms as f64 - scheduled_ms as f64);
    }
    report.lateness_ms.sort_by(f64::total_cmp);
    report
}

/// What the jobs' histories say about the window.
#[derive(Debug, Default)]
struct FromHistory {
    /// The window's runs in the histories.
    found: u64,
    /// Those with a start.
    started: u64,
    succeeded: u64,
    missed: u64,
    /// Scheduled times of a job that appear more than once.
    doubled: u64,
    /// `latenessMs` of those started, sorted.
    lateness_ms: Vec<f64>,
}

fn from_history(histories: &[Value], window: Window, jobs: usize) -> FromHistory {
    let mut report = FromHistory::default();
    for (index, history) in histories.iter().enumerate().take(jobs) {
        let mut seen = std::collections::BTreeSet::new();
        for run in history.as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(scheduled_ms) = run["scheduled"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .and_then(|t| u64::try_from(t.as_millisecond()).ok())
            else {
                continue;
            };
            if !seen.insert(scheduled_ms) {
                report.doubled += 1;
            }
            if run["jobName"].as_str() != Some(job_name(index).as_str()) || !window.contains(scheduled_ms) {
                continue;
            }
            report.found += 1;
            match run["state"].as_str() {
                Some("succeeded") => report.succeeded += 1,
                Some("missed") => report.missed += 1,
                _ => {}
            }
            if let Some(late) = run["latenessMs"].as_i64()
                && !run["started"].is_null()
            {
                report.started += 1;
                report.lateness_ms.push(late as f64);
            }
        }
    }
    report.lateness_ms.sort_by(f64::total_cmp);
    report
}

/// Writes into a new store at `work_dir` what `days` of the bench's jobs running every
/// minute leave at the default retention: each job, created `days` ago, settled up to the
/// last whole minute, with its counters; and its last [`HISTORY_PER_JOB`] runs, each
/// succeeded a second after a launch 5 ms late, as the agent reports a command that
/// exited 0. The number of runs written.
async fn prefill(work_dir: &Path, jobs: usize, days: u64, shape: JobShape) -> anyhow::Result<u64> {
    let path = work_dir.join(agora_cron::store::FILE_NAME);
    let mut store = agora_cron::store::Store::open_file(&path).context("cannot open cron's store")?;
    let now_ms = i64::try_from(wall_ms()).context("the clock")?;
    let minute = i64::try_from(MINUTE_MS).context("a minute")?;
    let base = Timestamp::from_millisecond(now_ms / minute * minute).context("the current minute")?;
    let runs_per_job = (days * 24 * 60).min(HISTORY_PER_JOB as u64);
    let created = base - SignedDuration::from_hours(24 * i64::try_from(days).context("--history-days")?);
    let mut batch = Vec::with_capacity(PREFILL_BATCH);
    let mut written = 0;
    for index in 0..jobs {
        let spec = parse_job(&shape.json(index), Endpoint::Iso8601, created)
            .map_err(|e| anyhow::anyhow!("the bench's job does not parse: {e:?}"))?;
        let name = spec.name.clone();
        let counters = JobCounters {
            success_count: days * 24 * 60,
            error_count: 0,
            last_success: Some(base + SignedDuration::from_secs(1)),
            last_error: None,
            errors_since_last_success: 0,
        };
        let job =
            JobRecord { spec, counters, last_scheduled: Some(base), active_since: created, dependency_since: created };
        batch.push(StoreOp::PutJob(Box::new(job)));
        for back in 0..runs_per_job {
            let scheduled = base - SignedDuration::from_mins(i64::try_from(back).context("minutes")?);
            let key = RunKey { job: name.clone(), scheduled };
            let launched = scheduled + SignedDuration::from_millis(5);
            let agent = AgentId::new(format!("{:08x}-bench-{:04x}-S{}", 0x5EED_u32, index % 1000, index % 1000));
            let run = RunRecord {
                task_id: key.task_id(1),
                key,
                trigger: RunTrigger::Schedule,
                attempt: 1,
                failures: 0,
                state: RunState::Succeeded,
                killing: None,
                recorded_at: scheduled,
                deadline: Some(scheduled + SignedDuration::from_mins(1)),
                agent: Some(agent),
                started: Some(launched),
                attempt_started: Some(launched),
                ended: Some(launched + SignedDuration::from_secs(1)),
                exit_code: Some(0),
                message: "Command exited with status 0".into(),
            };
            batch.push(StoreOp::PutRun(Box::new(run)));
            written += 1;
        }
        if batch.len() >= PREFILL_BATCH {
            store.apply(&batch).await.context("cannot write cron's store")?;
            batch.clear();
        }
    }
    store.apply(&batch).await.context("cannot write cron's store")?;
    Ok(written)
}

/// `agora cron` as a child process of this binary, killed when dropped.
struct CronProcess {
    child: Child,
    address: String,
}

impl CronProcess {
    fn start(master: &str, dir: &Path, work_dir: &Path) -> anyhow::Result<CronProcess> {
        let exe = std::env::current_exe().context("cannot find this program's own binary")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free loopback port")?
            .port();
        let log = std::fs::File::create(dir.join("cron.log")).context("cannot create cron.log")?;
        let child = Command::new(exe)
            .arg("cron")
            .args(["--master", master, "--ip", "127.0.0.1", "--port", &port.to_string()])
            .arg("--work-dir")
            .arg(work_dir)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start `agora cron`")?;
        Ok(CronProcess { child, address: format!("127.0.0.1:{port}") })
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("agora cron exited ({status})");
        }
        Ok(())
    }

    /// A line of the process's `/proc/PID/status` (`VmRSS:`, `VmHWM:`) in MiB.
    fn memory(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for CronProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_id_names_its_job_and_scheduled_time() {
        assert_eq!(run_of("cron.bench-00042.1700000040000.2"), Some(("bench-00042", 1_700_000_040_000)));
        assert_eq!(run_of("cron.a.b.60000.1"), Some(("a.b", 60_000)));
        assert_eq!(run_of("other.60000"), None);
    }

    #[test]
    fn launches_count_each_run_of_the_window_once_and_a_repeat_as_doubled() {
        let window = Window { first_ms: 120_000, minutes: 2 };
        let entries: Vec<(String, u64)> = [
            ("cron.bench-00000.60000.1", 60_010),   // before the window
            ("cron.bench-00000.120000.1", 120_050), // on time
            ("cron.bench-00000.180000.1", 180_900),
            ("cron.bench-00001.120000.1", 120_020),
            ("cron.bench-00001.120000.2", 121_000), // the same run launched again
        ]
        .iter()
        .map(|(id, at)| ((*id).to_owned(), *at))
        .collect();
        let report = from_launches(&entries, window, 2);
        assert_eq!((report.started, report.doubled, report.outside), (3, 1, 1));
        assert_eq!(report.lateness_ms, vec![20.0, 50.0, 900.0]);
    }

    #[test]
    fn the_history_counts_the_window_s_runs_and_their_lateness() {
        let window = Window { first_ms: 120_000, minutes: 1 };
        let run = |scheduled: &str, state: &str, late: Option<i64>| {
            json!({"jobName": "bench-00000", "scheduled": scheduled, "state": state,
                   "started": late.map(|_| "x"), "latenessMs": late})
        };
        let history = vec![json!([
            run("1970-01-01T00:03:00.000Z", "pending", None),
            run("1970-01-01T00:02:00.000Z", "succeeded", Some(7)),
            run("1970-01-01T00:01:00.000Z", "missed", None),
        ])];
        let report = from_history(&history, window, 1);
        assert_eq!((report.found, report.started, report.succeeded, report.missed), (1, 1, 1, 0));
        assert_eq!(report.lateness_ms, vec![7.0]);
    }
}
