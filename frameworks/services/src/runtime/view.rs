//! The committed state the REST API's listings read without going through the owner task:
//! apps, their instances, their last task failures and which deployment holds each app,
//! as of the last commit.
//!
//! Why: every read used to run on the owner, in turn with the planner's batches, their
//! commits and every other read. One `GET /v2/apps?embed=apps.tasks` over 50,000 tasks
//! holds the owner for tens of milliseconds, and a `GET /v2/apps/{id}` behind it waited
//! that long. Now the owner publishes a [`CommittedView`] after each commit (before it
//! answers the batch, so a client reads its own writes), and readers render from the
//! latest one on their own threads while the owner goes on.
//!
//! A publication costs what the batch touched, not the whole state: the view is made of
//! `Arc`s, one per app, and [`ViewWriter::apply`] copies (on write) only the apps the
//! batch's `StoreOp`s name. The records are the store's, so the view shows exactly what a
//! restart would recover; the planner's simulation checks that store and planner agree.
//!
//! Listings share rather than copy: each app's entry keeps its tasks as last written
//! (until the app changes) and its definition as last written (until its record
//! changes), and a listing's body is a list of pieces (`render::Pieces`) that shares those
//! buffers, so `GET /v2/apps?embed=apps.tasks` writes only what changed since and the
//! counts. Two properties are tested: the view kept from the records equals a view made
//! afresh from the planner (step by step), and a listing in pieces is byte for byte what
//! serde writes (for each embed).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use agora_proto::model::TaskId;
use bytes::Bytes;
use tokio::sync::watch;

use crate::core::{Planner, StoreOp};
use crate::marathon::render::{AppReads, AppView, InstancesByApp, write_tasks};
use crate::model::{AppId, AppRecord, DeploymentId, Instance, TaskFailure};

/// What readers share: `None` while no owner runs here (stopping, or not the leader).
pub(crate) type Views = Arc<watch::Sender<Option<Arc<CommittedView>>>>;

/// The committed apps, instances, task failures and deployment locks, immutable and cheap
/// to share: readers hold an `Arc` of it for as long as they render.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommittedView {
    apps: Arc<BTreeMap<AppId, Arc<AppEntry>>>,
    /// Which deployment holds each app.
    locks: Arc<BTreeMap<AppId, DeploymentId>>,
    instance_count: usize,
}

/// One app's part of the view. An app that was deleted keeps an entry while instances of
/// it are still being killed (no record then).
#[derive(Debug, Default)]
struct AppEntry {
    record: Option<AppRecord>,
    instances: BTreeMap<TaskId, Instance>,
    failure: Option<TaskFailure>,
    /// The app's tasks as the listings write them, written by the first reader that needs
    /// them and shared by every later view holding this entry: a listing of 50,000 tasks
    /// copies the apps that did not change since instead of writing their tasks again.
    /// Any change to the entry drops it (see [`entry`] and [`edit`]).
    written_tasks: OnceLock<Bytes>,
    /// The app's definition as listings write it, kept until the record changes.
    written_definition: OnceLock<Bytes>,
}

impl Clone for AppEntry {
    /// A copy is about to change: it starts without written tasks (its definition, which
    /// only a new record changes, is shared).
    fn clone(&self) -> Self {
        Self {
            record: self.record.clone(),
            instances: self.instances.clone(),
            failure: self.failure.clone(),
            written_tasks: OnceLock::new(),
            written_definition: self.written_definition.clone(),
        }
    }
}

/// Entries are equal by their records; written tasks are only a cache of them.
impl PartialEq for AppEntry {
    fn eq(&self, other: &Self) -> bool {
        self.record == other.record && self.instances == other.instances && self.failure == other.failure
    }
}

impl AppEntry {
    fn is_empty(&self) -> bool {
        self.record.is_none() && self.instances.is_empty() && self.failure.is_none()
    }
}

