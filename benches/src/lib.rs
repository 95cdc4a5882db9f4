//! `agora-bench`: the traffic and failure simulator behind `agora bench`. It starts a
//! master in this process (or targets `--master`), connects emulated agents and frameworks
//! over real gRPC on loopback, lets the frameworks run short tasks, optionally injects agent
//! failures, and ends with one JSON line of measurements on stdout. The `agora` binary
//! parses the flags ([`Args`]) and calls [`run`]; [`agents`] is usable on its own, to drive
//! other frameworks against emulated agents. With `--services` it runs the real services
//! framework against them instead of emulated frameworks (`services.rs`); with `--cron`,
//! the real cron framework as a child process (`cron.rs`).

// The summary is one `serde_json::json!` object of some fifty fields, deeper than the
// macro's recursion allows by default.
#![recursion_limit = "256"]

pub mod agents;
mod cron;
mod frameworks;
pub mod masters;
mod poll;
mod rest;
mod services;
pub mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agora_proto::model::Resources;
use agora_proto::pb;
use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use agents::{AgentCounters, Chaos, Fleet, FleetSpec};
use frameworks::{Framework, FrameworkCounters, FrameworkReport, FrameworkSpec, TaskShape};
use masters::{Masters, SpawnSpec, Spawned, http_get, serving_leader};
use stats::{Durations, Samples};

