//! The deployment planner: services' pure core.
//!
//! (desired apps, observed tasks with health, now) → actions. The runtime feeds it the
//! REST API's commands ([`Command`]) and the master's events ([`Input`]), and executes the
//! [`Output`]s it appends to its outbox, in order: `Persist` records are committed before
//! any output after them leaves the process, and before the command that made them is
//! answered. No I/O, no clock, no tokio in here: time is `now_ms`, randomness a seeded
//! generator owned by the planner.
//!
//! How it is split:
//! - `plan`: commands → validated changes → one [`Deployment`] with steps in dependency
//!   order (conflicts, `force`, versions, service ports, records).
//! - `progress`: deployments advancing step by step, deadlines and rollbacks.
//! - `control`: per app, what to launch and what to kill now (self-healing, scaling,
//!   stopping, and the rolling upgrade whose bounds live in `rolling`).
//! - `tasks`: the master's status updates, health, unreachable agents, reconciliation.
//! - `placement`: offers → launches (resources, roles, constraints, ports, TaskInfo).
//! - `backoff`: launch delays after failures.
//!
//! Every app is "dirty" after anything touched it; [`Planner::settle`] re-plans the dirty
//! apps and advances their deployments, so that the work per event is proportional to the
//! apps it concerns, not to the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agora_proto::model::{AgentDescription, AgentId, FrameworkId, Offer, OfferId, TaskId, TaskInfo, TaskStatus};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::{
    AppId, AppRecord, AppSpec, Deployment, DeploymentId, GroupId, GroupRecord, Instance, TaskFailure, Timestamp,
};

/// Settings of the planner, from `agora services`' flags.
#[derive(Clone, Debug)]
pub struct PlannerConfig {
    /// The deployment timeout of apps that set none (`--deployment-timeout`, 600 s).
    pub default_deployment_timeout_ms: u64,
    /// Versions kept per app; the oldest beyond this are forgotten (`--max-versions`, 50).
    pub max_versions: usize,
    /// Service ports handed out for port definitions with port 0 (10000–20000).
    pub service_ports: (u16, u16),
    /// How often tasks are reconciled with the master (explicitly) after the first
    /// reconciliation at subscription.
    pub reconcile_interval_ms: u64,
    /// The framework's user, for apps that name none.
    pub default_user: String,
    /// The framework's roles; apps launch under their `role`, else the first.
    pub roles: Vec<String>,
    /// Seeds task ids and deployment ids.
    pub seed: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            default_deployment_timeout_ms: 600_000,
            max_versions: 50,
            service_ports: (10_000, 20_000),
            reconcile_interval_ms: 600_000,
            default_user: "nobody".into(),
            roles: vec!["*".into()],
            seed: 0,
        }
    }
}

/// A change asked for through the REST API or the CLI. The HTTP layer has already parsed
/// and validated the input into model types (and merged PATCHes and rollbacks into full
/// specs); the planner checks what needs the current state (conflicts, dependencies).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Creates or replaces apps (POST/PUT `/v2/apps[/{id}]`, PUT `/v2/apps` with a list).
    /// A spec equal to the current one except `instances` is a scale; any other change a
    /// restart (rolling upgrade).
    /// `expect` states what the request assumed about some of the apps when it was
    /// prepared (a PATCH merges into the definition it read): when an app no longer
    /// matches, nothing is applied, so two racing requests cannot both win.
    PutApps { apps: Vec<AppSpec>, force: bool, expect: BTreeMap<AppId, Expected> },
    /// Stops an app and forgets it (DELETE `/v2/apps/{id}`).
    DeleteApp { id: AppId, force: bool },
    /// Replaces every instance, rolling (POST `/v2/apps/{id}/restart`).
    RestartApp { id: AppId, force: bool },
    /// Kills tasks (DELETE `/v2/apps/{id}/tasks[/{task}]`, POST `/v2/tasks/delete`). With
    /// `scale`, the apps' `instances` go down by the number killed (a new version);
    /// without, they are replaced. `wipe` also forgets them at once.
    KillTasks { tasks: Vec<TaskId>, scale: bool, wipe: bool, force: bool },
    /// Creates or replaces a group's subtree: its apps, subgroups and dependencies
    /// (POST/PUT `/v2/groups[/{id}]`). Apps of the subtree not in `apps` are removed.
    /// `read`, when the change was prepared from the subtree as it stood (a `PUT` merges
    /// into it), is every app that was under the group then, at its version: the change
    /// is refused ([`PlanError::Stale`]) if any of them changed or another appeared, so
    /// that an app created meanwhile is not removed by a change that never saw it.
    PutGroup {
        id: GroupId,
        groups: Vec<GroupRecord>,
        apps: Vec<AppSpec>,
        force: bool,
        read: Option<BTreeMap<AppId, Timestamp>>,
    },
    /// Removes a group and everything in it (DELETE `/v2/groups/{id}`).
    DeleteGroup { id: GroupId, force: bool },
    /// `DELETE /v2/deployments/{id}`: rolls it back, or with `force` just stops it.
    CancelDeployment { id: DeploymentId, force: bool },
    /// `DELETE /v2/queue/{id}/delay`: forget the app's launch backoff.
    ResetDelay { id: AppId },
    /// `POST /v2/eventSubscriptions?callbackUrl=…`: events are POSTed to the URL from now
    /// on (kept across restarts). Subscribing twice is one subscription.
    Subscribe { callback_url: String, client_ip: String },
    /// `DELETE /v2/eventSubscriptions?callbackUrl=…`.
    Unsubscribe { callback_url: String, client_ip: String },
}

