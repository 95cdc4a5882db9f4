//! The agent runtime: one owner task drives the core; the master link, the process
//! supervisors and the HTTP handlers talk to it through one bounded channel of events, and
//! the owner executes the core's outputs (spawn a supervisor, signal a group, send an
//! update up the stream). The owner takes the events waiting (up to a bound) as one batch:
//! it steps the core for each, writes the checkpoint changes of them all as one journal
//! batch (one sync), and only then executes their outputs, so nothing is sent or relied on
//! before it is on disk; at start it reads the checkpoint back and re-attaches to the
//! tasks that survived the previous agent. Each running health or readiness check is a
//! task of its own (`checker`), started and stopped as the core says, whose results come
//! back through the same channel.

pub(crate) mod cgroups;
pub(crate) mod checker;
pub(crate) mod checkpoint;
pub(crate) mod fetcher;
pub(crate) mod link;
pub(crate) mod process;
pub(crate) mod usage;
pub(crate) mod users;
mod wire;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_proto::model::{AgentId, AgentInfo};
use agora_proto::pb;
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{AgentConfig, Masters};
use crate::core::{
    CheckKind, Core, CoreConfig, Input, Output, ProcessExit, RecoveredProcess, RecoveredTask, RunId, TaskView,
};
use crate::http;

/// Events waiting for the owner. Senders wait when it is full, which slows the master link
/// and the supervisors down instead of growing memory.
const EVENT_QUEUE_LEN: usize = 4_096;
/// How much longer than the default kill grace period a draining agent waits for its tasks
/// to exit before it kills what is left outright.
const DRAIN_MARGIN_MS: u64 = 2_000;
/// How long the link and the HTTP server get to finish once the owner is done.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Batches of finished runs waiting for the sweeper to delete their directories.
const SWEEP_QUEUE_LEN: usize = 64;
/// Most events the owner takes before it writes their checkpoint changes and executes their
/// outputs: a bound on the batch and on how long its first event waits.
const MAX_BATCH_EVENTS: usize = 1_024;

/// How a running agent stops: what [`run`]'s `shutdown` future completes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop at once, leaving every task running under its supervisor: the next agent
    /// started on the same work dir takes them back (an upgrade, a restart). `agora agent`
    /// does this on SIGTERM and SIGINT.
    LeaveTasks,
    /// Kill every task (SIGTERM, then SIGKILL after the default grace period; what is still
    /// running after the grace period and 2 s more is SIGKILLed outright), wait up to
    /// [`AgentConfig::drain_updates_timeout_ms`] for the master to acknowledge their last
    /// updates, then stop. `agora agent` does this on SIGUSR1, `agora local` on Ctrl-C.
    Drain,
}

/// Everything the owner hears about.
#[derive(Debug)]
pub(crate) enum Event {
    Link(LinkEvent),
    Process {
        run: RunId,
        event: ProcessEvent,
    },
    /// One run of a task's check.
    Check {
        run: RunId,
        kind: CheckKind,
        outcome: Result<(), String>,
    },
    /// An HTTP handler asks for the agent's state.
    State {
        reply: oneshot::Sender<StateView>,
    },
    /// The disk watcher measured these runs' sandboxes (bytes used).
    DiskUsage(Vec<(RunId, u64)>),
}

#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A connection is up: the owner answers with the registration to send.
    Connecting { reply: oneshot::Sender<pb::Register> },
    /// The master at `master` accepted the registration; `outbox` goes up this
    /// connection's stream.
    Registered { agent_id: AgentId, master: String, outbox: mpsc::Sender<pb::AgentMessage> },
    /// The master refused the agent; it must start over under a new id.
    Refused { reason: String },
    /// A message from the master on the registered stream.
    /// Boxed: master messages are much larger than the other events.
    Message(Box<pb::MasterMessage>),
    /// The registered stream ended.
    Disconnected,
}

#[derive(Debug)]
pub(crate) enum ProcessEvent {
    Started {
        pid: u32,
        /// The supervisor's start time in clock ticks, which the journal records with the
        /// pid; `None` when it ended before it could be read.
        start_ticks: Option<u64>,
        sandbox: String,
        /// The task's cgroup, when the agent isolates with cgroups.
        cgroup: Option<std::sync::Arc<cgroups::TaskCgroup>>,
    },
    LaunchFailed {
        error: String,
    },
    /// `limitation` when the task went over a limit (the kernel OOM-killed it).
    Exited {
        exit: ProcessExit,
        limitation: Option<crate::core::Limitation>,
    },
    /// A recovered task's supervisor is gone and recorded no exit status.
    Gone,
}

/// A copy of what the agent is and runs, for `/state`.
#[derive(Clone, Debug)]
pub(crate) struct StateView {
    pub agent_id: Option<AgentId>,
    pub connected: bool,
    pub master: String,
    pub info: AgentInfo,
    pub tasks: Vec<TaskView>,
    /// `cgroups v1`, `cgroups v2` or `posix`.
    pub isolation: &'static str,
    /// The cgroups of the tasks that run, by run.
    pub cgroups: std::collections::BTreeMap<RunId, std::sync::Arc<cgroups::TaskCgroup>>,
    /// The latest disk measure of each running task's sandbox, in bytes.
    pub disk_used: std::collections::BTreeMap<RunId, u64>,
    /// The sandboxes' root, canonical.
    pub sandboxes: PathBuf,
}