/// Agents sharing one HTTP/2 connection. The master's HTTP/2 server allows 200 concurrent
/// streams per connection; staying well below keeps every agent's stream open at once
/// while using few file descriptors.
const AGENTS_PER_CHANNEL: usize = 100;
/// Bounds on the flags, so that a typo cannot ask for the impossible.
const MAX_AGENTS: usize = 200_000;
const MAX_FRAMEWORKS: usize = 10_000;
const MAX_TASKS: u64 = 100_000_000;
/// Most masters the bench starts.
const MAX_MASTERS: usize = 7;
/// How long the emulators get to stop before the process moves on.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The flags of `agora bench` (the binary flattens them into its subcommand).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Running masters (`host:port`, comma-separated: the emulators follow the leader);
    /// without it a master is started in this process, or `--masters` of them as
    /// processes.
    #[arg(long, value_delimiter = ',', conflicts_with = "masters")]
    pub master: Vec<String>,
    /// The master's process id, to report its memory when `--master` runs on this host.
    #[arg(long)]
    pub master_pid: Option<u32>,
    /// Start this many `agora master` processes (their own memory is then what
    /// `master_rss_mib` reports); more than one elect their leader in an etcd server the
    /// bench starts too (`$ETCD` or `etcd` on the `PATH`).
    #[arg(long, default_value_t = 0)]
    pub masters: usize,
    /// The leader's etcd lease of the started masters.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub etcd_lease_ttl: Duration,
    /// Measure a leader failover: tasks run until killed instead of finishing; once all of
    /// `--tasks` run, the leading master is SIGKILLed and the bench measures how long until
    /// another master serves, every agent has re-registered and every framework has
    /// re-subscribed, and checks that no task ended. Needs `--masters` 2 or more.
    #[arg(long, requires = "masters")]
    pub failover: bool,
    /// Tasks run until the end of the run instead of finishing: the run ends once all of
    /// `--tasks` run, to see what a master holding that many tasks needs (with
    /// `--masters 1`, `master_rss_mib` is the master process alone).
    #[arg(long)]
    pub hold: bool,
    /// Poll `/state-summary`, `/tasks?limit=100` and `/state` this often each (0: not at
    /// all), as operators' tools would, and report their latencies (see `poll.rs`).
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
    /// With `--poll-ms`: keep polling this long after the goal is reached (every task
    /// running, with `--hold`), to measure the reads on the master at its full size.
    #[arg(long, default_value_t = 0)]
    pub poll_after_s: u64,
    /// Emulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Emulated frameworks; the tasks are split evenly between them.
    #[arg(long, default_value_t = 10)]
    pub frameworks: usize,
    /// Tasks that must finish, in total.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: u64,
    /// Seed for task durations, chaos and the in-process master (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Mean task duration; durations are exponential, capped at ten times the mean.
    #[arg(long, default_value_t = 1000)]
    pub task_duration_ms_mean: u64,
    /// Agent failures per second: disconnections (the agent comes back with its tasks after
    /// up to a second) and restarts (its running tasks fail; the framework relaunches them).
    #[arg(long, default_value_t = 0.0)]
    pub chaos: f64,
    /// Longest run in seconds; hitting it is an error (the JSON line is still printed).
    #[arg(long, default_value_t = 600)]
    pub duration_limit: u64,
    /// What each emulated agent offers.
    #[arg(long, default_value = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]")]
    pub agent_resources: String,
    /// CPUs of each task.
    #[arg(long, default_value_t = 0.1)]
    pub task_cpus: f64,
    /// Emulated agents sharing one HTTP/2 connection to the master (at most 150: the
    /// master allows 200 concurrent streams per connection).
    #[arg(long, default_value_t = AGENTS_PER_CHANNEL)]
    pub agents_per_connection: usize,
    /// Most tasks launched and not yet ended at once, over all frameworks (split evenly):
    /// frameworks pace their launches to what the cluster finishes, instead of launching
    /// every task in the first round and queueing every update and ACCEPT behind that
    /// burst. A framework at its bound suppresses offers and revives below half of it;
    /// the master's `--max-offers-per-framework` keeps each REVIVE from bringing an offer
    /// for every free agent.
    #[arg(long, default_value_t = 30_000)]
    pub max_in_flight: u64,
    /// Milliseconds over which each framework raises its in-flight bound from a tenth to
    /// all of it after it first subscribes (slow start; 0: the whole bound at once). Without
    /// it, every framework launches its whole share in the same first round.
    #[arg(long, default_value_t = 2_000)]
    pub ramp_ms: u64,
    /// Memory of each task, in MiB.
    #[arg(long, default_value_t = 32)]
    pub task_mem: u64,
    /// Longest an emulated health or readiness check takes to pass after the check's own
    /// delay: each task's is drawn (seeded, uniform) up to this.
    #[arg(long, default_value_t = 500)]
    pub check_ms: u64,
    /// Run the real services framework (`agora services`) in this process against the
    /// emulated agents instead of emulated frameworks: deploy `--apps` apps of
    /// `--instances-per-app` instances, each with a health check, through its REST API
    /// (and a `--big-app`), wait until every instance is healthy, restart
    /// `--restart-apps` of them at once while readers time `GET /v2/apps?embed=apps.tasks`
    /// and `GET /v2/apps/{id}`, then restart the big app while its healthy count is
    /// sampled. `--tasks`, `--frameworks` and the task durations do not apply.
    #[arg(long, conflicts_with_all = ["masters", "failover", "hold", "chaos", "cron"])]
    pub services: bool,
    /// With `--services`: apps deployed (`/bench/app-0000`, …).
    #[arg(long, default_value_t = 1000, requires = "services")]
    pub apps: usize,
    /// With `--services`: instances of each app.
    #[arg(long, default_value_t = 50, requires = "services")]
    pub instances_per_app: u32,
    /// With `--services`: apps restarted at once (`POST /v2/apps/{id}/restart`, a rolling
    /// restart each) while the readers run.
    #[arg(long, default_value_t = 100, requires = "services")]
    pub restart_apps: usize,
    /// With `--services`: also deploy `/bench/big` with this many instances, and restart it
    /// alone at the end, sampling its healthy count (0: no big app).
    #[arg(long, default_value_t = 0, requires = "services")]
    pub big_app: u32,
    /// With `--services`: every app's `upgradeStrategy.minimumHealthCapacity`.
    #[arg(long, default_value_t = 0.9, requires = "services")]
    pub min_health_capacity: f64,
    /// With `--services`: every app's `upgradeStrategy.maximumOverCapacity` (Marathon's
    /// default, 1: a restart may start every new instance before the old ones go).
    #[arg(long, default_value_t = 1.0, requires = "services")]
    pub max_over_capacity: f64,
    /// With `--services`: readers polling `GET /v2/apps?embed=apps.tasks`, one request in
    /// flight each.
    #[arg(long, default_value_t = 1, requires = "services")]
    pub list_readers: usize,
    /// With `--services`: readers polling `GET /v2/apps/{id}` of seeded random apps.
    #[arg(long, default_value_t = 4, requires = "services")]
    pub app_readers: usize,
    /// With `--services`: each reader starts a request this often (at once when the last
    /// one took longer).
    #[arg(long, default_value_t = 100, requires = "services")]
    pub read_interval_ms: u64,
    /// Run the real cron framework (`agora cron`, started as a child process of this
    /// binary so that its memory is its own) against the emulated agents instead of
    /// emulated frameworks: create `--jobs` jobs running `true` every minute through its
    /// REST API, let `--minutes` scheduled minutes pass, then check from the agents'
    /// launches and the jobs' history that every run due in them started, none twice, and
    /// report lateness and `agora cron`'s memory. Tasks finish after
    /// `--task-duration-ms-mean` (exponential); `--tasks` and `--frameworks` do not apply.
    #[arg(long, conflicts_with_all = ["masters", "failover", "hold", "chaos"])]
    pub cron: bool,
    /// With `--cron`: jobs created (`bench-00000`, …), each `* * * * *`.
    #[arg(long, default_value_t = 10_000, requires = "cron")]
    pub jobs: usize,
    /// With `--cron`: scheduled minutes measured, from the first whole minute after every
    /// job exists.
    #[arg(long, default_value_t = 3, requires = "cron")]
    pub minutes: u64,
    /// With `--cron`: before `agora cron` starts, fill its store with what this many days
    /// of the jobs running every minute leave at the default retention (each job's last
    /// runs and its counters), so that it starts by recovering a month of history (0: an
    /// empty store).
    #[arg(long, default_value_t = 0, requires = "cron")]
    pub history_days: u64,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        if self.masters > MAX_MASTERS {
            anyhow::bail!("--masters must be at most {MAX_MASTERS}");
        }
        if self.failover && self.masters < 2 {
            anyhow::bail!("--failover needs --masters 2 or more: a leader and a follower to take over");
        }
        let ttl = self.etcd_lease_ttl;
        if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(60) || ttl.subsec_nanos() != 0 {
            anyhow::bail!("--etcd-lease-ttl must be between 2s and 60s (whole seconds), as the master takes");
        }
        if self.agents == 0 || self.agents > MAX_AGENTS {
            anyhow::bail!("--agents must be between 1 and {MAX_AGENTS}");
        }
        if self.frameworks == 0 || self.frameworks > MAX_FRAMEWORKS {
            anyhow::bail!("--frameworks must be between 1 and {MAX_FRAMEWORKS}");
        }
        if self.tasks == 0 || self.tasks > MAX_TASKS {
            anyhow::bail!("--tasks must be between 1 and {MAX_TASKS}");
        }
        if !(self.chaos.is_finite() && (0.0..=10_000.0).contains(&self.chaos)) {
            anyhow::bail!("--chaos must be between 0 and 10000 events per second");
        }
        if self.poll_ms > 60_000 || self.poll_after_s > 3_600 {
            anyhow::bail!("--poll-ms must be at most 60000 and --poll-after-s at most 3600");
        }
        if self.ramp_ms > 3_600_000 {
            anyhow::bail!("--ramp-ms must be at most an hour");
        }
        if self.duration_limit == 0 || self.duration_limit > 7 * 24 * 3600 {
            anyhow::bail!("--duration-limit must be between 1 second and a week");
        }
        if self.max_in_flight == 0 {
            anyhow::bail!("--max-in-flight must be above zero");
        }
        if self.agents_per_connection == 0 || self.agents_per_connection > 150 {
            anyhow::bail!("--agents-per-connection must be between 1 and 150");
        }
        if self.check_ms > 3_600_000 {
            anyhow::bail!("--check-ms must be at most an hour");
        }
        if self.services {
            services::check(self)?;
        }
        if self.cron {
            cron::check(self)?;
        }
        if self.task_duration_ms_mean > 24 * 3600 * 1000 {
            anyhow::bail!("--task-duration-ms-mean must be at most a day");
        }
        if !(self.task_cpus.is_finite() && self.task_cpus >= 0.001 && self.task_cpus <= 1024.0) || self.task_mem == 0 {
            anyhow::bail!("--task-cpus must be between 0.001 and 1024 and --task-mem above zero");
        }
        Ok(())
    }
}

