//! Commands → one deployment: the desired specs are checked against the state (ids that
//! clash with groups, unknown dependencies, cycles, apps held by other deployments),
//! versioned, given service ports, recorded, and turned into steps in dependency order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agora_proto::model::TaskId;

use super::{Expected, MAX_DEPLOYMENTS, PlanError, Planner, Reply, ServiceEvent, StoreOp};
use crate::model::{
    ActionKind, AppId, AppRecord, AppSpec, Deployment, DeploymentAction, DeploymentId, DeploymentOrigin,
    DeploymentStep, GroupId, GroupRecord, MAX_INSTANCES, PathId, Timestamp,
};

/// What a change wants for one app. Short-lived (one per app of a change), so the size
/// of a spec inline does not matter.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Desired {
    Put {
        spec: AppSpec,
        /// For a rollback: the config version being restored, so that instances still
        /// running it are current.
        restore: Option<Timestamp>,
        /// Replace every instance even if the spec is unchanged (a restart).
        restart: bool,
    },
    Remove,
}

/// A change of the explicit groups: those under `under` are replaced by `records`.
#[derive(Clone, Debug)]
pub(super) struct GroupChange {
    pub under: GroupId,
    pub records: Vec<GroupRecord>,
}

/// What happens to one app in a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeKind {
    New,
    Restart,
    Scale,
    Stop,
}

/// A deployment about to be made.
pub(super) struct Request {
    pub desired: BTreeMap<AppId, Desired>,
    pub groups: Option<GroupChange>,
    pub origin: DeploymentOrigin,
    pub force: bool,
    /// Users' changes are checked; a rollback restores a state that was valid.
    pub validate: bool,
    /// Tasks killed as part of the change (`KillTasks` with `scale`), before the apps
    /// are re-planned, so that the scale does not pick other instances.
    pub kill_first: Vec<TaskId>,
}

/// Deepest chain of dependencies followed.
const MAX_DEPENDENCY_DEPTH: usize = 1_000;

impl Planner {
    pub(super) fn put_apps(
        &mut self,
        now_ms: u64,
        apps: Vec<AppSpec>,
        force: bool,
        expect: &BTreeMap<AppId, Expected>,
    ) -> Result<Reply, PlanError> {
        for (id, expected) in expect {
            let current = self.apps.get(id);
            match expected {
                Expected::Absent if current.is_some() || self.groups().any(|g| &g.id == id) => {
                    return Err(PlanError::Conflict {
                        message: format!("An app with id [{id}] already exists."),
                        deployments: Vec::new(),
                    });
                }
                Expected::Version(version) if current.map(|r| r.version) != Some(*version) => {
                    return Err(PlanError::Stale(id.clone()));
                }
                _ => {}
            }
        }
        let mut desired = BTreeMap::new();
        for spec in apps {
            let id = spec.id.clone();
            if desired.insert(id.clone(), Desired::Put { spec, restore: None, restart: false }).is_some() {
                return Err(invalid("id", format!("{id} appears more than once")));
            }
        }
        let request = Request {
            desired,
            groups: None,
            origin: DeploymentOrigin::User,
            force,
            validate: true,
            kill_first: Vec::new(),
        };
        let (id, version) = self.deploy(now_ms, request)?;
        Ok(Reply::Deployment { id, version })
    }

    pub(super) fn delete_app(&mut self, now_ms: u64, id: &AppId, force: bool) -> Result<Reply, PlanError> {
        if !self.apps.contains_key(id) {
            return Err(not_found_app(id));
        }
        let request = Request {
            desired: BTreeMap::from([(id.clone(), Desired::Remove)]),
            groups: None,
            origin: DeploymentOrigin::User,
            force,
            validate: true,
            kill_first: Vec::new(),
        };
        let (id, version) = self.deploy(now_ms, request)?;
        Ok(Reply::Deployment { id, version })
    }