/// Runs an agent until `shutdown` completes: registers with the master `config.masters`
/// leads to, runs the tasks it is given, and serves `/health`, `/state` and the sandboxes on
/// `http_listener`. How it stops is what `shutdown` completes with: [`Shutdown::LeaveTasks`]
/// returns at once and leaves the tasks running; [`Shutdown::Drain`] kills them and waits
/// (bounded) for their last updates to be acknowledged before it returns.
///
/// When `config.work_dir` holds the checkpoint of an agent that stopped leaving its tasks
/// or died (SIGKILL, a crash, a power cut), this agent takes over: it re-registers under the
/// same id with the tasks that still run, watches them again, reports those that ended
/// meanwhile and resends every update not yet acknowledged. Dropping the returned future
/// without completing `shutdown` is such a death too: the tasks keep running.
///
/// The caller binds the listener, so tests and `agora local` can use port 0.
pub async fn run(
    mut config: AgentConfig,
    http_listener: TcpListener,
    shutdown: impl Future<Output = Shutdown>,
) -> anyhow::Result<()> {
    validate(&config)?;
    config.work_dir = absolute_work_dir(&config.work_dir)?;
    let finder = link::Finder::new(&config.masters)?;
    let _lock = lock_work_dir(&config.work_dir)?;
    let sandboxes = config.work_dir.join("sandboxes");
    std::fs::create_dir_all(&sandboxes).with_context(|| format!("cannot create {}", sandboxes.display()))?;
    protect_work_dir(&config.work_dir)?;
    let sandboxes =
        std::fs::canonicalize(&sandboxes).with_context(|| format!("cannot resolve {}", sandboxes.display()))?;
    let store = checkpoint::Store::open(&config.work_dir)
        .with_context(|| format!("work dir {}: cannot create the checkpoint directory", config.work_dir.display()))?;
    let stored = store.load(config.max_tasks);
    let isolation = start_isolation(&config)?;
    let port = match config.advertise_port {
        Some(port) => port,
        None => http_listener.local_addr().context("the HTTP listener has no address")?.port(),
    };
    let info = AgentInfo {
        hostname: config.hostname.clone(),
        port,
        resources: config.resources.clone(),
        attributes: config.attributes.clone(),
    };
    tracing::info!(master = %config.masters, hostname = %info.hostname, port, resources = %info.resources,
        work_dir = %config.work_dir.display(), "starting agent");

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_LEN);
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_state = http::HttpState::new(events_tx.clone(), sandboxes.clone())
        .with_auth(config.http_gate.clone(), config.acls.clone());
    let limits = http::ConnectionLimits {
        max_connections: config.http_max_connections,
        idle_timeout: Duration::from_millis(config.http_idle_timeout_ms.max(1)),
    };
    let http = tokio::spawn(http::serve(http_listener, http_state, limits, config.http_tls.clone(), stop_rx.clone()));
    let authorization = match &config.credential {
        Some(credential) => Some(
            tonic::metadata::AsciiMetadataValue::try_from(credential.basic())
                .map_err(|_| anyhow::anyhow!("--credential: the principal and secret must be printable"))?,
        ),
        None => None,
    };
    let link_config = link::LinkConfig {
        register_timeout: Duration::from_millis(config.register_timeout_ms),
        authorization,
        reconnect_initial_ms: config.reconnect_initial_ms,
        reconnect_max_ms: config.reconnect_max_ms,
        seed: config.seed.wrapping_add(1),
        tls: config.master_tls.clone(),
    };
    let link = tokio::spawn(link::run(link_config, finder, events_tx.clone(), stop_rx));
    let disk_watch_interval = Duration::from_millis(config.disk_watch_interval_ms.max(100));
    let disk_watcher = tokio::spawn(watch_disks(disk_watch_interval, events_tx.clone()));
    let _abort_disk_watcher = AbortOnDrop(disk_watcher.abort_handle());
    // An agent dropped mid-flight (a test's stand-in for SIGKILL) leaves no task of its own
    // behind: no link still registered, no server still answering.
    let _abort_link = AbortOnDrop(link.abort_handle());
    let _abort_http = AbortOnDrop(http.abort_handle());

    let (sweep_tx, sweep_rx) = mpsc::channel(SWEEP_QUEUE_LEN);
    let sweeper = tokio::spawn(sweep(store.clone(), sweep_rx));
    let _abort_sweeper = AbortOnDrop(sweeper.abort_handle());

    let core_config = CoreConfig {
        default_kill_grace_period_ms: config.kill_grace_period_ms,
        update_retry_initial_ms: config.update_retry_initial_ms,
        update_retry_max_ms: config.update_retry_max_ms,
        max_tasks: config.max_tasks,
    };
    // Update ids must never repeat those of the agent that wrote the checkpoint (a master or
    // framework would take a new update for a duplicate of an old one), which a fixed seed
    // would replay: a recovering agent draws from another point of the sequence space.
    let recovering = stored.agent.is_some() || !stored.runs.is_empty();
    let seed =
        if recovering { config.seed ^ now_ms().rotate_left(17) ^ u64::from(std::process::id()) } else { config.seed };
    let mut owner = Owner {
        core: Core::new(core_config, seed),
        store,
        saved_agent: None,
        supervisors: tokio::task::JoinSet::new(),
        journal: None,
        outputs: Vec::new(),
        started: Vec::new(),
        replies: Vec::new(),
        checks: std::collections::BTreeMap::new(),
        probes: std::sync::Arc::new(tokio::sync::Semaphore::new(checker::MAX_CONCURRENT_PROBES)),
        launches: process::launch_limit(),
        fetcher: std::sync::Arc::new(
            fetcher::Fetcher::new(config.work_dir.join("fetch-cache")).map_err(anyhow::Error::msg)?,
        ),
        sweeper: sweep_tx,
        info,
        master: config.masters.to_string(),
        linked: None,
        hostname: config.hostname.clone(),
        sandboxes,
        events: events_tx,
        outbox: None,
        drain_updates_timeout: Duration::from_millis(config.drain_updates_timeout_ms),
        cgroups: isolation,
        task_cgroups: std::collections::BTreeMap::new(),
        disk_used: std::collections::BTreeMap::new(),
        enforce_disk_quota: config.enforce_container_disk_quota,
        users: std::sync::Arc::new(users::UserPolicy {
            switch: nix::unistd::geteuid().is_root(),
            allow_root: config.allow_root_tasks,
            root_tasks_as: config.root_tasks_as.clone(),
        }),
    };
    owner
        .recover(stored)
        .with_context(|| format!("work dir {}: cannot write the checkpoint's journal", config.work_dir.display()))?;
    owner.run(events_rx, shutdown).await;
    // The owner is gone, and with it the sweeper's queue: what is queued is deleted before the
    // agent returns, so a drained agent leaves no run behind.
    if tokio::time::timeout(STOP_TIMEOUT, sweeper).await.is_err() {
        tracing::warn!("the finished runs' directories were not all deleted in time; the next start deletes them");
    }

    let _ = stop_tx.send(true);
    let (link_abort, http_abort) = (link.abort_handle(), http.abort_handle());
    let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
        let _ = link.await;
        let _ = http.await;
    })
    .await;
    if stopped.is_err() {
        // A download still streaming, say: nothing of the agent may outlive `run`.
        tracing::warn!("the master link or the HTTP server did not stop in time; aborting them");
        link_abort.abort();
        http_abort.abort();
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// Sets up the isolation `config.isolation` asks for and says at start which one runs:
/// cgroups (v1 or v2, detected), or processes only. `Auto` falls back to processes only,
/// with a warning, where the agent cannot write cgroups; `Cgroups` fails instead.
fn start_isolation(config: &AgentConfig) -> anyhow::Result<Option<std::sync::Arc<cgroups::Cgroups>>> {
    use cgroups::Isolation;
    if config.isolation == Isolation::Posix {
        tracing::info!(isolation = "posix", "isolation: processes only (no cgroups): tasks have no resource limits");
        return Ok(None);
    }
    let key = cgroups::agent_key(&config.work_dir);
    match cgroups::Cgroups::prepare(&key, config.cgroups.clone()) {
        Ok(prepared) => {
            tracing::info!(
                isolation = prepared.describe(),
                cfs = config.cgroups.enable_cfs,
                limit_swap = config.cgroups.limit_swap,
                max_pids = config.cgroups.max_pids,
                enforce_disk_quota = config.enforce_container_disk_quota,
                "isolation: each task in a cgroup of its own, limited to its cpus, mem and pids"
            );
            Ok(Some(std::sync::Arc::new(prepared)))
        }
        Err(error) if config.isolation == Isolation::Auto => {
            tracing::warn!(%error, isolation = "posix", "isolation: cgroups are not writable here; processes only, tasks have no resource limits");
            Ok(None)
        }
        Err(error) => anyhow::bail!("--isolation cgroups: {error}"),
    }
}

/// Measures the sandboxes of the running tasks every `interval` and reports to the owner,
/// which keeps the figures for `/monitor/statistics` and, when asked to, kills a task whose
/// sandbox outgrew its disk. The walks run on a blocking thread, one sandbox after another,
/// so a huge sandbox slows the measure down and nothing else.
async fn watch_disks(interval: Duration, events: mpsc::Sender<Event>) {
    loop {
        tokio::time::sleep(interval).await;
        let (reply, answer) = oneshot::channel();
        if events.send(Event::State { reply }).await.is_err() {
            return;
        }
        let Ok(view) = answer.await else {
            return;
        };
        let sandboxes: Vec<(RunId, PathBuf)> = view
            .tasks
            .iter()
            .filter(|task| task.pid.is_some())
            .filter_map(|task| Some((task.run, view.sandboxes.join(task.sandbox.as_ref()?))))
            .collect();
        if sandboxes.is_empty() {
            continue;
        }
        let measured = tokio::task::spawn_blocking(move || {
            sandboxes.into_iter().map(|(run, dir)| (run, usage::disk_used(&dir))).collect::<Vec<_>>()
        })
        .await;
        let Ok(measured) = measured else {
            continue;
        };
        if events.send(Event::DiskUsage(measured)).await.is_err() {
            return;
        }
    }
}

/// Deletes the directories of the runs whose removal the journal holds, off the owner's
/// path: on a busy file system each takes milliseconds, and nothing waits for them.
async fn sweep(store: checkpoint::Store, mut runs: mpsc::Receiver<Vec<RunId>>) {
    while let Some(runs) = runs.recv().await {
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.remove_run_dirs(&runs)).await;
    }
}

