//! `agora run`: a built-in one-shot framework, like `mesos-execute`. It runs a command as
//! one or more tasks, prints every state change, and exits with the tasks' outcome.
//!
//! Output: with one instance, what the task writes to its stdout and stderr goes to ours as
//! it is written (like `docker run`), read from its sandbox through the agent's files API
//! (`agora_master::cli::sandbox::stream_output`); the state changes (`task NAME-0
//! TASK_RUNNING on agent ID (HOST)`, with `: MESSAGE` on terminal states) and progress go to
//! stderr, the last state once the output is drained. With several instances the state
//! changes go to stdout, and `--follow` streams every instance's output with its lines
//! prefixed `[NAME-i] `. A task that fails gets a line saying where its sandbox is and the
//! `agora task log` command that reads it. `--detach` only launches: the run goes on as a
//! background process of its own (see [`detach`]) and this one exits once every instance
//! has started. With `--json`, stdout has one JSON object
//! per line instead: each subscription and every update as delivered, duplicates included,
//! for programs to check.
//!
//! Flags are checked before anything is launched: an unknown option is an error with a
//! suggestion (the command comes after `--`, or is the first word that is not an option),
//! every `--master` must be HOST:PORT, and a master that cannot be connected to within
//! [`PROBE_TIMEOUT`] ends the run at once with one line. Once a master was reached, the
//! driver rides out its restarts ([`RECONNECT`]).
//!
//! `--checkpoint FILE` keeps the framework id and the launched tasks in FILE (see
//! [`checkpoint`]); started again with the same FILE after a crash, the run re-subscribes as
//! the same framework within its failover timeout, reconciles its tasks and carries on.
//!
//! Exit status: with one instance, the task's own exit code (TASK_FINISHED → 0, TASK_FAILED
//! with exit code N → N, a task ended by signal N → 128+N, any other ending → 1); with
//! several, 0 only if every instance finished successfully, else 1. Ctrl-C (or SIGTERM)
//! kills the tasks, waits for their end and exits 130 (143 for SIGTERM, as a shell reports
//! a process it ended); `--timeout` does the same and exits 124, as `timeout(1)` does. A
//! master that cannot be reached is an error (exit 1).
//!
//! The command runs directly (argv) unless `--shell` is given, in which case the words are
//! joined with spaces and run by `/bin/sh -c`. A single CMD word that contains whitespace
//! and has no ARGS also runs through the shell, so that `agora run -- "echo hi && sleep 1"`
//! does what it says.

mod checkpoint;
mod detach;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_proto::model::{
    AgentId, FrameworkId, FrameworkInfo, Offer, Resources, Role, Scalars, TaskId, TaskInfo, TaskState, TaskStatus,
};
use agora_sdk::{BackoffConfig, Driver, DriverConfig, DriverHandle, Scheduler, TaskBuilder, TaskRequirements, carve};
use anyhow::Context;
use checkpoint::{Checkpoint, Resumed};
use tokio::sync::watch;

/// Most instances one run may launch.
const MAX_INSTANCES: u32 = 10_000;
/// Most ports one task may ask for.
const MAX_PORTS: u32 = 1_000;
/// A million CPUs and an exbibyte: the bounds the resource model accepts.
const MAX_CPUS_MILLI: u64 = 1_000_000_000;
const MAX_MIB: u64 = 1 << 40;
/// A year; a longer `--timeout` is surely a mistake.
const MAX_TIMEOUT_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// After Ctrl-C or `--timeout`, how long to wait for the killed tasks to report their end
/// before tearing the framework down regardless (the master then kills what is left).
const KILL_WAIT: Duration = Duration::from_secs(30);
/// How long the master keeps the tasks if `agora run` itself dies: long enough to ride out
/// a master restart, short enough that orphaned one-shot tasks do not linger.
const FAILOVER_TIMEOUT_MS: u64 = 60_000;
/// Offers that do not fit a task come back after this long, so that resources freed
/// elsewhere in the meantime are seen soon.
const REFUSE_UNFIT_SECONDS: f64 = 2.0;
/// Offers declined once every instance is launched stay away long: nothing more is needed.
const REFUSE_DONE_SECONDS: f64 = 3_600.0;
/// A one-shot command gives up on an unreachable master after about a minute and a half
/// of consecutive failed attempts, rather than hanging for ever.
const RECONNECT: BackoffConfig = BackoffConfig { initial_ms: 250, max_ms: 5_000, max_attempts: Some(20) };
/// Launch calls the master may reject outright before the run gives up.
const MAX_REJECTED_LAUNCHES: u32 = 3;
/// How long the masters get to accept a connection at start before the run gives up on
/// them: a master that is there answers at once; one that refuses is not waited for.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// After the run, how long its output streams get to drain what the tasks wrote.
const STREAM_DRAIN: Duration = Duration::from_secs(10);
/// How long finding a failed task's sandbox may take when saying where it is.
const SANDBOX_LOOKUP: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The master, HOST:PORT; several comma-separated masters are tried in turn.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]", value_delimiter = ',', required = true, env = "AGORA_MASTER")]
    master: Vec<String>,
    #[command(flatten)]
    tls: super::tls::ClientArgs,
    /// The framework's name; tasks are called NAME-0, NAME-1, ….
    #[arg(long, default_value = "agora-run")]
    name: String,
    /// The user the tasks run as on the agents (default: $USER). An agent running as root
    /// refuses root unless started with --allow-root-tasks; `agora local` runs them as nobody.
    #[arg(long)]
    user: Option<String>,
    /// CPUs per task, down to a thousandth.
    #[arg(long, default_value = "0.1", value_parser = parse_cpus, allow_negative_numbers = true)]
    cpus: u64,
    /// Memory per task, MiB.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(0..=MAX_MIB))]
    mem: u64,
    /// Disk per task, MiB.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=MAX_MIB))]
    disk: u64,
    /// Ports per task; the task finds them in $PORT0, $PORT1, ….
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=MAX_PORTS as i64))]
    ports: u32,
    /// How many copies of the task to run.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_INSTANCES as i64))]
    instances: u32,
    /// The role to run as; its reserved resources are used before unreserved ones.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// An environment variable for the task; repeat for more.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Run the command with `/bin/sh -c`, its words joined with spaces.
    #[arg(long)]
    shell: bool,
    /// Give up after this many seconds: kill the tasks and exit 124.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Write the framework id and the launched tasks to FILE (created if missing). Run again
    /// with the same FILE after a crash to resume: the run re-subscribes as the same
    /// framework (within its 60 s failover timeout), reconciles its tasks and launches only
    /// those never launched.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Print one JSON object per line on stdout instead of text: `{"event": "subscribed",
    /// …}` on each subscription and `{"event": "update", …}` for every status update as it
    /// arrives, duplicates included. The tasks' output is not streamed.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    credential: super::auth::ClientCredential,
    /// Only launch: exit once every instance has started and leave the run in the
    /// background (a process of its own, which ends when its tasks have). Follow a task's
    /// output with `agora task log NAME-0 --follow`; `agora framework teardown ID` ends it.
    #[arg(long, conflicts_with_all = ["follow", "checkpoint", "timeout"])]
    detach: bool,
    /// With several instances, stream what each task writes, every line prefixed with its
    /// instance (`[NAME-1] …`). One instance is always streamed (unless --json or --detach).
    #[arg(long)]
    follow: bool,
    /// The command and its arguments, after `--` (needed when the command's first word
    /// starts with `-`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_cpus(value: &str) -> Result<u64, String> {
    let cpus: f64 = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err("must be more than 0".into());
    }
    let milli = (cpus * 1000.0).round();
    if milli < 1.0 {
        return Err("must be at least 0.001".into());
    }
    if milli > MAX_CPUS_MILLI as f64 {
        return Err("must be at most 1000000".into());
    }
    Ok(milli as u64)
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).map_err(|e| e.to_string())
}