/// What a change assumed about an app when the API prepared it (see [`Command::PutApps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// No app or group has this id (POST `/v2/apps` creates, it never replaces).
    Absent,
    /// The app exists at this version (the definition a merge or a scale started from).
    Version(Timestamp),
}

/// What a [`Command`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The change is recorded; a deployment carries it out (Marathon's `{deploymentId,
    /// version}`).
    Deployment { id: DeploymentId, version: Timestamp },
    /// The change needed no deployment (a killed task without `scale`, a reset delay).
    Done { version: Timestamp },
}

/// Why a [`Command`] was refused; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: apps locked by deployments in progress (retry with `force`).
    #[error("{message}")]
    Conflict { message: String, deployments: Vec<DeploymentId> },
    /// 422: the change is not valid against the current state (an unknown dependency, a
    /// cycle, an app id that is a group).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// An app changed (or went) since the request read it ([`Expected::Version`]): the
    /// API prepares the change again from the new state.
    #[error("app {0} changed while the request was prepared")]
    Stale(AppId),
}

/// What the master said, through the SDK driver.
#[derive(Clone, Debug)]
pub enum Input {
    Subscribed {
        framework_id: FrameworkId,
        reconnected: bool,
    },
    Disconnected,
    Offers(Vec<Offer>),
    Rescinded(OfferId),
    Update(TaskStatus),
    /// Time passed: deployment steps, deadlines, backoff, unreachable timeouts, periodic
    /// reconciliation. The runtime ticks at least once a second.
    Tick,
}

/// What the runtime must do, in order.
#[derive(Clone, Debug)]
pub enum Output {
    /// Commit with the rest of the batch before any later output is executed.
    Persist(StoreOp),
    /// ACCEPT: launch `tasks` on the offers (all of one agent).
    Launch {
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        refuse_seconds: f64,
    },
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    /// RECONCILE these tasks; all of the framework's tasks when empty.
    Reconcile(Vec<(TaskId, Option<AgentId>)>),
    /// The planner wants offers again (it has instances to launch).
    Revive,
    /// The planner needs no offers.
    Suppress,
    /// For the event stream (`/v2/events`) and logs.
    Event(ServiceEvent),
}

/// One durable change. The store applies a batch atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreOp {
    FrameworkId(FrameworkId),
    PutApp(AppRecord),
    DeleteApp(AppId),
    PutVersion {
        app: AppId,
        version: Timestamp,
        spec: Arc<AppSpec>,
    },
    DeleteVersion {
        app: AppId,
        version: Timestamp,
    },
    PutGroup(GroupRecord),
    DeleteGroup(GroupId),
    PutInstance(Instance),
    DeleteInstance(TaskId),
    PutDeployment(Deployment),
    DeleteDeployment(DeploymentId),
    PutTaskFailure(TaskFailure),
    /// The app is gone; so is its last failure.
    DeleteTaskFailure(AppId),
    /// The next service port to try when assigning one.
    NextServicePort(u16),
    /// An HTTP callback URL that events are POSTed to.
    PutSubscriber(String),
    DeleteSubscriber(String),
}