/// A question the owner answers after its next flush.
#[derive(Debug)]
enum Reply {
    Registration(oneshot::Sender<pb::Register>),
    State(oneshot::Sender<StateView>),
}

/// The deadlines of a drain under way.
#[derive(Debug)]
struct Drain {
    /// When every task still running is SIGKILLed outright; `None` once done.
    kill_at: Option<Instant>,
    /// Every task's process has ended.
    processes_gone: bool,
    /// When the agent stops whether or not every update was acknowledged: the
    /// acknowledgement timeout after the last process ended, and never later than that
    /// timeout after `kill_at`, so that a process that never reports its end cannot hold
    /// the agent.
    give_up_at: Instant,
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn validate(config: &AgentConfig) -> anyhow::Result<()> {
    match &config.masters {
        Masters::List(masters) if masters.is_empty() || masters.iter().any(|m| m.trim().is_empty()) => {
            anyhow::bail!("masters: every master's address is required (HOST:PORT)")
        }
        Masters::Etcd(endpoints) if endpoints.is_empty() => {
            anyhow::bail!("masters: the etcd endpoints are required (HOST:PORT)")
        }
        Masters::List(_) | Masters::Etcd(_) => {}
    }
    if config.hostname.trim().is_empty() {
        anyhow::bail!("hostname: is required");
    }
    if config.update_retry_initial_ms == 0 || config.update_retry_max_ms < config.update_retry_initial_ms {
        anyhow::bail!("update_retry_initial_ms must be above zero and at most update_retry_max_ms");
    }
    if config.reconnect_initial_ms == 0 || config.reconnect_max_ms < config.reconnect_initial_ms {
        anyhow::bail!("reconnect_initial_ms must be above zero and at most reconnect_max_ms");
    }
    Ok(())
}

/// The work dir as an absolute path (against the current directory), before anything is
/// derived from it: a task's supervisor works in the task's sandbox, where a relative path
/// to its `exit_status` file would name nothing.
pub(crate) fn absolute_work_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.as_os_str().is_empty() {
        anyhow::bail!("work_dir: is required");
    }
    std::path::absolute(dir).with_context(|| format!("work dir {}: cannot make it absolute", dir.display()))
}

