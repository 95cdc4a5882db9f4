//! The agent's pure core: the lifecycle of each task and its reliable status-update stream.
//!
//! The core is plain synchronous Rust. The runtime feeds it an [`Input`] with the current
//! time (`step(now_ms, input)`) and executes the [`Output`]s it returns, in order: launch a
//! process, signal a process group, send an update to the master, forget a finished task.
//! It never reads a clock, never sleeps and never touches a process or a socket; time is an
//! argument and randomness (update ids, retry jitter) comes from a generator seeded by the
//! caller, so the same inputs always give the same outputs.
//!
//! Reliable updates, as in Mesos' status-update manager: every update a task produces gets
//! a uuid and is kept until the master acknowledges that uuid. Each task has at most one
//! update outstanding; the next is sent only once the previous one is acknowledged, so a
//! framework sees a task's states in order. An unacknowledged update is resent with capped,
//! jittered exponential backoff while the agent is registered, and at once when it
//! (re-)registers. Acknowledgements for any other uuid are duplicates and change nothing.
//!
//! Recovery: after every step the runtime drains [`Core::take_checkpoints`] and persists
//! each changed task's [`TaskRecord`] *before* it executes the step's outputs, so an update
//! is on disk before it is sent and a pid before it is relied on. After a restart the
//! runtime feeds the records back as [`Input::Recover`], with what it found of each
//! process; the core resumes the streams where they stopped (the same uuids, in order) and
//! reports processes that ended while the agent was down.
//!
//! Health and readiness checks (see [`checks`]): the runtime runs a task's checks and feeds
//! each result back as [`Input::CheckResult`]; the core decides what a result means (grace
//! period, consecutive failures, a kill, the RUNNING update that reports a change) and
//! tells the runtime when to start and stop checking ([`Output::StartCheck`],
//! [`Output::StopCheck`]).

mod backoff;
mod checks;
#[cfg(test)]
mod checks_tests;
#[cfg(test)]
mod fixtures;
mod ids;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use agora_proto::model::{
    AgentId, FrameworkId, FrameworkInfo, TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource,
    UpdateId,
};

pub use backoff::{Backoff, jittered};
pub use checks::CheckKind;
pub use ids::UpdateIds;

/// One launch of a task's process. A task id may be reused by its framework once the
/// previous task is gone, so process events name the run, never the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RunId(pub u64);

/// How a task's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProcessExit {
    /// It exited with this status.
    Code(i32),
    /// A signal with this number terminated it.
    Signal(i32),
}

/// A resource limit the task's processes went over, which ends the task as TASK_FAILED with
/// the limit's reason (Mesos' container limitations).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limitation {
    pub kind: LimitKind,
    /// Says what was exceeded and by how much; the terminal update's message starts with it.
    pub message: String,
}

/// Which limit a [`Limitation`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LimitKind {
    /// The kernel OOM-killed a process of the task at its memory limit.
    Memory,
    /// The sandbox outgrew the task's `disk` resource.
    Disk,
}

impl LimitKind {
    fn reason(self) -> TaskStatusReason {
        match self {
            LimitKind::Memory => TaskStatusReason::ContainerLimitationMemory,
            LimitKind::Disk => TaskStatusReason::ContainerLimitationDisk,
        }
    }
}

/// The two signals a kill uses: TERM first, KILL when the grace period is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillSignal {
    Term,
    Kill,
}

/// Limits and timings of the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// Time between SIGTERM and SIGKILL when neither the kill nor the task names one.
    pub default_kill_grace_period_ms: u64,
    /// First delay before an unacknowledged update is resent; doubles on every resend.
    pub update_retry_initial_ms: u64,
    /// The delay stops doubling here.
    pub update_retry_max_ms: u64,
    /// Most tasks the agent holds at once (running, or waiting for their last update to be
    /// acknowledged); a task beyond it is dropped.
    pub max_tasks: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            default_kill_grace_period_ms: 3_000,
            update_retry_initial_ms: 1_000,
            update_retry_max_ms: 60_000,
            max_tasks: 10_000,
        }
    }
}

/// Most updates one task can queue: STARTING, RUNNING and one terminal update. A larger
/// queue means a bug in the lifecycle, which the core asserts against. Check results do
/// not add to it: a RUNNING update about health or readiness that is not yet sent is
/// updated in place rather than followed by another (see `checks`).
const MAX_UPDATES_PER_TASK: usize = 3;