/// Everything the store holds, read back at start.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub framework_id: Option<FrameworkId>,
    pub apps: Vec<AppRecord>,
    pub versions: Vec<(AppId, Timestamp, Arc<AppSpec>)>,
    pub groups: Vec<GroupRecord>,
    pub instances: Vec<Instance>,
    pub deployments: Vec<Deployment>,
    pub task_failures: Vec<TaskFailure>,
    pub next_service_port: Option<u16>,
    pub subscribers: Vec<String>,
}

/// What happened, for `/v2/events` (rendered as Marathon's events by `marathon::events`).
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceEvent {
    /// A task's state changed (`status_update_event`).
    StatusUpdate {
        instance: Instance,
        status: TaskStatus,
    },
    /// An instance's health changed (`health_status_changed_event`; and
    /// `instance_health_changed_event`).
    HealthChanged {
        instance: Instance,
        healthy: bool,
    },
    /// An unhealthy instance was killed by its health check (`unhealthy_instance_kill_event`).
    UnhealthyKilled {
        instance: Instance,
        message: String,
    },
    /// A deployment started (`deployment_info`, with its plan and current step).
    DeploymentInfo {
        deployment: Deployment,
    },
    DeploymentStepSuccess {
        deployment: Deployment,
    },
    DeploymentStepFailure {
        deployment: Deployment,
    },
    DeploymentSuccess {
        deployment: Deployment,
    },
    /// Ended without reaching its target: cancelled, superseded by `force`, or timed out.
    /// `rollback` names the deployment that rolls it back, if any.
    DeploymentFailed {
        deployment: Deployment,
        reason: String,
        rollback: Option<DeploymentId>,
    },
    /// An app is gone (`app_terminated_event`).
    AppTerminated {
        app: AppId,
    },
    /// A group's change was accepted (`group_change_success`).
    GroupChangeSuccess {
        group: GroupId,
        version: Timestamp,
    },
    /// A launch was deferred by the app's backoff (`instance` not yet launched).
    LaunchDelayed {
        app: AppId,
        until: Timestamp,
    },
    /// An HTTP callback subscribed (`subscribe_event`) or unsubscribed
    /// (`unsubscribe_event`).
    Subscription {
        callback_url: String,
        client_ip: String,
        subscribed: bool,
    },
}

/// An app's place in the launch queue (`/v2/queue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub app: AppId,
    /// Instances the planner wants launched and has not launched yet.
    pub count: u32,
    /// Launches wait until then (backoff after failures); `None` when not delayed.
    pub delayed_until: Option<Timestamp>,
    /// The latest offers' verdict, for Marathon's `processedOffersSummary`.
    pub offers_processed: u64,
    pub offers_unused: u64,
    pub since: Timestamp,
}

/// Most HTTP callback subscriptions; one more is refused (422).
pub const MAX_SUBSCRIBERS: usize = 32;
/// Longest callback URL.
pub const MAX_CALLBACK_URL_LEN: usize = 2_048;

/// Most deployments in progress at once; a change beyond it is refused (409).
pub const MAX_DEPLOYMENTS: usize = 1_000;
/// Most tasks launched on one agent's offers at a time.
pub const MAX_TASKS_PER_ACCEPT: usize = 1_000;
/// Most task ids in one `Reconcile` output.
pub const MAX_RECONCILE_BATCH: usize = 5_000;
/// A kill the master has not confirmed is sent again after this long.
pub const KILL_RETRY_MS: u64 = 30_000;
/// How long offers are refused while launches wait (a few seconds: others' tasks may
/// free resources) and when nothing waits (Revive brings them back sooner anyway).
pub const REFUSE_WHILE_PENDING_S: f64 = 5.0;
pub const REFUSE_WHEN_IDLE_S: f64 = 120.0;
/// Agents remembered for attribute constraints (learned from offers).
const MAX_KNOWN_AGENTS: usize = 100_000;

/// An app's launches not yet placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    count: u32,
    since_ms: u64,
}

