//! A deterministic, seeded simulation of the master core: a thousand agents and a few
//! dozen frameworks launch, finish, fail, decline, kill, disconnect, crash, partition and
//! return, while time advances; the registry's invariants are checked after every step.
//!
//! One seed decides everything. A failure names the seed; `AGORA_SIM_SEED=<n>` re-runs
//! just that seed and `AGORA_SIM_STEPS=<n>` changes the length of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use agora_master::core::{
    AgentView, Call, Config, ConnId, Event, FrameworkView, Master, Operation, Output, Quota, Registry, ReportedTask,
    TaskView, ToAgent,
};
use agora_master::runtime::read_model::{MasterFacts, ReadModel, TaskQuery};
use agora_proto::model::{
    AgentId, AgentInfo, Attribute, CommandInfo, FrameworkId, FrameworkInfo, Offer, OfferId, Pool, RangeSet, Resources,
    Role, Scalars, StreamId, TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource, UpdateId,
};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const AGENTS: usize = 1_000;
const FRAMEWORKS: usize = 24;
/// Steps per seed: each step is one random event followed by delivery, an allocation
/// round when due, and the full invariant check.
const DEFAULT_STEPS: u64 = 1_000;
/// How often (in steps) the master's `check_invariants` runs, besides the last step.
const SELF_CHECK_EVERY: u64 = 8;
/// The quota limit of `analytics` (and its sub-role `analytics/etl`); never changed, so
/// the role's allocation must never exceed it.
const ANALYTICS_LIMIT: Scalars = Scalars { cpus_milli: 40_000, mem_mib: 81_920, disk_mib: u64::MAX };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Connected and sending heartbeats.
    Up,
    /// Connected but silent: heartbeats and status updates are lost.
    Partitioned,
    /// No connection.
    Down,
}

#[derive(Debug)]
struct SimTask {
    info: TaskInfo,
    state: TaskState,
    kill: bool,
    /// States already reported, oldest first; a late retry may repeat any of them.
    sent: Vec<TaskState>,
}

#[derive(Debug)]
struct SimAgent {
    info: AgentInfo,
    id: Option<AgentId>,
    conn: Option<ConnId>,
    link: Link,
    tasks: BTreeMap<(FrameworkId, TaskId), SimTask>,
}

#[derive(Debug)]
struct SimFramework {
    name: String,
    role: Role,
    failover_timeout_ms: u64,
    id: Option<FrameworkId>,
    stream: Option<StreamId>,
    /// Offers held, with the index of their agent.
    offers: BTreeMap<OfferId, (Offer, usize)>,
    next_task: u64,
}

/// What one agent carries in tasks and offers: scalars of the unreserved role and of the
/// reserved one, and every port range.
type AgentTally = ([Scalars; 2], Vec<(u64, u64)>);

struct Sim {
    seed: u64,
    step: u64,
    rng: ChaCha8Rng,
    master: Master,
    /// What the master asked to persist, applied as its store would.
    registry: Registry,
    /// Agents refused because they were declared gone, and came back afresh.
    agents_refused: u64,
    now_ms: u64,
    next_conn: u64,
    agents: Vec<SimAgent>,
    frameworks: Vec<SimFramework>,
    agent_index: BTreeMap<AgentId, usize>,
    framework_index: BTreeMap<FrameworkId, usize>,
    pending: BTreeMap<ConnId, usize>,
    // What the checker remembers between steps: each live task's state and the step it
    // was last seen live, and every task that ended.
    last_states: BTreeMap<FrameworkId, BTreeMap<TaskId, (TaskState, u64)>>,
    ended: BTreeMap<FrameworkId, BTreeSet<TaskId>>,
    /// Per agent (by index): scalars of the unreserved and the reserved role, and ports.
    tally: Vec<AgentTally>,
    run_tasks_seen: u64,
    allocations: u64,
    /// The read model `/state` is served from, fed the core's changes every step or
    /// every few (so that changes pile up as when the applier is behind).
    read: ReadModel,
}