/// What the agent persists about one task: enough to re-attach to its process and to resend
/// its unacknowledged updates, in order, after a restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRecord {
    pub framework_id: FrameworkId,
    #[serde(default)]
    pub framework: Option<FrameworkInfo>,
    pub info: TaskInfo,
    pub run: RunId,
    /// The latest state, whether or not its update has been acknowledged yet.
    pub state: TaskState,
    /// The process group, once the process was started.
    pub pid: Option<u32>,
    /// The sandbox, relative to the sandboxes root, once the process was started.
    pub sandbox: Option<String>,
    /// The process has ended and its end is reported in `state`.
    pub exited: bool,
    /// The grace period of a kill under way, which recovery starts again.
    pub kill_grace_period_ms: Option<u64>,
    /// Updates not yet acknowledged, oldest first.
    pub pending: Vec<TaskStatus>,
    /// The latest health check result, repeated on every later update. The four fields
    /// below are defaulted: records written before checks existed lack them.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// `Some(true)` once the readiness check passed.
    #[serde(default)]
    pub ready: Option<bool>,
    /// When the task was first reported RUNNING: the start of its health check's grace
    /// period and delay.
    #[serde(default)]
    pub running_since_ms: Option<u64>,
    /// Why the agent is killing the task, when it was not asked to (a failing health
    /// check): the terminal update says so.
    #[serde(default)]
    pub kill_message: Option<String>,
    /// The limit the task went over, once it did: the terminal update says so. Defaulted:
    /// records written before isolation existed lack it.
    #[serde(default)]
    pub limitation: Option<Limitation>,
}

/// A change to persist, drained with [`Core::take_checkpoints`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Write the task's record, replacing the previous one of its run. Boxed: records are
    /// large and removals small.
    Save(Box<TaskRecord>),
    /// The run is over and acknowledged: delete its record.
    Remove { run: RunId },
}

/// What the runtime found of a recorded task's process after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveredProcess {
    /// Its supervisor still runs: the task goes on and is watched again.
    Running,
    /// It ended while the agent was down; the supervisor recorded how.
    Exited(ProcessExit),
    /// It is gone and nothing recorded how it ended (or it never got a pid).
    Gone,
}

/// One task read back from the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredTask {
    pub record: TaskRecord,
    pub process: RecoveredProcess,
}

/// Everything that can happen to the agent, as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The agent restarted and read its checkpoint: the id it had and the tasks it ran. Only
    /// valid first, before any other input; ignored once the core holds tasks or an id.
    Recover { agent_id: Option<AgentId>, tasks: Vec<RecoveredTask> },
    /// The master accepted the agent's (re-)registration under `agent_id`.
    Registered { agent_id: AgentId },
    /// The stream to the master broke; updates wait until the agent registers again.
    Disconnected,
    /// The master asks the agent to run a task; `framework` is kept with the task when the
    /// master sent it.
    RunTask { framework_id: FrameworkId, framework: Option<Box<FrameworkInfo>>, task: Box<TaskInfo> },
    /// The master asks the agent to kill a task; `None` means the task's own grace period,
    /// or the agent's default.
    KillTask { framework_id: FrameworkId, task_id: TaskId, grace_period_ms: Option<u64> },
    /// The master removed the framework (TEARDOWN, failover timeout): its updates are
    /// dropped, since no one will acknowledge them, its ended tasks forgotten, and its live
    /// tasks killed and forgotten as their processes end, without an update.
    ShutdownFramework { framework_id: FrameworkId },
    /// The agent drains before it stops: kill every task, and from now on answer a new task
    /// with TASK_DROPPED instead of running it.
    KillAll,
    /// The master refused the agent, which will register afresh: kill every process at once
    /// and forget every task, since the master no longer knows them.
    Reset,
    /// A task's process is running, in its own process group (`pid` is the group id).
    ProcessStarted { run: RunId, pid: u32, sandbox: String },
    /// A task's process could not be started.
    LaunchFailed { run: RunId, error: String },
    /// A task's process ended; `limitation` when the isolation found it went over a limit
    /// (an OOM kill).
    ProcessExited { run: RunId, exit: ProcessExit, limitation: Option<Limitation> },
    /// A task's processes went over a limit while they run (its sandbox outgrew its disk):
    /// they are SIGKILLed at once and the task ends as TASK_FAILED with the limit's reason.
    LimitReached { run: RunId, limitation: Limitation },
    /// A recovered task's process is gone and nothing recorded how it ended.
    ProcessGone { run: RunId },
    /// One run of a task's health or readiness check: `Ok` when it passed, else why not.
    CheckResult { run: RunId, kind: CheckKind, outcome: Result<(), String> },
    /// The master acknowledged an update.
    Acknowledge { framework_id: FrameworkId, task_id: TaskId, uuid: UpdateId },
    /// Time passed: resend due updates, escalate kills whose grace period is over.
    Tick,
}

/// What the runtime must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Start the task's process in a sandbox of its own; report back `ProcessStarted` or
    /// `LaunchFailed`, then `ProcessExited`, all naming `run`.
    Launch { run: RunId, framework_id: FrameworkId, task: Box<TaskInfo> },
    /// Send `signal` to the process group `pid`.
    Signal { run: RunId, pid: u32, signal: KillSignal },
    /// Send a status update to the master; `status.uuid` is `None` for an update that needs
    /// no acknowledgement (the answer about a task the agent does not know).
    SendUpdate { framework_id: FrameworkId, status: TaskStatus },
    /// The task is over and its last update acknowledged: the core has forgotten it.
    TaskRemoved { framework_id: FrameworkId, task_id: TaskId, run: RunId },
    /// Start running the task's check of `kind` (described in `task`), the first time at
    /// `first_at_ms`, then `interval_ms` after each run ends, reporting each result as
    /// [`Input::CheckResult`] until told to stop. `sandbox` is where the task runs.
    StartCheck { run: RunId, kind: CheckKind, task: Box<TaskInfo>, sandbox: String, first_at_ms: u64 },
    /// Stop running the task's check of `kind`; results still on their way are ignored.
    StopCheck { run: RunId, kind: CheckKind },
}