impl CommittedView {
    /// The view of everything `planner` holds: right after recovery, what is committed.
    pub fn of(planner: &Planner) -> CommittedView {
        let mut apps: BTreeMap<AppId, AppEntry> = BTreeMap::new();
        for record in planner.apps() {
            let entry = apps.entry(record.spec.id.clone()).or_default();
            entry.record = Some(record.clone());
            entry.failure = planner.last_task_failure(&record.spec.id).cloned();
        }
        let mut instance_count = 0;
        for instance in planner.instances() {
            instance_count += 1;
            apps.entry(instance.app_id.clone())
                .or_default()
                .instances
                .insert(instance.task_id.clone(), instance.clone());
        }
        let mut locks = BTreeMap::new();
        for deployment in planner.deployments() {
            for app in deployment.affected_apps() {
                locks.insert(app.clone(), deployment.id.clone());
            }
        }
        CommittedView {
            apps: Arc::new(apps.into_iter().map(|(id, entry)| (id, Arc::new(entry))).collect()),
            locks: Arc::new(locks),
            instance_count,
        }
    }
}

impl AppReads for CommittedView {
    fn app(&self, id: &AppId) -> Option<&AppRecord> {
        self.apps.get(id)?.record.as_ref()
    }

    fn apps(&self) -> Box<dyn Iterator<Item = &AppRecord> + '_> {
        Box::new(self.apps.values().filter_map(|entry| entry.record.as_ref()))
    }

    fn instances_of(&self, id: &AppId) -> Box<dyn Iterator<Item = &Instance> + '_> {
        match self.apps.get(id) {
            Some(entry) => Box::new(entry.instances.values()),
            None => Box::new(std::iter::empty()),
        }
    }

    fn instances_by_app(&self) -> InstancesByApp<'_> {
        InstancesByApp::from_groups(
            self.apps.iter().map(|(id, entry)| (id, entry.instances.values().collect::<Vec<_>>())),
        )
    }

    fn instances(&self) -> Box<dyn Iterator<Item = &Instance> + '_> {
        Box::new(self.apps.values().flat_map(|entry| entry.instances.values()))
    }

    fn instance_count(&self) -> usize {
        self.instance_count
    }

    fn deployment_of(&self, id: &AppId) -> Option<&DeploymentId> {
        self.locks.get(id)
    }

    fn last_task_failure(&self, id: &AppId) -> Option<&TaskFailure> {
        self.apps.get(id)?.failure.as_ref()
    }

    fn written_tasks(&self, id: &AppId) -> Option<Bytes> {
        let entry = self.apps.get(id)?;
        let spec = &entry.record.as_ref()?.spec;
        let written = entry.written_tasks.get_or_init(|| {
            let mut out = Vec::with_capacity(entry.instances.len() * crate::http::TASK_BYTES);
            write_tasks(&mut out, entry.instances.values(), spec);
            Bytes::from(out)
        });
        // A shared handle on the same bytes, not a copy.
        Some(written.clone())
    }

    fn written_definition(&self, id: &AppId) -> Option<Bytes> {
        let entry = self.apps.get(id)?;
        let record = entry.record.as_ref()?;
        let written = entry.written_definition.get_or_init(|| {
            let mut out = serde_json::to_vec(&AppView::record(record)).unwrap_or_default();
            // Without its closing brace: the listing writes the extras after it.
            if out.last() == Some(&b'}') {
                out.pop();
            }
            Bytes::from(out)
        });
        Some(written.clone())
    }

    fn instances_kept_by_app(&self) -> bool {
        true
    }
}

/// Keeps the view up to date from each batch's committed records and publishes it. Owned
/// by the owner task.
#[derive(Debug)]
pub(crate) struct ViewWriter {
    view: Arc<CommittedView>,
    /// The app of each instance: a `DeleteInstance` names only the task. The owner's
    /// alone, never shared, so it is changed in place.
    task_apps: BTreeMap<TaskId, AppId>,
    /// The apps each deployment holds, to release them when it is deleted.
    deployments: BTreeMap<DeploymentId, Vec<AppId>>,
    views: Views,
}

impl ViewWriter {
    /// A writer starting from what `planner` holds (the recovered, committed state), which
    /// it publishes at once.
    pub fn new(planner: &Planner, views: Views) -> ViewWriter {
        let view = Arc::new(CommittedView::of(planner));
        let task_apps = planner.instances().map(|i| (i.task_id.clone(), i.app_id.clone())).collect();
        let deployments = planner.deployments().map(|d| (d.id.clone(), d.affected_apps().cloned().collect())).collect();
        views.send_replace(Some(view.clone()));
        ViewWriter { view, task_apps, deployments, views }
    }