fn config() -> Config {
    Config {
        master_id: "sim".to_owned(),
        agent_timeout_ms: 15_000,
        // Short enough that partitioned agents are declared gone within a run, and come
        // back afresh.
        agent_reregister_timeout_ms: 60_000,
        agent_removals_per_minute: 20,
        offer_timeout_ms: Some(30_000),
        max_tasks_per_accept: 8,
        max_completed_frameworks: 10,
        max_completed_tasks_per_framework: 20,
        ..Config::default()
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let reserved = Role::parse("analytics").expect("valid role");
        let agents = (0..AGENTS)
            .map(|i| {
                let cpus_milli = 1_000 * rng.random_range(1..=16);
                let mem_mib = 1_024 * rng.random_range(1..=64);
                let ports = RangeSet::from_ranges([(31_000, 31_000 + rng.random_range(0..100))]).expect("range");
                let mut resources = Resources::unreserved(Scalars::new(cpus_milli, mem_mib, 10_000), ports);
                if i % 10 == 0 {
                    let pool = Pool { scalars: Scalars::new(2_000, 4_096, 0), ports: RangeSet::new() };
                    resources.add_pool(reserved.clone(), pool);
                }
                let attributes = vec![Attribute { name: "rack".to_owned(), value: format!("r{}", i % 20) }];
                let info = AgentInfo { hostname: format!("host{i}"), port: 5051, resources, attributes };
                SimAgent { info, id: None, conn: None, link: Link::Down, tasks: BTreeMap::new() }
            })
            .collect();
        let frameworks = (0..FRAMEWORKS)
            .map(|i| SimFramework {
                name: format!("fw{i}"),
                role: match i % 6 {
                    0 => reserved.clone(),
                    // A sub-role: offered the parent's reservations, counted in its quota.
                    3 => Role::parse("analytics/etl").expect("valid role"),
                    _ => Role::unreserved(),
                },
                failover_timeout_ms: if i % 3 == 0 { 20_000 } else { 600_000 },
                id: None,
                stream: None,
                offers: BTreeMap::new(),
                next_task: 0,
            })
            .collect();
        let mut master = Master::new(config(), seed);
        master.track_changes();
        let read = ReadModel::new(MasterFacts {
            master_id: "sim".to_owned(),
            advertise: "sim:5050".to_owned(),
            start_time_ms: 0,
            heartbeat_interval_ms: 15_000,
            max_completed_tasks_per_framework: config().max_completed_tasks_per_framework,
            max_completed_frameworks: config().max_completed_frameworks,
            flags: Vec::new(),
            max_concurrent_renders: 1,
        });
        let quota = Quota { guarantee: Scalars::new(8_000, 16_384, 0), limit: Some(ANALYTICS_LIMIT) };
        master.set_quota(reserved.clone(), quota).expect("valid quota");
        master.set_weights(vec![(reserved, 2_000)]).expect("valid weight");
        Sim {
            seed,
            step: 0,
            rng,
            master,
            registry: Registry::default(),
            agents_refused: 0,
            now_ms: 0,
            next_conn: 1,
            agents,
            frameworks,
            agent_index: BTreeMap::new(),
            framework_index: BTreeMap::new(),
            pending: BTreeMap::new(),
            last_states: BTreeMap::new(),
            ended: BTreeMap::new(),
            tally: (0..AGENTS).map(|_| ([Scalars::ZERO; 2], Vec::new())).collect(),
            run_tasks_seen: 0,
            allocations: 0,
            read,
        }
    }

    /// Fails the run, naming the seed that reproduces it.
    fn fail(&self, what: String) -> ! {
        panic!("seed {} step {}: {what}\nre-run with AGORA_SIM_SEED={}", self.seed, self.step, self.seed)
    }

    fn ensure(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    fn run(&mut self, steps: u64) {
        for i in 0..AGENTS {
            self.connect_agent(i);
        }
        for i in 0..FRAMEWORKS {
            self.subscribe(i);
        }
        self.settle();
        for step in 1..=steps {
            self.step = step;
            self.random_action();
            self.settle();
        }
        if let Err(broken) = self.master.check_invariants() {
            self.fail(broken);
        }
    }

    /// Delivers outputs, runs an allocation round when one is due, and checks invariants.
    fn settle(&mut self) {
        self.pump();
        if self.master.needs_allocation() {
            self.master.allocate(self.now_ms);
            self.allocations += 1;
            self.pump();
        }
        self.check();
    }

    fn random_action(&mut self) {
        match self.rng.random_range(0..100) {
            0..25 => self.framework_accepts(),
            25..37 => self.framework_declines(),
            37..60 => {
                for _ in 0..4 {
                    self.agent_progresses();
                }
            }
            60..65 => self.framework_kills(),
            65..68 => self.framework_reconciles(),
            68..71 => self.agent_disconnects(),
            71..72 => self.agent_partitions(),
            72..74 => self.agent_crashes(),
            74..80 => self.agent_returns(),
            80..82 => self.framework_disconnects(),
            82..85 => self.framework_resubscribes(),
            85..86 => {
                if self.rng.random_bool(0.2) {
                    self.framework_tears_down();
                }
            }
            86..88 => self.framework_revives_or_suppresses(),
            88..90 => self.operator_changes_sharing(),
            _ => self.time_passes(),
        }
    }

    // ----- agents -----

    fn connect_agent(&mut self, i: usize) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let agent = &mut self.agents[i];
        agent.link = Link::Up;
        agent.conn = None;
        let tasks = agent
            .tasks
            .iter()
            .map(|((framework_id, _), t)| ReportedTask {
                framework_id: framework_id.clone(),
                task: t.info.clone(),
                state: t.state,
                healthy: None,
                ready: None,
            })
            .collect();
        self.pending.insert(conn, i);
        let (info, previous_id) = (agent.info.clone(), agent.id.clone());
        self.master.register_agent(self.now_ms, conn, info, previous_id, tasks);
    }

    fn random_agent(&mut self, link: Link) -> Option<usize> {
        (0..50).map(|_| self.rng.random_range(0..AGENTS)).find(|i| self.agents[*i].link == link)
    }

    fn agent_disconnects(&mut self) {
        let Some(i) = self.random_agent(Link::Up) else { return };
        let (Some(id), Some(conn)) = (self.agents[i].id.clone(), self.agents[i].conn) else { return };
        self.agents[i].link = Link::Down;
        self.agents[i].conn = None;
        self.master.agent_disconnected(self.now_ms, &id, conn);
    }

    fn agent_partitions(&mut self) {
        if let Some(i) = self.random_agent(Link::Up) {
            self.agents[i].link = Link::Partitioned;
        }
    }

    /// The agent's host restarts: its tasks are lost and it comes back without them.
    fn agent_crashes(&mut self) {
        let Some(i) = self.random_agent(Link::Up) else { return };
        if let (Some(id), Some(conn)) = (self.agents[i].id.clone(), self.agents[i].conn) {
            self.master.agent_disconnected(self.now_ms, &id, conn);
        }
        self.agents[i].tasks.clear();
        self.agents[i].link = Link::Down;
        self.agents[i].conn = None;
    }

    fn agent_returns(&mut self) {
        let link = if self.rng.random_bool(0.7) { Link::Down } else { Link::Partitioned };
        if let Some(i) = self.random_agent(link) {
            self.connect_agent(i);
        }
    }

    /// An agent moves one of its tasks a step along its life and reports it.
    fn agent_progresses(&mut self) {
        let busy = (0..50)
            .map(|_| self.rng.random_range(0..AGENTS))
            .find(|i| self.agents[*i].link == Link::Up && !self.agents[*i].tasks.is_empty());
        let Some(i) = busy else { return };
        let agent = &mut self.agents[i];
        let (Some(agent_id), false) = (agent.id.clone(), agent.tasks.is_empty()) else { return };
        let pick = self.rng.random_range(0..agent.tasks.len());
        let Some((key, task)) = agent.tasks.iter_mut().nth(pick) else { return };
        let key = key.clone();
        // Now and then a retry of an older update arrives late: the master must not move
        // the task back, yet still forward it so that the framework acknowledges it.
        let stale = task.sent.choose(&mut self.rng).copied().filter(|_| self.rng.random_bool(0.2));
        let next = if let Some(old) = stale {
            old
        } else if task.kill {
            if task.state != TaskState::TaskKilling && self.rng.random_bool(0.3) {
                TaskState::TaskKilling
            } else {
                TaskState::TaskKilled
            }
        } else {
            match task.state {
                TaskState::TaskStaging => TaskState::TaskStarting,
                TaskState::TaskStarting => TaskState::TaskRunning,
                _ => match self.rng.random_range(0..10) {
                    0..6 => TaskState::TaskFinished,
                    6..9 => TaskState::TaskFailed,
                    _ => TaskState::TaskRunning,
                },
            }
        };
        if stale.is_none() {
            task.state = next;
            task.sent.push(next);
        }
        if next.is_terminal() {
            agent.tasks.remove(&key);
        }
        let status = TaskStatus {
            task_id: key.1.clone(),
            agent_id: Some(agent_id.clone()),
            state: next,
            reason: TaskStatusReason::Unspecified,
            source: TaskStatusSource::Agent,
            message: String::new(),
            timestamp_ms: self.now_ms,
            uuid: Some(UpdateId::new(format!("{}-{}", key.1, self.step))),
            exit_code: None,
            signal: None,
            healthy: None,
            ready: None,
        };
        self.master.status_update(self.now_ms, &agent_id, &key.0, status);
    }

    fn time_passes(&mut self) {
        self.now_ms += self.rng.random_range(100..3_000);
        for agent in &self.agents {
            if let (Link::Up, Some(id)) = (agent.link, &agent.id) {
                self.master.agent_heartbeat(self.now_ms, id);
            }
        }
        self.master.tick(self.now_ms);
    }

    // ----- frameworks -----

    fn subscribe(&mut self, i: usize) {
        let fw = &mut self.frameworks[i];
        let info = FrameworkInfo {
            id: fw.id.clone(),
            name: fw.name.clone(),
            user: "sim".to_owned(),
            roles: vec![fw.role.clone()],
            failover_timeout_ms: fw.failover_timeout_ms,
            hostname: "sim".to_owned(),
            principal: String::new(),
        };
        // Offers of an earlier stream are void; the master withdraws them silently.
        fw.offers.clear();
        match self.master.subscribe(self.now_ms, info) {
            Ok((id, stream)) => {
                self.framework_index.insert(id.clone(), i);
                let fw = &mut self.frameworks[i];
                fw.id = Some(id);
                fw.stream = Some(stream);
            }
            Err(err) => self.fail(format!("{} could not subscribe: {err}", self.frameworks[i].name)),
        }
    }

    fn connected_framework(&mut self) -> Option<usize> {
        (0..20).map(|_| self.rng.random_range(0..FRAMEWORKS)).find(|i| self.frameworks[*i].stream.is_some())
    }

    fn call(&mut self, i: usize, call: Call) {
        let fw = &self.frameworks[i];
        let (Some(id), Some(stream)) = (fw.id.clone(), fw.stream.clone()) else { return };
        if let Err(err) = self.master.call(self.now_ms, &id, &stream, call.clone()) {
            self.fail(format!("{} got {err} for {call:?}", fw.name));
        }
    }

    /// The framework's live tasks as the master knows them.
    fn live_tasks_of(&self, i: usize) -> Vec<TaskId> {
        let Some(id) = &self.frameworks[i].id else { return Vec::new() };
        self.master.live_tasks().filter(|(f, _, _)| *f == id).map(|(_, t, _)| t.task_id.clone()).collect()
    }

    fn random_offer(&mut self, i: usize) -> Option<Offer> {
        let offers = &self.frameworks[i].offers;
        if offers.is_empty() {
            return None;
        }
        let pick = self.rng.random_range(0..offers.len());
        offers.values().nth(pick).map(|(offer, _)| offer.clone())
    }

    fn framework_accepts(&mut self) {
        let Some(i) = self.connected_framework() else { return };
        let Some(offer) = self.random_offer(i) else { return };
        let mut left = offer.resources.clone();
        let mut tasks = Vec::new();
        for _ in 0..self.rng.random_range(1..=4) {
            let Some(resources) = self.carve(&left) else { break };
            left.subtract(&resources);
            tasks.push(self.new_task(i, &offer.agent_id, resources));
        }
        let mut offer_ids = vec![offer.id.clone()];
        // Now and then the framework gets it wrong; the master must cope.
        match self.rng.random_range(0..40) {
            0 => offer_ids.push(OfferId::new("sim-O-bogus")),
            1 => {
                let mut huge = offer.resources.clone();
                huge.add(&Resources::unreserved(Scalars::new(1_000, 0, 0), RangeSet::new()));
                tasks.push(self.new_task(i, &offer.agent_id, huge));
            }
            2 => {
                if let Some(existing) = self.live_tasks_of(i).first().cloned() {
                    let mut dup = self.new_task(
                        i,
                        &offer.agent_id,
                        Resources::unreserved(Scalars::new(10, 1, 0), RangeSet::new()),
                    );
                    dup.task_id = existing;
                    tasks.push(dup);
                }
            }
            3 => {
                let other = AgentId::new(format!("sim-S{}", self.rng.random_range(1..=AGENTS)));
                tasks.push(self.new_task(i, &other, Resources::unreserved(Scalars::new(10, 1, 0), RangeSet::new())));
            }
            _ => {}
        }
        let refuse_ms = *[0, 1_000, 5_000].choose(&mut self.rng).unwrap_or(&0);
        let fw = &mut self.frameworks[i];
        for id in &offer_ids {
            fw.offers.remove(id);
        }
        let call = Call::Accept { offer_ids, operations: vec![Operation::Launch { tasks }], refuse_ms };
        self.call(i, call);
    }

    /// A random part of `left`: some CPUs and memory of one pool, and maybe a port.
    fn carve(&mut self, left: &Resources) -> Option<Resources> {
        let (role, pool) = left.pools().find(|(_, p)| p.scalars.cpus_milli >= 10 && p.scalars.mem_mib >= 1)?;
        let cpus_milli = self.rng.random_range(10..=pool.scalars.cpus_milli.min(4_000));
        let mem_mib = self.rng.random_range(1..=pool.scalars.mem_mib.min(8_192));
        let ports =
            if self.rng.random_bool(0.5) { pool.ports.take_lowest(1).unwrap_or_default() } else { RangeSet::new() };
        let mut resources = Resources::new();
        resources.add_pool(role.clone(), Pool { scalars: Scalars::new(cpus_milli, mem_mib, 0), ports });
        Some(resources)
    }

    fn new_task(&mut self, i: usize, agent_id: &AgentId, resources: Resources) -> TaskInfo {
        let fw = &mut self.frameworks[i];
        fw.next_task += 1;
        TaskInfo {
            task_id: TaskId::new(format!("{}-t{}", fw.name, fw.next_task)),
            name: "sim".to_owned(),
            agent_id: agent_id.clone(),
            resources,
            command: CommandInfo { shell: Some("true".to_owned()), ..CommandInfo::default() },
            labels: Vec::new(),
            kill_grace_period_ms: None,
            health_check: None,
            readiness_check: None,
        }
    }

    fn framework_declines(&mut self) {
        let Some(i) = self.connected_framework() else { return };
        let Some(offer) = self.random_offer(i) else { return };
        self.frameworks[i].offers.remove(&offer.id);
        let refuse_ms = *[0, 500, 5_000, 20_000].choose(&mut self.rng).unwrap_or(&0);
        self.call(i, Call::Decline { offer_ids: vec![offer.id], refuse_ms });
    }

    fn framework_kills(&mut self) {
        let Some(i) = self.connected_framework() else { return };
        let live = self.live_tasks_of(i);
        let task_id = match live.choose(&mut self.rng) {
            Some(task_id) if !self.rng.random_bool(0.05) => task_id.clone(),
            _ => TaskId::new("never-launched"),
        };
        self.call(i, Call::Kill { task_id, agent_id: None });
    }

    fn framework_reconciles(&mut self) {
        let Some(i) = self.connected_framework() else { return };
        let tasks = if self.rng.random_bool(0.5) {
            Vec::new()
        } else {
            let mut named: Vec<(TaskId, Option<AgentId>)> =
                self.live_tasks_of(i).into_iter().take(5).map(|t| (t, None)).collect();
            named.push((TaskId::new("never-launched"), Some(AgentId::new("sim-S1"))));
            named
        };
        self.call(i, Call::Reconcile { tasks });
    }

    fn framework_revives_or_suppresses(&mut self) {
        let Some(i) = self.connected_framework() else { return };
        let call = if self.rng.random_bool(0.7) {
            Call::Revive { roles: Vec::new() }
        } else {
            Call::Suppress { roles: Vec::new() }
        };
        self.call(i, call);
    }

    /// The operator re-weighs `analytics` or changes its guarantee (never its limit).
    fn operator_changes_sharing(&mut self) {
        let analytics = Role::parse("analytics").expect("valid role");
        if self.rng.random_bool(0.5) {
            let weight_milli = 500 * self.rng.random_range(1..=8);
            self.master.set_weights(vec![(analytics, weight_milli)]).expect("valid weight");
        } else {
            let guarantee =
                Scalars::new(1_000 * self.rng.random_range(0..=40), 1_024 * self.rng.random_range(0..=80), 0);
            let quota = Quota { guarantee, limit: Some(ANALYTICS_LIMIT) };
            self.master.set_quota(analytics, quota).expect("valid quota");
        }
    }

    fn framework_disconnects(&mut self) {
        let Some(i) = self.connected_framework() else { return };
        let fw = &mut self.frameworks[i];
        let (Some(id), Some(stream)) = (fw.id.clone(), fw.stream.take()) else { return };
        fw.offers.clear();
        self.master.framework_disconnected(self.now_ms, &id, &stream);
    }

    fn framework_resubscribes(&mut self) {
        let pick = self.rng.random_range(0..FRAMEWORKS);
        // Mostly frameworks that are away; sometimes a connected one fails over.
        if self.frameworks[pick].stream.is_none() || self.rng.random_bool(0.1) {
            self.subscribe(pick);
        }
    }

    fn framework_tears_down(&mut self) {
        if let Some(i) = self.connected_framework() {
            self.call(i, Call::Teardown);
        }
    }

    // ----- delivery -----

    fn pump(&mut self) {
        for output in self.master.drain_outputs() {
            match output {
                Output::AgentRegistered { conn, agent_id } => {
                    let Some(i) = self.pending.remove(&conn) else { self.fail(format!("registered unknown {conn:?}")) };
                    if let Some(previous) = &self.agents[i].id {
                        self.ensure(previous == &agent_id, || format!("agent {previous} came back as {agent_id}"));
                    }
                    self.ensure(self.agent_index.get(&agent_id).is_none_or(|j| *j == i), || {
                        format!("agent id {agent_id} given to two agents")
                    });
                    self.agent_index.insert(agent_id.clone(), i);
                    self.agents[i].id = Some(agent_id);
                    self.agents[i].conn = Some(conn);
                }
                Output::AgentRefused { conn, reason } => {
                    // Only an agent declared gone may be refused; it forgets its id and
                    // tasks (a real agent kills them) and registers afresh later.
                    self.ensure(reason.contains("register afresh"), || format!("{conn:?} refused: {reason}"));
                    let Some(i) = self.pending.remove(&conn) else { self.fail(format!("refused unknown {conn:?}")) };
                    if let Some(old) = self.agents[i].id.take() {
                        self.agent_index.remove(&old);
                    }
                    self.agents[i].tasks.clear();
                    self.agents[i].link = Link::Down;
                    self.agents[i].conn = None;
                    self.agents_refused += 1;
                }
                Output::ToAgent { agent_id, message } => self.deliver_to_agent(&agent_id, message),
                Output::Persist(op) => self.registry.apply(op),
                Output::ReconnectAgent { agent_id } => {
                    // The runtime closes the connection; the agent dials again later.
                    let Some(&i) = self.agent_index.get(&agent_id) else {
                        self.fail(format!("reconnect for unknown agent {agent_id}"))
                    };
                    self.agents[i].link = Link::Down;
                    self.agents[i].conn = None;
                }
                Output::ToFramework { framework_id, event } => self.deliver_to_framework(&framework_id, event),
                Output::CloseFramework { framework_id } => {
                    if let Some(i) = self.framework_index.remove(&framework_id) {
                        let fw = &mut self.frameworks[i];
                        fw.id = None;
                        fw.stream = None;
                        fw.offers.clear();
                    }
                }
            }
        }
    }

    fn deliver_to_agent(&mut self, agent_id: &AgentId, message: ToAgent) {
        let Some(&i) = self.agent_index.get(agent_id) else {
            self.fail(format!("message for unknown agent {agent_id}"))
        };
        // The runtime drops messages for agents without a connection.
        if self.agents[i].link == Link::Down {
            return;
        }
        match message {
            ToAgent::RunTask { framework, task } => {
                let Some(framework_id) = framework.id else { self.fail("RunTask without a framework id".to_owned()) };
                self.ensure(&task.agent_id == agent_id, || format!("task {} sent to the wrong agent", task.task_id));
                let key = (framework_id, task.task_id.clone());
                self.ensure(!self.agents[i].tasks.contains_key(&key), || {
                    format!("task {} launched twice", task.task_id)
                });
                self.run_tasks_seen += 1;
                self.agents[i]
                    .tasks
                    .insert(key, SimTask { info: task, state: TaskState::TaskStaging, kill: false, sent: Vec::new() });
            }
            ToAgent::KillTask { framework_id, task_id, .. } => {
                if let Some(task) = self.agents[i].tasks.get_mut(&(framework_id, task_id)) {
                    task.kill = true;
                }
            }
            ToAgent::ShutdownFramework { framework_id } => {
                for ((f, _), task) in self.agents[i].tasks.iter_mut() {
                    if f == &framework_id {
                        task.kill = true;
                    }
                }
            }
            ToAgent::Acknowledge { .. } => {}
        }
    }

    fn deliver_to_framework(&mut self, framework_id: &FrameworkId, event: Event) {
        let Some(&i) = self.framework_index.get(framework_id) else {
            self.fail(format!("event for unknown framework {framework_id}: {event:?}"))
        };
        let connected = self.frameworks[i].stream.is_some();
        match event {
            Event::Subscribed { .. } => {}
            Event::Offers(offers) => {
                self.ensure(connected, || format!("offers sent to disconnected {framework_id}"));
                for offer in offers {
                    self.ensure(&offer.framework_id == framework_id, || format!("offer {} misaddressed", offer.id));
                    let Some(&agent) = self.agent_index.get(&offer.agent_id) else {
                        self.fail(format!("offer {} on unknown agent {}", offer.id, offer.agent_id))
                    };
                    let previous = self.frameworks[i].offers.insert(offer.id.clone(), (offer, agent));
                    self.ensure(previous.is_none(), || "an offer id was reused".to_owned());
                }
            }
            Event::Rescind(offer_id) => {
                let known = self.frameworks[i].offers.remove(&offer_id).is_some();
                self.ensure(known, || format!("{framework_id} got a rescind of {offer_id} it does not hold"));
            }
            Event::Update(_) => {
                self.ensure(connected, || format!("update sent to disconnected {framework_id}"));
            }
            Event::Message { .. } | Event::Failure { .. } | Event::Error(_) | Event::InverseOffers(_) => {}
        }
    }

    // ----- invariants -----

    /// Checks the master after a step: independently of its caches, what the frameworks
    /// hold, what the agents carry and how tasks move; and every few steps the master's
    /// own full self-check of its caches and indexes (the most expensive part of a step).
    fn check(&mut self) {
        if self.step.is_multiple_of(SELF_CHECK_EVERY)
            && let Err(broken) = self.master.check_invariants()
        {
            self.fail(broken);
        }
        for (scalars, ports) in &mut self.tally {
            *scalars = [Scalars::ZERO; 2];
            ports.clear();
        }
        self.check_offers();
        self.check_sharing();
        self.check_tasks();
        self.check_agents();
        self.check_counters();
        if self.rng.random_bool(0.5) {
            self.read.apply(self.master.take_changes());
            if self.step.is_multiple_of(4 * SELF_CHECK_EVERY) {
                self.check_read_model();
            }
        }
    }

    /// The read model, fed only the core's changes, shows what a full copy of the
    /// registry shows.
    fn check_read_model(&self) {
        let snapshot = self.master.snapshot();
        let copy = self.read.state();
        let agents: Vec<AgentView> = copy.agents.iter().map(|a| (**a).clone()).collect();
        self.ensure(agents == snapshot.agents, || "the read model's agents differ from the registry's".to_owned());
        let ids = |fs: &[FrameworkView]| fs.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
        let read_ids: Vec<FrameworkId> = copy.frameworks.iter().map(|f| f.view.id.clone()).collect();
        self.ensure(read_ids == ids(&snapshot.frameworks), || {
            format!("read model frameworks {read_ids:?}, registry {:?}", ids(&snapshot.frameworks))
        });
        for (read, core) in copy.frameworks.iter().zip(&snapshot.frameworks) {
            let id = &core.id;
            let view = &read.view;
            self.ensure(
                view.info == core.info
                    && view.active == core.active
                    && view.offered == core.offered
                    && view.registered_at_ms == core.registered_at_ms
                    && view.unregistered_at_ms == core.unregistered_at_ms,
                || format!("framework {id}: the read model's view differs: {view:?} vs {core:?}"),
            );
            self.ensure(read.used.scalars() == core.used.scalars() && read.used.ports() == core.used.ports(), || {
                format!("framework {id}: used {} in the read model, {} in the registry", read.used, core.used)
            });
            let tasks: Vec<TaskView> = read.tasks.iter().map(|t| (**t).clone()).collect();
            self.ensure(tasks == core.tasks, || format!("framework {id}: live tasks differ"));
            let done: Vec<TaskView> = read.completed_tasks.iter().map(|t| (**t).clone()).collect();
            self.ensure(done == core.completed_tasks, || format!("framework {id}: completed tasks differ"));
        }
        let read_done: Vec<FrameworkId> = copy.completed_frameworks.iter().map(|f| f.view.id.clone()).collect();
        self.ensure(read_done == ids(&snapshot.completed_frameworks), || "completed frameworks differ".to_owned());
        let summary = self.read.summary();
        let gauges = self.master.gauges();
        for (state, n) in gauges.tasks {
            let read = summary.task_states.get(&state).copied().unwrap_or(0);
            self.ensure(read == n, || format!("{n} tasks {state:?} in the registry, {read} in the read model"));
        }
        self.ensure(copy.outstanding_offers == snapshot.outstanding_offers, || "outstanding offers differ".to_owned());
        // The kept tallies and the `/tasks` index agree with counting the tasks.
        let all = TaskQuery { limit: usize::MAX, ascending: true, ..TaskQuery::default() };
        let listed = self.read.tasks(&all).len();
        let total: usize = summary.task_states.values().sum();
        self.ensure(listed == total, || format!("/tasks lists {listed} tasks of {total}"));
        for ((view, _, tally), core) in summary.frameworks.iter().zip(&snapshot.frameworks) {
            let mut states = [0usize; TaskState::ALL.len()];
            for task in core.tasks.iter().chain(&core.completed_tasks) {
                if let Some(i) = TaskState::ALL.iter().position(|s| *s == task.state) {
                    states[i] += 1;
                }
            }
            self.ensure(tally.states == states, || format!("framework {}: tasks by state differ", view.id));
            let agents: BTreeSet<&AgentId> = core.tasks.iter().map(|t| &t.info.agent_id).collect();
            self.ensure(tally.peers.keys().collect::<BTreeSet<_>>() == agents, || {
                format!("framework {}: the agents of its tasks differ", view.id)
            });
        }
        let live_on_agents: usize = summary.agents.iter().map(|(_, tally)| tally.states.iter().sum::<usize>()).sum();
        let live: usize = snapshot.frameworks.iter().map(|f| f.tasks.len()).sum();
        let unknown_agents = snapshot
            .frameworks
            .iter()
            .flat_map(|f| &f.tasks)
            .filter(|t| !snapshot.agents.iter().any(|a| a.id == t.info.agent_id))
            .count();
        self.ensure(live_on_agents + unknown_agents == live, || {
            format!("{live} live tasks, {live_on_agents} counted on agents")
        });
    }

    /// What the frameworks hold is exactly what the master has outstanding.
    fn check_offers(&mut self) {
        let mut outstanding = 0;
        for offer in self.master.outstanding_offers() {
            outstanding += 1;
            // Ids are never reused (checked on delivery), so the id stands for the offer.
            let holder = self.framework_index.get(&offer.framework_id).map(|i| &self.frameworks[*i]);
            self.ensure(holder.is_some_and(|f| f.offers.contains_key(&offer.id)), || {
                format!("outstanding offer {} is not held by {}", offer.id, offer.framework_id)
            });
        }
        // Same count and every outstanding offer held: the frameworks hold exactly these.
        let mut held = 0;
        for fw in &self.frameworks {
            for (offer, agent) in fw.offers.values() {
                held += 1;
                add_to_tally(&mut self.tally[*agent], &offer.resources);
            }
        }
        self.ensure(held == outstanding, || format!("frameworks hold {held} offers, the master {outstanding}"));
    }

    /// Reserved resources are offered only to their role or its sub-roles, and the quota
    /// limit of `analytics` is never exceeded (tasks and offers of its whole subtree).
    fn check_sharing(&mut self) {
        for offer in self.master.outstanding_offers() {
            let Some(fw) = self.framework_index.get(&offer.framework_id).map(|i| &self.frameworks[*i]) else {
                continue;
            };
            for (role, _) in offer.resources.pools().filter(|(r, _)| !r.is_unreserved()) {
                self.ensure(role.is_ancestor_or_self_of(&fw.role), || {
                    format!("offer {} gives {role}'s reservation to {} in role {}", offer.id, fw.name, fw.role)
                });
            }
        }
        let analytics = Role::parse("analytics").expect("valid role");
        let allocated = self.master.roles().into_iter().find(|r| r.role == analytics).map(|r| r.allocated);
        self.ensure(allocated.is_none_or(|a| ANALYTICS_LIMIT.contains(&a)), || {
            format!("analytics holds {allocated:?}, over its limit {ANALYTICS_LIMIT:?}")
        });
    }

    /// Each live task is on one known agent, under one framework, and only moves forward;
    /// an ended task never comes back.
    fn check_tasks(&mut self) {
        let step = self.step;
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for (framework_id, task, state) in self.master.live_tasks() {
            let Some(&a) = self.agent_index.get(&task.agent_id) else {
                self.fail(format!("task {} on unknown agent {}", task.task_id, task.agent_id))
            };
            add_to_tally(&mut self.tally[a], &task.resources);
            self.ensure(ids.insert(task.task_id.as_str()), || {
                format!("task {} is live in two frameworks", task.task_id)
            });
            self.ensure(!state.is_terminal(), || format!("terminal task {} is live", task.task_id));
            let states = self.last_states.entry(framework_id.clone()).or_default();
            match states.get_mut(&task.task_id) {
                Some((before, seen)) => {
                    let (from, forward) = (*before, *before == state || before.may_become(state));
                    *before = state;
                    *seen = step;
                    if !forward {
                        self.fail(format!("task {} moved from {from} to {state}", task.task_id));
                    }
                }
                None => {
                    states.insert(task.task_id.clone(), (state, step));
                    let ended = self.ended.get(framework_id).is_some_and(|e| e.contains(&task.task_id));
                    self.ensure(!ended, || format!("task {} came back after it ended", task.task_id));
                }
            }
        }
        for (framework_id, states) in &mut self.last_states {
            states.retain(|task_id, (_, seen)| {
                let live = *seen == step;
                if !live {
                    self.ended.entry(framework_id.clone()).or_default().insert(task_id.clone());
                }
                live
            });
        }
    }

    /// No agent carries more than it has, nor a port twice, counting tasks and offers.
    fn check_agents(&mut self) {
        let reserved = Role::parse("analytics").expect("valid role");
        let mut problem = None;
        for (agent, (scalars, ports)) in self.agents.iter().zip(self.tally.iter_mut()) {
            let total = &agent.info.resources;
            let has = |role: &Role| total.pool(role).map_or(Scalars::ZERO, |p| p.scalars);
            let host = &agent.info.hostname;
            if !has(&Role::unreserved()).contains(&scalars[0]) || !has(&reserved).contains(&scalars[1]) {
                problem = Some(format!("agent {host} over-committed: {scalars:?} of {total}"));
            }
            ports.sort_unstable();
            if let Some(pair) = ports.windows(2).find(|pair| pair[0].1 >= pair[1].0) {
                problem = Some(format!("agent {host} gave port {} twice", pair[1].0));
            }
            let within = |&(b, e): &(u64, u64)| {
                total.pools().any(|(_, p)| p.ports.ranges().iter().any(|r| r.0 <= b && e <= r.1))
            };
            if let Some(outside) = ports.iter().find(|r| !within(r)) {
                problem = Some(format!("agent {host} gave ports {outside:?} it does not have"));
            }
            if problem.is_some() {
                break;
            }
        }
        if let Some(problem) = problem {
            self.fail(problem);
        }
    }

    fn check_counters(&self) {
        let c = self.master.counters();
        let outstanding = self.master.outstanding_offers().count() as u64;
        self.ensure(c.offers_sent == c.offers_accepted + c.offers_declined + c.offers_rescinded + outstanding, || {
            format!("offer counters disagree: {c:?}, {outstanding} outstanding")
        });
        self.ensure(c.tasks_launched >= self.run_tasks_seen, || {
            format!("{} RunTask messages but {} launches counted", self.run_tasks_seen, c.tasks_launched)
        });
        self.ensure(c.allocation_runs == self.allocations, || "allocation runs miscounted".to_owned());
    }
}