/// Worker threads of the in-process master's own runtime.
const MASTER_THREADS: usize = 2;
/// Worker threads of the emulated frameworks' own runtime.
const FRAMEWORK_THREADS: usize = 1;

/// A runtime on threads of its own. The in-process master and the emulated frameworks each
/// get one, apart from the emulated agents' (this command's) runtime: otherwise every
/// step of a framework's reaction to an offer, and every request the master serves, waits
/// in one run queue behind thousands of agent tasks, and `offer_to_launch` measures the
/// emulator's queue rather than the scheduler. As separate processes would, the runtimes
/// share the cores through the operating system's scheduler.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn new(name: &str, threads: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("cannot start the {name} runtime"))?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for OwnRuntime {
    /// Without blocking: a runtime dropped inside another runtime's task would panic.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A master serving in this process, on a runtime of its own.
struct InProcessMaster {
    address: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    runtime: OwnRuntime,
}

impl InProcessMaster {
    /// The masters given with `--master`, or else one started here (returned, to keep it
    /// running): the framework modes' way to find a master.
    pub(crate) async fn unless_given(
        args: &Args,
        seed: u64,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Option<InProcessMaster>, Vec<String>)> {
        if !args.master.is_empty() {
            return Ok((None, args.master.clone()));
        }
        let master = InProcessMaster::start(seed, stop).await?;
        let address = master.address.clone();
        Ok((Some(master), vec![address]))
    }

    /// Starts a master on a loopback port with the master's defaults (heartbeat 5 s,
    /// timeout 75 s) and no registry file: what is measured is the scheduler, not the
    /// disk. It stops when `stop` turns true.
    async fn start(seed: u64, stop: watch::Receiver<bool>) -> anyhow::Result<InProcessMaster> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind a loopback port")?;
        let address = listener.local_addr()?.to_string();
        let mut options = agora_master::runtime::MasterOptions::new(address.clone());
        options.seed = seed;
        options.core.master_id = "bench".to_owned();
        let mut stop = stop;
        let shutdown = async move { agora_master::runtime::stopped(&mut stop).await };
        let runtime = OwnRuntime::new("bench-master", MASTER_THREADS)?;
        let task = runtime.handle().spawn(agora_master::runtime::serve(listener, options, shutdown));
        Ok(InProcessMaster { address, task, runtime })
    }
}