    /// Applies a committed batch's records and publishes the result. Only the apps they
    /// name are copied, and only while a reader still holds the previous view.
    pub fn apply(&mut self, ops: &[StoreOp]) {
        if !ops.iter().any(shown) {
            return;
        }
        let view = Arc::make_mut(&mut self.view);
        for op in ops {
            match op {
                StoreOp::PutApp(record) => {
                    let entry = entry(&mut view.apps, &record.spec.id);
                    entry.record = Some(record.clone());
                    entry.written_definition.take();
                }
                StoreOp::DeleteApp(id) => {
                    edit(&mut view.apps, id, |entry| {
                        entry.record = None;
                        entry.written_definition.take();
                    });
                }
                StoreOp::PutInstance(instance) => {
                    let previous = self.task_apps.insert(instance.task_id.clone(), instance.app_id.clone());
                    if previous.is_none() {
                        view.instance_count += 1;
                    }
                    entry(&mut view.apps, &instance.app_id)
                        .instances
                        .insert(instance.task_id.clone(), instance.clone());
                }
                StoreOp::DeleteInstance(task_id) => {
                    if let Some(app) = self.task_apps.remove(task_id) {
                        view.instance_count = view.instance_count.saturating_sub(1);
                        edit(&mut view.apps, &app, |entry| {
                            entry.instances.remove(task_id);
                        });
                    }
                }
                StoreOp::PutTaskFailure(failure) => {
                    entry(&mut view.apps, &failure.app_id).failure = Some(failure.clone());
                }
                StoreOp::DeleteTaskFailure(id) => {
                    edit(&mut view.apps, id, |entry| entry.failure = None);
                }
                StoreOp::PutDeployment(deployment) => {
                    let apps: Vec<AppId> = deployment.affected_apps().cloned().collect();
                    let locks = Arc::make_mut(&mut view.locks);
                    for app in &apps {
                        locks.insert(app.clone(), deployment.id.clone());
                    }
                    self.deployments.insert(deployment.id.clone(), apps);
                }
                StoreOp::DeleteDeployment(id) => {
                    let apps = self.deployments.remove(id).unwrap_or_default();
                    let locks = Arc::make_mut(&mut view.locks);
                    // Another deployment may hold the app by now (a forced one).
                    for app in apps {
                        if locks.get(&app) == Some(id) {
                            locks.remove(&app);
                        }
                    }
                }
                StoreOp::FrameworkId(_)
                | StoreOp::PutVersion { .. }
                | StoreOp::DeleteVersion { .. }
                | StoreOp::PutGroup(_)
                | StoreOp::DeleteGroup(_)
                | StoreOp::NextServicePort(_)
                | StoreOp::PutSubscriber(_)
                | StoreOp::DeleteSubscriber(_) => {}
            }
        }
        self.views.send_replace(Some(self.view.clone()));
    }

    /// The view as last published.
    #[cfg(test)]
    pub fn view(&self) -> &Arc<CommittedView> {
        &self.view
    }
}

/// Whether a record is part of the view.
fn shown(op: &StoreOp) -> bool {
    !matches!(
        op,
        StoreOp::FrameworkId(_)
            | StoreOp::PutVersion { .. }
            | StoreOp::DeleteVersion { .. }
            | StoreOp::PutGroup(_)
            | StoreOp::DeleteGroup(_)
            | StoreOp::NextServicePort(_)
            | StoreOp::PutSubscriber(_)
            | StoreOp::DeleteSubscriber(_)
    )
}

/// The app's entry, made if needed, copied first if a reader still shares it, without
/// its written tasks (about to change).
fn entry<'a>(apps: &'a mut Arc<BTreeMap<AppId, Arc<AppEntry>>>, id: &AppId) -> &'a mut AppEntry {
    let entry = Arc::make_mut(Arc::make_mut(apps).entry(id.clone()).or_default());
    entry.written_tasks.take();
    entry
}

/// Changes an existing entry; drops it once it holds nothing.
fn edit(apps: &mut Arc<BTreeMap<AppId, Arc<AppEntry>>>, id: &AppId, change: impl FnOnce(&mut AppEntry)) {
    let apps = Arc::make_mut(apps);
    let Some(entry) = apps.get_mut(id) else { return };
    let entry = Arc::make_mut(entry);
    entry.written_tasks.take();
    change(entry);
    if entry.is_empty() {
        apps.remove(id);
    }
}

#[cfg(test)]
mod tests;