/// The deployment planner.
#[derive(Debug)]
pub struct Planner {
    config: PlannerConfig,
    framework_id: Option<FrameworkId>,
    apps: BTreeMap<AppId, AppRecord>,
    versions: BTreeMap<AppId, BTreeMap<Timestamp, Arc<AppSpec>>>,
    groups: BTreeMap<GroupId, GroupRecord>,
    instances: BTreeMap<TaskId, Instance>,
    /// The instances of each app, for per-app views without a scan.
    by_app: BTreeMap<AppId, BTreeSet<TaskId>>,
    deployments: BTreeMap<DeploymentId, Deployment>,
    /// Which deployment holds each app (at most one).
    locks: BTreeMap<AppId, DeploymentId>,
    task_failures: BTreeMap<AppId, TaskFailure>,
    /// HTTP callback URLs that events are POSTed to.
    subscribers: BTreeSet<String>,
    rng: ChaCha8Rng,
    /// Whether the generator has been mixed with the time of the first call (see
    /// [`Planner::recover`]).
    rng_timed: bool,
    /// The latest version handed out: versions strictly increase even if the clock does not.
    last_version_ms: u64,
    next_service_port: u16,
    /// Each instance's part in its app's tally, and the tallies: what the controller
    /// counts, kept as instances change so that an event costs O(1) per app, not a scan.
    parts: BTreeMap<TaskId, (AppId, control::Part)>,
    tallies: BTreeMap<AppId, control::Tally>,
    /// Per app in a rolling upgrade (and its config version): its healthy old instances
    /// in the order they are to be killed.
    kill_queues: BTreeMap<AppId, (Timestamp, std::collections::VecDeque<TaskId>)>,
    delays: BTreeMap<AppId, backoff::LaunchDelay>,
    pending: BTreeMap<AppId, Pending>,
    /// Offers looked at and left unused per app, for the queue's summary.
    offer_stats: BTreeMap<AppId, (u64, u64)>,
    /// Apps to re-plan at the end of the current call.
    dirty: BTreeSet<AppId>,
    /// Instances whose agent is unreachable.
    unreachable: BTreeSet<TaskId>,
    /// Instances being killed, with when the kill was last sent.
    killing: BTreeMap<TaskId, u64>,
    agents: BTreeMap<AgentId, Arc<AgentDescription>>,
    regexes: placement::RegexCache,
    subscribed: bool,
    /// What the master was last told: `Some(true)` after Revive, `Some(false)` after
    /// Suppress, `None` when unknown (after a (re)subscription).
    offers_wanted: Option<bool>,
    last_reconcile_ms: Option<u64>,
    outbox: Vec<Output>,
}

mod backoff;
mod control;
mod placement;
mod plan;
mod progress;
mod rolling;
mod tasks;

#[cfg(test)]
mod tests;

pub use rolling::{Bounds, bounds};

impl Planner {
    pub fn new(config: PlannerConfig) -> Self {
        Self::recover(config, Recovered::default())
    }

