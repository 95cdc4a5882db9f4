//! Offers → launches: which pending instances fit on an agent's offers (exact integer
//! resources, the app's role and accepted resource roles, its constraints, its ports),
//! the `TaskInfo` each one runs as, and the instance recorded before the launch leaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::model::{
    AgentDescription, AgentId, HealthCheck, HealthCheckKind, HttpScheme, Offer, OfferId, Pool, RangeSet,
    ReadinessCheck, Resources, Role, Scalars, TaskId, TaskInfo, TaskState,
};
use agora_sdk::{TaskBuilder, TaskRequirements};
use regex::Regex;

use super::{
    MAX_KNOWN_AGENTS, MAX_TASKS_PER_ACCEPT, Output, Planner, REFUSE_WHEN_IDLE_S, REFUSE_WHILE_PENDING_S, StoreOp,
};
use crate::model::{
    AppCommand, AppId, AppRecord, AppSpec, CheckPort, ConstraintOp, HealthProtocol, Instance, Timestamp,
};

/// Compiled LIKE/UNLIKE patterns, so that each is compiled once, not per offer.
#[derive(Debug, Default)]
pub(super) struct RegexCache(BTreeMap<String, Option<Regex>>);

/// Most patterns kept; the cache starts over beyond it.
const MAX_REGEXES: usize = 1_024;

impl RegexCache {
    /// Whether `value` matches `pattern` as a whole (Marathon anchors both ends). A pattern
    /// that does not compile matches nothing (the API validates them first).
    fn full_match(&mut self, pattern: &str, value: &str) -> bool {
        if !self.0.contains_key(pattern) {
            if self.0.len() >= MAX_REGEXES {
                self.0.clear();
            }
            self.0.insert(pattern.to_owned(), Regex::new(&format!("^(?:{pattern})$")).ok());
        }
        self.0.get(pattern).and_then(Option::as_ref).is_some_and(|re| re.is_match(value))
    }
}

/// One agent's offers for one role: their ids, their resources summed, the agent.
type OfferGroup = (Vec<OfferId>, Resources, Arc<AgentDescription>);

/// The agent side of a group of offers.
struct Agent {
    id: AgentId,
    description: Arc<AgentDescription>,
    role: Role,
}

impl Agent {
    /// The value of a constraint's field on this agent: `hostname` or an attribute.
    fn field(&self, field: &str) -> Option<&str> {
        field_of(&self.description, field)
    }
}

fn field_of<'a>(agent: &'a AgentDescription, field: &str) -> Option<&'a str> {
    if field == "hostname" {
        return Some(&agent.hostname);
    }
    agent.attributes.iter().find(|a| a.name == field).map(|a| a.value.as_str())
}

impl Planner {
    pub(super) fn offers(&mut self, now_ms: u64, offers: Vec<Offer>) {
        // One launch per agent and role: offers of one agent are used together.
        let mut groups: BTreeMap<(AgentId, Role), OfferGroup> = BTreeMap::new();
        for offer in offers {
            if self.agents.len() < MAX_KNOWN_AGENTS || self.agents.contains_key(&offer.agent_id) {
                self.agents.insert(offer.agent_id.clone(), Arc::clone(&offer.agent));
            }
            let entry = groups
                .entry((offer.agent_id.clone(), offer.allocation_role.clone()))
                .or_insert_with(|| (Vec::new(), Resources::new(), Arc::clone(&offer.agent)));
            entry.0.push(offer.id);
            entry.1.add(&offer.resources);
        }
        let mut declined = Vec::new();
        for ((agent_id, role), (offer_ids, mut available, description)) in groups {
            let agent = Agent { id: agent_id, description, role };
            let tasks = self.place(now_ms, &agent, &mut available);
            if tasks.is_empty() {
                declined.extend(offer_ids);
            } else {
                self.outbox.push(Output::Launch { offer_ids, tasks });
            }
        }
        if !declined.is_empty() {
            let refuse_seconds = if self.launchable(now_ms) { REFUSE_WHILE_PENDING_S } else { REFUSE_WHEN_IDLE_S };
            self.outbox.push(Output::Decline { offer_ids: declined, refuse_seconds });
        }
    }

    /// Whether some app has launches that may go now (not delayed).
    pub(super) fn launchable(&self, now_ms: u64) -> bool {
        self.pending.iter().any(|(app, p)| p.count > 0 && self.delay_until(app, now_ms).is_none())
    }