fn parse_env(value: &str) -> Result<(String, String), String> {
    let (key, val) = value.split_once('=').ok_or("expected KEY=VALUE")?;
    if key.is_empty() || key.contains('\0') || val.contains('\0') {
        return Err(format!("{key:?} is not a valid variable name"));
    }
    Ok((key.to_owned(), val.to_owned()))
}

fn parse_timeout(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value.parse().map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    if seconds > MAX_TIMEOUT_SECONDS {
        return Err("must be at most a year".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// How the task's command runs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    Shell(String),
    Argv(Vec<String>),
}

impl Command {
    fn from_args(words: &[String], shell: bool) -> anyhow::Result<Self> {
        match words {
            [] => anyhow::bail!("CMD: give the command to run after `--`"),
            [first, ..] if first.is_empty() => anyhow::bail!("CMD: the command is empty"),
            _ if shell => Ok(Command::Shell(words.join(" "))),
            [only] if only.contains(char::is_whitespace) => Ok(Command::Shell(only.clone())),
            _ => Ok(Command::Argv(words.to_vec())),
        }
    }
}

/// Everything the run needs, validated.
#[derive(Debug)]
struct Plan {
    masters: Vec<String>,
    tls: Option<agora_proto::tls::ClientTls>,
    framework: FrameworkInfo,
    requirements: TaskRequirements,
    command: Command,
    env: Vec<(String, String)>,
    task_ids: Vec<TaskId>,
    timeout: Option<Duration>,
    checkpoint: Option<PathBuf>,
    json: bool,
    credential: Option<agora_proto::auth::Credential>,
    detach: bool,
    stream: Stream,
}

/// Whose output the run streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    None,
    /// The one instance's, as it is.
    One,
    /// Every instance's, lines prefixed with the instance.
    Prefixed,
}

impl Plan {
    fn from_args(args: Args) -> anyhow::Result<Self> {
        let masters: Vec<String> = args.master.iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
        if masters.is_empty() {
            anyhow::bail!("--master: give at least one HOST:PORT");
        }
        for master in &masters {
            agora_master::cli::client::base_url_with(master, args.tls.load()?.as_ref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        // Task ids are NAME-i, so the name must be a valid id itself.
        agora_proto::convert::id::<TaskId>("--name", &args.name).map_err(|e| anyhow::anyhow!("{e}"))?;
        let task_ids = (0..args.instances).map(|i| TaskId::new(format!("{}-{i}", args.name))).collect();
        let command = Command::from_args(&args.command, args.shell)?;
        let role = args.role.clone().unwrap_or_else(Role::unreserved);
        let framework = FrameworkInfo {
            id: None,
            name: args.name,
            user: match args.user {
                Some(user) => agora_proto::convert::user_name("--user", user).map_err(|e| anyhow::anyhow!("{e}"))?,
                None => std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "nobody".into()),
            },
            roles: vec![role],
            failover_timeout_ms: FAILOVER_TIMEOUT_MS,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            principal: String::new(),
        };
        let requirements = TaskRequirements {
            cpus_milli: args.cpus,
            mem_mib: args.mem,
            disk_mib: args.disk,
            ports: args.ports,
            role: args.role,
        };
        let stream = match (args.json || args.detach, args.instances, args.follow) {
            (true, _, _) => Stream::None,
            (false, 1, _) => Stream::One,
            (false, _, true) => Stream::Prefixed,
            (false, _, false) => Stream::None,
        };
        Ok(Plan {
            masters,
            tls: args.tls.load()?,
            framework,
            requirements,
            command,
            env: args.env,
            task_ids,
            timeout: args.timeout,
            checkpoint: args.checkpoint,
            json: args.json,
            credential: args.credential.load()?,
            detach: args.detach,
            stream,
        })
    }

    fn total_instances(&self) -> u32 {
        u32::try_from(self.task_ids.len()).expect("--instances is at most MAX_INSTANCES")
    }

    fn task(&self, task_id: &TaskId, agent_id: &AgentId, resources: Resources) -> Result<TaskInfo, agora_sdk::Error> {
        let builder = match &self.command {
            Command::Shell(line) => TaskBuilder::shell(task_id.clone(), line.clone()),
            Command::Argv(argv) => TaskBuilder::argv(task_id.clone(), argv.iter().cloned()),
        };
        let builder = self.env.iter().fold(builder, |b, (k, v)| b.env(k.clone(), v.clone()));
        builder.name(self.framework.name.clone()).build(agent_id, resources)
    }
}

/// Why the run was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    /// Ctrl-C (SIGINT): exit 130.
    Interrupted,
    /// SIGTERM: exit 143.
    Terminated,
    Timeout,
}

/// One instance of the command.
#[derive(Debug)]
struct Instance {
    task_id: TaskId,
    launched: bool,
    agent_id: Option<AgentId>,
    last: Option<TaskStatus>,
    /// Whether its output is being streamed.
    streaming: bool,
    /// Turned true once it is over, so that its output streams drain and stop.
    ended: watch::Sender<bool>,
}

impl Instance {
    fn state(&self) -> Option<TaskState> {
        self.last.as_ref().map(|s| s.state)
    }

    /// Whether this instance will not change any more. TASK_UNKNOWN counts: the master has
    /// no record of the task, so it is not running anywhere.
    fn is_over(&self) -> bool {
        self.state().is_some_and(|s| s.is_terminal() || s == TaskState::TaskUnknown)
    }
}

/// The one-shot framework.
#[derive(Debug)]
struct Runner {
    plan: Plan,
    instances: Vec<Instance>,
    by_id: BTreeMap<TaskId, usize>,
    /// Instances `0..next_launch` have been launched.
    next_launch: usize,
    hosts: BTreeMap<AgentId, String>,
    interrupt: watch::Receiver<Option<Interrupt>>,
    stopping: Option<Interrupt>,
    /// Set when the run gave up by itself (launches rejected); the message says why.
    aborted: Option<String>,
    rejected_launches: u32,
    said_too_small: bool,
    /// Whether any subscription succeeded, to tell "cannot reach" from "lost" the master.
    ever_subscribed: bool,
    /// Where launches and endings are written down before they are relied on.
    checkpoint: Option<Checkpoint>,
    /// The framework id last written to the checkpoint.
    checkpointed_id: Option<FrameworkId>,
    /// The framework id of the current subscription.
    framework_id: Option<FrameworkId>,
    /// Each agent's HTTP endpoint (sandboxes), from its offers.
    agent_urls: BTreeMap<AgentId, String>,
    /// The output streams under way.
    streams: Vec<tokio::task::JoinHandle<()>>,
    /// Lines kept until the output is drained: the one instance's ending.
    deferred: Vec<String>,
}

/// Writes a line on stdout; a closed stdout must not kill the run (its tasks would be orphaned).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn say_json(value: serde_json::Value) {
    say(&value.to_string());
}