/// Tasks (as their users) may pass through the work dir and the sandboxes root to their own
/// sandbox, but list neither, and cannot enter `meta/` (the checkpoint: every task's
/// environment) or the fetch cache at all.
fn protect_work_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: PathBuf, mode: u32| -> anyhow::Result<()> {
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("work dir: cannot set the permissions of {}", path.display()))
    };
    set(dir.to_path_buf(), 0o711)?;
    set(dir.join("sandboxes"), 0o711)?;
    set(dir.join("meta"), 0o700)?;
    set(dir.join("fetch-cache"), 0o700)
}

/// Creates the work directory and locks it for as long as the returned file lives, so two
/// agents never run tasks in the same sandboxes.
fn lock_work_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("work dir {}: cannot create it", dir.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::File::create(&path).with_context(|| format!("work dir: cannot write {}", path.display()))?;
    file.try_lock().map_err(|_| anyhow::anyhow!("work dir {}: another agent is using it", dir.display()))?;
    Ok(file)
}

/// Milliseconds since the Unix epoch: the core's clock and the updates' timestamps.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The one task that owns the core.
struct Owner {
    core: Core,
    store: checkpoint::Store,
    /// The tasks' checkpoint; `None` only while a batch is being written, on a thread that
    /// may block.
    journal: Option<checkpoint::Journal>,
    /// The outputs of the steps taken since the last flush, executed once their checkpoint
    /// changes are on disk.
    outputs: Vec<Output>,
    /// Supervisors started since the last flush (run, pid, start time in clock ticks), for
    /// the journal.
    started: Vec<(RunId, u32, u64)>,
    /// Questions about the tasks asked since the last flush, answered after it: a
    /// registration or `/state` never names a task, or a state of one, not yet on disk.
    replies: Vec<Reply>,
    /// The agent record on disk, to write it only when it changes.
    saved_agent: Option<checkpoint::AgentRecord>,
    /// Process supervisors and watchers; dropped with the owner, which leaves the processes
    /// themselves running.
    supervisors: tokio::task::JoinSet<()>,
    /// The checks running, each a task aborted when its entry goes (and with the owner).
    checks: std::collections::BTreeMap<(RunId, CheckKind), AbortOnDrop>,
    /// Bounds the probes running at once across every check.
    probes: std::sync::Arc<tokio::sync::Semaphore>,
    /// Bounds the launches under way at once.
    launches: std::sync::Arc<tokio::sync::Semaphore>,
    /// Fetches tasks' URIs into their sandboxes.
    fetcher: std::sync::Arc<fetcher::Fetcher>,
    /// Runs whose directories may be deleted, for the sweeper.
    sweeper: mpsc::Sender<Vec<RunId>>,
    info: AgentInfo,
    /// What the agent was told to find the master with, as the checkpoint records it.
    master: String,
    /// The master the agent registered with last.
    linked: Option<String>,
    hostname: String,
    sandboxes: std::path::PathBuf,
    /// Handed to each process supervisor.
    events: mpsc::Sender<Event>,
    /// The registered stream to the master, while there is one.
    outbox: Option<mpsc::Sender<pb::AgentMessage>>,
    drain_updates_timeout: Duration,
    /// The agent's cgroups, unless it isolates with processes only.
    cgroups: Option<std::sync::Arc<cgroups::Cgroups>>,
    /// The cgroup of each task whose process runs.
    task_cgroups: std::collections::BTreeMap<RunId, std::sync::Arc<cgroups::TaskCgroup>>,
    /// The latest measure of each running task's sandbox, in bytes.
    disk_used: std::collections::BTreeMap<RunId, u64>,
    /// A sandbox over its task's `disk` ends the task (`--enforce-container-disk-quota`).
    enforce_disk_quota: bool,
    /// Which user tasks run as.
    users: std::sync::Arc<users::UserPolicy>,
}