fn add_to_tally(tally: &mut AgentTally, resources: &Resources) {
    for (role, pool) in resources.pools() {
        let slot = usize::from(!role.is_unreserved());
        tally.0[slot] = tally.0[slot].saturating_add(&pool.scalars);
        tally.1.extend_from_slice(pool.ports.ranges());
    }
}

impl Sim {
    /// A master started from what this one persisted knows every agent (and whether it
    /// was reachable) and every framework that subscribed, and refuses removed ones.
    fn check_recovery(&self) {
        let mut fresh = Master::new(config(), self.seed.wrapping_add(1));
        fresh.recover(self.now_ms, self.registry.clone());
        let (old, new) = (self.master.snapshot(), fresh.snapshot());
        let agents = |s: &agora_master::core::Snapshot| {
            s.agents.iter().map(|a| (a.id.clone(), a.reachable, a.info.clone())).collect::<Vec<_>>()
        };
        self.ensure(agents(&old) == agents(&new), || "recovered agents differ from the master's".to_owned());
        for framework in self.frameworks.iter().filter_map(|f| f.id.as_ref()) {
            self.ensure(new.frameworks.iter().any(|f| &f.id == framework), || {
                format!("subscribed framework {framework} was not recovered")
            });
        }
        for removed in &old.completed_frameworks {
            self.ensure(new.frameworks.iter().all(|f| f.id != removed.id), || {
                format!("removed framework {} came back", removed.id)
            });
        }
    }
}