    pub(super) fn restart_app(&mut self, now_ms: u64, id: &AppId, force: bool) -> Result<Reply, PlanError> {
        let record = self.apps.get(id).ok_or_else(|| not_found_app(id))?;
        let spec = (*record.spec).clone();
        let request = Request {
            desired: BTreeMap::from([(id.clone(), Desired::Put { spec, restore: None, restart: true })]),
            groups: None,
            origin: DeploymentOrigin::User,
            force,
            validate: true,
            kill_first: Vec::new(),
        };
        let (id, version) = self.deploy(now_ms, request)?;
        Ok(Reply::Deployment { id, version })
    }

    /// Kills tasks. Without `scale` they are replaced (no deployment); with it, their apps
    /// shrink by the number killed, in one deployment. Unknown ids are skipped, unless
    /// none is known.
    pub(super) fn kill_tasks(
        &mut self,
        now_ms: u64,
        tasks: &[TaskId],
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> Result<Reply, PlanError> {
        let known: Vec<TaskId> = tasks.iter().filter(|t| self.instances.contains_key(*t)).cloned().collect();
        if known.is_empty() {
            let names: Vec<&str> = tasks.iter().map(|t| t.as_str()).take(10).collect();
            return Err(PlanError::NotFound(format!("no such task: {}", names.join(", "))));
        }
        if !scale {
            for task_id in &known {
                self.kill(now_ms, task_id);
                if wipe {
                    self.forget(task_id);
                }
            }
            return Ok(Reply::Done { version: Timestamp(now_ms) });
        }
        let mut per_app: BTreeMap<AppId, u32> = BTreeMap::new();
        for task_id in &known {
            if let Some(instance) = self.instances.get(task_id) {
                *per_app.entry(instance.app_id.clone()).or_default() += 1;
            }
        }
        let mut desired = BTreeMap::new();
        for (app, killed) in per_app {
            if let Some(record) = self.apps.get(&app) {
                let mut spec = (*record.spec).clone();
                spec.instances = spec.instances.saturating_sub(killed);
                desired.insert(app, Desired::Put { spec, restore: None, restart: false });
            }
        }
        let request =
            Request { desired, groups: None, origin: DeploymentOrigin::User, force, validate: true, kill_first: known };
        let wiped = request.kill_first.clone();
        let (id, version) = self.deploy(now_ms, request)?;
        if wipe {
            for task_id in &wiped {
                self.forget(task_id);
            }
        }
        Ok(Reply::Deployment { id, version })
    }

    pub(super) fn put_group(
        &mut self,
        now_ms: u64,
        id: &GroupId,
        groups: Vec<GroupRecord>,
        apps: Vec<AppSpec>,
        force: bool,
        read: Option<&BTreeMap<AppId, Timestamp>>,
    ) -> Result<Reply, PlanError> {
        if let Some(read) = read {
            let now: BTreeMap<&AppId, Timestamp> =
                self.apps.iter().filter(|(app, _)| id.contains(app)).map(|(app, r)| (app, r.version)).collect();
            let changed = now
                .iter()
                .find(|(app, version)| read.get(**app) != Some(*version))
                .map(|(app, _)| (*app).clone())
                .or_else(|| read.keys().find(|app| !now.contains_key(app)).cloned());
            if let Some(app) = changed {
                return Err(PlanError::Stale(app));
            }
        }
        let mut desired = BTreeMap::new();
        for spec in apps {
            if !id.contains(&spec.id) || &spec.id == id {
                return Err(invalid("apps", format!("{} is not inside group {id}", spec.id)));
            }
            let app = spec.id.clone();
            if desired.insert(app.clone(), Desired::Put { spec, restore: None, restart: false }).is_some() {
                return Err(invalid("apps", format!("{app} appears more than once")));
            }
        }
        for group in &groups {
            if !id.contains(&group.id) {
                return Err(invalid("groups", format!("{} is not inside group {id}", group.id)));
            }
        }
        for app in self.apps.keys().filter(|a| id.contains(a)) {
            desired.entry(app.clone()).or_insert(Desired::Remove);
        }
        let request = Request {
            desired,
            groups: Some(GroupChange { under: id.clone(), records: groups }),
            origin: DeploymentOrigin::User,
            force,
            validate: true,
            kill_first: Vec::new(),
        };
        let (deployment, version) = self.deploy(now_ms, request)?;
        self.emit(ServiceEvent::GroupChangeSuccess { group: id.clone(), version });
        Ok(Reply::Deployment { id: deployment, version })
    }

    pub(super) fn delete_group(&mut self, now_ms: u64, id: &GroupId, force: bool) -> Result<Reply, PlanError> {
        let apps: Vec<AppId> = self.apps.keys().filter(|a| id.contains(a)).cloned().collect();
        let has_groups = self.groups.keys().any(|g| id.contains(g));
        if apps.is_empty() && !has_groups && !id.is_root() {
            return Err(PlanError::NotFound(format!("Group '{id}' does not exist")));
        }
        let request = Request {
            desired: apps.into_iter().map(|a| (a, Desired::Remove)).collect(),
            groups: Some(GroupChange { under: id.clone(), records: Vec::new() }),
            origin: DeploymentOrigin::User,
            force,
            validate: true,
            kill_first: Vec::new(),
        };
        let (deployment, version) = self.deploy(now_ms, request)?;
        self.emit(ServiceEvent::GroupChangeSuccess { group: id.clone(), version });
        Ok(Reply::Deployment { id: deployment, version })
    }

    pub(super) fn cancel_deployment(
        &mut self,
        now_ms: u64,
        id: &DeploymentId,
        force: bool,
    ) -> Result<Reply, PlanError> {
        if !self.deployments.contains_key(id) {
            return Err(PlanError::NotFound(format!("DeploymentPlan {id} does not exist")));
        }
        if force {
            if let Some(deployment) = self.end_deployment(id) {
                self.emit(ServiceEvent::DeploymentFailed {
                    deployment,
                    reason: "cancelled by the user without rollback (force)".into(),
                    rollback: None,
                });
            }
            return Ok(Reply::Done { version: Timestamp(now_ms) });
        }
        let (rollback, version) = self.roll_back(now_ms, id, false, "cancelled by the user")?;
        Ok(Reply::Deployment { id: rollback, version })
    }

    pub(super) fn reset_delay(&mut self, now_ms: u64, id: &AppId) -> Result<Reply, PlanError> {
        if !self.apps.contains_key(id) {
            return Err(not_found_app(id));
        }
        self.reset_backoff(id);
        self.dirty.insert(id.clone());
        Ok(Reply::Done { version: Timestamp(now_ms) })
    }

    /// Checks a change, records it and starts its deployment. Nothing is changed or
    /// appended unless it succeeds.
    pub(super) fn deploy(&mut self, now_ms: u64, request: Request) -> Result<(DeploymentId, Timestamp), PlanError> {
        let Request { mut desired, groups, origin, force, validate, kill_first } = request;
        for (id, want) in &desired {
            if let Desired::Put { spec, .. } = want {
                if &spec.id != id {
                    return Err(invalid("id", format!("{} is filed under {id}", spec.id)));
                }
                if spec.instances > MAX_INSTANCES {
                    return Err(invalid("instances", format!("{} is more than {MAX_INSTANCES}", spec.instances)));
                }
            }
        }

        // ----- The state after the change -----
        let mut final_apps: BTreeMap<AppId, Arc<AppSpec>> =
            self.apps.iter().map(|(id, r)| (id.clone(), Arc::clone(&r.spec))).collect();
        let mut final_groups = self.groups.clone();
        if let Some(change) = &groups {
            final_groups.retain(|id, _| !change.under.contains(id));
            for record in &change.records {
                final_groups.insert(record.id.clone(), record.clone());
            }
        }

        // Service ports first: a spec that only restates the ports it was given compares
        // equal to the current one.
        let mut next_port = self.next_service_port;
        let mut used_ports: BTreeSet<u16> = self
            .apps
            .iter()
            .filter(|(id, _)| !desired.contains_key(*id))
            .flat_map(|(_, r)| r.spec.port_definitions.iter().map(|d| d.port))
            .filter(|p| *p != 0)
            .collect();
        // Ports the change names explicitly are taken before any is handed out.
        for want in desired.values() {
            if let Desired::Put { spec, .. } = want {
                used_ports.extend(spec.port_definitions.iter().map(|d| d.port).filter(|p| *p != 0));
            }
        }
        for (id, want) in desired.iter_mut() {
            if let Desired::Put { spec, .. } = want {
                let current = self.apps.get(id).map(|r| Arc::clone(&r.spec));
                self.assign_service_ports(spec, current.as_deref(), &mut used_ports, &mut next_port)?;
            }
        }
        for (id, want) in &desired {
            match want {
                Desired::Put { spec, .. } => final_apps.insert(id.clone(), Arc::new(spec.clone())),
                Desired::Remove => final_apps.remove(id),
            };
        }

        // ----- What changes -----
        let mut changes: BTreeMap<AppId, ChangeKind> = BTreeMap::new();
        for (id, want) in &desired {
            let current = self.apps.get(id);
            let kind = match (want, current) {
                (Desired::Remove, Some(_)) => Some(ChangeKind::Stop),
                (Desired::Remove, None) => None,
                (Desired::Put { .. }, None) => Some(ChangeKind::New),
                (Desired::Put { spec, restore, restart }, Some(record)) => {
                    if *restart
                        || record.spec.needs_restart_for(spec)
                        || restore.is_some_and(|r| r != record.last_config_change_at)
                    {
                        Some(ChangeKind::Restart)
                    } else if record.spec.instances != spec.instances {
                        Some(ChangeKind::Scale)
                    } else {
                        None
                    }
                }
            };
            if let Some(kind) = kind {
                changes.insert(id.clone(), kind);
            }
        }

        // ----- Checks against the state -----
        let changed_puts: Vec<AppId> =
            changes.iter().filter(|(_, k)| **k != ChangeKind::Stop).map(|(id, _)| id.clone()).collect();
        if validate {
            for id in &changed_puts {
                check_id_is_free(id, &final_apps, &final_groups)?;
            }
        }
        let levels = dependency_levels(&final_apps, &final_groups, &changed_puts, validate)?;
        let mut holders: BTreeSet<DeploymentId> = BTreeSet::new();
        for id in changes.keys() {
            if let Some(holder) = self.locks.get(id) {
                holders.insert(holder.clone());
            }
        }
        if !holders.is_empty() && !force {
            let apps: Vec<String> =
                changes.keys().filter(|a| self.locks.contains_key(*a)).map(|a| a.to_string()).collect();
            return Err(PlanError::Conflict {
                message: format!(
                    "App is locked by one or more deployments. Override with the option '?force=true'. \
                     Locked apps: {}",
                    apps.join(", ")
                ),
                deployments: holders.into_iter().collect(),
            });
        }
        if self.deployments.len() - holders.len() >= MAX_DEPLOYMENTS && !changes.is_empty() {
            return Err(PlanError::Conflict {
                message: format!("{MAX_DEPLOYMENTS} deployments are in progress; wait for some to finish"),
                deployments: Vec::new(),
            });
        }

        // ----- From here on, the change happens -----
        let id = DeploymentId(self.uuid().to_string());
        for holder in &holders {
            if let Some(deployment) = self.end_deployment(holder) {
                self.emit(ServiceEvent::DeploymentFailed {
                    deployment,
                    reason: format!("superseded by deployment {id} (force)"),
                    rollback: None,
                });
            }
        }
        let version = self.next_version(now_ms);
        if next_port != self.next_service_port {
            self.next_service_port = next_port;
            self.persist(StoreOp::NextServicePort(next_port));
        }
        let mut original = BTreeMap::new();
        let mut original_versions = BTreeMap::new();
        let mut target = BTreeMap::new();
        for (app, kind) in &changes {
            let current = self.apps.get(app).cloned();
            original.insert(app.clone(), current.as_ref().map(|r| Arc::clone(&r.spec)));
            if let Some(record) = &current {
                original_versions.insert(app.clone(), record.last_config_change_at);
            }
            let Some(Desired::Put { spec, restore, .. }) = desired.get(app) else {
                target.insert(app.clone(), None);
                continue;
            };
            let spec = Arc::new(spec.clone());
            target.insert(app.clone(), Some(Arc::clone(&spec)));
            let record = match (kind, current) {
                (ChangeKind::Scale, Some(current)) => AppRecord { spec, version, last_scaling_at: version, ..current },
                _ => {
                    let config = restore.unwrap_or(version);
                    AppRecord { spec, version, last_config_change_at: config, last_scaling_at: version }
                }
            };
            self.record_app(now_ms, record);
            if matches!(kind, ChangeKind::New | ChangeKind::Restart) {
                self.reset_backoff(app);
            }
        }
        if let Some(change) = groups {
            let gone: Vec<GroupId> = self.groups.keys().filter(|g| change.under.contains(g)).cloned().collect();
            for group in gone {
                if !change.records.iter().any(|r| r.id == group) {
                    self.groups.remove(&group);
                    self.persist(StoreOp::DeleteGroup(group));
                }
            }
            for mut record in change.records {
                record.version = version;
                self.groups.insert(record.id.clone(), record.clone());
                self.persist(StoreOp::PutGroup(record));
            }
        }

        let steps = steps(&changes, &levels);
        // The timeouts of the specs asked for decide (a new version that sets a short one is
        // rolled back after it, whatever the version it replaces said); an app being removed
        // counts with its current spec.
        let timeout_ms = target
            .iter()
            .filter_map(|(app, spec)| spec.as_ref().or_else(|| original.get(app).and_then(Option::as_ref)))
            .map(|s| s.deployment_timeout_ms.unwrap_or(self.config.default_deployment_timeout_ms))
            .max()
            .unwrap_or(self.config.default_deployment_timeout_ms);
        let deployment = Deployment {
            id: id.clone(),
            version,
            origin,
            steps,
            current_step: 0,
            original,
            target,
            original_versions,
            started_at: Timestamp(now_ms),
            deadline: Timestamp(now_ms.saturating_add(timeout_ms)),
        };
        if deployment.steps.is_empty() {
            // Nothing to do: it is over as soon as it starts.
            self.emit(ServiceEvent::DeploymentInfo { deployment: deployment.clone() });
            self.emit(ServiceEvent::DeploymentSuccess { deployment });
        } else {
            for app in deployment.affected_apps() {
                self.locks.insert(app.clone(), id.clone());
                self.dirty.insert(app.clone());
            }
            self.persist(StoreOp::PutDeployment(deployment.clone()));
            self.emit(ServiceEvent::DeploymentInfo { deployment: deployment.clone() });
            self.deployments.insert(id.clone(), deployment);
        }
        for task_id in &kill_first {
            self.kill(now_ms, task_id);
        }
        Ok((id, version))
    }

    /// Records an app's new state and version, forgetting the oldest versions beyond the
    /// bound.
    fn record_app(&mut self, now_ms: u64, record: AppRecord) {
        let app = record.spec.id.clone();
        let versions = self.versions.entry(app.clone()).or_default();
        versions.insert(record.version, Arc::clone(&record.spec));
        let mut dropped = Vec::new();
        while versions.len() > self.config.max_versions.max(1) {
            match versions.pop_first() {
                Some((version, _)) => dropped.push(version),
                None => break,
            }
        }
        self.persist(StoreOp::PutApp(record.clone()));
        self.persist(StoreOp::PutVersion { app: app.clone(), version: record.version, spec: Arc::clone(&record.spec) });
        for version in dropped {
            self.persist(StoreOp::DeleteVersion { app: app.clone(), version });
        }
        self.apps.insert(app.clone(), record);
        // Which instances are current, and the specs they are judged by, may have changed.
        self.retally_app(now_ms, &app);
    }

    /// Gives port definitions with port 0 a service port: the one the app had at that
    /// place, else the next free one of the range (unique across apps).
    fn assign_service_ports(
        &self,
        spec: &mut AppSpec,
        current: Option<&AppSpec>,
        used: &mut BTreeSet<u16>,
        next: &mut u16,
    ) -> Result<(), PlanError> {
        let (low, high) = self.config.service_ports;
        for (i, definition) in spec.port_definitions.iter_mut().enumerate() {
            if definition.port != 0 {
                continue;
            }
            let previous = current.and_then(|c| c.port_definitions.get(i)).map(|d| d.port).filter(|p| *p != 0);
            if let Some(port) = previous.filter(|p| !used.contains(p)) {
                definition.port = port;
                used.insert(port);
                continue;
            }
            let size = u32::from(high.saturating_sub(low)) + 1;
            let mut found = None;
            for offset in 0..size {
                let start = if (low..=high).contains(next) { *next } else { low };
                let candidate = u32::from(start) + offset;
                let candidate = if candidate > u32::from(high) { candidate - size } else { candidate };
                let candidate = candidate as u16;
                if !used.contains(&candidate) {
                    found = Some(candidate);
                    break;
                }
            }
            let port =
                found.ok_or_else(|| invalid("portDefinitions", format!("no service port is free in {low}-{high}")))?;
            definition.port = port;
            used.insert(port);
            *next = if port >= high { low } else { port + 1 };
        }
        Ok(())
    }
}

/// Steps: stops first, then the new apps' starts, then scales and restarts by dependency
/// level (an app's dependencies in earlier steps). Empty steps are left out.
fn steps(changes: &BTreeMap<AppId, ChangeKind>, levels: &BTreeMap<AppId, usize>) -> Vec<DeploymentStep> {
    let action = |kind, app: &AppId| DeploymentAction { kind, app: app.clone() };
    let mut steps = Vec::new();
    let stops: Vec<DeploymentAction> = changes
        .iter()
        .filter(|(_, k)| **k == ChangeKind::Stop)
        .map(|(a, _)| action(ActionKind::StopApplication, a))
        .collect();
    let starts: Vec<DeploymentAction> = changes
        .iter()
        .filter(|(_, k)| **k == ChangeKind::New)
        .map(|(a, _)| action(ActionKind::StartApplication, a))
        .collect();
    let mut by_level: BTreeMap<usize, Vec<DeploymentAction>> = BTreeMap::new();
    for (app, kind) in changes {
        let kind = match kind {
            ChangeKind::Stop => continue,
            ChangeKind::New | ChangeKind::Scale => ActionKind::ScaleApplication,
            ChangeKind::Restart => ActionKind::RestartApplication,
        };
        by_level.entry(levels.get(app).copied().unwrap_or(0)).or_default().push(action(kind, app));
    }
    for actions in [stops, starts].into_iter().chain(by_level.into_values()) {
        if !actions.is_empty() {
            steps.push(DeploymentStep { actions });
        }
    }
    steps
}

/// An app's id must not be a group's (hold other apps, or be an explicit group) nor lie
/// inside another app.
fn check_id_is_free(
    id: &AppId,
    apps: &BTreeMap<AppId, Arc<AppSpec>>,
    groups: &BTreeMap<GroupId, GroupRecord>,
) -> Result<(), PlanError> {
    if groups.contains_key(id) {
        return Err(invalid("id", format!("{id} is a group")));
    }
    if let Some(inner) = apps_under(apps, id).find(|a| *a != id) {
        return Err(invalid("id", format!("{id} is a group: it holds the app {inner}")));
    }
    let mut ancestor = id.parent();
    while !ancestor.is_root() {
        if apps.contains_key(&ancestor) {
            return Err(invalid("id", format!("{id} would be inside the app {ancestor}")));
        }
        ancestor = ancestor.parent();
    }
    Ok(())
}

/// The apps `path` names: the app itself, or every app in the group.
fn apps_under<'a>(apps: &'a BTreeMap<AppId, Arc<AppSpec>>, path: &'a PathId) -> impl Iterator<Item = &'a AppId> + 'a {
    apps.range(path.clone()..)
        .map(|(id, _)| id)
        .take_while(move |id| path.is_root() || id.as_str().starts_with(path.as_str()))
        .filter(move |id| path.contains(id))
}