impl Owner {
    /// Takes over what a previous agent on this work dir left: its id and its tasks, each
    /// with what became of its process; starts the journal afresh with those tasks. Fails
    /// only when the journal cannot be written.
    fn recover(&mut self, stored: checkpoint::Stored) -> std::io::Result<()> {
        for damage in &stored.damaged {
            tracing::warn!(%damage, "checkpoint file skipped");
        }
        if let Some(agent) = &stored.agent
            && agent.master != self.master
        {
            tracing::warn!(previous = %agent.master, master = %self.master, "the checkpoint names another master; re-registering under the same id");
        }
        let mut watch = Vec::new();
        let tasks: Vec<RecoveredTask> = stored
            .runs
            .into_iter()
            .map(|run| {
                let mut record = run.record;
                let recorded = run.supervisor.or_else(|| {
                    let pid = run.own_pid.filter(|_| !record.exited && record.pid.is_none())?;
                    self.adopt_unrecorded(&mut record, pid)
                });
                let alive = recorded.filter(|(pid, start)| {
                    matches!(checkpoint::process_start(*pid), Some((now_start, false)) if now_start == *start)
                });
                // Read again now that the supervisor is known to be gone: it may have written
                // its record and exited since the checkpoint was loaded.
                let exit = match alive {
                    Some(_) => None,
                    None => run.exit.or_else(|| checkpoint::read_exit_status(&self.store.exit_status_path(record.run))),
                };
                let process = match (alive, exit) {
                    _ if record.exited => RecoveredProcess::Gone,
                    (Some((pid, start)), _) => {
                        // The agent may have died after the supervisor wrote its pid but
                        // before the record held it: the pid file is the truth.
                        record.pid = Some(pid);
                        watch.push((record.run, pid, start));
                        RecoveredProcess::Running
                    }
                    (None, Some(exit)) => {
                        // Killed while no agent watched: its cgroup (removed below) tells
                        // whether the kernel did it, over the task's memory.
                        if record.limitation.is_none() {
                            record.limitation = self.ended_over_memory(&record);
                        }
                        RecoveredProcess::Exited(exit)
                    }
                    (None, None) => RecoveredProcess::Gone,
                };
                tracing::info!(framework_id = %record.framework_id, task_id = %record.info.task_id, run = record.run.0,
                    state = %record.state, ?process, pending = record.pending.len(), "recovered task");
                RecoveredTask { record, process }
            })
            .collect();
        let supervisors = watch.iter().map(|(run, pid, start)| (*run, (*pid, *start))).collect();
        self.journal = Some(checkpoint::Journal::create(&self.store, tasks.iter().map(|t| &t.record), &supervisors)?);
        if stored.agent.is_none() && tasks.is_empty() {
            return Ok(());
        }
        self.saved_agent = stored.agent.clone();
        self.step(Input::Recover { agent_id: stored.agent.map(|agent| agent.agent_id), tasks });
        let live: std::collections::BTreeSet<RunId> =
            self.core.live_processes().into_iter().map(|(run, _)| run).collect();
        let mem_of: std::collections::BTreeMap<RunId, u64> =
            self.core.tasks().map(|task| (task.run, task.info.resources.scalars().mem_mib)).collect();
        for (run, pid, start) in watch.into_iter().filter(|(run, _, _)| live.contains(run)) {
            let exit_status = self.store.exit_status_path(run);
            let cgroup = self.recovered_cgroup(run).map(|cgroup| (cgroup, mem_of.get(&run).copied().unwrap_or(0)));
            self.supervisors.spawn(process::watch(run, pid, start, exit_status, self.events.clone(), cgroup));
        }
        self.remove_stale_cgroups(&live);
        Ok(())
    }

    /// The cgroup a live recovered task runs in, from the record its launch wrote; its
    /// limits are the kernel's and held all along, and from now on it is watched again.
    fn recovered_cgroup(&mut self, run: RunId) -> Option<std::sync::Arc<cgroups::TaskCgroup>> {
        self.cgroups.as_ref()?;
        let text = std::fs::read_to_string(self.store.run_dir(run).join("cgroup")).ok()?;
        let Some(cgroup) = cgroups::TaskCgroup::from_record(&text) else {
            tracing::warn!(run = run.0, "the task's cgroup record is damaged; its usage is not reported");
            return None;
        };
        let cgroup = std::sync::Arc::new(cgroup);
        tracing::info!(run = run.0, memory = %cgroup.memory.display(), "recovered the task's cgroup");
        self.task_cgroups.insert(run, cgroup.clone());
        Some(cgroup)
    }