    /// Places as many pending instances as fit on one agent's resources.
    fn place(&mut self, now_ms: u64, agent: &Agent, available: &mut Resources) -> Vec<TaskInfo> {
        let apps: Vec<AppId> = self
            .pending
            .iter()
            .filter(|(app, p)| p.count > 0 && self.delay_until(app, now_ms).is_none())
            .map(|(app, _)| app.clone())
            .collect();
        let mut tasks = Vec::new();
        for app in apps {
            if tasks.len() >= MAX_TASKS_PER_ACCEPT {
                break;
            }
            let before = tasks.len();
            while tasks.len() < MAX_TASKS_PER_ACCEPT && self.pending.get(&app).is_some_and(|p| p.count > 0) {
                match self.place_one(now_ms, &app, agent, available) {
                    Some(task) => {
                        tasks.push(task);
                        if let Some(p) = self.pending.get_mut(&app) {
                            p.count -= 1;
                        }
                    }
                    None => break,
                }
            }
            let stats = self.offer_stats.entry(app.clone()).or_default();
            stats.0 += 1;
            stats.1 += u64::from(tasks.len() == before);
            if self.pending.get(&app).is_some_and(|p| p.count == 0) {
                self.pending.remove(&app);
            }
        }
        tasks
    }

    /// One instance of `app` on this agent, if it fits: resources taken out of
    /// `available`, the instance recorded (STAGING), its task returned.
    fn place_one(&mut self, now_ms: u64, app: &AppId, agent: &Agent, available: &mut Resources) -> Option<TaskInfo> {
        let record = self.apps.get(app)?.clone();
        let spec = Arc::clone(&record.spec);
        let role = match &spec.role {
            Some(role) => Role::parse(role).ok()?,
            None => self.config.roles.first().and_then(|r| Role::parse(r).ok()).unwrap_or_else(Role::unreserved),
        };
        if role != agent.role || !self.constraints_allow(&spec, agent) {
            return None;
        }
        let (piece, ports) = take_resources(&spec, &role, available)?;
        let task_id = self.new_task_id(app);
        let instance = Instance {
            task_id: task_id.clone(),
            app_id: app.clone(),
            app_version: record.last_config_change_at,
            agent_id: agent.id.clone(),
            host: agent.description.hostname.clone(),
            ports: ports.clone(),
            state: TaskState::TaskStaging,
            healthy: None,
            ready: spec.readiness_checks.is_empty(),
            staged_at: Timestamp(now_ms),
            started_at: None,
            killing_since: None,
            unreachable_since: None,
            message: String::new(),
        };
        let task = match build_task(&record, &instance, piece.clone()) {
            Ok(task) => task,
            Err(_) => {
                // The master would refuse it too (say, an environment variable it rejects):
                // give the resources back and let the app back off instead of looping.
                available.add(&piece);
                self.delay_launches(now_ms, app);
                return None;
            }
        };
        self.by_app.entry(app.clone()).or_default().insert(task_id.clone());
        self.instances.insert(task_id.clone(), instance.clone());
        self.retally(now_ms, &task_id);
        self.dirty.insert(app.clone());
        self.persist(StoreOp::PutInstance(instance));
        Some(task)
    }

    /// `<app with _>.<uuid>`; drawn again in the unlikely case it exists.
    fn new_task_id(&mut self, app: &AppId) -> TaskId {
        let prefix = app.task_prefix();
        loop {
            let id = TaskId::new(format!("{prefix}.{}", self.uuid()));
            if !self.instances.contains_key(&id) {
                return id;
            }
        }
    }