/// An update as one `--json` line.
fn update_json(status: &TaskStatus) -> serde_json::Value {
    serde_json::json!({
        "event": "update",
        "task_id": status.task_id.as_str(),
        "state": status.state.as_str(),
        "agent_id": status.agent_id.as_ref().map(AgentId::as_str),
        "source": status.source.as_str(),
        "reason": status.reason.as_str(),
        "message": status.message,
        "uuid": status.uuid.as_ref().map(|u| u.as_str()),
        "exit_code": status.exit_code,
        "signal": status.signal,
        "timestamp_ms": status.timestamp_ms,
    })
}

fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "agora run: {line}");
}

impl Runner {
    fn new(plan: Plan, interrupt: watch::Receiver<Option<Interrupt>>) -> Self {
        let instances: Vec<Instance> = plan
            .task_ids
            .iter()
            .map(|task_id| Instance {
                task_id: task_id.clone(),
                launched: false,
                agent_id: None,
                last: None,
                streaming: false,
                ended: watch::channel(false).0,
            })
            .collect();
        let by_id = instances.iter().enumerate().map(|(i, t)| (t.task_id.clone(), i)).collect();
        Self {
            plan,
            instances,
            by_id,
            next_launch: 0,
            hosts: BTreeMap::new(),
            interrupt,
            stopping: None,
            aborted: None,
            rejected_launches: 0,
            said_too_small: false,
            ever_subscribed: false,
            checkpoint: None,
            checkpointed_id: None,
            framework_id: None,
            agent_urls: BTreeMap::new(),
            streams: Vec::new(),
            deferred: Vec::new(),
        }
    }

    /// Takes up where an earlier life of this run left off: its launched tasks (on their
    /// agents) and the endings it saw.
    fn resume(&mut self, checkpoint: Checkpoint, resumed: Option<Resumed>) -> anyhow::Result<()> {
        self.checkpoint = Some(checkpoint);
        let Some(resumed) = resumed else {
            return Ok(());
        };
        self.checkpointed_id = resumed.framework_id;
        for (task_id, agent_id) in resumed.launched {
            let Some(&index) = self.by_id.get(&task_id) else {
                anyhow::bail!("--checkpoint: it names task {task_id}, which this run does not have");
            };
            let instance = &mut self.instances[index];
            instance.launched = true;
            instance.agent_id = Some(agent_id);
        }
        // Launches go in instance order, so the launched ones are the first few.
        self.next_launch = self.instances.iter().take_while(|t| t.launched).count();
        if self.instances[self.next_launch..].iter().any(|t| t.launched) {
            anyhow::bail!("--checkpoint: the launched tasks are not the first ones of the run");
        }
        for (task_id, status) in resumed.ended {
            if let Some(&index) = self.by_id.get(&task_id) {
                self.instances[index].last = Some(status);
            }
        }
        Ok(())
    }

    /// Writes a record to the checkpoint, if there is one.
    fn record(&mut self, write: impl FnOnce(&mut Checkpoint) -> anyhow::Result<()>) -> anyhow::Result<()> {
        match self.checkpoint.as_mut() {
            Some(checkpoint) => write(checkpoint),
            None => Ok(()),
        }
    }

    fn total(&self) -> usize {
        self.instances.len()
    }

    fn all_launched(&self) -> bool {
        self.next_launch == self.total()
    }