    /// A planner resuming from what the store held. `config.seed` should differ from the
    /// previous run's (the runtime seeds from the OS); so that ids do not repeat even when
    /// it does not, the generator is also mixed with the time of the first command or
    /// input, and a task id that exists is drawn again.
    pub fn recover(config: PlannerConfig, recovered: Recovered) -> Self {
        let next_service_port = recovered.next_service_port.unwrap_or(config.service_ports.0);
        let mut planner = Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            rng_timed: false,
            config,
            framework_id: recovered.framework_id,
            apps: BTreeMap::new(),
            versions: BTreeMap::new(),
            groups: BTreeMap::new(),
            instances: BTreeMap::new(),
            by_app: BTreeMap::new(),
            deployments: BTreeMap::new(),
            locks: BTreeMap::new(),
            task_failures: BTreeMap::new(),
            subscribers: recovered.subscribers.into_iter().collect(),
            last_version_ms: 0,
            next_service_port,
            parts: BTreeMap::new(),
            tallies: BTreeMap::new(),
            kill_queues: BTreeMap::new(),
            delays: BTreeMap::new(),
            pending: BTreeMap::new(),
            offer_stats: BTreeMap::new(),
            dirty: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            killing: BTreeMap::new(),
            agents: BTreeMap::new(),
            regexes: placement::RegexCache::default(),
            subscribed: false,
            offers_wanted: None,
            last_reconcile_ms: None,
            outbox: Vec::new(),
        };
        for app in recovered.apps {
            planner.last_version_ms = planner.last_version_ms.max(app.version.ms());
            planner.dirty.insert(app.spec.id.clone());
            planner.apps.insert(app.spec.id.clone(), app);
        }
        for (app, version, spec) in recovered.versions {
            planner.last_version_ms = planner.last_version_ms.max(version.ms());
            planner.versions.entry(app).or_default().insert(version, spec);
        }
        for group in recovered.groups {
            planner.groups.insert(group.id.clone(), group);
        }
        for instance in recovered.instances {
            planner.by_app.entry(instance.app_id.clone()).or_default().insert(instance.task_id.clone());
            if instance.unreachable_since.is_some() {
                planner.unreachable.insert(instance.task_id.clone());
            }
            if let Some(since) = instance.killing_since {
                planner.killing.insert(instance.task_id.clone(), since.ms());
            }
            planner.instances.insert(instance.task_id.clone(), instance);
        }
        for deployment in recovered.deployments {
            planner.last_version_ms = planner.last_version_ms.max(deployment.version.ms());
            for app in deployment.affected_apps() {
                planner.locks.insert(app.clone(), deployment.id.clone());
            }
            planner.deployments.insert(deployment.id.clone(), deployment);
        }
        for failure in recovered.task_failures {
            planner.task_failures.insert(failure.app_id.clone(), failure);
        }
        let apps: Vec<AppId> = planner.by_app.keys().cloned().collect();
        for app in apps {
            // Recovered instances are counted as of the last version; the first input
            // counts them again at its own time.
            planner.retally_app(planner.last_version_ms, &app);
        }
        planner
    }

    /// Applies a change from the API. On `Ok`, the outputs it appended (Persist first)
    /// must be committed before the reply is sent. On `Err` nothing changed and nothing
    /// was appended.
    pub fn command(&mut self, now_ms: u64, command: Command) -> Result<Reply, PlanError> {
        self.time_rng(now_ms);
        let reply = match command {
            Command::PutApps { apps, force, expect } => self.put_apps(now_ms, apps, force, &expect),
            Command::DeleteApp { id, force } => self.delete_app(now_ms, &id, force),
            Command::RestartApp { id, force } => self.restart_app(now_ms, &id, force),
            Command::KillTasks { tasks, scale, wipe, force } => self.kill_tasks(now_ms, &tasks, scale, wipe, force),
            Command::PutGroup { id, groups, apps, force, read } => {
                self.put_group(now_ms, &id, groups, apps, force, read.as_ref())
            }
            Command::DeleteGroup { id, force } => self.delete_group(now_ms, &id, force),
            Command::CancelDeployment { id, force } => self.cancel_deployment(now_ms, &id, force),
            Command::ResetDelay { id } => self.reset_delay(now_ms, &id),
            Command::Subscribe { callback_url, client_ip } => self.subscribe(now_ms, callback_url, client_ip, true),
            Command::Unsubscribe { callback_url, client_ip } => self.subscribe(now_ms, callback_url, client_ip, false),
        }?;
        self.settle(now_ms);
        Ok(reply)
    }

    /// Applies an event from the master.
    pub fn input(&mut self, now_ms: u64, input: Input) {
        self.time_rng(now_ms);
        match input {
            Input::Subscribed { framework_id, reconnected: _ } => self.subscribed(now_ms, framework_id),
            Input::Disconnected => {
                self.subscribed = false;
                self.offers_wanted = None;
            }
            Input::Offers(offers) => self.offers(now_ms, offers),
            // Offers are used or declined as they arrive; none is held to be rescinded.
            Input::Rescinded(_) => {}
            Input::Update(status) => self.update(now_ms, status),
            Input::Tick => self.tick(now_ms),
        }
        self.settle(now_ms);
    }

    /// The outputs appended since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// Mixes the time of the first call into the generator (once): a process started
    /// again with the same seed still draws other ids, and the same inputs at the same
    /// times still give the same outputs.
    fn time_rng(&mut self, now_ms: u64) {
        if !self.rng_timed {
            self.rng_timed = true;
            self.rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ now_ms.rotate_left(29));
        }
    }

    /// Adds or removes an HTTP callback subscription. The URL was checked by the API.
    fn subscribe(
        &mut self,
        now_ms: u64,
        callback_url: String,
        client_ip: String,
        subscribed: bool,
    ) -> Result<Reply, PlanError> {
        let known = self.subscribers.contains(&callback_url);
        if subscribed && !known {
            if self.subscribers.len() >= MAX_SUBSCRIBERS {
                return Err(PlanError::Invalid {
                    field: "callbackUrl".into(),
                    message: format!("there are already {MAX_SUBSCRIBERS} subscriptions; remove one first"),
                });
            }
            self.subscribers.insert(callback_url.clone());
            self.persist(StoreOp::PutSubscriber(callback_url.clone()));
        } else if !subscribed && known {
            self.subscribers.remove(&callback_url);
            self.persist(StoreOp::DeleteSubscriber(callback_url.clone()));
        }
        self.emit(ServiceEvent::Subscription { callback_url, client_ip, subscribed });
        Ok(Reply::Done { version: Timestamp(now_ms) })
    }

    fn persist(&mut self, op: StoreOp) {
        self.outbox.push(Output::Persist(op));
    }

    fn emit(&mut self, event: ServiceEvent) {
        self.outbox.push(Output::Event(event));
    }

    /// A version later than every one handed out before, and not before `now_ms`.
    fn next_version(&mut self, now_ms: u64) -> Timestamp {
        self.last_version_ms = now_ms.max(self.last_version_ms.saturating_add(1));
        Timestamp(self.last_version_ms)
    }

    /// A random UUID from the planner's generator.
    fn uuid(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut self.rng, &mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Re-plans the dirty apps and advances the deployments holding them, until nothing
    /// more changes (bounded: each pass either finishes a step or leaves nothing dirty),
    /// then tells the master whether offers are wanted.
    fn settle(&mut self, now_ms: u64) {
        // Unreachable instances turn inactive with time: count them as of now.
        let unreachable: Vec<TaskId> = self.unreachable.iter().cloned().collect();
        for task_id in unreachable {
            self.retally(now_ms, &task_id);
        }
        for _ in 0..10_000 {
            if self.dirty.is_empty() {
                break;
            }
            let dirty = std::mem::take(&mut self.dirty);
            for app in &dirty {
                self.plan_app(now_ms, app);
            }
            let deployments: BTreeSet<DeploymentId> = dirty.iter().filter_map(|a| self.locks.get(a)).cloned().collect();
            for id in deployments {
                self.advance(now_ms, &id);
            }
        }
        self.update_offer_interest(now_ms);
    }

    // ----- Read side, for the REST API -----

    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Apps in id order.
    pub fn apps(&self) -> impl Iterator<Item = &AppRecord> {
        self.apps.values()
    }

    pub fn app(&self, id: &AppId) -> Option<&AppRecord> {
        self.apps.get(id)
    }

    /// Versions of an app, oldest first.
    pub fn versions(&self, id: &AppId) -> impl Iterator<Item = (&Timestamp, &Arc<AppSpec>)> {
        self.versions.get(id).into_iter().flat_map(|v| v.iter())
    }

    pub fn version(&self, id: &AppId, version: Timestamp) -> Option<&Arc<AppSpec>> {
        self.versions.get(id)?.get(&version)
    }

    /// The HTTP callback URLs events are POSTed to, in order.
    pub fn subscribers(&self) -> impl Iterator<Item = &str> {
        self.subscribers.iter().map(String::as_str)
    }

    /// Explicit groups (those with dependencies or created through `/v2/groups`); the
    /// groups that only hold apps are implied by the apps' ids.
    pub fn groups(&self) -> impl Iterator<Item = &GroupRecord> {
        self.groups.values()
    }

    /// Every instance, in task id order.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    pub fn instance(&self, task_id: &TaskId) -> Option<&Instance> {
        self.instances.get(task_id)
    }

    /// The instances of one app.
    pub fn instances_of<'a>(&'a self, app: &AppId) -> impl Iterator<Item = &'a Instance> + 'a {
        self.by_app.get(app).into_iter().flat_map(|ids| ids.iter().filter_map(|id| self.instances.get(id)))
    }

    /// Deployments in progress, in id order.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    pub fn deployment(&self, id: &DeploymentId) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// The deployment holding an app, if any.
    pub fn deployment_of(&self, app: &AppId) -> Option<&Deployment> {
        self.locks.get(app).and_then(|id| self.deployments.get(id))
    }

    pub fn last_task_failure(&self, app: &AppId) -> Option<&TaskFailure> {
        self.task_failures.get(app)
    }

    /// Apps waiting for launches, in id order.
    pub fn queue(&self, now_ms: u64) -> Vec<QueueEntry> {
        self.pending
            .iter()
            .filter(|(_, p)| p.count > 0)
            .map(|(app, p)| {
                let (offers_processed, offers_unused) = self.offer_stats.get(app).copied().unwrap_or_default();
                QueueEntry {
                    app: app.clone(),
                    count: p.count,
                    delayed_until: self.delay_until(app, now_ms).map(Timestamp),
                    offers_processed,
                    offers_unused,
                    since: Timestamp(p.since_ms),
                }
            })
            .collect()
    }
}