    /// Whether another instance of the app may go on this agent.
    fn constraints_allow(&mut self, spec: &AppSpec, agent: &Agent) -> bool {
        for constraint in &spec.constraints {
            let value = agent.field(&constraint.field);
            let expected = constraint.value.as_deref();
            let ok = match constraint.op {
                ConstraintOp::Is => value.is_some() && value == expected,
                ConstraintOp::Like => match (value, expected) {
                    (Some(v), Some(p)) => self.regexes.full_match(p, v),
                    _ => false,
                },
                ConstraintOp::Unlike => match (value, expected) {
                    (Some(v), Some(p)) => !self.regexes.full_match(p, v),
                    (None, _) => true,
                    (Some(_), None) => false,
                },
                ConstraintOp::Cluster => match (value, expected) {
                    (Some(v), Some(e)) => v == e,
                    // Without a value: wherever the app's first instance went.
                    (Some(v), None) => self.field_counts(&spec.id, &constraint.field).keys().all(|k| k == v),
                    (None, _) => false,
                },
                ConstraintOp::Unique => {
                    value.is_some_and(|v| !self.field_counts(&spec.id, &constraint.field).contains_key(v))
                }
                ConstraintOp::MaxPer => match (value, expected.and_then(|e| e.parse::<u32>().ok())) {
                    (Some(v), Some(max)) => {
                        self.field_counts(&spec.id, &constraint.field).get(v).copied().unwrap_or(0) < max
                    }
                    _ => false,
                },
                ConstraintOp::GroupBy => match value {
                    Some(v) => {
                        let counts = self.field_counts(&spec.id, &constraint.field);
                        let groups = expected.and_then(|e| e.parse::<usize>().ok()).unwrap_or(0);
                        // Until as many values as expected have instances, only new values;
                        // then only the least used ones.
                        let least = if counts.len() < groups { 0 } else { counts.values().copied().min().unwrap_or(0) };
                        counts.get(v).copied().unwrap_or(0) <= least
                    }
                    None => false,
                },
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// How many of the app's instances (not being killed) sit on each value of `field`.
    /// Instances on agents not seen since a restart count once their agent offers again.
    fn field_counts(&self, app: &AppId, field: &str) -> BTreeMap<String, u32> {
        let mut counts = BTreeMap::new();
        for instance in self.instances_of(app).filter(|i| i.killing_since.is_none()) {
            let value = if field == "hostname" {
                Some(instance.host.as_str())
            } else {
                self.agents.get(&instance.agent_id).and_then(|a| field_of(a, field))
            };
            if let Some(value) = value {
                *counts.entry(value.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Revive when launches wait and offers were not wanted; Suppress when none wait.
    pub(super) fn update_offer_interest(&mut self, now_ms: u64) {
        if !self.subscribed {
            return;
        }
        let wanted = self.launchable(now_ms);
        if self.offers_wanted != Some(wanted) {
            self.offers_wanted = Some(wanted);
            self.outbox.push(if wanted { Output::Revive } else { Output::Suppress });
        }
    }
}

/// Takes one instance's resources out of `available`, from the pools its role and its
/// `acceptedResourceRoles` allow; returns them with the host ports, in the order of the
/// port definitions.
fn take_resources(spec: &AppSpec, role: &Role, available: &mut Resources) -> Option<(Resources, Vec<u16>)> {
    let accepted = |r: &Role| {
        spec.accepted_resource_roles.is_empty() || spec.accepted_resource_roles.iter().any(|a| a == r.as_str())
    };
    let mut usable = Resources::new();
    for (r, pool) in available.pools().filter(|(r, _)| accepted(r)) {
        usable.add_pool(r.clone(), pool.clone());
    }
    let requirements = TaskRequirements {
        cpus_milli: spec.cpus_milli,
        mem_mib: spec.mem_mib,
        disk_mib: spec.disk_mib,
        ports: if spec.require_ports { 0 } else { spec.port_definitions.len() as u32 },
        role: (!role.is_unreserved()).then(|| role.clone()),
    };
    let mut piece = requirements.take_one(&mut usable)?;
    let ports: Vec<u16> = if spec.require_ports {
        let mut ports = Vec::with_capacity(spec.port_definitions.len());
        for definition in &spec.port_definitions {
            let port = u64::from(definition.port);
            let owner = usable
                .pools()
                .find(|(r, p)| (r.is_unreserved() || r.is_ancestor_or_self_of(role)) && p.ports.contains_value(port))
                .map(|(r, _)| r.clone())?;
            let single = Pool { scalars: Scalars::ZERO, ports: RangeSet::from_ranges([(port, port)]).ok()? };
            let mut taken = Resources::new();
            taken.add_pool(owner, single);
            if !usable.subtract(&taken) {
                return None;
            }
            piece.add(&taken);
            ports.push(definition.port);
        }
        ports
    } else {
        piece.ports().iter().filter_map(|p| u16::try_from(p).ok()).collect()
    };
    if !available.subtract(&piece) {
        return None;
    }
    Some((piece, ports))
}

/// The task an instance runs as: its command, Marathon's environment, labels, kill grace
/// period and the agent-run health and readiness checks with their ports resolved.
pub(super) fn build_task(
    record: &AppRecord,
    instance: &Instance,
    resources: Resources,
) -> Result<TaskInfo, agora_sdk::Error> {
    let spec = &record.spec;
    let mut builder = match &spec.command {
        AppCommand::Shell(shell) => TaskBuilder::shell(instance.task_id.clone(), shell.clone()),
        AppCommand::Args(args) => TaskBuilder::argv(instance.task_id.clone(), args.iter().cloned()),
    };
    builder = builder.name(spec.id.task_prefix());
    if let Some(user) = spec.user.as_ref().filter(|u| !u.is_empty()) {
        builder = builder.user(user.clone());
    }
    for (key, value) in environment(record, instance) {
        builder = builder.env(key, value);
    }
    for (key, value) in &spec.labels {
        builder = builder.label(key.clone(), value.clone());
    }
    for uri in &spec.fetch {
        builder = builder.fetch(uri.clone());
    }
    if let Some(grace_ms) = spec.task_kill_grace_period_ms {
        builder = builder.kill_grace_period_ms(grace_ms);
    }
    if let Some(check) = health_check(spec, &instance.ports) {
        builder = builder.health_check(check);
    }
    if let Some(check) = readiness_check(spec, &instance.ports) {
        builder = builder.readiness_check(check);
    }
    builder.build(&instance.agent_id, resources)
}

/// The app's `env`, then what Marathon sets: the host ports (`PORT0`…, `PORT_<NAME>`,
/// `PORTS`, `PORT`), `HOST`, `MARATHON_APP_ID`, `MARATHON_APP_VERSION`, `MESOS_TASK_ID`.
/// Ours come last and win: a task must see the ports it really has.
pub(super) fn environment(record: &AppRecord, instance: &Instance) -> BTreeMap<String, String> {
    let spec = &record.spec;
    let mut env = spec.env.clone();
    for (i, port) in instance.ports.iter().enumerate() {
        env.insert(format!("PORT{i}"), port.to_string());
        if let Some(name) = spec.port_definitions.get(i).and_then(|d| d.name.as_ref()) {
            let name: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            env.insert(format!("PORT_{name}"), port.to_string());
        }
    }
    if let Some(first) = instance.ports.first() {
        env.insert("PORT".into(), first.to_string());
    }
    env.insert("PORTS".into(), instance.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
    env.insert("HOST".into(), instance.host.clone());
    env.insert("MARATHON_APP_ID".into(), spec.id.to_string());
    env.insert("MARATHON_APP_VERSION".into(), instance.app_version.to_string());
    env.insert("MESOS_TASK_ID".into(), instance.task_id.to_string());
    env
}

/// The port a check targets on this task.
fn check_port(spec: &AppSpec, port: Option<&CheckPort>, ports: &[u16]) -> Option<u16> {
    match port {
        // Marathon's default is the first port.
        None => ports.first().copied(),
        Some(CheckPort::Index(i)) => ports.get(usize::from(*i)).copied(),
        Some(CheckPort::Number(n)) => Some(*n),
        Some(CheckPort::Name(name)) => {
            let index = spec.port_definitions.iter().position(|d| d.name.as_deref() == Some(name))?;
            ports.get(index).copied()
        }
    }
}

/// The app's first health check, for the agent to run. (Marathon allows several; the
/// agent runs one per task, and the API keeps the list.)
pub(super) fn health_check(spec: &AppSpec, ports: &[u16]) -> Option<HealthCheck> {
    let check = spec.health_checks.first()?;
    let port = || check_port(spec, check.port.as_ref(), ports);
    let kind = match &check.protocol {
        HealthProtocol::Http { path } => {
            HealthCheckKind::Http { scheme: HttpScheme::Http, port: port()?, path: path.clone() }
        }
        HealthProtocol::Https { path } => {
            HealthCheckKind::Http { scheme: HttpScheme::Https, port: port()?, path: path.clone() }
        }
        HealthProtocol::Tcp => HealthCheckKind::Tcp { port: port()? },
        HealthProtocol::Command { shell } => HealthCheckKind::Command { shell: shell.clone() },
    };
    Some(HealthCheck {
        kind,
        grace_period_ms: u64::from(check.grace_period_s) * 1_000,
        interval_ms: u64::from(check.interval_s) * 1_000,
        timeout_ms: u64::from(check.timeout_s) * 1_000,
        max_consecutive_failures: check.max_consecutive_failures,
        delay_ms: u64::from(check.delay_s) * 1_000,
    })
}

/// The app's first readiness check, its port found by the port definition's name.
pub(super) fn readiness_check(spec: &AppSpec, ports: &[u16]) -> Option<ReadinessCheck> {
    let check = spec.readiness_checks.first()?;
    let port = check_port(spec, Some(&CheckPort::Name(check.port_name.clone())), ports)?;
    Some(ReadinessCheck {
        scheme: if check.https { HttpScheme::Https } else { HttpScheme::Http },
        port,
        path: check.path.clone(),
        interval_ms: u64::from(check.interval_s) * 1_000,
        timeout_ms: u64::from(check.timeout_s) * 1_000,
        ready_status_codes: check.http_status_codes_for_ready.clone(),
    })
}