    fn wants_offers(&self) -> bool {
        !self.all_launched() && self.stopping.is_none() && self.aborted.is_none()
    }

    /// Every instance ended, or will never start because the run is stopping.
    fn is_done(&self) -> bool {
        let giving_up = self.stopping.is_some() || self.aborted.is_some();
        self.instances.iter().all(|t| t.is_over() || (giving_up && !t.launched))
    }

    fn over_count(&self) -> (usize, usize) {
        let over = self.instances.iter().filter(|t| t.is_over()).count();
        let failed =
            self.instances.iter().filter(|t| t.is_over() && t.state() != Some(TaskState::TaskFinished)).count();
        (over, failed)
    }

    /// Launched instances that are still live.
    fn live(&self) -> Vec<(TaskId, Option<AgentId>)> {
        self.instances
            .iter()
            .filter(|t| t.launched && !t.is_over())
            .map(|t| (t.task_id.clone(), t.agent_id.clone()))
            .collect()
    }

    async fn finish_if_done(&mut self, driver: &DriverHandle) {
        if !self.is_done() {
            return;
        }
        // TEARDOWN makes the master forget the framework at once instead of after the
        // failover timeout; if it cannot be sent, nothing runs any more anyway.
        if let Err(error) = driver.teardown().await {
            tracing::debug!(%error, "teardown failed; stopping without it");
            driver.stop();
        }
    }

    async fn launch_on(&mut self, driver: &DriverHandle, offer: Offer) {
        let wanted = self.total() - self.next_launch;
        let carving = carve(&offer.resources, &self.plan.requirements, wanted);
        if carving.tasks.is_empty() {
            if !self.said_too_small {
                self.said_too_small = true;
                note(&format!(
                    "an offer from {} ({}) is too small for a task ({}); waiting for more",
                    offer.hostname(),
                    offer.resources,
                    describe(&self.plan.requirements)
                ));
            }
            let _ = driver.decline(vec![offer.id], Some(REFUSE_UNFIT_SECONDS)).await;
            return;
        }
        let mut tasks = Vec::with_capacity(carving.tasks.len());
        for (i, resources) in carving.tasks.into_iter().enumerate() {
            let task_id = &self.instances[self.next_launch + i].task_id;
            match self.plan.task(task_id, &offer.agent_id, resources) {
                Ok(task) => tasks.push(task),
                Err(error) => {
                    self.abort(driver, format!("cannot describe task {task_id}: {error}")).await;
                    let _ = driver.decline(vec![offer.id], Some(REFUSE_DONE_SECONDS)).await;
                    return;
                }
            }
        }
        let count = tasks.len();
        let first = self.next_launch;
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
        if let Err(error) = self.record(|c| c.launched(&ids, &offer.agent_id)) {
            // Launching what a restarted run could not know about would orphan it.
            let _ = driver.decline(vec![offer.id], Some(REFUSE_UNFIT_SECONDS)).await;
            self.abort(driver, format!("{error:#}")).await;
            return;
        }
        match driver.accept(vec![offer.id.clone()], tasks, Some(REFUSE_UNFIT_SECONDS)).await {
            Ok(()) => {}
            Err(error @ agora_sdk::Error::Rejected { .. }) => {
                self.rejected_launches += 1;
                note(&format!("the master rejected a launch on {}: {error}", offer.hostname()));
                self.withdraw(&ids);
                if self.rejected_launches >= MAX_REJECTED_LAUNCHES {
                    self.abort(driver, format!("{MAX_REJECTED_LAUNCHES} launches were rejected; giving up")).await;
                }
                return;
            }
            Err(error @ (agora_sdk::Error::NotSubscribed | agora_sdk::Error::StaleSubscription { .. })) => {
                // The offer died with the subscription; the tasks will go on a new one.
                note(&format!("launch on {} not sent: {error}", offer.hostname()));
                self.withdraw(&ids);
                return;
            }
            Err(error) => {
                // The launch may or may not have reached the master. Counting the tasks as
                // launched and reconciling finds out: the master reports them either way.
                note(&format!("launch on {} uncertain ({error}); reconciling", offer.hostname()));
                let ids = self.instances[first..first + count].iter().map(|t| (t.task_id.clone(), None)).collect();
                let _ = driver.reconcile(ids).await;
            }
        }
        self.hosts.insert(offer.agent_id.clone(), offer.hostname().to_string());
        self.agent_urls.insert(offer.agent_id.clone(), offer.agent.url.clone());
        for instance in &mut self.instances[first..first + count] {
            instance.launched = true;
            instance.agent_id = Some(offer.agent_id.clone());
        }
        self.next_launch += count;
        note(&format!("launched {}/{} ({} on {})", self.next_launch, self.total(), count, offer.hostname()));
        if self.all_launched() {
            let _ = driver.suppress().await;
        }
    }

    /// Starts streaming the output of instance `index` once its agent is known.
    fn stream(&mut self, index: usize) {
        let prefix = match self.plan.stream {
            Stream::None => return,
            Stream::One => None,
            Stream::Prefixed => Some(format!("[{}] ", self.instances[index].task_id)),
        };
        let instance = &self.instances[index];
        let (Some(agent_id), Some(framework_id)) = (&instance.agent_id, &self.framework_id) else { return };
        let Some(url) = self.agent_urls.get(agent_id) else { return };
        if instance.streaming {
            return;
        }
        let files = match agora_master::cli::sandbox::AgentFiles::connect(
            agent_id.as_str(),
            url,
            self.plan.credential.as_ref(),
            self.plan.tls.as_ref(),
        ) {
            Ok(files) => files,
            Err(error) => {
                note(&format!("cannot show the output of {}: {error}", instance.task_id));
                return;
            }
        };
        let task_id = instance.task_id.to_string();
        let ended = instance.ended.subscribe();
        let framework_id = framework_id.to_string();
        self.instances[index].streaming = true;
        self.streams.push(tokio::spawn(async move {
            let streamed =
                agora_master::cli::sandbox::stream_output(files, framework_id, task_id.clone(), prefix, ended);
            if let Err(error) = streamed.await {
                note(&format!("cannot show the output of {task_id}: {error}"));
            }
        }));
    }