/// A read-only view of one task, for registration and the agent's `/state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    pub framework_id: FrameworkId,
    pub info: TaskInfo,
    /// The latest state, whether or not its update has been acknowledged yet.
    pub state: TaskState,
    pub run: RunId,
    /// The process group, while the process runs.
    pub pid: Option<u32>,
    /// The sandbox, relative to the sandboxes root, once the process was started.
    pub sandbox: Option<String>,
    /// Updates not yet acknowledged.
    pub pending_updates: usize,
    /// The latest health check result, and whether the readiness check passed.
    pub healthy: Option<bool>,
    pub ready: Option<bool>,
}

type TaskKey = (FrameworkId, TaskId);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Process {
    /// `Launch` was emitted; neither `ProcessStarted` nor `LaunchFailed` has come back.
    Launching,
    Running {
        pid: u32,
    },
    Exited,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kill {
    grace_period_ms: u64,
    /// When SIGKILL is due; set once SIGTERM has been sent.
    sigkill_at_ms: Option<u64>,
    /// SIGKILL has been sent.
    escalated: bool,
}

#[derive(Clone, Debug)]
struct Task {
    framework_id: FrameworkId,
    framework: Option<FrameworkInfo>,
    info: TaskInfo,
    run: RunId,
    state: TaskState,
    process: Process,
    kill: Option<Kill>,
    /// Updates not yet acknowledged, oldest first; the front one is the outstanding one.
    pending: VecDeque<TaskStatus>,
    /// Set while the front update has been sent: when to resend it.
    resend: Option<Backoff>,
    sandbox: Option<String>,
    /// The master removed the task's framework: no update of the task is queued or sent
    /// any more, and the task is forgotten once its process has ended. Not checkpointed: a
    /// restarted agent reports the task, and the master shuts the framework down again.
    framework_removed: bool,
    /// What the checks found and which of them run (see `checks`).
    health: checks::TaskChecks,
    /// The limit the task went over, once it did.
    limitation: Option<Limitation>,
}

impl Task {
    fn record(&self) -> TaskRecord {
        TaskRecord {
            framework_id: self.framework_id.clone(),
            framework: self.framework.clone(),
            info: self.info.clone(),
            run: self.run,
            state: self.state,
            pid: match self.process {
                Process::Running { pid } => Some(pid),
                Process::Launching | Process::Exited => None,
            },
            sandbox: self.sandbox.clone(),
            exited: self.process == Process::Exited,
            kill_grace_period_ms: self.kill.as_ref().map(|kill| kill.grace_period_ms),
            pending: self.pending.iter().cloned().collect(),
            healthy: self.health.healthy,
            ready: self.health.ready,
            running_since_ms: self.health.running_since_ms,
            kill_message: self.health.kill_message.clone(),
            limitation: self.limitation.clone(),
        }
    }
}

/// The agent's task lifecycle and update stream. See the module documentation.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    agent_id: Option<AgentId>,
    /// Registered with a master, so updates may be sent.
    connected: bool,
    tasks: BTreeMap<TaskKey, Task>,
    /// Which task each live run belongs to.
    runs: BTreeMap<RunId, TaskKey>,
    next_run: u64,
    ids: UpdateIds,
    jitter: rand_chacha::ChaCha8Rng,
    /// Tasks whose record changed since the last `take_checkpoints`.
    dirty: std::collections::BTreeSet<TaskKey>,
    /// Runs whose record must be deleted, in the order they ended.
    removed: Vec<RunId>,
    /// `KillAll` came: the agent is draining and takes no new task.
    draining: bool,
}

