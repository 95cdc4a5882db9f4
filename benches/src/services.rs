//! `agora bench --services`: the real services framework (`agora_services::run`, the code
//! behind `agora services`) in this process, against the emulated agents, driven through
//! its REST API as Marathon's users drive it. It deploys `--apps` apps (and a `--big-app`)
//! with a health check, waits until every instance is healthy, restarts `--restart-apps`
//! of them at once while readers time `GET /v2/apps?embed=apps.tasks` and
//! `GET /v2/apps/{id}` (after timing them for a few seconds with nothing deploying), then
//! restarts the big app alone while sampling its healthy count.
//! A restart counts as completed when its deployment is gone and the app runs its
//! instances, all healthy and all started by the restart.
//!
//! The clients (deployer, readers, sampler) run on a runtime of their own, as the emulated
//! frameworks do, the list readers on another, and so does the services framework: a
//! latency is the framework's, not a wait in the agents' run queue or behind another
//! client's tens of MiB.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::pb;
use anyhow::{Context, bail};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::agents::{Fleet, FleetSpec};
use crate::masters::Masters;
use crate::rest::Api;
use crate::stats::{self, Samples};
use crate::{Args, InProcessMaster, OwnRuntime, STOP_GRACE, rss_mib};

/// Bounds on the flags of the services mode.
const MAX_APPS: usize = 10_000;
const MAX_INSTANCES: u32 = 100_000;
const MAX_READERS: usize = 256;
/// Apps in one `PUT /v2/apps` (one deployment): a body far below the API's 4 MiB limit.
const DEPLOY_BATCH: usize = 100;
/// Restart requests and per-app checks in flight at once.
const CONCURRENCY: usize = 16;
/// How often the deployments' progress is looked at.
const POLL: Duration = Duration::from_millis(100);
/// How long the readers run on the settled cluster before the restarts, for the reads'
/// cost without a deployment in progress.
const IDLE_READS: Duration = Duration::from_secs(3);
/// How often the big app's healthy count is sampled during its restart.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Latency samples kept per kind of read; beyond, a uniform subset (reservoir).
const MAX_SAMPLES: usize = 200_000;
/// Worker threads of the services framework's runtime and of the clients' runtime.
const SERVICES_THREADS: usize = 2;
const CLIENT_THREADS: usize = 1;
/// The big app's id; the others are `/bench/app-NNNN`.
const BIG_APP: &str = "/bench/big";