    /// Notes in the checkpoint that a launch certainly did not reach the master. Failing to
    /// is harmless: a resumed run would reconcile the tasks and hear they do not exist.
    fn withdraw(&mut self, ids: &[TaskId]) {
        if let Err(error) = self.record(|c| c.withdrawn(ids)) {
            note(&format!("{error:#}"));
        }
    }

    /// Gives up on the instances not yet launched and ends the run once the launched ones end.
    async fn abort(&mut self, driver: &DriverHandle, why: String) {
        note(&why);
        self.aborted = Some(why);
        let _ = driver.suppress().await;
        for (task_id, agent_id) in self.live() {
            let _ = driver.kill(&task_id, agent_id.as_ref()).await;
        }
        self.finish_if_done(driver).await;
    }

    /// Ends the output streams once what the tasks wrote is drained (at most
    /// [`STREAM_DRAIN`]), then tells the endings kept until now.
    async fn drain_streams(&mut self) {
        for instance in &self.instances {
            instance.ended.send_replace(true);
        }
        let streams = std::mem::take(&mut self.streams);
        let drained = async {
            for stream in streams {
                let _ = stream.await;
            }
        };
        if tokio::time::timeout(STREAM_DRAIN, drained).await.is_err() {
            note("the tasks' output was not drained in time");
        }
        for line in std::mem::take(&mut self.deferred) {
            note(&line);
        }
    }

    /// For each instance that ended unsuccessfully: where its sandbox is and the command that
    /// reads what it printed.
    async fn say_where_failures_are(&self) {
        if self.plan.json {
            return;
        }
        let masters = self.plan.masters.join(",");
        let Some(framework_id) = &self.framework_id else { return };
        for instance in &self.instances {
            let failed = instance.is_over() && instance.state() != Some(TaskState::TaskFinished) && instance.launched;
            let (true, Some(agent_id)) = (failed, &instance.agent_id) else { continue };
            let task_id = &instance.task_id;
            let url = self.agent_urls.get(agent_id);
            let sandbox = match url.map(|url| {
                agora_master::cli::sandbox::AgentFiles::connect(
                    agent_id.as_str(),
                    url,
                    self.plan.credential.as_ref(),
                    self.plan.tls.as_ref(),
                )
            }) {
                Some(Ok(files)) => {
                    let lookup = files.sandbox_of(framework_id.as_str(), task_id.as_str());
                    tokio::time::timeout(SANDBOX_LOOKUP, lookup).await.ok().and_then(Result::ok).flatten()
                }
                _ => None,
            };
            let sandbox = sandbox.unwrap_or_else(|| format!("{framework_id}/{task_id}"));
            let host = url.map_or_else(|| self.hosts.get(agent_id).cloned().unwrap_or_default(), Clone::clone);
            note(&format!(
                "{task_id} failed; its sandbox is {sandbox} on agent {agent_id} ({host}): \
                 `agora task log {task_id} --framework {framework_id} --master {masters}` shows its stdout, \
                 with --stderr its stderr"
            ));
        }
    }

    fn status_line(&self, status: &TaskStatus) -> String {
        let mut line = format!("task {} {}", status.task_id, status.state);
        if let Some(agent_id) = &status.agent_id {
            line.push_str(&format!(" on agent {agent_id}"));
            if let Some(host) = self.hosts.get(agent_id) {
                line.push_str(&format!(" ({host})"));
            }
        }
        let terminal = status.state.is_terminal();
        if terminal || status.state == TaskState::TaskUnreachable {
            let mut details = Vec::new();
            if !status.message.is_empty() {
                details.push(status.message.clone());
            }
            if let Some(code) = status.exit_code.filter(|_| !status.message.contains("exit")) {
                details.push(format!("exit code {code}"));
            }
            if let Some(signal) = status.signal.filter(|_| !status.message.contains("signal")) {
                details.push(format!("signal {signal}"));
            }
            if !details.is_empty() {
                line.push_str(": ");
                line.push_str(&details.join("; "));
            }
        }
        line
    }

    /// The process exit status once the driver has returned.
    fn exit_code(&self) -> u8 {
        match self.stopping {
            Some(Interrupt::Interrupted) => return 130,
            Some(Interrupt::Terminated) => return 143,
            Some(Interrupt::Timeout) => return 124,
            None => {}
        }
        if self.aborted.is_some() {
            return 1;
        }
        match self.instances.as_slice() {
            [only] => only.last.as_ref().map_or(1, exit_code_of),
            all if all.iter().all(|t| t.state() == Some(TaskState::TaskFinished)) => 0,
            _ => 1,
        }
    }
}

/// A task's own exit status, as a shell would report it.
fn exit_code_of(status: &TaskStatus) -> u8 {
    if status.state == TaskState::TaskFinished {
        return 0;
    }
    if let Some(signal) = status.signal.filter(|s| *s > 0) {
        return u8::try_from(128 + i64::from(signal)).unwrap_or(255);
    }
    match (status.state, status.exit_code) {
        (TaskState::TaskFailed, Some(code)) if (1..=255).contains(&code) => u8::try_from(code).unwrap_or(1),
        _ => 1,
    }
}

fn describe(requirements: &TaskRequirements) -> String {
    let scalars = Scalars::new(requirements.cpus_milli, requirements.mem_mib, requirements.disk_mib);
    let mut text = Resources::unreserved(scalars, Default::default()).to_string();
    if requirements.ports > 0 {
        text.push_str(&format!(";ports:{}", requirements.ports));
    }
    text
}