    /// Once drained (no task left): removes every cgroup of this agent and its own
    /// directories, so a stopped agent leaves nothing in the hierarchies.
    async fn remove_all_cgroups(&self) {
        let Some(cgroups) = self.cgroups.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            for name in cgroups.existing().into_keys() {
                if let Err(error) = cgroups.destroy_named(&name) {
                    tracing::warn!(%name, %error, "cannot remove a task's cgroup");
                }
            }
            cgroups.remove_base();
        })
        .await;
    }

    /// The memory limitation of a recovered task that ended while no agent ran, when its
    /// cgroup is still there and saw an OOM kill.
    fn ended_over_memory(&self, record: &crate::core::TaskRecord) -> Option<crate::core::Limitation> {
        self.cgroups.as_ref()?;
        let text = std::fs::read_to_string(self.store.run_dir(record.run).join("cgroup")).ok()?;
        let cgroup = cgroups::TaskCgroup::from_record(&text)?;
        process::memory_limitation(&cgroup, record.info.resources.scalars().mem_mib)
    }

    /// Destroys this agent's cgroups whose task no longer runs (ended while no agent ran,
    /// or left by a crash between a task's end and its cgroup's removal), on a blocking
    /// thread: a removal may wait for killed processes to be reaped, and the agent need not.
    fn remove_stale_cgroups(&self, live: &std::collections::BTreeSet<RunId>) {
        let Some(cgroups) = self.cgroups.clone() else {
            return;
        };
        let live = live.clone();
        tokio::task::spawn_blocking(move || {
            for (name, run) in cgroups.existing() {
                if live.contains(&RunId(run)) {
                    continue;
                }
                match cgroups.destroy_named(&name) {
                    Ok(()) => tracing::info!(run, "removed the cgroup of a task that ended"),
                    Err(error) => tracing::warn!(run, %error, "cannot remove the cgroup of a task that ended"),
                }
            }
        });
    }

    /// A supervisor the previous agent spawned but died before recording: it wrote its own
    /// pid. Adopted only when that pid is a live process-group leader working in one of this
    /// framework's sandboxes, which a recycled pid is not; returns its pid and start time.
    fn adopt_unrecorded(&self, record: &mut crate::core::TaskRecord, pid: u32) -> Option<(u32, u64)> {
        let (start, zombie) = checkpoint::process_start(pid)?;
        let raw = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
        if zombie || nix::unistd::getpgid(Some(raw)).ok()? != raw {
            return None;
        }
        let cwd = checkpoint::process_cwd(pid)?;
        let sandbox = cwd.strip_prefix(&self.sandboxes).ok()?;
        if !sandbox.starts_with(record.framework_id.as_str()) || sandbox.components().count() != 2 {
            return None;
        }
        // Recorded by the journal that recovery starts with.
        record.pid = Some(pid);
        record.sandbox = Some(sandbox.display().to_string());
        tracing::info!(task_id = %record.info.task_id, pid, "adopted a task started just before the previous agent died");
        Some((pid, start))
    }

    /// Writes the agent's id, when it changed, before the agent relies on it.
    fn save_agent(&mut self, agent_id: &AgentId) {
        let record = checkpoint::AgentRecord { agent_id: agent_id.clone(), master: self.master.clone() };
        if self.saved_agent.as_ref() == Some(&record) {
            return;
        }
        match self.store.save_agent(&record) {
            Ok(()) => self.saved_agent = Some(record),
            Err(error) => {
                tracing::error!(%error, "cannot checkpoint the agent id; a restart will register afresh")
            }
        }
    }

    /// Writes what the steps since the last flush changed, as one batch, then executes
    /// their outputs: nothing is sent, launched or relied on before its record is on disk.
    /// The batch is written on a thread that may block, so that the runtime's workers go on
    /// (the master and other agents share them in `agora local`); the events that arrive
    /// meanwhile make the next batch, so the busier the agent, the more each sync carries.
    /// A failed write is logged and the agent goes on: a full disk must not stop tasks,
    /// though a restart then recovers less.
    async fn flush(&mut self) {
        let changes = self.core.take_checkpoints();
        let supervisors = std::mem::take(&mut self.started);
        if !changes.is_empty() || !supervisors.is_empty() {
            let mut journal = self.journal.take().expect("the journal is put back after every batch");
            let snapshot = journal.wants_snapshot().then(|| self.core.records().collect());
            let records = changes.len();
            let began = Instant::now();
            let batch = checkpoint::Batch { changes, supervisors, snapshot };
            let written = tokio::task::spawn_blocking(move || {
                let written = journal.write(batch);
                (journal, written)
            })
            .await;
            let (journal, written) = match written {
                Ok(written) => written,
                // Blocking tasks are never cancelled; a panic is a bug, and carries on as one.
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            };
            self.journal = Some(journal);
            tracing::debug!(records, took_ms = began.elapsed().as_millis() as u64, "checkpoint batch written");
            if let Some(error) = written.error {
                tracing::error!(%error, "cannot write the checkpoint");
            }
            if !written.removed.is_empty() {
                // Waits only while the sweeper is a long way behind.
                let _ = self.sweeper.send(written.removed).await;
            }
        }
        for output in std::mem::take(&mut self.outputs) {
            self.execute(output);
        }
        for reply in std::mem::take(&mut self.replies) {
            self.answer(reply);
        }
        // Finished supervisors are reaped here so the set never grows past the live tasks.
        while self.supervisors.try_join_next().is_some() {}
    }

    /// Runs until `shutdown` completes and, when it asks for a drain, until every task has
    /// ended and its last update was acknowledged, or the drain's time is up.
    async fn run(mut self, mut events: mpsc::Receiver<Event>, shutdown: impl Future<Output = Shutdown>) {
        tokio::pin!(shutdown);
        let mut drain: Option<Drain> = None;
        // What recovery decided.
        self.flush().await;
        loop {
            if let Some(drain) = drain.as_mut() {
                if self.core.tasks().next().is_none() {
                    tracing::info!("drained: every task ended and its last update was acknowledged");
                    self.remove_all_cgroups().await;
                    return;
                }
                if !drain.processes_gone && !self.core.has_live_processes() {
                    // From now on only acknowledgements are awaited.
                    drain.processes_gone = true;
                    drain.give_up_at = drain.give_up_at.min(Instant::now() + self.drain_updates_timeout);
                }
            }
            let tick_at = self
                .core
                .next_deadline_ms()
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            let (kill_at, give_up_at) = drain.as_ref().map_or((None, None), |d| (d.kill_at, Some(d.give_up_at)));
            tokio::select! {
                how = &mut shutdown, if drain.is_none() => match how {
                    Shutdown::LeaveTasks => {
                        let tasks = self.core.tasks().count();
                        tracing::info!(tasks, "stopping; the tasks keep running for the next agent on this work dir");
                        return;
                    }
                    Shutdown::Drain => drain = Some(self.start_drain()),
                },
                Some(event) = events.recv() => {
                    self.handle(event).await;
                    // What else is waiting joins the batch, so that one sync covers it all.
                    for _ in 1..MAX_BATCH_EVENTS {
                        match events.try_recv() {
                            Ok(event) => self.handle(event).await,
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(tick_at) => self.step(Input::Tick),
                () = sleep_until(kill_at) => {
                    for (_, pid) in self.core.live_processes() {
                        tracing::warn!(pid, "task still running after its grace period; killing its group");
                        let _ = process::signal_group(pid, crate::core::KillSignal::Kill);
                    }
                    if let Some(drain) = drain.as_mut() {
                        drain.kill_at = None;
                    }
                }
                () = sleep_until(give_up_at) => {
                    let (tasks, updates) = self.core.tasks().fold((0, 0), |(t, u), task| (t + 1, u + task.pending_updates));
                    tracing::warn!(tasks, updates, "drain timed out; what is not acknowledged stays in the checkpoint \
                        for the next agent on this work dir");
                    return;
                }
            }
            self.flush().await;
        }
    }

    /// Kills every task and refuses new ones; returns the drain's deadlines.
    fn start_drain(&mut self) -> Drain {
        let tasks = self.core.tasks().count();
        tracing::info!(tasks, "draining: killing every task, then stopping");
        let grace_ms = self.core.config().default_kill_grace_period_ms;
        let kill_at = Instant::now() + Duration::from_millis(grace_ms.saturating_add(DRAIN_MARGIN_MS));
        self.step(Input::KillAll);
        Drain { kill_at: Some(kill_at), processes_gone: false, give_up_at: kill_at + self.drain_updates_timeout }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Link(LinkEvent::Connecting { reply }) => self.replies.push(Reply::Registration(reply)),
            Event::Link(LinkEvent::Registered { agent_id, master, outbox }) => {
                self.save_agent(&agent_id);
                self.linked = Some(master);
                self.outbox = Some(outbox);
                self.step(Input::Registered { agent_id });
            }
            Event::Link(LinkEvent::Refused { reason }) => {
                tracing::warn!(%reason, "the master refused this agent; killing its tasks and registering afresh");
                self.outbox = None;
                self.step(Input::Reset);
                // The runs go before the id: an agent that dies in between registers afresh
                // under the refused id, and is refused again, rather than under no id with
                // tasks the master no longer knows.
                self.flush().await;
                if let Err(error) = self.store.remove_agent() {
                    tracing::error!(%error, "cannot delete the refused agent id from the checkpoint");
                }
                self.saved_agent = None;
            }
            Event::Link(LinkEvent::Disconnected) => {
                self.outbox = None;
                self.step(Input::Disconnected);
            }
            Event::Link(LinkEvent::Message(message)) => self.on_master_message(*message),
            Event::Process { run, event } => {
                let input = match event {
                    ProcessEvent::Started { pid, start_ticks, sandbox, cgroup } => {
                        if let Some(start_ticks) = start_ticks {
                            self.started.push((run, pid, start_ticks));
                        }
                        if let Some(cgroup) = cgroup {
                            self.task_cgroups.insert(run, cgroup);
                        }
                        Input::ProcessStarted { run, pid, sandbox }
                    }
                    ProcessEvent::LaunchFailed { error } => Input::LaunchFailed { run, error },
                    ProcessEvent::Exited { exit, limitation } => {
                        self.task_cgroups.remove(&run);
                        self.disk_used.remove(&run);
                        Input::ProcessExited { run, exit, limitation }
                    }
                    ProcessEvent::Gone => {
                        self.task_cgroups.remove(&run);
                        self.disk_used.remove(&run);
                        Input::ProcessGone { run }
                    }
                };
                self.step(input);
            }
            Event::Check { run, kind, outcome } => self.step(Input::CheckResult { run, kind, outcome }),
            Event::State { reply } => self.replies.push(Reply::State(reply)),
            Event::DiskUsage(measured) => self.on_disk_usage(measured),
        }
    }

    /// Keeps the sandboxes' measures of the tasks still running and, with
    /// `--enforce-container-disk-quota`, ends those over their `disk`.
    fn on_disk_usage(&mut self, measured: Vec<(RunId, u64)>) {
        let disk_of: std::collections::BTreeMap<RunId, u64> = self
            .core
            .tasks()
            .filter(|task| task.pid.is_some())
            .map(|task| (task.run, task.info.resources.scalars().disk_mib))
            .collect();
        for (run, used) in measured {
            let Some(disk_mib) = disk_of.get(&run) else {
                continue;
            };
            self.disk_used.insert(run, used);
            if !self.enforce_disk_quota {
                continue;
            }
            if let Some(limitation) = usage::disk_limitation(used, *disk_mib) {
                tracing::info!(run = run.0, used, disk_mib, "the task's sandbox outgrew its disk; killing it");
                self.step(Input::LimitReached { run, limitation });
            }
        }
    }

    /// Answers a question about the agent's tasks, once what the answer tells is on disk.
    fn answer(&self, reply: Reply) {
        match reply {
            Reply::Registration(reply) => {
                let _ = reply.send(wire::registration(&self.info, self.core.agent_id(), self.core.tasks()));
            }
            Reply::State(reply) => {
                let _ = reply.send(StateView {
                    agent_id: self.core.agent_id().cloned(),
                    connected: self.core.is_connected(),
                    master: self.linked.clone().unwrap_or_else(|| self.master.clone()),
                    info: self.info.clone(),
                    tasks: self.core.tasks().collect(),
                    isolation: self.cgroups.as_ref().map_or("posix", |c| c.describe()),
                    cgroups: self.task_cgroups.clone(),
                    disk_used: self.disk_used.clone(),
                    sandboxes: self.sandboxes.clone(),
                });
            }
        }
    }

    fn on_master_message(&mut self, message: pb::MasterMessage) {
        let input = match wire::master_input(message) {
            Ok(Some(input)) => input,
            Ok(None) => return,
            Err(rejected) => {
                tracing::warn!(error = %rejected.error, "malformed message from the master");
                if let Some((framework_id, status)) =
                    rejected.into_error_update(self.core.agent_id().cloned(), now_ms())
                {
                    self.send(wire::status_update(&framework_id, &status));
                }
                return;
            }
        };
        if let Input::RunTask { framework_id, task, .. } = &input {
            tracing::info!(%framework_id, task_id = %task.task_id, "running task");
        }
        self.step(input);
    }

    /// Applies one input; its outputs wait for the next [`flush`](Self::flush), which writes
    /// the checkpoint first: an update is on disk before it is sent, a task's record before
    /// its process is launched.
    fn step(&mut self, input: Input) {
        let outputs = self.core.step(now_ms(), input);
        self.outputs.extend(outputs);
    }

    fn execute(&mut self, output: Output) {
        match output {
            Output::Launch { run, framework_id, task } => {
                let user = task.command.user.clone().or_else(|| self.core.framework_user(run).map(str::to_owned));
                let spec = process::LaunchSpec {
                    run,
                    framework_id,
                    task: *task,
                    sandboxes: self.sandboxes.clone(),
                    hostname: self.hostname.clone(),
                    run_dir: self.store.run_dir(run),
                    fetcher: self.fetcher.clone(),
                    cgroups: self.cgroups.clone(),
                    user,
                    users: self.users.clone(),
                };
                self.supervisors.spawn(process::supervise(spec, self.events.clone(), self.launches.clone()));
            }
            Output::Signal { run, pid, signal } => {
                tracing::info!(?run, pid, ?signal, "signalling the task's process group");
                if let Err(error) = process::signal_group(pid, signal)
                    && error != nix::errno::Errno::ESRCH
                {
                    tracing::warn!(pid, %error, "cannot signal the task's process group");
                }
            }
            Output::SendUpdate { framework_id, status } => {
                tracing::debug!(%framework_id, task_id = %status.task_id, state = %status.state, "status update");
                self.send(wire::status_update(&framework_id, &status));
            }
            Output::TaskRemoved { framework_id, task_id, run } => {
                tracing::debug!(%framework_id, %task_id, ?run, "task done and acknowledged");
                // The core stopped its checks already; nothing of the run may outlive it.
                self.checks.retain(|(check_run, _), _| *check_run != run);
            }
            Output::StartCheck { run, kind, task, sandbox, first_at_ms } => {
                let dir = self.sandboxes.join(&sandbox);
                // The check runs as the task does; a user that cannot be had runs no check.
                let asked = task.command.user.clone().or_else(|| self.core.framework_user(run).map(str::to_owned));
                let user = match users::resolve(asked.as_deref(), &self.users, users::lookup) {
                    Ok(user) => user,
                    Err(error) => {
                        tracing::warn!(task_id = %task.task_id, %error, "not starting the task's check");
                        return;
                    }
                };
                let env = process::environment(&task, &dir, &self.hostname, user.as_ref());
                let run_as = user.map(|user| (user.uid, user.gid));
                let Some(spec) = checker::CheckSpec::of_task(&task, kind, dir, env, run_as) else {
                    tracing::warn!(task_id = %task.task_id, ?kind, "asked to start a check the task does not have");
                    return;
                };
                tracing::info!(task_id = %task.task_id, ?kind, probe = ?spec.probe, "starting the task's check");
                let first_wait = Duration::from_millis(first_at_ms.saturating_sub(now_ms()));
                let handle =
                    tokio::spawn(checker::run(run, kind, spec, first_wait, self.events.clone(), self.probes.clone()));
                self.checks.insert((run, kind), AbortOnDrop(handle.abort_handle()));
            }
            Output::StopCheck { run, kind } => {
                tracing::debug!(run = run.0, ?kind, "stopping the task's check");
                self.checks.remove(&(run, kind));
            }
        }
    }

    /// Offers a message to the master without waiting: an update that does not fit is resent
    /// by the core's retries, and a full outbox makes the link start over.
    fn send(&mut self, message: pb::AgentMessage) {
        if let Some(outbox) = &self.outbox
            && outbox.try_send(message).is_err()
        {
            tracing::debug!("the stream to the master is full or gone; the update will be resent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_dir_is_made_absolute_against_the_current_directory() {
        let cwd = std::env::current_dir().expect("a current directory");
        assert_eq!(absolute_work_dir(Path::new("a")).expect("relative"), cwd.join("a"));
        assert_eq!(absolute_work_dir(Path::new("./agora-agent")).expect("dotted"), cwd.join("agora-agent"));
        assert_eq!(absolute_work_dir(Path::new("/var/lib/agora")).expect("absolute"), Path::new("/var/lib/agora"));
        let error = absolute_work_dir(Path::new("")).expect_err("an empty work dir");
        assert!(error.to_string().contains("work_dir"), "{error}");
    }
}