/// The services mode's own flag checks (called from [`Args::check`]).
pub(crate) fn check(args: &Args) -> anyhow::Result<()> {
    if args.apps == 0 || args.apps > MAX_APPS {
        bail!("--apps must be between 1 and {MAX_APPS}");
    }
    if args.instances_per_app == 0 || args.instances_per_app > MAX_INSTANCES {
        bail!("--instances-per-app must be between 1 and {MAX_INSTANCES}");
    }
    if args.restart_apps > args.apps {
        bail!("--restart-apps must be at most --apps ({})", args.apps);
    }
    if args.big_app > MAX_INSTANCES {
        bail!("--big-app must be at most {MAX_INSTANCES} instances");
    }
    if !(0.0..=1.0).contains(&args.min_health_capacity) {
        bail!("--min-health-capacity must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&args.max_over_capacity) {
        bail!("--max-over-capacity must be between 0 and 1");
    }
    if args.list_readers > MAX_READERS || args.app_readers > MAX_READERS {
        bail!("--list-readers and --app-readers must be at most {MAX_READERS}");
    }
    if args.read_interval_ms == 0 || args.read_interval_ms > 60_000 {
        bail!("--read-interval-ms must be between 1 and 60000");
    }
    Ok(())
}

/// Runs the services mode to its end and prints its JSON line: success when every app
/// became healthy and every restart completed within `--duration-limit`.
pub(crate) async fn run(args: &Args, seed: u64, resources: pb::Resources) -> anyhow::Result<ExitCode> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_limit);

    let (master, addresses) = InProcessMaster::unless_given(args, seed, stop_rx.clone()).await?;
    let apps = app_ids(args.apps);
    let total = args.apps as u64 * u64::from(args.instances_per_app) + u64::from(args.big_app);
    eprintln!(
        "agora bench: services against master {}{}; {} agents, {} apps × {} instances{}, seed {seed}",
        addresses.join(","),
        if master.is_some() { " (in this process)" } else { "" },
        args.agents,
        args.apps,
        args.instances_per_app,
        if args.big_app > 0 { format!(" and {BIG_APP} × {}", args.big_app) } else { String::new() },
    );

    let agent_slots = args.agents.div_ceil(args.agents_per_connection);
    let masters = Arc::new(Masters::new(addresses.clone(), agent_slots, 0, &tokio::runtime::Handle::current())?);
    let fleet_spec = FleetSpec {
        count: args.agents,
        resources,
        seed,
        durations: None,
        check_ms: args.check_ms,
        agents_per_connection: args.agents_per_connection,
        launches: None,
    };
    let fleet = Fleet::start(fleet_spec, masters, stop_rx.clone()).await;
    let registered = fleet.wait_registered(args.agents as u64, Duration::from_secs(30)).await;
    eprintln!(
        "agora bench: {registered}/{} agents registered in {:.1} s",
        args.agents,
        started.elapsed().as_secs_f64()
    );

    // The services framework, on a loopback port, its store in a temporary directory.
    let work_dir = tempfile::tempdir().context("cannot make the services' work directory")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    listener.set_nonblocking(true)?;
    let api_address = listener.local_addr()?.to_string();
    let mut config = agora_services::ServicesConfig::new(addresses, work_dir.path().to_path_buf(), api_address.clone());
    config.planner.seed = seed;
    let services_runtime = OwnRuntime::new("bench-services", SERVICES_THREADS)?;
    let mut stop = stop_rx.clone();
    let mut services = services_runtime.handle().spawn(async move {
        // Made here, so that the listener is driven by this runtime's reactor.
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async move { agora_master::runtime::stopped(&mut stop).await };
        agora_services::run(config, listener, shutdown).await.map_err(anyhow::Error::from)
    });
    eprintln!("agora bench: services REST API on {api_address}");

    // The clients drive the scenario; the services framework must not stop meanwhile.
    let client_runtime = OwnRuntime::new("bench-clients", CLIENT_THREADS)?;
    let list_runtime = OwnRuntime::new("bench-list-readers", CLIENT_THREADS)?;
    let scenario = Scenario {
        api: Api::new(&api_address)?,
        apps,
        instances: args.instances_per_app,
        big_app: args.big_app,
        restart_apps: args.restart_apps,
        app_json: AppShape::of(args),
        readers: ReaderSpec {
            list: args.list_readers,
            app: args.app_readers,
            interval: Duration::from_millis(args.read_interval_ms),
        },
        total,
        seed,
        deadline,
        lists: ListReaders { runtime: list_runtime.handle().clone(), api: Api::new(&api_address)? },
    };
    let mut driver = client_runtime.handle().spawn(scenario.run());
    let (report, services_error) = tokio::select! {
        report = &mut driver => (report.unwrap_or_default(), None),
        result = &mut services => {
            driver.abort();
            let why = match result {
                Ok(Ok(())) => "stopped by itself".to_owned(),
                Ok(Err(error)) => format!("{error:#}"),
                Err(error) => format!("panicked: {error}"),
            };
            (Report::default(), Some(why))
        }
    };
    let process_rss = rss_mib("self");

    let _ = stop_tx.send(true);
    if services_error.is_none() {
        let _ = tokio::time::timeout(STOP_GRACE, services).await;
    }
    fleet.join(STOP_GRACE).await;
    if let Some(master) = master {
        let _ = tokio::time::timeout(STOP_GRACE, master.task).await;
        drop(master.runtime);
    }
    drop(client_runtime);
    drop(list_runtime);
    drop(services_runtime);

    let round = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
    let pct = |sorted: &[f64], p| round(stats::percentile(sorted, p));
    let (list, app) = (&report.reads.list_ms, &report.reads.app_ms);
    let (idle_list, idle_app) = (&report.idle.list_ms, &report.idle.app_ms);
    let restarts_done = report.restarts_completed == args.restart_apps;
    let big_done = args.big_app == 0 || report.big_restart_completed;
    let failed = services_error.is_some() || report.error.is_some();
    let finished = report.deployed && restarts_done && big_done;
    let limit_hit = !finished && !failed;
    let line = json!({
        "services": true,
        "agents": args.agents,
        "agents_registered": registered,
        "apps": args.apps,
        "instances_per_app": args.instances_per_app,
        "big_app": args.big_app,
        "tasks": total,
        "tasks_healthy": report.tasks_healthy,
        "services_deploy_s": round(report.deploy_s),
        "restart_apps": args.restart_apps,
        "restart_s": round(report.restart_s),
        "restarts_completed": report.restarts_completed,
        "apps_embed_tasks_ms_p50": pct(list, 50.0),
        "apps_embed_tasks_ms_p99": pct(list, 99.0),
        "apps_embed_tasks_ms_max": round(list.last().copied()),
        "apps_embed_tasks_samples": list.len(),
        "app_get_ms_p50": pct(app, 50.0),
        "app_get_ms_p99": pct(app, 99.0),
        "app_get_ms_max": round(app.last().copied()),
        "app_get_samples": app.len(),
        "read_errors": report.reads.errors + report.idle.errors,
        "idle_apps_embed_tasks_ms_p50": pct(idle_list, 50.0),
        "idle_apps_embed_tasks_ms_p99": pct(idle_list, 99.0),
        "idle_app_get_ms_p50": pct(idle_app, 50.0),
        "idle_app_get_ms_p99": pct(idle_app, 99.0),
        "big_restart_s": round(report.big_restart_s),
        "big_restart_min_healthy": report.big_restart_min_healthy,
        "big_restart_samples": report.big_restart_samples,
        "big_restart_completed": report.big_restart_completed,
        "min_health_capacity": args.min_health_capacity,
        "max_over_capacity": args.max_over_capacity,
        "check_ms": args.check_ms,
        "list_readers": args.list_readers,
        "app_readers": args.app_readers,
        "read_interval_ms": args.read_interval_ms,
        "process_rss_mib": round(process_rss),
        "seed": seed,
        "duration_s": round(Some(started.elapsed().as_secs_f64())),
        "duration_limit_hit": limit_hit,
        "services_error": services_error,
        "scenario_error": report.error,
    });
    println!("{line}");
    if let Some(why) = &services_error {
        eprintln!("agora bench: the services framework stopped: {why}");
    } else if limit_hit {
        eprintln!(
            "agora bench: --duration-limit {} s reached: deployed {}, restarts completed {}/{}, big app restarted {}",
            args.duration_limit, report.deployed, report.restarts_completed, args.restart_apps, big_done
        );
    }
    Ok(if failed || limit_hit { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn app_ids(apps: usize) -> Vec<String> {
    (0..apps).map(|i| format!("/bench/app-{i:04}")).collect()
}

/// What the apps are made of, as flags give it.
#[derive(Clone, Copy, Debug)]
struct AppShape {
    cpus: f64,
    mem_mib: u64,
    min_health_capacity: f64,
    max_over_capacity: f64,
}

impl AppShape {
    fn of(args: &Args) -> Self {
        Self {
            cpus: args.task_cpus,
            mem_mib: args.task_mem,
            min_health_capacity: args.min_health_capacity,
            max_over_capacity: args.max_over_capacity,
        }
    }

    /// An app definition in Marathon's JSON: one port, an HTTP health check on it (the
    /// emulated agents pass it after `--check-ms` at most; `delaySeconds` 0, where
    /// Marathon's 15 would only add a fixed wait to every figure).
    fn json(&self, id: &str, instances: u32) -> Value {
        json!({
            "id": id,
            "cmd": "sleep 3600",
            "cpus": self.cpus,
            "mem": self.mem_mib,
            "instances": instances,
            "healthChecks": [{
                "protocol": "MESOS_HTTP",
                "path": "/health",
                "portIndex": 0,
                "gracePeriodSeconds": 300,
                "intervalSeconds": 60,
                "timeoutSeconds": 20,
                "maxConsecutiveFailures": 3,
                "delaySeconds": 0,
            }],
            "upgradeStrategy": {
                "minimumHealthCapacity": self.min_health_capacity,
                "maximumOverCapacity": self.max_over_capacity,
            },
        })
    }
}

/// The readers' concurrency and pace.
#[derive(Clone, Copy, Debug)]
struct ReaderSpec {
    list: usize,
    app: usize,
    interval: Duration,
}

/// Everything the clients do, in order.
struct Scenario {
    api: Api,
    apps: Vec<String>,
    instances: u32,
    big_app: u32,
    restart_apps: usize,
    app_json: AppShape,
    readers: ReaderSpec,
    total: u64,
    seed: u64,
    deadline: Instant,
    lists: ListReaders,
}

/// What the scenario measured; what it did not reach stays `None` (or zero).
#[derive(Debug, Default)]
struct Report {
    deployed: bool,
    deploy_s: Option<f64>,
    tasks_healthy: u64,
    restart_s: Option<f64>,
    restarts_completed: usize,
    /// The readers' latencies on the settled cluster, and during the restarts.
    idle: ReadReport,
    reads: ReadReport,
    big_restart_s: Option<f64>,
    big_restart_min_healthy: Option<u64>,
    big_restart_samples: u64,
    big_restart_completed: bool,
    /// Why the scenario stopped before its end, other than the deadline.
    error: Option<String>,
}

impl Scenario {
    async fn run(self) -> Report {
        let mut report = Report::default();
        if let Err(error) = self.run_into(&mut report).await {
            eprintln!("agora bench: the services scenario stopped: {error:#}");
            report.error = Some(format!("{error:#}"));
        }
        report
    }

    async fn run_into(&self, report: &mut Report) -> anyhow::Result<()> {
        let (deploy_s, healthy) = self.deploy().await?;
        report.deploy_s = deploy_s;
        report.tasks_healthy = healthy;
        report.deployed = deploy_s.is_some();
        if !report.deployed {
            return Ok(());
        }
        let readers = Readers::start(&self.api, &self.lists, &self.apps, self.readers, self.seed ^ 0x1D1E);
        tokio::time::sleep(IDLE_READS).await;
        report.idle = readers.stop().await;
        if self.restart_apps > 0 {
            let readers = Readers::start(&self.api, &self.lists, &self.apps, self.readers, self.seed);
            let outcome = self.restart_many(&self.apps[..self.restart_apps]).await;
            report.reads = readers.stop().await;
            let (restart_s, completed) = outcome?;
            report.restart_s = restart_s;
            report.restarts_completed = completed;
            eprintln!(
                "agora bench: {completed}/{} apps restarted in {}; {} list and {} app reads",
                self.restart_apps,
                seconds(restart_s),
                report.reads.list_ms.len(),
                report.reads.app_ms.len()
            );
        }
        if self.big_app > 0 {
            self.restart_big(report).await?;
        }
        Ok(())
    }

    /// Puts every app through `PUT /v2/apps` (a deployment per batch) and waits until
    /// each runs its instances, all healthy, with no deployment left. The seconds that
    /// took (`None` past the deadline) and the healthy instances at the end.
    async fn deploy(&self) -> anyhow::Result<(Option<f64>, u64)> {
        let mut definitions: Vec<Value> = self.apps.iter().map(|id| self.app_json.json(id, self.instances)).collect();
        if self.big_app > 0 {
            definitions.push(self.app_json.json(BIG_APP, self.big_app));
        }
        let started = Instant::now();
        for batch in definitions.chunks(DEPLOY_BATCH) {
            let body = Value::Array(batch.to_vec());
            let (status, answer) =
                self.api.call_when_ready(reqwest::Method::PUT, "/v2/apps", Some(&body), self.deadline).await?;
            if !(200..300).contains(&status) {
                bail!("PUT /v2/apps: {status} {answer}");
            }
        }
        eprintln!(
            "agora bench: {} apps put in {:.2} s; waiting until {} instances are healthy",
            definitions.len(),
            started.elapsed().as_secs_f64(),
            self.total
        );
        let mut next_progress = Instant::now() + Duration::from_secs(1);
        loop {
            let (status, body) = self.api.call(reqwest::Method::GET, "/v2/apps", None).await?;
            if status != 200 {
                bail!("GET /v2/apps: {status} {body}");
            }
            let apps = body["apps"].as_array().map(Vec::as_slice).unwrap_or_default();
            let healthy: u64 = apps.iter().map(|a| a["tasksHealthy"].as_u64().unwrap_or(0)).sum();
            let settled = apps.len() == definitions.len()
                && apps.iter().all(|a| {
                    a["tasksHealthy"].as_u64() == a["instances"].as_u64()
                        && a["deployments"].as_array().is_some_and(Vec::is_empty)
                });
            if settled {
                let deploy_s = started.elapsed().as_secs_f64();
                eprintln!("agora bench: {healthy} instances healthy in {deploy_s:.2} s");
                return Ok((Some(deploy_s), healthy));
            }
            if Instant::now() >= self.deadline {
                return Ok((None, healthy));
            }
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(1);
                let deploying = apps.iter().filter(|a| a["deployments"].as_array().is_some_and(|d| !d.is_empty()));
                eprintln!(
                    "agora bench: {:>6.1} s  healthy {healthy}/{}  apps deploying {}",
                    started.elapsed().as_secs_f64(),
                    self.total,
                    deploying.count()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Restarts `ids` at once and waits until their deployments are gone: the seconds
    /// from the first request (`None` past the deadline), and how many apps then run
    /// their instances, all healthy and all new.
    async fn restart_many(&self, ids: &[String]) -> anyhow::Result<(Option<f64>, usize)> {
        let before = self.tasks_of(ids).await?;
        let started = Instant::now();
        // Owned ids: a closure over borrowed ones is not general enough for a spawned
        // future.
        let answers: Vec<anyhow::Result<String>> = futures::stream::iter(ids.to_vec())
            .map(|id| async move { self.restart(&id).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut pending: BTreeSet<String> = answers.into_iter().collect::<anyhow::Result<_>>()?;
        eprintln!("agora bench: {} restarts asked in {:.2} s", ids.len(), started.elapsed().as_secs_f64());
        let mut next_progress = Instant::now() + Duration::from_secs(1);
        while !pending.is_empty() {
            if Instant::now() >= self.deadline {
                return Ok((None, 0));
            }
            tokio::time::sleep(POLL).await;
            let (status, body) = self.api.call(reqwest::Method::GET, "/v2/deployments", None).await?;
            if status != 200 {
                bail!("GET /v2/deployments: {status} {body}");
            }
            let live: BTreeSet<&str> =
                body.as_array().map(|d| d.iter().filter_map(|d| d["id"].as_str()).collect()).unwrap_or_default();
            pending.retain(|id| live.contains(id.as_str()));
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(1);
                eprintln!(
                    "agora bench: {:>6.1} s  restarts pending {}/{}",
                    started.elapsed().as_secs_f64(),
                    pending.len(),
                    ids.len()
                );
            }
        }
        let restart_s = started.elapsed().as_secs_f64();
        let after = self.tasks_of(ids).await?;
        let completed = before
            .iter()
            .zip(&after)
            .filter(|((old, _), (new, healthy))| restarted(old, new, *healthy, self.instances))
            .count();
        Ok((Some(restart_s), completed))
    }

    /// Restarts the big app alone, sampling its healthy count until its deployment is
    /// gone.
    async fn restart_big(&self, report: &mut Report) -> anyhow::Result<()> {
        let (old, _) = self.api.app_tasks(BIG_APP).await?;
        let started = Instant::now();
        self.restart(BIG_APP).await?;
        let path = format!("/v2/apps?id={BIG_APP}");
        let mut min_healthy = u64::MAX;
        let mut next_progress = Instant::now() + Duration::from_secs(1);
        loop {
            let sampled = Instant::now();
            let (status, body) = self.api.call(reqwest::Method::GET, &path, None).await?;
            if status != 200 {
                bail!("GET {path}: {status} {body}");
            }
            let app = body["apps"]
                .as_array()
                .and_then(|apps| apps.iter().find(|a| a["id"] == BIG_APP))
                .with_context(|| format!("GET {path}: no {BIG_APP} in {body}"))?;
            let healthy = app["tasksHealthy"].as_u64().unwrap_or(0);
            min_healthy = min_healthy.min(healthy);
            report.big_restart_samples += 1;
            report.big_restart_min_healthy = Some(min_healthy);
            if app["deployments"].as_array().is_some_and(Vec::is_empty) {
                break;
            }
            if Instant::now() >= self.deadline {
                return Ok(());
            }
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(1);
                eprintln!(
                    "agora bench: {:>6.1} s  {BIG_APP} healthy {healthy}/{}  (lowest {min_healthy})",
                    started.elapsed().as_secs_f64(),
                    self.big_app
                );
            }
            tokio::time::sleep_until(sampled + SAMPLE_EVERY).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        report.big_restart_s = Some(seconds);
        let (new, healthy) = self.api.app_tasks(BIG_APP).await?;
        report.big_restart_completed = restarted(&old, &new, healthy, self.big_app);
        eprintln!(
            "agora bench: {BIG_APP} restarted in {seconds:.2} s, never fewer than {min_healthy} healthy ({} samples)",
            report.big_restart_samples
        );
        Ok(())
    }

    /// `POST /v2/apps/{id}/restart`; the deployment's id.
    async fn restart(&self, id: &str) -> anyhow::Result<String> {
        let path = format!("/v2/apps{id}/restart");
        let (status, body) = self.api.call(reqwest::Method::POST, &path, None).await?;
        match body["deploymentId"].as_str() {
            Some(deployment) if status == 200 => Ok(deployment.to_owned()),
            _ => bail!("POST {path}: {status} {body}"),
        }
    }

    /// Each app's task ids and healthy count, in the order of `ids`.
    async fn tasks_of(&self, ids: &[String]) -> anyhow::Result<Vec<(BTreeSet<String>, u64)>> {
        futures::stream::iter(ids.to_vec())
            .map(|id| async move { self.api.app_tasks(&id).await })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// Whether an app's restart completed: it runs `instances` tasks, all healthy, none of
/// them one it ran before.
fn restarted(old: &BTreeSet<String>, new: &BTreeSet<String>, healthy: u64, instances: u32) -> bool {
    new.len() == instances as usize && healthy == u64::from(instances) && new.is_disjoint(old)
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "(not within the limit)".to_owned(), |s| format!("{s:.2} s"))
}

/// The readers running during the restarts.
struct Readers {
    stop: watch::Sender<bool>,
    list: Vec<JoinHandle<Reads>>,
    app: Vec<JoinHandle<Reads>>,
}

/// One reader's latencies and failures.
#[derive(Debug)]
struct Reads {
    samples: Samples,
    errors: u64,
}

/// All readers' latencies (sorted: `GET /v2/apps?embed=apps.tasks`, `GET /v2/apps/{id}`)
/// and failures.
#[derive(Debug, Default)]
struct ReadReport {
    list_ms: Vec<f64>,
    app_ms: Vec<f64>,
    errors: u64,
}

impl Readers {
    /// Starts the app readers on the current runtime and the list readers on `lists`,
    /// with a client of their own: reading a listing of tens of MiB must not delay the
    /// app readers' answers in their client.
    fn start(api: &Api, lists: &ListReaders, apps: &[String], spec: ReaderSpec, seed: u64) -> Readers {
        let (stop, stopped) = watch::channel(false);
        let apps: Arc<[String]> = apps.into();
        let list = (0..spec.list)
            .map(|i| {
                let reader =
                    read(lists.api.clone(), Picker::List, spec.interval, seed ^ (i as u64) << 32, stopped.clone());
                lists.runtime.spawn(reader)
            })
            .collect();
        let app = (0..spec.app)
            .map(|i| {
                let picker = Picker::App(apps.clone());
                tokio::spawn(read(api.clone(), picker, spec.interval, seed ^ (i as u64 + 1) << 40, stopped.clone()))
            })
            .collect();
        Readers { stop, list, app }
    }

    /// Stops the readers (each ends after its request in flight) and merges what they
    /// measured.
    async fn stop(self) -> ReadReport {
        let _ = self.stop.send(true);
        let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
        let mut errors = 0;
        let mut merged = Vec::with_capacity(2);
        for handles in [self.list, self.app] {
            let mut all = Samples::new(MAX_SAMPLES);
            for handle in handles {
                if let Ok(reads) = handle.await {
                    all.merge(reads.samples, &mut rng);
                    errors += reads.errors;
                }
            }
            merged.push(all.into_sorted());
        }
        let app_ms = merged.pop().unwrap_or_default();
        let list_ms = merged.pop().unwrap_or_default();
        ReadReport { list_ms, app_ms, errors }
    }
}

/// Where the list readers run: a runtime (thread) and an HTTP client of their own.
struct ListReaders {
    runtime: tokio::runtime::Handle,
    api: Api,
}

/// What a reader asks for.
enum Picker {
    /// `GET /v2/apps?embed=apps.tasks`.
    List,
    /// `GET /v2/apps/{id}` of an app drawn at random.
    App(Arc<[String]>),
}

/// Polls until `stop`: a request every `interval` (or at once after a slower one).
async fn read(api: Api, picker: Picker, interval: Duration, seed: u64, mut stop: watch::Receiver<bool>) -> Reads {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut reads = Reads { samples: Samples::new(MAX_SAMPLES), errors: 0 };
    // Readers start spread over one interval, not in step.
    let first = interval.mul_f64(rng.random_range(0.0..1.0));
    let mut next = Instant::now() + first;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|stop| *stop) => return reads,
        }
        let began = Instant::now();
        let path = match &picker {
            Picker::List => "/v2/apps?embed=apps.tasks".to_owned(),
            Picker::App(apps) => format!("/v2/apps{}", apps[rng.random_range(0..apps.len())]),
        };
        match api.timed_get(&path).await {
            Some(ms) => reads.samples.record(ms, &mut rng),
            None => reads.errors += 1,
        }
        next = (began + interval).max(Instant::now());
    }
}

impl Api {
    /// An app's task ids and its healthy count, from `GET /v2/apps/{id}`.
    async fn app_tasks(&self, id: &str) -> anyhow::Result<(BTreeSet<String>, u64)> {
        let (status, body) = self.call(reqwest::Method::GET, &format!("/v2/apps{id}"), None).await?;
        if status != 200 {
            bail!("GET /v2/apps{id}: {status} {body}");
        }
        let app = &body["app"];
        let ids = app["tasks"]
            .as_array()
            .map(|tasks| tasks.iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Ok((ids, app["tasksHealthy"].as_u64().unwrap_or(0)))
    }
}