impl Scheduler for Runner {
    async fn subscribed(&mut self, driver: &DriverHandle, framework_id: &FrameworkId, reconnected: bool) {
        self.ever_subscribed = true;
        self.framework_id = Some(framework_id.clone());
        if self.plan.json {
            say_json(serde_json::json!({
                "event": "subscribed",
                "framework_id": framework_id.as_str(),
                "resubscribed": reconnected,
            }));
        }
        if self.checkpointed_id.as_ref() != Some(framework_id) {
            match self.record(|c| c.framework_id(framework_id)) {
                Ok(()) => self.checkpointed_id = Some(framework_id.clone()),
                // Nothing is launched yet under this id; a run that cannot remember it
                // must not launch anything a restart could not find again.
                Err(error) => self.abort(driver, format!("{error:#}")).await,
            }
        }
        if reconnected {
            note(&format!("re-subscribed as {framework_id}; reconciling"));
            let live = self.live();
            if !live.is_empty() {
                let _ = driver.reconcile(live).await;
            }
        } else {
            note(&format!("subscribed as framework {framework_id}"));
        }
        if self.wants_offers() {
            note(&format!(
                "waiting for offers ({} task(s) of {})…",
                self.total() - self.next_launch,
                describe(&self.plan.requirements)
            ));
            // A new subscription may have kept an earlier SUPPRESS.
            if reconnected {
                let _ = driver.revive().await;
            }
        } else {
            let _ = driver.suppress().await;
        }
        self.finish_if_done(driver).await;
    }

    async fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) {
        for offer in offers {
            if self.wants_offers() {
                self.launch_on(driver, offer).await;
            } else {
                let _ = driver.decline(vec![offer.id], Some(REFUSE_DONE_SECONDS)).await;
            }
        }
    }

    async fn update(&mut self, driver: &DriverHandle, status: TaskStatus) {
        let Some(&index) = self.by_id.get(&status.task_id) else {
            tracing::debug!(task_id = %status.task_id, "update for a task this run does not know");
            return;
        };
        if self.plan.json {
            say_json(update_json(&status));
        }
        let instance = &self.instances[index];
        // Terminal states are final, and an update delivered twice is printed once.
        if instance.is_over() || instance.state() == Some(status.state) {
            return;
        }
        let ends = status.state.is_terminal() || status.state == TaskState::TaskUnknown;
        if !self.plan.json {
            let line = self.status_line(&status);
            match self.plan.stream {
                // The output has stdout to itself; the ending is told once it is drained.
                Stream::One if ends => self.deferred.push(line),
                Stream::One => note(&line),
                _ => say(&line),
            }
        }
        // Written before the driver acknowledges the update (after this returns): a run
        // that dies now hears of the ending again instead of losing it.
        if ends && let Err(error) = self.record(|c| c.ended(&status)) {
            note(&format!("{error:#}"));
        }
        let instance = &mut self.instances[index];
        if let Some(agent_id) = &status.agent_id {
            instance.agent_id = Some(agent_id.clone());
        }
        instance.last = Some(status);
        if instance.is_over() {
            instance.ended.send_replace(true);
        }
        self.stream(index);
        let instance = &self.instances[index];
        if instance.is_over() {
            let (over, failed) = self.over_count();
            let failed = if failed > 0 { format!(" ({failed} unsuccessful)") } else { String::new() };
            note(&format!("finished {over}/{}{failed}", self.total()));
        }
        self.finish_if_done(driver).await;
    }

    async fn failure(&mut self, _driver: &DriverHandle, agent_id: AgentId, status: Option<i32>) {
        if status.is_none() {
            let host = self.hosts.get(&agent_id).map(|h| format!(" ({h})")).unwrap_or_default();
            note(&format!("agent {agent_id}{host} was lost"));
        }
    }

    async fn error(&mut self, _driver: &DriverHandle, message: String) {
        note(&format!("error from the master: {message}"));
    }

    async fn disconnected(&mut self, _driver: &DriverHandle) {
        note("lost the master; reconnecting…");
    }

    async fn shutdown_requested(&mut self, driver: &DriverHandle) {
        let why = (*self.interrupt.borrow()).unwrap_or(Interrupt::Interrupted);
        self.stopping = Some(why);
        let live = self.live();
        let reason = match why {
            Interrupt::Interrupted | Interrupt::Terminated => "interrupted".to_owned(),
            Interrupt::Timeout => format!("timed out after {:?}", self.plan.timeout.unwrap_or_default()),
        };
        if live.is_empty() {
            note(&format!("{reason}; no task is running"));
        } else {
            note(&format!("{reason}: killing {} task(s)…", live.len()));
        }
        let _ = driver.suppress().await;
        for (task_id, agent_id) in live {
            if let Err(error) = driver.kill(&task_id, agent_id.as_ref()).await {
                note(&format!("could not kill {task_id}: {error}"));
            }
        }
        self.finish_if_done(driver).await;
        if !driver.is_subscribed() {
            // Nothing can be killed without a master; waiting would only hang.
            if !self.live().is_empty() {
                note(&format!(
                    "no master to kill the tasks; it will once the failover timeout ({} s) passes",
                    FAILOVER_TIMEOUT_MS / 1000
                ));
            }
            driver.stop();
        }
    }
}

/// Completes on Ctrl-C, SIGTERM or the timeout, and records which.
async fn interruption(timeout: Option<Duration>, record: watch::Sender<Option<Interrupt>>) {
    let deadline = async {
        match timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let why = tokio::select! {
        _ = tokio::signal::ctrl_c() => Interrupt::Interrupted,
        _ = terminate => Interrupt::Terminated,
        _ = deadline => Interrupt::Timeout,
    };
    record.send_replace(Some(why));
}

/// Whether any of `masters` accepts a connection within [`PROBE_TIMEOUT`]; the error says
/// why none did, in one line.
async fn probe(masters: &[String]) -> anyhow::Result<()> {
    let mut reasons = Vec::new();
    for master in masters {
        let address = master.strip_prefix("http://").unwrap_or(master).trim_end_matches('/');
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => reasons.push(format!("{address}: {error}")),
            Err(_) => reasons.push(format!("{address}: no answer within {PROBE_TIMEOUT:?}")),
        }
    }
    anyhow::bail!("cannot reach the master at {}", reasons.join("; "))
}