impl Core {
    /// A core with no tasks. `seed` decides every update id and every retry delay.
    pub fn new(config: CoreConfig, seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            config,
            agent_id: None,
            connected: false,
            tasks: BTreeMap::new(),
            runs: BTreeMap::new(),
            next_run: 1,
            ids: UpdateIds::new(seed),
            // A different stream from the ids', so that adding a retry does not change the
            // ids of later updates.
            jitter: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            dirty: std::collections::BTreeSet::new(),
            removed: Vec::new(),
            draining: false,
        }
    }

    /// The records to persist since the last call: deletions first, then the tasks that
    /// changed, in (framework, task) order. The runtime writes them before it executes the
    /// outputs of the same step.
    pub fn take_checkpoints(&mut self) -> Vec<Checkpoint> {
        let mut changes: Vec<Checkpoint> =
            std::mem::take(&mut self.removed).into_iter().map(|run| Checkpoint::Remove { run }).collect();
        for key in std::mem::take(&mut self.dirty) {
            if let Some(task) = self.tasks.get(&key) {
                changes.push(Checkpoint::Save(Box::new(task.record())));
            }
        }
        changes
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The id the master gave this agent, while it has one.
    pub fn agent_id(&self) -> Option<&AgentId> {
        self.agent_id.as_ref()
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The record of every task the agent holds, as [`take_checkpoints`](Self::take_checkpoints)
    /// would give it: what a rewrite of the whole checkpoint holds.
    pub fn records(&self) -> impl Iterator<Item = TaskRecord> + '_ {
        self.tasks.values().map(Task::record)
    }

    /// Every task the agent holds, in (framework, task) order.
    pub fn tasks(&self) -> impl Iterator<Item = TaskView> + '_ {
        self.tasks.values().map(|task| TaskView {
            framework_id: task.framework_id.clone(),
            info: task.info.clone(),
            state: task.state,
            run: task.run,
            pid: match task.process {
                Process::Running { pid } => Some(pid),
                _ => None,
            },
            sandbox: task.sandbox.clone(),
            pending_updates: task.pending.len(),
            healthy: task.health.healthy,
            ready: task.health.ready,
        })
    }

    /// Process groups still running, to be killed outright when the agent stops.
    /// The user the framework of `run`'s task named, if any: the task's user when the task
    /// names none itself.
    pub fn framework_user(&self, run: RunId) -> Option<&str> {
        let key = self.runs.get(&run)?;
        self.tasks.get(key)?.framework.as_ref().map(|framework| framework.user.as_str()).filter(|u| !u.is_empty())
    }

    pub fn live_processes(&self) -> Vec<(RunId, u32)> {
        self.tasks
            .values()
            .filter_map(|task| match task.process {
                Process::Running { pid } => Some((task.run, pid)),
                _ => None,
            })
            .collect()
    }

    /// True while some process is launching or running.
    pub fn has_live_processes(&self) -> bool {
        self.tasks.values().any(|task| task.process != Process::Exited)
    }

    /// The earliest time at which `Tick` has something to do, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let kills = self.tasks.values().filter_map(|task| match (&task.process, &task.kill) {
            (Process::Running { .. }, Some(kill)) if !kill.escalated => kill.sigkill_at_ms,
            _ => None,
        });
        let resends = self
            .tasks
            .values()
            .filter(|_| self.connected)
            .filter_map(|task| task.resend.as_ref().map(Backoff::due_at_ms));
        kills.chain(resends).min()
    }

    /// Applies one input at time `now_ms` and returns what the runtime must do, in order.
    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Recover { agent_id, tasks } => self.recover(now_ms, agent_id, tasks, &mut out),
            Input::Registered { agent_id } => self.registered(now_ms, agent_id, &mut out),
            Input::Disconnected => self.disconnected(),
            Input::RunTask { framework_id, framework, task } => {
                self.run_task(now_ms, framework_id, framework, *task, &mut out)
            }
            Input::KillTask { framework_id, task_id, grace_period_ms } => {
                self.kill_task(now_ms, (framework_id, task_id), grace_period_ms, &mut out)
            }
            Input::ShutdownFramework { framework_id } => self.shutdown_framework(now_ms, &framework_id, &mut out),
            Input::KillAll => {
                self.draining = true;
                let keys: Vec<TaskKey> = self.tasks.keys().cloned().collect();
                for key in keys {
                    self.kill_task(now_ms, key, None, &mut out);
                }
            }
            Input::Reset => self.reset(&mut out),
            Input::ProcessStarted { run, pid, sandbox } => self.process_started(now_ms, run, pid, sandbox, &mut out),
            Input::LaunchFailed { run, error } => self.launch_failed(now_ms, run, &error, &mut out),
            Input::ProcessExited { run, exit, limitation } => {
                self.process_exited(now_ms, run, exit, limitation, &mut out)
            }
            Input::LimitReached { run, limitation } => self.limit_reached(run, limitation, &mut out),
            Input::ProcessGone { run } => self.process_gone(now_ms, run, &mut out),
            Input::CheckResult { run, kind, outcome } => self.check_result(now_ms, run, kind, outcome, &mut out),
            Input::Acknowledge { framework_id, task_id, uuid } => {
                self.acknowledge(now_ms, (framework_id, task_id), &uuid, &mut out)
            }
            Input::Tick => self.tick(now_ms, &mut out),
        }
        out
    }

    fn registered(&mut self, now_ms: u64, agent_id: AgentId, out: &mut Vec<Output>) {
        self.agent_id = Some(agent_id);
        self.connected = true;
        // Whatever was outstanding may never have reached the master: send every task's
        // front update again now, with the backoff started afresh.
        for task in self.tasks.values_mut() {
            task.resend = None;
        }
        let keys: Vec<TaskKey> = self.tasks.keys().cloned().collect();
        for key in keys {
            self.send_front(now_ms, &key, out);
        }
    }

    fn disconnected(&mut self) {
        self.connected = false;
        for task in self.tasks.values_mut() {
            task.resend = None;
        }
    }

    fn run_task(
        &mut self,
        now_ms: u64,
        framework_id: FrameworkId,
        framework: Option<Box<FrameworkInfo>>,
        info: TaskInfo,
        out: &mut Vec<Output>,
    ) {
        let key = (framework_id, info.task_id.clone());
        if self.tasks.contains_key(&key) {
            // The task runs, or its last update awaits acknowledgement: a second launch under
            // the same id would mix two streams of updates. Any answer would be read as the
            // state of the existing task, so the duplicate is ignored.
            return;
        }
        let refusal = if self.draining {
            Some("the agent is draining: it kills its tasks and stops".to_owned())
        } else if self.tasks.len() >= self.config.max_tasks {
            Some(format!("the agent already holds its maximum of {} tasks", self.config.max_tasks))
        } else {
            None
        };
        if let Some(message) = refusal {
            // Unacknowledged: no stream of updates exists for a task that never ran.
            let status =
                self.status(now_ms, info.task_id, TaskState::TaskDropped, TaskStatusReason::Unspecified, message, None);
            out.push(Output::SendUpdate { framework_id: key.0, status });
            return;
        }
        let run = RunId(self.next_run);
        self.next_run += 1;
        let task = Task {
            framework_id: key.0.clone(),
            framework: framework.map(|info| *info),
            info: info.clone(),
            run,
            state: TaskState::TaskStaging,
            process: Process::Launching,
            kill: None,
            pending: VecDeque::new(),
            resend: None,
            sandbox: None,
            framework_removed: false,
            health: checks::TaskChecks::default(),
            limitation: None,
        };
        self.tasks.insert(key.clone(), task);
        self.runs.insert(run, key.clone());
        out.push(Output::Launch { run, framework_id: key.0.clone(), task: Box::new(info) });
        self.update(now_ms, &key, TaskState::TaskStarting, TaskStatusReason::Unspecified, String::new(), None, out);
    }

    /// Drops the framework's updates and forgets its ended tasks at once; its live tasks are
    /// killed and forgotten when their processes end (see [`Input::ShutdownFramework`]).
    /// Mesos' status-update manager likewise cleans up the streams of a removed framework.
    fn shutdown_framework(&mut self, now_ms: u64, framework_id: &FrameworkId, out: &mut Vec<Output>) {
        let keys: Vec<TaskKey> = self.tasks.keys().filter(|(f, _)| f == framework_id).cloned().collect();
        for key in keys {
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            task.framework_removed = true;
            task.pending.clear();
            task.resend = None;
            if task.process == Process::Exited {
                self.forget(&key, out);
            } else {
                self.kill_task(now_ms, key, None, out);
            }
        }
    }

    /// Removes an ended task whose updates are all acknowledged (or dropped), and its record.
    fn forget(&mut self, key: &TaskKey, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.remove(key) else {
            return;
        };
        self.dirty.remove(key);
        self.runs.remove(&task.run);
        self.removed.push(task.run);
        out.push(Output::TaskRemoved { framework_id: key.0.clone(), task_id: key.1.clone(), run: task.run });
    }

    fn kill_task(&mut self, now_ms: u64, key: TaskKey, grace_period_ms: Option<u64>, out: &mut Vec<Output>) {
        let default_grace_ms = self.config.default_kill_grace_period_ms;
        let Some(task) = self.tasks.get_mut(&key) else {
            // Nothing to kill. The answer needs no acknowledgement: there is no task whose
            // stream it could belong to, and the master only has to learn the task is gone.
            let status = self.status(
                now_ms,
                key.1,
                TaskState::TaskLost,
                TaskStatusReason::TaskUnknown,
                "the agent does not know this task".to_owned(),
                None,
            );
            out.push(Output::SendUpdate { framework_id: key.0, status });
            return;
        };
        let grace_ms = grace_period_ms.or(task.info.kill_grace_period_ms).unwrap_or(default_grace_ms);
        // A task being killed is no longer judged by its checks.
        task.health.stop(task.run, out);
        self.dirty.insert(key.clone());
        match (&task.process, &mut task.kill) {
            (Process::Exited, _) => {}
            (Process::Launching, Some(kill)) => kill.grace_period_ms = kill.grace_period_ms.min(grace_ms),
            (Process::Launching, None) => {
                // The process is being started; it is signalled as soon as it runs.
                task.kill = Some(Kill { grace_period_ms: grace_ms, sigkill_at_ms: None, escalated: false });
            }
            (Process::Running { .. }, Some(kill)) => {
                // A second kill may only hurry the first one along.
                if let Some(at) = kill.sigkill_at_ms.as_mut() {
                    *at = (*at).min(now_ms.saturating_add(grace_ms));
                }
            }
            (Process::Running { pid }, None) => {
                let pid = *pid;
                task.kill = Some(Kill {
                    grace_period_ms: grace_ms,
                    sigkill_at_ms: Some(now_ms.saturating_add(grace_ms)),
                    escalated: false,
                });
                out.push(Output::Signal { run: task.run, pid, signal: KillSignal::Term });
            }
        }
        self.escalate_due_kill(now_ms, &key, out);
    }

    /// Sends SIGKILL when the task's grace period is over (at once for a zero grace period).
    fn escalate_due_kill(&mut self, now_ms: u64, key: &TaskKey, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Process::Running { pid } = task.process else {
            return;
        };
        let Some(kill) = task.kill.as_mut() else {
            return;
        };
        if !kill.escalated && kill.sigkill_at_ms.is_some_and(|at| at <= now_ms) {
            kill.escalated = true;
            out.push(Output::Signal { run: task.run, pid, signal: KillSignal::Kill });
        }
    }

    fn reset(&mut self, out: &mut Vec<Output>) {
        for (key, mut task) in std::mem::take(&mut self.tasks) {
            task.health.stop(task.run, out);
            let escalated = task.kill.as_ref().is_some_and(|kill| kill.escalated);
            if let (Process::Running { pid }, false) = (&task.process, escalated) {
                out.push(Output::Signal { run: task.run, pid: *pid, signal: KillSignal::Kill });
            }
            self.removed.push(task.run);
            out.push(Output::TaskRemoved { framework_id: key.0, task_id: key.1, run: task.run });
        }
        self.dirty.clear();
        self.runs.clear();
        self.agent_id = None;
        self.connected = false;
    }

    fn process_started(&mut self, now_ms: u64, run: RunId, pid: u32, sandbox: String, out: &mut Vec<Output>) {
        let Some(key) = self.runs.get(&run).cloned() else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        if task.process != Process::Launching {
            return;
        }
        task.process = Process::Running { pid };
        task.sandbox = Some(sandbox);
        self.dirty.insert(key.clone());
        if let Some(kill) = task.kill.as_mut() {
            // Killed while it was being launched: it never gets to report RUNNING.
            kill.sigkill_at_ms = Some(now_ms.saturating_add(kill.grace_period_ms));
            out.push(Output::Signal { run, pid, signal: KillSignal::Term });
            self.escalate_due_kill(now_ms, &key, out);
            return;
        }
        self.update(now_ms, &key, TaskState::TaskRunning, TaskStatusReason::Unspecified, String::new(), None, out);
        self.start_checks(now_ms, &key, out);
    }

    fn launch_failed(&mut self, now_ms: u64, run: RunId, error: &str, out: &mut Vec<Output>) {
        let Some(key) = self.runs.remove(&run) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        if task.process != Process::Launching {
            return;
        }
        task.process = Process::Exited;
        let (state, reason, message) = if task.kill.is_some() {
            (
                TaskState::TaskKilled,
                TaskStatusReason::TaskKilledDuringLaunch,
                format!("Task killed during launch: {error}"),
            )
        } else {
            (
                TaskState::TaskFailed,
                TaskStatusReason::CommandLaunchFailed,
                format!("Failed to launch the command: {error}"),
            )
        };
        self.update(now_ms, &key, state, reason, message, None, out);
    }

    /// Kills the task's process group at once, without a grace period, as Mesos destroys a
    /// container over its limit; the exit that follows is reported with the limitation.
    fn limit_reached(&mut self, run: RunId, limitation: Limitation, out: &mut Vec<Output>) {
        let Some(key) = self.runs.get(&run).cloned() else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        let Process::Running { pid } = task.process else {
            return;
        };
        if task.limitation.is_some() {
            return;
        }
        task.limitation = Some(limitation);
        task.health.stop(run, out);
        self.dirty.insert(key);
        let already_killed = task.kill.as_ref().is_some_and(|kill| kill.escalated);
        task.kill = Some(Kill { grace_period_ms: 0, sigkill_at_ms: None, escalated: true });
        if !already_killed {
            out.push(Output::Signal { run, pid, signal: KillSignal::Kill });
        }
    }

    fn process_exited(
        &mut self,
        now_ms: u64,
        run: RunId,
        exit: ProcessExit,
        limitation: Option<Limitation>,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = self.runs.remove(&run) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        if task.process == Process::Exited {
            return;
        }
        task.process = Process::Exited;
        task.health.stop(run, out);
        if task.limitation.is_none() {
            task.limitation = limitation;
        }
        let limitation = task.limitation.clone();
        let killed = task.kill.is_some();
        let kill_message = task.health.kill_message.clone();
        let how = match exit {
            ProcessExit::Code(code) => format!("exited with status {code}"),
            ProcessExit::Signal(signal) => {
                format!("terminated by signal {signal} ({})", signal_name(signal))
            }
        };
        let (state, reason, message) = match exit {
            // Over a limit: the agent or the kernel killed it, and that is the task's failure
            // whatever else was under way.
            _ if limitation.is_some() => {
                let limitation = limitation.expect("matched as some");
                (TaskState::TaskFailed, limitation.kind.reason(), format!("{}: command {how}", limitation.message))
            }
            _ if killed => {
                let why = kill_message.map_or_else(|| "Task killed".to_owned(), |why| format!("Task killed: {why}"));
                (TaskState::TaskKilled, TaskStatusReason::TaskKilled, format!("{why}: command {how}"))
            }
            ProcessExit::Code(0) => {
                (TaskState::TaskFinished, TaskStatusReason::CommandExited, format!("Command {how}"))
            }
            _ => (TaskState::TaskFailed, TaskStatusReason::CommandExited, format!("Command {how}")),
        };
        self.update(now_ms, &key, state, reason, message, Some(exit), out);
    }

    fn recover(&mut self, now_ms: u64, agent_id: Option<AgentId>, tasks: Vec<RecoveredTask>, out: &mut Vec<Output>) {
        if self.agent_id.is_some() || !self.tasks.is_empty() || self.connected {
            // Recovery restores a fresh core; anything else would mix two lives.
            return;
        }
        self.agent_id = agent_id;
        for recovered in tasks.into_iter().take(self.config.max_tasks) {
            self.recover_task(now_ms, recovered, out);
        }
    }

    fn recover_task(&mut self, now_ms: u64, recovered: RecoveredTask, out: &mut Vec<Output>) {
        let RecoveredTask { record, process } = recovered;
        let key = (record.framework_id.clone(), record.info.task_id.clone());
        if self.tasks.contains_key(&key) || self.runs.contains_key(&record.run) {
            // Two records of one task or one run: the checkpoint was tampered with. The
            // first one read wins; the other's updates could not be told apart.
            self.removed.push(record.run);
            return;
        }
        self.next_run = self.next_run.max(record.run.0.saturating_add(1));
        // A live task keeps room for its terminal update; more than the lifecycle allows
        // means a damaged record, whose excess is dropped rather than trusted.
        let room = if record.exited { MAX_UPDATES_PER_TASK } else { MAX_UPDATES_PER_TASK - 1 };
        let pending: VecDeque<TaskStatus> = record.pending.into_iter().take(room).collect();
        let task = Task {
            framework_id: key.0.clone(),
            framework: record.framework,
            info: record.info,
            run: record.run,
            state: record.state,
            process: match (record.exited, record.pid) {
                (true, _) => Process::Exited,
                (false, Some(pid)) => Process::Running { pid },
                (false, None) => Process::Launching,
            },
            kill: record.kill_grace_period_ms.map(|grace_period_ms| Kill {
                grace_period_ms,
                sigkill_at_ms: None,
                escalated: false,
            }),
            pending,
            resend: None,
            sandbox: record.sandbox,
            framework_removed: false,
            health: checks::TaskChecks::recovered(
                record.healthy,
                record.ready,
                record.running_since_ms,
                record.kill_message,
            ),
            limitation: record.limitation,
        };
        let live = task.process != Process::Exited;
        self.tasks.insert(key.clone(), task);
        if !live {
            if self.tasks.get(&key).is_some_and(|t| t.pending.is_empty()) {
                // Over and acknowledged, but the agent died before deleting the record.
                self.tasks.remove(&key);
                self.removed.push(record.run);
            }
            return;
        }
        self.runs.insert(record.run, key.clone());
        match process {
            RecoveredProcess::Running => {
                let unreported = matches!(self.tasks.get(&key), Some(t) if t.kill.is_none()
                    && matches!(t.state, TaskState::TaskStaging | TaskState::TaskStarting)
                    && matches!(t.process, Process::Running { .. }));
                if unreported {
                    // Started just before the agent died, which never got to say so.
                    self.update(
                        now_ms,
                        &key,
                        TaskState::TaskRunning,
                        TaskStatusReason::Unspecified,
                        String::new(),
                        None,
                        out,
                    );
                }
                // Checks resume where the previous agent ran them; a killed task has none.
                self.start_checks(now_ms, &key, out);
                self.restart_recovered_kill(now_ms, &key, out)
            }
            RecoveredProcess::Exited(exit) => self.process_exited(now_ms, record.run, exit, None, out),
            RecoveredProcess::Gone => self.process_gone(now_ms, record.run, out),
        }
    }

    /// A kill that was under way when the agent died starts again: SIGTERM now, SIGKILL
    /// after the grace period, since nothing says how far the first one got.
    fn restart_recovered_kill(&mut self, now_ms: u64, key: &TaskKey, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Process::Running { pid } = task.process else {
            // Started but its pid never reached the checkpoint: it cannot be watched.
            let run = task.run;
            self.process_gone(now_ms, run, out);
            return;
        };
        let Some(kill) = task.kill.as_mut() else {
            return;
        };
        kill.sigkill_at_ms = Some(now_ms.saturating_add(kill.grace_period_ms));
        out.push(Output::Signal { run: task.run, pid, signal: KillSignal::Term });
        self.escalate_due_kill(now_ms, key, out);
    }

    fn process_gone(&mut self, now_ms: u64, run: RunId, out: &mut Vec<Output>) {
        let Some(key) = self.runs.remove(&run) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        if task.process == Process::Exited {
            return;
        }
        let was_launching = task.process == Process::Launching;
        task.process = Process::Exited;
        task.health.stop(run, out);
        let (state, message) = match (task.kill.is_some(), was_launching) {
            (true, _) => {
                (TaskState::TaskKilled, "Task killed: the agent restarted and the task's process is gone".to_owned())
            }
            (false, true) => (
                TaskState::TaskFailed,
                "The agent restarted while launching the task; its process is not running".to_owned(),
            ),
            (false, false) => (
                TaskState::TaskFailed,
                "The agent restarted and the task's process is gone without a recorded exit status".to_owned(),
            ),
        };
        self.update(now_ms, &key, state, TaskStatusReason::AgentRestarted, message, None, out);
    }

    fn acknowledge(&mut self, now_ms: u64, key: TaskKey, uuid: &UpdateId, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(&key) else {
            return;
        };
        if task.pending.front().and_then(|s| s.uuid.as_ref()) != Some(uuid) {
            // A duplicate, or an acknowledgement of an update this agent never sent.
            return;
        }
        task.pending.pop_front();
        task.resend = None;
        self.dirty.insert(key.clone());
        if task.pending.is_empty() {
            if task.process == Process::Exited {
                self.forget(&key, out);
            }
            return;
        }
        self.send_front(now_ms, &key, out);
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let keys: Vec<TaskKey> = self.tasks.keys().cloned().collect();
        for key in &keys {
            self.escalate_due_kill(now_ms, key, out);
        }
        if !self.connected {
            return;
        }
        for key in &keys {
            let due = self
                .tasks
                .get(key)
                .and_then(|task| task.resend.as_ref())
                .is_some_and(|resend| resend.due_at_ms() <= now_ms);
            if due {
                self.send_front(now_ms, key, out);
            }
        }
    }

    /// Records a new state for the task and queues its update; the update goes out at once
    /// when nothing else of the task's is outstanding.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        now_ms: u64,
        key: &TaskKey,
        state: TaskState,
        reason: TaskStatusReason,
        message: String,
        exit: Option<ProcessExit>,
        out: &mut Vec<Output>,
    ) {
        if let Some(task) = self.tasks.get_mut(key).filter(|task| task.framework_removed) {
            // No one would acknowledge it: the state is kept, the update never made.
            debug_assert!(task.state.may_become(state), "{} may not become {}", task.state, state);
            task.state = state;
            self.dirty.insert(key.clone());
            if task.process == Process::Exited {
                self.forget(key, out);
            }
            return;
        }
        let uuid = self.ids.next_id();
        let mut status = self.status(now_ms, key.1.clone(), state, reason, message, Some(uuid));
        match exit {
            Some(ProcessExit::Code(code)) => status.exit_code = Some(code),
            Some(ProcessExit::Signal(signal)) => status.signal = Some(signal),
            None => {}
        }
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        // Every update repeats what the checks last found, as Mesos does.
        status.healthy = task.health.healthy;
        status.ready = task.health.ready;
        assert!(task.pending.len() < MAX_UPDATES_PER_TASK, "a task queues at most {MAX_UPDATES_PER_TASK} updates");
        debug_assert!(task.state.may_become(state), "{} may not become {}", task.state, state);
        task.state = state;
        task.pending.push_back(status);
        self.dirty.insert(key.clone());
        if task.pending.len() == 1 {
            self.send_front(now_ms, key, out);
        }
    }

    /// Sends (or resends) the task's outstanding update, when registered, and schedules the
    /// next resend: the first delay after a fresh send, doubled after each resend.
    fn send_front(&mut self, now_ms: u64, key: &TaskKey, out: &mut Vec<Output>) {
        if !self.connected {
            return;
        }
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Some(status) = task.pending.front() else {
            return;
        };
        out.push(Output::SendUpdate { framework_id: task.framework_id.clone(), status: status.clone() });
        let backoff = match task.resend.take() {
            Some(previous) => previous.next(now_ms, self.config.update_retry_max_ms, &mut self.jitter),
            None => Backoff::first(
                now_ms,
                self.config.update_retry_initial_ms,
                self.config.update_retry_max_ms,
                &mut self.jitter,
            ),
        };
        task.resend = Some(backoff);
    }

    fn status(
        &self,
        now_ms: u64,
        task_id: TaskId,
        state: TaskState,
        reason: TaskStatusReason,
        message: String,
        uuid: Option<UpdateId>,
    ) -> TaskStatus {
        TaskStatus {
            task_id,
            agent_id: self.agent_id.clone(),
            state,
            reason,
            source: TaskStatusSource::Agent,
            message,
            timestamp_ms: now_ms,
            uuid,
            exit_code: None,
            signal: None,
            healthy: None,
            ready: None,
        }
    }
}

/// The conventional name of a signal number (`SIGTERM` for 15), or `unknown`.
pub fn signal_name(signal: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("unknown")
}