/// Every dependency of an app: its own and those of the explicit groups it is in.
fn dependencies_of<'a>(
    spec: &'a AppSpec,
    groups: &'a BTreeMap<GroupId, GroupRecord>,
) -> impl Iterator<Item = &'a PathId> + 'a {
    let mut ancestors = Vec::new();
    let mut group = spec.id.parent();
    loop {
        ancestors.push(group.clone());
        if group.is_root() {
            break;
        }
        group = group.parent();
    }
    let inherited: Vec<&'a PathId> =
        ancestors.iter().filter_map(|g| groups.get(g)).flat_map(|g| g.dependencies.iter()).collect();
    spec.dependencies.iter().chain(inherited)
}

/// The dependency level of each app in `roots` (0: depends on nothing; else one more than
/// its deepest dependency), over the whole state after the change. With `validate`, an
/// unknown dependency of a root is refused; cycles always are.
fn dependency_levels(
    apps: &BTreeMap<AppId, Arc<AppSpec>>,
    groups: &BTreeMap<GroupId, GroupRecord>,
    roots: &[AppId],
    validate: bool,
) -> Result<BTreeMap<AppId, usize>, PlanError> {
    struct Walk<'a> {
        apps: &'a BTreeMap<AppId, Arc<AppSpec>>,
        groups: &'a BTreeMap<GroupId, GroupRecord>,
        levels: BTreeMap<AppId, usize>,
        path: Vec<AppId>,
    }
    impl Walk<'_> {
        fn level(&mut self, app: &AppId) -> Result<usize, PlanError> {
            if let Some(level) = self.levels.get(app) {
                return Ok(*level);
            }
            if let Some(at) = self.path.iter().position(|a| a == app) {
                let cycle: Vec<String> = self.path[at..].iter().chain([app]).map(|a| a.to_string()).collect();
                return Err(invalid("dependencies", format!("dependency cycle: {}", cycle.join(" → "))));
            }
            if self.path.len() >= MAX_DEPENDENCY_DEPTH {
                return Err(invalid("dependencies", format!("chains of more than {MAX_DEPENDENCY_DEPTH} apps")));
            }
            let Some(spec) = self.apps.get(app).cloned() else { return Ok(0) };
            self.path.push(app.clone());
            let mut level = 0;
            let deps: Vec<PathId> = dependencies_of(&spec, self.groups).cloned().collect();
            for dep in deps {
                // A dependency on a group the app is inside would have it wait for itself.
                if dep.contains(app) {
                    continue;
                }
                let targets: Vec<AppId> = apps_under(self.apps, &dep).cloned().collect();
                for target in targets {
                    level = level.max(self.level(&target)? + 1);
                }
            }
            self.path.pop();
            self.levels.insert(app.clone(), level);
            Ok(level)
        }
    }
    if validate {
        for root in roots {
            let Some(spec) = apps.get(root) else { continue };
            for dep in &spec.dependencies {
                if apps_under(apps, dep).next().is_none() && !groups.contains_key(dep) {
                    return Err(invalid("dependencies", format!("{root} depends on {dep}, which does not exist")));
                }
            }
        }
    }
    let mut walk = Walk { apps, groups, levels: BTreeMap::new(), path: Vec::new() };
    for root in roots {
        walk.level(root)?;
    }
    Ok(walk.levels)
}

fn invalid(field: &str, message: String) -> PlanError {
    PlanError::Invalid { field: field.into(), message }
}

fn not_found_app(id: &AppId) -> PlanError {
    PlanError::NotFound(format!("App '{id}' does not exist"))
}