/// Completes [`KILL_WAIT`] after an interruption, or at a second Ctrl-C: time to stop waiting
/// for killed tasks.
async fn stop_waiting(mut interrupt: watch::Receiver<Option<Interrupt>>) {
    if interrupt.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::select! {
        _ = tokio::time::sleep(KILL_WAIT) => {}
        _ = super::interrupted() => {}
    }
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut plan = Plan::from_args(args)?;
    if plan.detach {
        probe(&plan.masters).await?;
        return detach::run_in_background(&plan.task_ids, &plan.masters).await;
    }
    let opened = match &plan.checkpoint {
        Some(path) => Some(Checkpoint::open(path, &plan.framework.name, plan.total_instances())?),
        None => None,
    };
    if let Some((_, Some(resumed))) = &opened {
        if resumed.ended.len() == plan.task_ids.len() {
            let path = plan.checkpoint.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            anyhow::bail!(
                "--checkpoint {path}: this run has finished (every task ended); remove {path} to run it again"
            );
        }
        plan.framework.id = resumed.framework_id.clone();
        if let Some(id) = &plan.framework.id {
            note(&format!("resuming framework {id} from the checkpoint"));
        }
    }
    probe(&plan.masters).await?;
    let resuming = plan.framework.id.is_some();
    let mut config = DriverConfig::new(plan.masters.clone(), plan.framework.clone());
    config.reconnect = RECONNECT;
    config.credential = plan.credential.clone();
    config.tls = plan.tls.clone();
    let driver = Driver::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let handle = driver.handle();
    let (record, interrupt) = watch::channel(None);
    let shutdown = interruption(plan.timeout, record);
    note(&format!("connecting to {}…", plan.masters.join(",")));

    let mut runner = Runner::new(plan, interrupt.clone());
    if let Some((checkpoint, resumed)) = opened {
        runner.resume(checkpoint, resumed)?;
    }
    let result = {
        let run = driver.run_until(&mut runner, shutdown);
        tokio::pin!(run);
        let finished = tokio::select! {
            result = &mut run => Some(result),
            () = stop_waiting(interrupt) => None,
        };
        match finished {
            Some(result) => result,
            None => {
                note("tasks did not end in time; tearing the framework down (the master kills what is left)");
                if handle.teardown().await.is_err() {
                    handle.stop();
                }
                run.await
            }
        }
    };
    runner.drain_streams().await;
    let context = if runner.ever_subscribed { "lost the master" } else { "cannot subscribe to the master" };
    if let Err(agora_sdk::Error::Refused(why)) = &result
        && resuming
        && !runner.ever_subscribed
    {
        let path = runner.plan.checkpoint.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
        anyhow::bail!(
            "{context}: {why}; the framework in --checkpoint {path} is gone (its run ended, was torn down, or was \
             away longer than its failover timeout): remove {path} to run anew"
        );
    }
    result.context(context)?;
    runner.say_where_failures_are().await;
    Ok(ExitCode::from(runner.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::model::{TaskStatusReason, TaskStatusSource};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &[&str]) -> Result<Args, String> {
        Cli::try_parse_from(std::iter::once("run").chain(line.iter().copied()))
            .map(|cli| cli.args)
            .map_err(|e| e.to_string())
    }

    fn status(state: TaskState, exit_code: Option<i32>, signal: Option<i32>) -> TaskStatus {
        TaskStatus {
            task_id: TaskId::new("t-0"),
            agent_id: Some(AgentId::new("a1")),
            state,
            reason: TaskStatusReason::CommandExited,
            source: TaskStatusSource::Agent,
            message: String::new(),
            timestamp_ms: 0,
            uuid: None,
            exit_code,
            signal,
            healthy: None,
            ready: None,
        }
    }

    #[test]
    fn defaults_give_one_tenth_of_a_cpu_and_32_mib_per_task() {
        let args = parse(&["--master", "m:5050", "--", "echo", "hi"]).expect("valid");
        let plan = Plan::from_args(args).expect("valid plan");
        assert_eq!(plan.requirements, TaskRequirements::new(100, 32));
        assert_eq!(plan.command, Command::Argv(vec!["echo".into(), "hi".into()]));
        assert_eq!(plan.task_ids, vec![TaskId::new("agora-run-0")]);
        assert_eq!(plan.framework.failover_timeout_ms, FAILOVER_TIMEOUT_MS);
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        for (line, flag) in [
            (&["--master", "m:1", "--cpus", "0", "--", "x"][..], "--cpus"),
            (&["--master", "m:1", "--cpus", "-1", "--", "x"][..], "--cpus"),
            (&["--master", "m:1", "--cpus", "nan", "--", "x"][..], "--cpus"),
            (&["--master", "m:1", "--instances", "0", "--", "x"][..], "--instances"),
            (&["--master", "m:1", "--instances", "10001", "--", "x"][..], "--instances"),
            (&["--master", "m:1", "--env", "NOEQUALS", "--", "x"][..], "--env"),
            (&["--master", "m:1", "--timeout", "0", "--", "x"][..], "--timeout"),
            (&["--master", "m:1", "--role", "a b", "--", "x"][..], "--role"),
            (&["--master", "m:1", "--ports", "5000", "--", "x"][..], "--ports"),
        ] {
            let error = parse(line).expect_err(flag);
            assert!(error.contains(flag), "{line:?}: {error}");
        }
        let error = parse(&["--master", "m:1"]).expect_err("no command");
        assert!(error.contains("CMD"), "{error}");
        let args = parse(&["--master", "m:1", "--name", "a/b", "--", "x"]).expect("clap accepts any name");
        let error = Plan::from_args(args).expect_err("slash in name").to_string();
        assert!(error.contains("--name"), "{error}");
    }

    #[test]
    fn a_mistyped_option_is_refused_with_a_suggestion_instead_of_becoming_the_command() {
        let error = parse(&["--master", "m:1", "--cpu", "1", "--", "echo"]).expect_err("--cpu is no option");
        assert!(error.contains("'--cpu'") && error.contains("'--cpus'"), "{error}");
        let args = parse(&["--master", "m:1", "echo", "-n", "hi"]).expect("options after the command are its own");
        assert_eq!(args.command, ["echo", "-n", "hi"]);
        let args = parse(&["--master", "m:1", "--", "--weird", "-x"]).expect("after -- anything goes");
        assert_eq!(args.command, ["--weird", "-x"]);
    }

    #[test]
    fn a_master_without_a_port_is_refused_before_anything_is_launched() {
        for bad in ["localhost", "m:1,localhost", "m:0"] {
            let args = parse(&["--master", bad, "--", "true"]).expect("clap takes any text");
            let error = Plan::from_args(args).expect_err(bad).to_string();
            assert!(error.starts_with("--master: expected HOST:PORT (like 127.0.0.1:5050), got"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn a_master_that_refuses_connections_fails_the_run_at_once_in_one_line() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = closed.local_addr().expect("address").to_string();
        drop(closed);
        let started = std::time::Instant::now();
        let error = probe(std::slice::from_ref(&address)).await.expect_err("nobody listens").to_string();
        assert!(started.elapsed() < PROBE_TIMEOUT, "refused at once, not after the probe's timeout");
        assert!(error.starts_with(&format!("cannot reach the master at {address}: ")), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listening = open.local_addr().expect("address").to_string();
        probe(&[address, listening]).await.expect("the second master is there");
    }

    #[test]
    fn one_instance_streams_its_output_and_several_only_with_follow() {
        let stream = |line: &[&str]| Plan::from_args(parse(line).expect("valid")).expect("plan").stream;
        assert_eq!(stream(&["--master", "m:1", "--", "x"]), Stream::One);
        assert_eq!(stream(&["--master", "m:1", "--json", "--", "x"]), Stream::None);
        assert_eq!(stream(&["--master", "m:1", "--detach", "--", "x"]), Stream::None);
        assert_eq!(stream(&["--master", "m:1", "--instances", "2", "--", "x"]), Stream::None);
        assert_eq!(stream(&["--master", "m:1", "--instances", "2", "--follow", "--", "x"]), Stream::Prefixed);
        let error = parse(&["--master", "m:1", "--detach", "--follow", "--", "x"]).expect_err("exclusive");
        assert!(error.contains("--follow"), "{error}");
    }

    #[test]
    fn several_masters_and_environment_variables_are_accepted() {
        let args = parse(&["--master", "a:1,b:2", "--env", "A=1", "--env", "B=x=y", "--", "env"]).expect("valid");
        let plan = Plan::from_args(args).expect("valid plan");
        assert_eq!(plan.masters, vec!["a:1", "b:2"]);
        assert_eq!(plan.env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
    }

    #[test]
    fn a_single_word_with_spaces_runs_through_the_shell_as_does_shell() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Command::from_args(&words(&["echo hi && true"]), false).expect("ok"),
            Command::Shell("echo hi && true".into())
        );
        assert_eq!(
            Command::from_args(&words(&["echo", "$HOME"]), true).expect("ok"),
            Command::Shell("echo $HOME".into())
        );
        assert_eq!(
            Command::from_args(&words(&["echo", "a b"]), false).expect("ok"),
            Command::Argv(words(&["echo", "a b"]))
        );
        assert!(Command::from_args(&words(&[""]), false).is_err());
    }

    #[test]
    fn one_instance_exits_with_the_tasks_own_status() {
        assert_eq!(exit_code_of(&status(TaskState::TaskFinished, Some(0), None)), 0);
        assert_eq!(exit_code_of(&status(TaskState::TaskFailed, Some(3), None)), 3);
        assert_eq!(exit_code_of(&status(TaskState::TaskFailed, Some(0), None)), 1);
        assert_eq!(exit_code_of(&status(TaskState::TaskFailed, None, Some(9))), 137);
        assert_eq!(exit_code_of(&status(TaskState::TaskKilled, None, Some(15))), 143);
        assert_eq!(exit_code_of(&status(TaskState::TaskKilled, None, None)), 1);
        assert_eq!(exit_code_of(&status(TaskState::TaskLost, None, None)), 1);
        assert_eq!(exit_code_of(&status(TaskState::TaskError, None, None)), 1);
    }

    #[test]
    fn status_lines_name_the_agent_host_and_the_ending() {
        let args = parse(&["--master", "m:1", "--", "x"]).expect("valid");
        let mut runner = Runner::new(Plan::from_args(args).expect("plan"), watch::channel(None).1);
        runner.hosts.insert(AgentId::new("a1"), "host-1".into());
        let running = status(TaskState::TaskRunning, None, None);
        assert_eq!(runner.status_line(&running), "task t-0 TASK_RUNNING on agent a1 (host-1)");
        let mut failed = status(TaskState::TaskFailed, Some(3), None);
        failed.message = "Command exited with status 3".into();
        assert_eq!(
            runner.status_line(&failed),
            "task t-0 TASK_FAILED on agent a1 (host-1): Command exited with status 3"
        );
        let killed = status(TaskState::TaskKilled, None, Some(15));
        assert_eq!(runner.status_line(&killed), "task t-0 TASK_KILLED on agent a1 (host-1): signal 15");
    }

    #[test]
    fn several_instances_succeed_only_if_all_finished() {
        let args = parse(&["--master", "m:1", "--instances", "2", "--", "x"]).expect("valid");
        let mut runner = Runner::new(Plan::from_args(args).expect("plan"), watch::channel(None).1);
        runner.instances[0].last = Some(status(TaskState::TaskFinished, Some(0), None));
        runner.instances[1].last = Some(status(TaskState::TaskFailed, Some(2), None));
        assert_eq!(runner.exit_code(), 1);
        runner.instances[1].last = Some(status(TaskState::TaskFinished, Some(0), None));
        assert_eq!(runner.exit_code(), 0);
        runner.stopping = Some(Interrupt::Timeout);
        assert_eq!(runner.exit_code(), 124);
        runner.stopping = Some(Interrupt::Interrupted);
        assert_eq!(runner.exit_code(), 130, "Ctrl-C, as a shell reports it");
        runner.stopping = Some(Interrupt::Terminated);
        assert_eq!(runner.exit_code(), 143, "SIGTERM, as a shell reports it");
    }
}