fn run_seed(seed: u64, steps: u64) -> Sim {
    let mut sim = Sim::new(seed);
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
        sim.run(steps);
        sim.check_recovery();
    })) {
        eprintln!("simulation failed: re-run with AGORA_SIM_SEED={seed}");
        resume_unwind(panic);
    }
    sim
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `seeds` (or only `AGORA_SIM_SEED` when set, in the first test) and checks that
/// each run exercised what it claims to.
fn simulate(seeds: std::ops::RangeInclusive<u64>) {
    let steps = env_u64("AGORA_SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    let seeds: Vec<u64> = match env_u64("AGORA_SIM_SEED") {
        Some(seed) if seeds.contains(&1) => vec![seed],
        Some(_) => Vec::new(),
        None => seeds.collect(),
    };
    for seed in seeds {
        let sim = run_seed(seed, steps);
        let c = sim.master.counters();
        assert!(c.tasks_launched > steps / 10, "seed {seed}: only {} launches", c.tasks_launched);
        assert!(c.offers_declined > 0 && c.offers_rescinded > 0, "seed {seed}: {c:?}");
        assert!(c.tasks_errored > 0 && c.tasks_dropped > 0, "seed {seed}: {c:?}");
        assert!(c.agents_unreachable > 0, "seed {seed}: no agent became unreachable");
        assert!(c.agents_removed > 0, "seed {seed}: no agent was declared gone");
        assert!(!sim.ended.is_empty(), "seed {seed}: no task ended");
    }
}

// The seeds are spread over several tests so that the test harness runs them in parallel.
#[test]
fn the_registry_keeps_its_invariants_under_random_faults_seeds_1_2() {
    simulate(1..=2);
}

#[test]
fn the_registry_keeps_its_invariants_under_random_faults_seeds_3_4() {
    simulate(3..=4);
}

#[test]
fn the_registry_keeps_its_invariants_under_random_faults_seeds_5_6() {
    simulate(5..=6);
}

#[test]
fn the_registry_keeps_its_invariants_under_random_faults_seeds_7_8() {
    simulate(7..=8);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run_seed(42, 200).master.snapshot();
    let b = run_seed(42, 200).master.snapshot();
    assert_eq!(a, b);
}
