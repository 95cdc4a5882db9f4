//! A seeded simulation of the agent core: random launches, exits, kills, acknowledgements
//! (some duplicated or stale), disconnections, refusals and agent restarts (a new core
//! recovering from the checkpoint the old one asked for, with processes that survived or
//! ended meanwhile) and health and readiness check results, with the update-stream invariants checked after every step, and the
//! checkpoint checked against the core. A failure names the seed that reproduces it.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use agora_agent::core::{
    CheckKind, Checkpoint, Core, CoreConfig, Input, KillSignal, Output, ProcessExit, RecoveredProcess, RecoveredTask,
    RunId, TaskRecord,
};
use agora_proto::model::{
    AgentId, CommandInfo, FrameworkId, HealthCheck, ReadinessCheck, Resources, TaskId, TaskInfo, TaskState, UpdateId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEEDS: u64 = 200;
const STEPS: usize = 2_000;
const MAX_TASKS: usize = 40;

type Key = (FrameworkId, TaskId);

#[derive(Default)]
struct Process {
    pid: u32,
    termed: bool,
    killed: bool,
}

/// What the simulated world (processes and master) knows, and what it has seen.
struct World {
    seed: u64,
    core: Core,
    rng: ChaCha8Rng,
    now_ms: u64,
    connected: bool,
    launching: Vec<RunId>,
    running: BTreeMap<RunId, Process>,
    /// Per task, every distinct update sent, in the order first sent.
    sent: BTreeMap<Key, Vec<(UpdateId, TaskState)>>,
    acked: BTreeSet<UpdateId>,
    /// Tasks whose framework was shut down since this core started: none of their updates
    /// may be sent, and they may be forgotten without one being acknowledged.
    shut_down: BTreeSet<Key>,
    next_task: u64,
    next_pid: u32,
    removed: usize,
    /// The checkpoint as the runtime would hold it: every record the core asked to save.
    disk: BTreeMap<RunId, TaskRecord>,
    /// The agent id the runtime would have saved.
    saved_agent: Option<AgentId>,
    restarts: u64,
    config: CoreConfig,
    /// The checks the runtime would be running.
    checks: BTreeSet<(RunId, CheckKind)>,
    check_results: usize,
}

impl World {
    fn new(seed: u64) -> Self {
        let config = CoreConfig {
            default_kill_grace_period_ms: 1_000,
            update_retry_initial_ms: 500,
            update_retry_max_ms: 8_000,
            max_tasks: MAX_TASKS,
        };
        Self {
            seed,
            core: Core::new(config.clone(), seed),
            disk: BTreeMap::new(),
            saved_agent: None,
            restarts: 0,
            config,
            checks: BTreeSet::new(),
            check_results: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now_ms: 1_000,
            connected: false,
            launching: Vec::new(),
            running: BTreeMap::new(),
            sent: BTreeMap::new(),
            acked: BTreeSet::new(),
            shut_down: BTreeSet::new(),
            next_task: 0,
            next_pid: 100,
            removed: 0,
        }
    }

    fn step(&mut self, input: Input) {
        let description = format!("{input:?}");
        let outputs = self.core.step(self.now_ms, input);
        // As the runtime does: the checkpoint first, then the outputs.
        for change in self.core.take_checkpoints() {
            match change {
                Checkpoint::Save(record) => {
                    self.disk.insert(record.run, *record);
                }
                Checkpoint::Remove { run } => {
                    self.disk.remove(&run);
                }
            }
        }
        self.check_disk(&description);
        for output in outputs {
            self.check(&description, output);
        }
        let seed = self.seed;
        assert!(self.core.tasks().count() <= MAX_TASKS, "seed {seed}: more tasks than the limit");
        for (run, kind) in &self.checks {
            assert!(
                self.running.contains_key(run),
                "seed {seed}: the {kind:?} check of {run:?} runs without its process (after {description})"
            );
        }
    }

    /// The checkpoint holds exactly the core's tasks, each as the core sees it.
    fn check_disk(&self, after: &str) {
        let seed = self.seed;
        let core: Vec<(RunId, TaskState, Option<u32>, usize)> =
            self.core.tasks().map(|t| (t.run, t.state, t.pid, t.pending_updates)).collect();
        let mut core = core;
        core.sort();
        let disk: Vec<(RunId, TaskState, Option<u32>, usize)> =
            self.disk.values().map(|r| (r.run, r.state, r.pid, r.pending.len())).collect();
        assert_eq!(core, disk, "seed {seed}: the checkpoint differs from the core (after {after})");
    }

    /// The agent dies and a new one recovers from the checkpoint: processes keep running,
    /// some end while no agent watches, launches in flight never started.
    fn restart(&mut self) {
        self.restarts += 1;
        self.connected = false;
        // The new core does not know the shutdowns (the master repeats them when it hears
        // from the tasks again): their streams start over.
        self.shut_down.clear();
        self.launching.clear();
        let mut ended = BTreeMap::new();
        for (run, process) in std::mem::take(&mut self.running) {
            if self.rng.random_bool(0.3) {
                let exit = if self.rng.random_bool(0.5) { ProcessExit::Code(3) } else { ProcessExit::Signal(15) };
                // Some vanish without a recorded status (their group was SIGKILLed).
                ended.insert(run, self.rng.random_bool(0.8).then_some(exit));
            } else {
                // The new agent knows nothing of the signals the old one sent.
                self.running.insert(run, Process { pid: process.pid, ..Default::default() });
            }
        }
        let tasks: Vec<RecoveredTask> = self
            .disk
            .values()
            .map(|record| {
                let process = match (self.running.get(&record.run), ended.get(&record.run)) {
                    _ if record.exited => RecoveredProcess::Gone,
                    (Some(process), _) => {
                        assert_eq!(
                            record.pid,
                            Some(process.pid),
                            "seed {}: a running process without its pid",
                            self.seed
                        );
                        RecoveredProcess::Running
                    }
                    (None, Some(Some(exit))) => RecoveredProcess::Exited(*exit),
                    _ => RecoveredProcess::Gone,
                };
                RecoveredTask { record: record.clone(), process }
            })
            .collect();
        // The checks died with the old agent; the new one starts those of running tasks.
        self.checks.clear();
        self.core = Core::new(self.config.clone(), self.seed.wrapping_add(self.restarts * 1_000_003));
        self.step(Input::Recover { agent_id: self.saved_agent.clone(), tasks });
    }

    /// Checks one output against the invariants and applies it to the world.
    fn check(&mut self, after: &str, output: Output) {
        let seed = self.seed;
        match output {
            Output::Launch { run, .. } => self.launching.push(run),
            Output::StartCheck { run, kind, task, .. } => {
                assert!(self.running.contains_key(&run), "seed {seed}: a check of {run:?}, which is not running");
                let has = match kind {
                    CheckKind::Health => task.health_check.is_some(),
                    CheckKind::Readiness => task.readiness_check.is_some(),
                };
                assert!(has, "seed {seed}: a {kind:?} check started for a task without one");
                assert!(self.checks.insert((run, kind)), "seed {seed}: the {kind:?} check of {run:?} started twice");
            }
            Output::StopCheck { run, kind } => {
                assert!(
                    self.checks.remove(&(run, kind)),
                    "seed {seed}: stopped the {kind:?} check of {run:?}, not running"
                );
            }
            Output::Signal { run, pid, signal } => {
                let process = self.running.get_mut(&run);
                let process = process
                    .unwrap_or_else(|| panic!("seed {seed}: signal to {run:?}, which is not running (after {after})"));
                assert_eq!(process.pid, pid, "seed {seed}: signal to the wrong group");
                match signal {
                    KillSignal::Term => {
                        assert!(!process.termed, "seed {seed}: SIGTERM sent twice to {run:?}");
                        process.termed = true;
                    }
                    KillSignal::Kill => {
                        assert!(!process.killed, "seed {seed}: SIGKILL sent twice to {run:?}");
                        process.killed = true;
                    }
                }
            }
            Output::SendUpdate { framework_id, status } => {
                let Some(uuid) = status.uuid.clone() else {
                    // Answers about unknown or refused tasks need no acknowledgement.
                    assert!(
                        matches!(status.state, TaskState::TaskLost | TaskState::TaskDropped),
                        "seed {seed}: {status:?}"
                    );
                    return;
                };
                assert!(self.connected, "seed {seed}: update sent while disconnected (after {after})");
                let key = (framework_id, status.task_id.clone());
                assert!(
                    !self.shut_down.contains(&key),
                    "seed {seed}: an update of a task whose framework was shut down (after {after})"
                );
                assert!(!self.acked.contains(&uuid), "seed {seed}: acknowledged update sent again (after {after})");
                let history = self.sent.entry(key).or_default();
                match history.iter().position(|(u, _)| *u == uuid) {
                    Some(i) => {
                        assert_eq!(i, history.len() - 1, "seed {seed}: an older update resent after a newer one")
                    }
                    None => {
                        if let Some((previous, previous_state)) = history.last() {
                            assert!(self.acked.contains(previous), "seed {seed}: two updates of one task outstanding");
                            assert!(
                                previous_state.may_become(status.state),
                                "seed {seed}: {previous_state} -> {}",
                                status.state
                            );
                        }
                        history.push((uuid, status.state));
                    }
                }
            }
            Output::TaskRemoved { framework_id, task_id, run } => {
                self.removed += 1;
                assert!(
                    !self.checks.iter().any(|(r, _)| *r == run),
                    "seed {seed}: {run:?} removed with a check still running"
                );
                // A shut-down framework's streams were dropped, its updates unacknowledged.
                self.shut_down.remove(&(framework_id.clone(), task_id.clone()));
                if let Some(history) = self.sent.remove(&(framework_id, task_id)) {
                    let after_reset = after.starts_with("Reset");
                    let (last, state) = history.last().unwrap();
                    assert!(
                        after_reset || (self.acked.contains(last) && state.is_terminal()),
                        "seed {seed}: removed before its terminal update was acknowledged"
                    );
                }
            }
        }
    }

    fn task(&mut self) -> (FrameworkId, TaskInfo) {
        self.next_task += 1;
        let framework_id = FrameworkId::new(format!("f{}", self.rng.random_range(0..3)));
        let task = TaskInfo {
            task_id: TaskId::new(format!("t{}", self.next_task)),
            name: "sim".into(),
            agent_id: AgentId::new("a"),
            resources: Resources::new(),
            command: CommandInfo { shell: Some("true".into()), ..CommandInfo::default() },
            labels: vec![],
            kill_grace_period_ms: self.rng.random_bool(0.3).then(|| self.rng.random_range(0..3_000)),
            health_check: self.rng.random_bool(0.4).then(|| HealthCheck {
                grace_period_ms: self.rng.random_range(0..3_000),
                max_consecutive_failures: self.rng.random_range(0..4),
                delay_ms: self.rng.random_range(0..500),
                ..HealthCheck::tcp(8080)
            }),
            readiness_check: self.rng.random_bool(0.3).then(|| ReadinessCheck::http(8080, "/ready")),
        };
        (framework_id, task)
    }

    /// An outstanding (sent, unacknowledged) update, if any.
    fn outstanding(&mut self) -> Option<(Key, UpdateId)> {
        let candidates: Vec<(Key, UpdateId)> = self
            .sent
            .iter()
            .filter_map(|(key, history)| {
                history.last().filter(|(u, _)| !self.acked.contains(u)).map(|(u, _)| (key.clone(), u.clone()))
            })
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.random_range(0..candidates.len())].clone())
    }

    fn random_step(&mut self) {
        self.now_ms += self.rng.random_range(0..800);
        let roll = self.rng.random_range(0..1000);
        match roll {
            0..150 if self.connected => {
                let (framework_id, task) = self.task();
                self.step(Input::RunTask { framework_id, framework: None, task: Box::new(task) });
            }
            150..300 if !self.launching.is_empty() => {
                let run = self.launching.remove(self.rng.random_range(0..self.launching.len()));
                if self.rng.random_bool(0.85) {
                    self.next_pid += 1;
                    self.running.insert(run, Process { pid: self.next_pid, ..Default::default() });
                    self.step(Input::ProcessStarted { run, pid: self.next_pid, sandbox: "s".into() });
                } else {
                    self.step(Input::LaunchFailed { run, error: "no such file".into() });
                }
            }
            300..400 if !self.running.is_empty() => {
                let runs: Vec<RunId> = self.running.keys().copied().collect();
                let run = runs[self.rng.random_range(0..runs.len())];
                let process = self.running.remove(&run).unwrap();
                let exit = if process.killed {
                    ProcessExit::Signal(9)
                } else if process.termed && self.rng.random_bool(0.7) {
                    ProcessExit::Signal(15)
                } else {
                    ProcessExit::Code(self.rng.random_range(0..3))
                };
                self.step(Input::ProcessExited { run, exit, limitation: None });
            }
            400..500 if self.connected => {
                let framework_id = FrameworkId::new(format!("f{}", self.rng.random_range(0..3)));
                let task_id = TaskId::new(format!("t{}", self.rng.random_range(0..=self.next_task + 1)));
                let grace_period_ms = self.rng.random_bool(0.5).then(|| self.rng.random_range(0..2_000));
                self.step(Input::KillTask { framework_id, task_id, grace_period_ms });
            }
            500..720 if self.connected => {
                if let Some(((framework_id, task_id), uuid)) = self.outstanding() {
                    let uuid = if self.rng.random_bool(0.1) { UpdateId::new("stale") } else { uuid };
                    self.acked.insert(uuid.clone());
                    self.step(Input::Acknowledge { framework_id, task_id, uuid });
                }
            }
            720..750 => {
                if self.connected {
                    self.connected = false;
                    self.step(Input::Disconnected);
                } else {
                    self.connected = true;
                    self.saved_agent = Some(AgentId::new("a"));
                    self.step(Input::Registered { agent_id: AgentId::new("a") });
                }
            }
            750..760 if self.connected => {
                let framework_id = FrameworkId::new(format!("f{}", self.rng.random_range(0..3)));
                let keys: Vec<Key> = self
                    .core
                    .tasks()
                    .filter(|t| t.framework_id == framework_id)
                    .map(|t| (t.framework_id, t.info.task_id))
                    .collect();
                for key in keys {
                    // Their streams end here: what was sent will never be acknowledged.
                    self.sent.remove(&key);
                    self.shut_down.insert(key);
                }
                self.step(Input::ShutdownFramework { framework_id });
            }
            763..770 => self.restart(),
            770..870 if !self.checks.is_empty() => {
                let checks: Vec<(RunId, CheckKind)> = self.checks.iter().copied().collect();
                let (run, kind) = checks[self.rng.random_range(0..checks.len())];
                let outcome = if self.rng.random_bool(0.6) { Ok(()) } else { Err("down".to_owned()) };
                self.check_results += 1;
                self.step(Input::CheckResult { run, kind, outcome });
            }
            760..763 => {
                self.connected = false;
                self.saved_agent = None;
                self.step(Input::Reset);
                self.launching.clear();
                // Forgotten processes still die of the SIGKILL the reset sent; their exits
                // reach the core, which must ignore them.
                for (run, _) in std::mem::take(&mut self.running) {
                    self.step(Input::ProcessExited { run, exit: ProcessExit::Signal(9), limitation: None });
                }
            }
            _ => {
                self.step(Input::Tick);
                let (seed, now_ms) = (self.seed, self.now_ms);
                let deadline = self.core.next_deadline_ms();
                assert!(
                    deadline.is_none_or(|d| d > now_ms),
                    "seed {seed}: a tick left work due at {deadline:?} (now {now_ms})"
                );
            }
        }
    }

    /// Connects, kills everything, lets every process die and acknowledges every update:
    /// the core must end up holding nothing.
    fn drain(&mut self) {
        if !self.connected {
            self.connected = true;
            self.saved_agent = Some(AgentId::new("a"));
            self.step(Input::Registered { agent_id: AgentId::new("a") });
        }
        self.step(Input::KillAll);
        for _ in 0..1_000 {
            if self.core.tasks().count() == 0 {
                return;
            }
            self.now_ms += 5_000;
            self.step(Input::Tick);
            for run in std::mem::take(&mut self.launching) {
                self.next_pid += 1;
                self.running.insert(run, Process { pid: self.next_pid, ..Default::default() });
                self.step(Input::ProcessStarted { run, pid: self.next_pid, sandbox: "s".into() });
            }
            for (run, _) in std::mem::take(&mut self.running) {
                self.step(Input::ProcessExited { run, exit: ProcessExit::Signal(9), limitation: None });
            }
            while let Some(((framework_id, task_id), uuid)) = self.outstanding() {
                self.acked.insert(uuid.clone());
                self.step(Input::Acknowledge { framework_id, task_id, uuid });
            }
        }
        panic!(
            "seed {}: the core still holds tasks after draining: {:?}",
            self.seed,
            self.core.tasks().collect::<Vec<_>>()
        );
    }
}

#[test]
fn random_histories_with_agent_restarts_keep_updates_ordered_single_outstanding_and_never_resent_once_acknowledged() {
    let (mut removed, mut restarts, mut check_results) = (0, 0, 0);
    for seed in 0..SEEDS {
        let mut world = World::new(seed);
        for _ in 0..STEPS {
            world.random_step();
        }
        world.drain();
        assert!(world.disk.is_empty(), "seed {seed}: records left in the checkpoint: {:?}", world.disk.keys());
        removed += world.removed;
        restarts += world.restarts;
        check_results += world.check_results;
    }
    assert!(check_results > 10_000, "the simulation fed check results ({check_results})");
    assert!(removed > 1_000, "the simulation exercised whole task lifecycles ({removed})");
    assert!(restarts > 1_000, "the simulation restarted agents ({restarts})");
}