/// How long the final measurements may wait for the master.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a named master gets to accept a connection before the bench gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Fails at once, in one line, when none of the named masters accepts a connection: a
/// bench against nothing would only wait out its limits.
async fn reachable(masters: &[String]) -> anyhow::Result<()> {
    let mut reasons = Vec::new();
    for master in masters {
        let address = master.trim().trim_start_matches("http://").trim_end_matches('/');
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => reasons.push(format!("{address}: {error}")),
            Err(_) => reasons.push(format!("{address}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    anyhow::bail!("--master: cannot reach the master at {}", reasons.join("; "))
}

/// Runs the bench to its end and prints its JSON line: success when no task was lost, the
/// duration limit was not hit and a requested failover completed. Dropping the future (as
/// `agora bench` does on Ctrl-C) shuts down the runtimes it made and kills the master
/// processes and etcd it spawned; the emulated agents, spawned on the caller's runtime,
/// end with that runtime.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.check()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let resources = Resources::parse(&args.agent_resources).map_err(|e| anyhow::anyhow!("--agent-resources: {e}"))?;
    let resources = pb::Resources::from(&resources);
    if args.services {
        return services::run(&args, seed, resources).await;
    }
    if args.cron {
        return cron::run(&args, seed, resources).await;
    }
    let (stop_tx, stop_rx) = watch::channel(false);

    // The masters: named, started as processes, or one in this process.
    let mut spawned = None;
    let mut master_task = None;
    let mut master_runtime = None;
    let addresses = if !args.master.is_empty() {
        reachable(&args.master).await?;
        args.master.clone()
    } else if args.masters > 0 {
        let etcd_binary = std::env::var("ETCD").unwrap_or_else(|_| "etcd".to_owned());
        let spec = SpawnSpec { count: args.masters, lease_ttl: args.etcd_lease_ttl, etcd_binary: &etcd_binary, seed };
        let started = Spawned::start(spec).await?;
        let addresses = started.addresses.clone();
        spawned = Some(started);
        addresses
    } else {
        let master = InProcessMaster::start(seed, stop_rx.clone()).await?;
        let address = master.address.clone();
        master_task = Some(master.task);
        master_runtime = Some(master.runtime);
        vec![address]
    };
    let where_ = match (&master_task, &spawned) {
        (Some(_), _) => " (in this process)".to_owned(),
        (None, Some(_)) if args.masters > 1 => format!(" ({} processes electing a leader in etcd)", args.masters),
        (None, Some(_)) => " (a process started here)".to_owned(),
        (None, None) => String::new(),
    };
    eprintln!(
        "agora bench: master {}{where_}; {} agents, {} frameworks, {} tasks{}, seed {seed}",
        addresses.join(","),
        args.agents,
        args.frameworks,
        args.tasks,
        match (args.failover, args.hold) {
            (true, _) => " (held running for a leader failover)",
            (false, true) => " (held running)",
            (false, false) => "",
        },
    );
    let agent_slots = args.agents.div_ceil(args.agents_per_connection);
    let frameworks_runtime = OwnRuntime::new("bench-frameworks", FRAMEWORK_THREADS)?;
    let masters = Arc::new(Masters::new(addresses, agent_slots, args.frameworks, frameworks_runtime.handle())?);
    let etcd_watch = spawned
        .as_ref()
        .and_then(|s| s.etcd_address.clone())
        .map(|etcd| tokio::spawn(masters.clone().follow_etcd(etcd)));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_limit);

    // Agents, over a small pool of connections.
    let hold = args.hold || args.failover;
    let durations = (!hold).then(|| Durations::new(args.task_duration_ms_mean));
    let fleet_spec = FleetSpec {
        count: args.agents,
        resources,
        seed,
        durations,
        check_ms: args.check_ms,
        agents_per_connection: args.agents_per_connection,
        launches: None,
    };
    let fleet = Fleet::start(fleet_spec, masters.clone(), stop_rx.clone()).await;
    let agent_counters = fleet.counters().clone();
    // At most 30 s, and never past --duration-limit.
    let registration_wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(30));
    let registered = fleet.wait_registered(args.agents as u64, registration_wait).await;
    let registration_s = started.elapsed().as_secs_f64();
    eprintln!("agora bench: {registered}/{} agents registered in {registration_s:.1} s", args.agents);

    // Frameworks, each on its own connection.
    let framework_counters = Arc::new(FrameworkCounters::default());
    let shape = TaskShape { cpus_milli: (args.task_cpus * 1000.0).round() as u64, mem_mib: args.task_mem };
    let mut framework_tasks = Vec::with_capacity(args.frameworks);
    let per_framework = args.tasks / args.frameworks as u64;
    let remainder = args.tasks % args.frameworks as u64;
    // Held tasks never end, so every one of them is in flight at once.
    let max_in_flight = if hold { args.tasks } else { args.max_in_flight };
    let run_started = Instant::now();
    for index in 0..args.frameworks {
        let quota = per_framework + u64::from((index as u64) < remainder);
        let max_in_flight = (max_in_flight / args.frameworks as u64).max(1);
        let ramp = Duration::from_millis(args.ramp_ms);
        let spec = FrameworkSpec { index, quota, max_in_flight, ramp, shape, seed, slot: agent_slots + index, hold };
        let framework = Framework::new(spec, framework_counters.clone());
        framework_tasks.push(frameworks_runtime.handle().spawn(framework.run(masters.clone(), stop_rx.clone())));
    }

    // Operators' readers, if asked for, on a runtime of their own.
    let at_scale = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poll_runtime = if args.poll_ms > 0 { Some(OwnRuntime::new("bench-readers", 1)?) } else { None };
    let readers = match (&poll_runtime, masters.addresses().first()) {
        (Some(runtime), Some(address)) => poll::start(
            runtime.handle(),
            address.clone(),
            Duration::from_millis(args.poll_ms),
            seed,
            at_scale.clone(),
            stop_rx.clone(),
        ),
        _ => Vec::new(),
    };

    // Chaos, progress, and the end of the run.
    let goal = if hold { Goal::AllRunning } else { Goal::AllFinished };
    let counters = Counters { agents: &agent_counters, frameworks: &framework_counters };
    let chaos_events = run_until(&args, goal, seed, counters, fleet.chaos(), run_started, deadline).await;
    let run_s = run_started.elapsed().as_secs_f64();
    if !readers.is_empty() {
        at_scale.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(args.poll_after_s)).await;
    }
    let launch_s = framework_counters
        .last_launch
        .lock()
        .ok()
        .and_then(|last| *last)
        .map(|last| last.saturating_duration_since(run_started).as_secs_f64());
    let finished = framework_counters.tasks_finished.load(Ordering::Relaxed);
    let running = framework_counters.tasks_running.load(Ordering::Relaxed);
    let limit_hit = match goal {
        Goal::AllFinished => finished < args.tasks,
        Goal::AllRunning => running < args.tasks,
    };

    // Measurements from the master before anything stops.
    // Bounded: a master that does not answer must not hold the report past the limit.
    let leader = tokio::time::timeout(MEASURE_TIMEOUT, serving_leader(masters.addresses(), None)).await.ok().flatten();
    let leader_address = leader.and_then(|i| masters.addresses().get(i).cloned());
    let metrics = match &leader_address {
        Some(address) => tokio::time::timeout(MEASURE_TIMEOUT, http_get(address, "/metrics"))
            .await
            .ok()
            .flatten()
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body),
        None => None,
    };
    let allocation = metrics.as_deref().map(|text| stats::parse_histogram(text, "agora_master_allocation_seconds"));
    let allocation_ms = |q| allocation.as_deref().and_then(|b| stats::histogram_quantile(b, q)).map(|s| s * 1000.0);
    let allocation_s =
        metrics.as_deref().and_then(|text| stats::gauge(text, "agora_master_allocation_seconds_sum", &[]));
    let owner_busy_s =
        metrics.as_deref().and_then(|text| stats::gauge(text, "agora_master_owner_busy_seconds_total", &[]));
    let owner_requests =
        metrics.as_deref().and_then(|text| stats::gauge(text, "agora_master_owner_requests_total", &[]));
    let spawned_pid = spawned.as_ref().zip(leader).and_then(|(s, i)| s.pid(i));
    let (rss_mib, rss_note) = match (&master_task, spawned_pid, args.master_pid) {
        (Some(_), _, _) => (rss_mib("self"), "in-process master: includes the emulated agents and frameworks"),
        (None, Some(pid), _) => (rss_mib(&pid.to_string()), "the leading master process, alone"),
        (None, None, Some(pid)) => (rss_mib(&pid.to_string()), "the master process (--master-pid)"),
        (None, None, None) => (None, "unknown: pass --master-pid for a master on this host"),
    };

    // The failover, once every task runs.
    let failover = match (&mut spawned, leader) {
        (Some(spawned), Some(leader)) if args.failover && !limit_hit => {
            let counters = Counters { agents: &agent_counters, frameworks: &framework_counters };
            Some(fail_over(spawned, &masters, leader, &args, counters, deadline).await)
        }
        _ => None,
    };

    let _ = stop_tx.send(true);
    let mut polled = Vec::new();
    for reader in readers {
        if let Ok(Ok(reads)) = tokio::time::timeout(STOP_GRACE, reader).await {
            polled.push(reads);
        }
    }
    drop(poll_runtime);
    let mut reports: Vec<FrameworkReport> = Vec::with_capacity(framework_tasks.len());
    // A framework that does not report in time counts all of its work as lost.
    let mut unreported_tasks = 0;
    for (index, task) in framework_tasks.into_iter().enumerate() {
        match tokio::time::timeout(STOP_GRACE, task).await {
            Ok(Ok(report)) => reports.push(report),
            _ => unreported_tasks += per_framework + u64::from((index as u64) < remainder),
        }
    }
    fleet.join(STOP_GRACE).await;
    if let Some(task) = master_task {
        let _ = tokio::time::timeout(STOP_GRACE, task).await;
    }
    drop(frameworks_runtime);
    drop(master_runtime);
    if let Some(task) = etcd_watch {
        task.abort();
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut offer_to_launch = Samples::new(1_000_000);
    let sum = |f: fn(&FrameworkReport) -> u64| reports.iter().map(f).sum::<u64>();
    let unfinished = sum(|r| r.unfinished_tasks);
    let double_terminal = sum(|r| r.double_terminal_tasks);
    let late_terminal = sum(|r| r.late_terminal_updates);
    let redelivered = sum(|r| r.redelivered_updates);
    let unreachable = sum(|r| r.unreachable_tasks);
    let failed_calls = sum(|r| r.failed_calls);
    let offers_received = sum(|r| r.offers_received);
    let offers_declined = sum(|r| r.offers_declined);
    let mut relaunched_after = std::collections::BTreeMap::<String, u64>::new();
    for report in reports {
        offer_to_launch.merge(report.offer_to_launch_ms, &mut rng);
        for (why, count) in report.relaunched_after {
            *relaunched_after.entry(why).or_default() += count;
        }
    }
    let offer_to_launch = offer_to_launch.into_sorted();
    let relaunches = framework_counters.relaunches.load(Ordering::Relaxed);
    // Held tasks are meant to be running at the end; any that ended (and was relaunched)
    // was lost to a failure.
    let lost_tasks = match goal {
        Goal::AllFinished => unfinished + double_terminal + unreported_tasks,
        Goal::AllRunning => relaunches + double_terminal + unreported_tasks,
    };
    let failover_failed = failover.as_ref().is_some_and(|f| !f.complete()) || (args.failover && failover.is_none());
    let round = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
    let mut line = serde_json::json!({
        "agents": args.agents,
        "agents_registered": registered,
        "frameworks": args.frameworks,
        "masters": masters.addresses().len(),
        "tasks": args.tasks,
        "tasks_launched": framework_counters.tasks_launched.load(Ordering::Relaxed),
        "tasks_running": running,
        "tasks_finished": finished,
        "tasks_per_s": round(Some(match goal {
            Goal::AllFinished => finished as f64 / run_s.max(1e-9),
            Goal::AllRunning => running as f64 / run_s.max(1e-9),
        })),
        "launch_s": round(launch_s),
        "launch_tasks_per_s": round(launch_s.map(|s| {
            framework_counters.tasks_launched.load(Ordering::Relaxed) as f64 / s.max(1e-9)
        })),
        "relaunches": relaunches,
        "relaunched_after": relaunched_after,
        "offer_to_launch_ms_p50": round(stats::percentile(&offer_to_launch, 50.0)),
        "offer_to_launch_ms_p99": round(stats::percentile(&offer_to_launch, 99.0)),
        "allocation_ms_p50": round(allocation_ms(0.5)),
        "allocation_ms_p99": round(allocation_ms(0.99)),
        "master_rss_mib": round(rss_mib),
        "master_rss_note": rss_note,
        "lost_tasks": lost_tasks,
        "unfinished_tasks": unfinished,
        "unreported_tasks": unreported_tasks,
        "double_terminal_tasks": double_terminal,
        "late_terminal_updates": late_terminal,
        "redelivered_updates": redelivered,
        "unreachable_tasks": unreachable,
        "failed_calls": failed_calls,
        "offers_received": offers_received,
        "offers_declined": offers_declined,
        "allocation_s": round(allocation_s),
        "owner_busy_s": round(owner_busy_s),
        "owner_us_per_request": round(owner_busy_s.zip(owner_requests).map(|(busy, n)| busy * 1e6 / n.max(1.0))),
        "update_ack_ms_p50": round(agent_counters.update_ack_ms.quantile(0.5)),
        "update_ack_ms_p99": round(agent_counters.update_ack_ms.quantile(0.99)),
        "updates_resent": agent_counters.updates_resent.load(Ordering::Relaxed),
        "updates_given_up": agent_counters.updates_given_up.load(Ordering::Relaxed),
        "agent_registrations": agent_counters.registrations.load(Ordering::Relaxed),
        "chaos_rate": args.chaos,
        "chaos_disconnects": chaos_events.disconnects,
        "chaos_restarts": chaos_events.restarts,
        "seed": seed,
        "task_duration_ms_mean": args.task_duration_ms_mean,
        "max_in_flight": args.max_in_flight,
        "ramp_ms": args.ramp_ms,
        "registration_s": round(Some(registration_s)),
        "duration_s": round(Some(run_s)),
        "duration_limit_hit": limit_hit,
    });
    if let (Some(failover), Some(object)) = (&failover, line.as_object_mut()) {
        object.insert(
            "etcd_lease_ttl_ms".into(),
            u64::try_from(args.etcd_lease_ttl.as_millis()).unwrap_or(u64::MAX).into(),
        );
        object.insert("failover_leader_ms".into(), failover.leader_ms.into());
        object.insert("failover_agents_ms".into(), failover.agents_ms.into());
        object.insert("failover_frameworks_ms".into(), failover.frameworks_ms.into());
        object.insert("failover_tasks_known_ms".into(), failover.tasks_known_ms.into());
        object.insert("tasks_running_after_failover".into(), failover.tasks_running_after.into());
    }
    if let (false, Some(object)) = (polled.is_empty(), line.as_object_mut()) {
        object.insert("poll_ms".into(), args.poll_ms.into());
        object.insert("poll_after_s".into(), args.poll_after_s.into());
        for reads in polled {
            let name = reads.name;
            object.insert(format!("{name}_errors"), reads.errors.into());
            for (phase, samples) in [("", reads.all), ("_at_scale", reads.at_scale)] {
                let sorted = samples.into_sorted();
                object.insert(format!("{name}{phase}_reads"), sorted.len().into());
                object.insert(format!("{name}{phase}_ms_p50"), round(stats::percentile(&sorted, 50.0)).into());
                object.insert(format!("{name}{phase}_ms_p99"), round(stats::percentile(&sorted, 99.0)).into());
            }
        }
    }
    println!("{line}");
    if limit_hit {
        let what = if goal == Goal::AllRunning { "running" } else { "finished" };
        eprintln!(
            "agora bench: --duration-limit {} s reached with {} of {} tasks {what}",
            args.duration_limit,
            if goal == Goal::AllRunning { running } else { finished },
            args.tasks
        );
    }
    if failover_failed {
        eprintln!("agora bench: the failover did not complete within --duration-limit");
    }
    if lost_tasks > 0 {
        eprintln!("agora bench: {lost_tasks} tasks lost (seed {seed} reproduces the workload)");
    }
    let ok = lost_tasks == 0 && !limit_hit && !failover_failed;
    if !ok && let Some(spawned) = &mut spawned {
        eprintln!("agora bench: the masters' logs are kept in {}", spawned.keep_logs().display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The shared counters the progress line and the failover read.
#[derive(Clone, Copy)]
struct Counters<'a> {
    agents: &'a AgentCounters,
    frameworks: &'a FrameworkCounters,
}

/// What ends the run's first phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// Every task finished.
    AllFinished,
    /// Every task runs (and is held running, for the failover).
    AllRunning,
}

/// What a leader failover took, from the SIGKILL on; `None` where it did not happen
/// before the deadline.
#[derive(Debug, Default)]
struct Failover {
    /// Another master serves its state.
    leader_ms: Option<u64>,
    /// Every agent has registered again.
    agents_ms: Option<u64>,
    /// Every framework has subscribed again.
    frameworks_ms: Option<u64>,
    /// The new leader counts every task running.
    tasks_known_ms: Option<u64>,
    tasks_running_after: Option<u64>,
}

impl Failover {
    fn complete(&self) -> bool {
        self.leader_ms.is_some()
            && self.agents_ms.is_some()
            && self.frameworks_ms.is_some()
            && self.tasks_known_ms.is_some()
    }
}

/// How often the failover's progress is looked at.
const FAILOVER_POLL: Duration = Duration::from_millis(20);

/// SIGKILLs the leading master and measures the takeover.
async fn fail_over(
    spawned: &mut Spawned,
    masters: &Masters,
    leader: usize,
    args: &Args,
    counters: Counters<'_>,
    deadline: Instant,
) -> Failover {
    eprintln!(
        "agora bench: all {} tasks run; SIGKILLing the leading master {}",
        args.tasks,
        masters.addresses()[leader]
    );
    counters.agents.failover_epoch.fetch_add(1, Ordering::Relaxed);
    counters.frameworks.failover_epoch.fetch_add(1, Ordering::Relaxed);
    let before = (
        counters.agents.reregistered.load(Ordering::Relaxed),
        counters.frameworks.resubscribed.load(Ordering::Relaxed),
    );
    let killed = Instant::now();
    spawned.kill(leader);
    let ms = || u64::try_from(killed.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut failover = Failover::default();
    let mut new_leader = None;
    let mut next_progress = killed + Duration::from_secs(1);
    while !failover.complete() && Instant::now() < deadline {
        if new_leader.is_none() {
            new_leader = serving_leader(masters.addresses(), Some(leader)).await;
            if new_leader.is_some() {
                failover.leader_ms = Some(ms());
            }
        }
        let agents = counters.agents.reregistered.load(Ordering::Relaxed) - before.0;
        if failover.agents_ms.is_none() && agents >= args.agents as u64 {
            failover.agents_ms = Some(ms());
        }
        let frameworks = counters.frameworks.resubscribed.load(Ordering::Relaxed) - before.1;
        if failover.frameworks_ms.is_none() && frameworks >= args.frameworks as u64 {
            failover.frameworks_ms = Some(ms());
        }
        // Once every agent is back, the new leader must know every task running.
        if failover.agents_ms.is_some()
            && failover.tasks_known_ms.is_none()
            && let Some(address) = new_leader.and_then(|i| masters.addresses().get(i))
            && let Some((200, text)) = http_get(address, "/metrics").await
        {
            let running = stats::gauge(&text, "agora_master_tasks", &[("state", "TASK_RUNNING")]).map(|v| v as u64);
            failover.tasks_running_after = running;
            if running.is_some_and(|r| r >= args.tasks) {
                failover.tasks_known_ms = Some(ms());
            }
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "agora bench: failover {:>5.1} s  leader {}  agents back {agents}/{}  frameworks back {frameworks}/{}",
                killed.elapsed().as_secs_f64(),
                new_leader.map_or("none yet".to_owned(), |i| masters.addresses()[i].clone()),
                args.agents,
                args.frameworks,
            );
        }
        tokio::time::sleep(FAILOVER_POLL).await;
    }
    eprintln!("agora bench: failover {failover:?}");
    failover
}

#[derive(Debug, Default)]
struct ChaosEvents {
    disconnects: u64,
    restarts: u64,
}

/// Injects chaos and prints progress once a second until the goal is reached or the
/// deadline passed.
async fn run_until(
    args: &Args,
    goal: Goal,
    seed: u64,
    counters: Counters<'_>,
    chaos: &[mpsc::Sender<Chaos>],
    run_started: Instant,
    deadline: Instant,
) -> ChaosEvents {
    let Counters { agents, frameworks } = counters;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC4A05);
    let mut events = ChaosEvents::default();
    let chaos_interval = (args.chaos > 0.0).then(|| Duration::from_secs_f64(1.0 / args.chaos));
    let mut next_chaos = chaos_interval.map(|i| Instant::now() + i);
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    let mut finished_before = 0;
    loop {
        let finished = frameworks.tasks_finished.load(Ordering::Relaxed);
        let running = frameworks.tasks_running.load(Ordering::Relaxed);
        let reached = match goal {
            Goal::AllFinished => finished >= args.tasks,
            Goal::AllRunning => running >= args.tasks,
        };
        if reached || Instant::now() >= deadline {
            return events;
        }
        let now = Instant::now();
        if now >= next_progress {
            eprintln!(
                "agora bench: {:>6.1} s  agents {}/{}  frameworks {}  launched {}  running {running}  finished {}/{}  {} tasks/s  relaunched {}  chaos {}",
                run_started.elapsed().as_secs_f64(),
                agents.registered.load(Ordering::Relaxed),
                args.agents,
                frameworks.subscribed.load(Ordering::Relaxed),
                frameworks.tasks_launched.load(Ordering::Relaxed),
                finished,
                args.tasks,
                finished.saturating_sub(finished_before),
                frameworks.relaunches.load(Ordering::Relaxed),
                events.disconnects + events.restarts,
            );
            finished_before = finished;
            next_progress += Duration::from_secs(1);
        }
        if let (Some(at), Some(interval)) = (next_chaos, chaos_interval)
            && now >= at
        {
            next_chaos = Some(at + interval);
            let index = rng.random_range(0..chaos.len());
            // Two disconnections for each restart: partitions are commoner than crashes.
            let event = if rng.random_range(0..3) == 0 {
                Chaos::Restart
            } else {
                Chaos::Disconnect { away_ms: rng.random_range(100..1_000) }
            };
            if chaos.get(index).is_some_and(|tx| tx.try_send(event).is_ok()) {
                match event {
                    Chaos::Restart => events.restarts += 1,
                    Chaos::Disconnect { .. } => events.disconnects += 1,
                }
            }
        }
        let mut wake = next_progress.min(deadline);
        if let Some(at) = next_chaos {
            wake = wake.min(at);
        }
        // Completion is noticed within 10 ms without spinning.
        tokio::time::sleep_until(wake.min(Instant::now() + Duration::from_millis(10))).await;
    }
}

/// Resident memory of a process (`self` or a pid) from `/proc`, in MiB.
fn rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
