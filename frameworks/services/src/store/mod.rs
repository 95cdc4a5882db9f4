//! The durable store of services' state: the framework id, apps, their versions, groups,
//! instances, deployments, task failures and counters.
//!
//! Two backends keep one contract: [`Store::load`] returns everything committed, and
//! [`Store::apply`] commits one batch of [`StoreOp`]s atomically or fails (and the owner
//! task then stops the process: a store it cannot write is a state it cannot keep).
//! - [`FileStore`]: an embedded redb database in `--work-dir` (ACID transactions, a
//!   copy-on-write B-tree, an fsync on every commit), as the master's registry.
//! - [`EtcdStore`]: keys under a prefix in etcd, every write fenced by the leader's term,
//!   so that a deposed leader cannot write (a batch larger than one etcd transaction stays
//!   atomic through a journal).
//!
//! Both are the SDK's [`kv`] tables, and see a batch as the same list of writes
//! ([`writes`]), one table per kind of record, each record JSON. Deleting an app deletes
//! its versions by prefix; in etcd the versions' keys are tracked so that the prefix
//! becomes a delete per key (one batch may also write a version).

use std::sync::Arc;

use agora_proto::etcd_client::EtcdError;
use agora_proto::model::FrameworkId;
use agora_sdk::kv::{self, KvError};
use serde::{Deserialize, Serialize};

use crate::core::{Recovered, StoreOp};
use crate::model::{AppId, AppSpec, Timestamp};

/// The embedded store: `services.redb`.
#[derive(Debug, Clone)]
pub struct FileStore(kv::FileTables);

impl FileStore {
    /// Opens the file, creating it and its tables when new. redb locks the file: a second
    /// process opening it gets an error.
    pub fn open(path: &std::path::Path) -> Result<FileStore, StoreError> {
        let names = Table::ALL.map(Table::name);
        Ok(FileStore(kv::FileTables::open(path, &names)?))
    }

    pub async fn load(&self) -> Result<Recovered, StoreError> {
        load(self.0.load().await?)
    }

    pub async fn apply(&self, batch: &[StoreOp]) -> Result<(), StoreError> {
        Ok(self.0.commit(to_kv(writes(batch)?)).await?)
    }
}

/// The store in etcd while a term leads.
#[derive(Debug)]
pub struct EtcdStore(kv::EtcdTables);

impl EtcdStore {
    /// A store under `root` (e.g. `/agora/services`), written while `term` holds.
    pub fn new(client: agora_proto::etcd_client::Etcd, root: &str, term: agora_proto::etcd_client::Term) -> EtcdStore {
        EtcdStore(kv::EtcdTables::new(client, root, term).tracking(&[Table::Versions.name()]))
    }

    pub async fn load(&mut self) -> Result<Recovered, StoreError> {
        load(self.0.load().await?)
    }

    pub async fn apply(&mut self, batch: &[StoreOp]) -> Result<(), StoreError> {
        Ok(self.0.commit(&to_kv(writes(batch)?)).await?)
    }
}

fn load(records: Vec<kv::Record>) -> Result<Recovered, StoreError> {
    let mut loader = Loader::default();
    for record in records {
        let table = Table::named(&record.table).ok_or_else(|| StoreError::Corrupt {
            table: record.table.clone(),
            key: record.key.clone(),
            reason: "an unknown table".into(),
        })?;
        loader.record(table, &record.key, &record.value)?;
    }
    Ok(loader.finish())
}

/// The writes in the SDK's terms.
pub(crate) fn to_kv(writes: Vec<Write>) -> Vec<kv::Write> {
    writes
        .into_iter()
        .map(|write| match write {
            Write::Put(table, key, value) => kv::Write::Put { table: table.name().into(), key, value },
            Write::Delete(table, key) => kv::Write::Delete { table: table.name().into(), key },
            Write::DeletePrefix(table, prefix) => kv::Write::DeletePrefix { table: table.name().into(), prefix },
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store storage failed: {0}")]
    Storage(String),
    #[error("the store holds a record that cannot be read ({table} {key}): {reason}")]
    Corrupt { table: String, key: String, reason: String },
    #[error("state in etcd: {0}")]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Kv(#[from] KvError),
}

impl StoreError {
    /// Whether the write failed because another process leads now.
    pub fn is_deposed(&self) -> bool {
        match self {
            StoreError::Etcd(error) => matches!(error, EtcdError::Deposed),
            StoreError::Kv(error) => error.is_deposed(),
            _ => false,
        }
    }
}

pub(crate) fn storage(error: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(error.to_string())
}

/// Where the state lives.
#[derive(Debug)]
pub enum Store {
    File(FileStore),
    Etcd(Box<EtcdStore>),
}

impl Store {
    /// Everything committed.
    pub async fn load(&mut self) -> Result<Recovered, StoreError> {
        match self {
            Store::File(store) => store.load().await,
            Store::Etcd(store) => store.load().await,
        }
    }

    /// Commits `batch`: all of it or, on an error, possibly none of it.
    pub async fn apply(&mut self, batch: &[StoreOp]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Store::File(store) => store.apply(batch).await,
            Store::Etcd(store) => store.apply(batch).await,
        }
    }
}

/// The kinds of records, one table (redb) or key prefix (etcd) each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Table {
    /// `id`: the framework id.
    Framework,
    /// `next_service_port`.
    Counters,
    /// App id → `AppRecord`.
    Apps,
    /// `<app id>@<version ms, 20 digits>` → [`VersionRecord`]: the `@` (never in an id)
    /// keeps `/shop`'s versions apart from `/shop/web`'s, and the padding sorts them by time.
    Versions,
    /// Group id → `GroupRecord`.
    Groups,
    /// Task id → `Instance`.
    Instances,
    /// Deployment id → `Deployment`.
    Deployments,
    /// App id → its last `TaskFailure`.
    TaskFailures,
    /// Callback URL → the URL: where events are POSTed.
    Subscribers,
}

impl Table {
    pub(crate) const ALL: [Table; 9] = [
        Table::Framework,
        Table::Counters,
        Table::Apps,
        Table::Versions,
        Table::Groups,
        Table::Instances,
        Table::Deployments,
        Table::TaskFailures,
        Table::Subscribers,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Table::Framework => "framework",
            Table::Counters => "counters",
            Table::Apps => "apps",
            Table::Versions => "versions",
            Table::Groups => "groups",
            Table::Instances => "instances",
            Table::Deployments => "deployments",
            Table::TaskFailures => "task_failures",
            Table::Subscribers => "subscribers",
        }
    }

    pub(crate) fn named(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| table.name() == name)
    }
}

const FRAMEWORK_ID_KEY: &str = "id";
const NEXT_SERVICE_PORT_KEY: &str = "next_service_port";

/// One stored version of an app.
#[derive(Debug, Serialize, Deserialize)]
struct VersionRecord {
    app: AppId,
    version: Timestamp,
    spec: Arc<AppSpec>,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Put(Table, String, Vec<u8>),
    Delete(Table, String),
    /// Every key of the table that starts with the prefix.
    DeletePrefix(Table, String),
}

fn version_key(app: &AppId, version: Timestamp) -> String {
    format!("{app}@{:020}", version.ms())
}

fn versions_of(app: &AppId) -> String {
    format!("{app}@")
}

/// The writes that carry out `batch`, in order (a later write to a key wins).
///
/// `DeleteApp` also forgets the app's versions and its last task failure: nothing shows
/// them once the app is gone, and a recreated app starts a history of its own.
pub(crate) fn writes(batch: &[StoreOp]) -> Result<Vec<Write>, StoreError> {
    let mut writes = Vec::with_capacity(batch.len());
    for op in batch {
        match op {
            StoreOp::FrameworkId(id) => writes.push(Write::Put(Table::Framework, FRAMEWORK_ID_KEY.into(), encode(id)?)),
            StoreOp::NextServicePort(port) => {
                writes.push(Write::Put(Table::Counters, NEXT_SERVICE_PORT_KEY.into(), encode(port)?));
            }
            StoreOp::PutApp(app) => writes.push(Write::Put(Table::Apps, app.spec.id.to_string(), encode(app)?)),
            StoreOp::DeleteApp(id) => {
                writes.push(Write::Delete(Table::Apps, id.to_string()));
                writes.push(Write::DeletePrefix(Table::Versions, versions_of(id)));
                writes.push(Write::Delete(Table::TaskFailures, id.to_string()));
            }
            StoreOp::PutVersion { app, version, spec } => {
                let record = VersionRecord { app: app.clone(), version: *version, spec: spec.clone() };
                writes.push(Write::Put(Table::Versions, version_key(app, *version), encode(&record)?));
            }
            StoreOp::DeleteVersion { app, version } => {
                writes.push(Write::Delete(Table::Versions, version_key(app, *version)));
            }
            StoreOp::PutGroup(group) => writes.push(Write::Put(Table::Groups, group.id.to_string(), encode(group)?)),
            StoreOp::DeleteGroup(id) => writes.push(Write::Delete(Table::Groups, id.to_string())),
            StoreOp::PutInstance(instance) => {
                writes.push(Write::Put(Table::Instances, instance.task_id.to_string(), encode(instance)?));
            }
            StoreOp::DeleteInstance(task_id) => writes.push(Write::Delete(Table::Instances, task_id.to_string())),
            StoreOp::PutDeployment(deployment) => {
                writes.push(Write::Put(Table::Deployments, deployment.id.to_string(), encode(deployment)?));
            }
            StoreOp::DeleteDeployment(id) => writes.push(Write::Delete(Table::Deployments, id.to_string())),
            StoreOp::DeleteTaskFailure(app) => writes.push(Write::Delete(Table::TaskFailures, app.to_string())),
            StoreOp::PutTaskFailure(failure) => {
                writes.push(Write::Put(Table::TaskFailures, failure.app_id.to_string(), encode(failure)?));
            }
            StoreOp::PutSubscriber(url) => writes.push(Write::Put(Table::Subscribers, url.clone(), encode(url)?)),
            StoreOp::DeleteSubscriber(url) => writes.push(Write::Delete(Table::Subscribers, url.clone())),
        }
    }
    Ok(writes)
}

/// Builds the recovered state from the stored records, read in key order per table.
#[derive(Debug, Default)]
pub(crate) struct Loader {
    recovered: Recovered,
}

impl Loader {
    pub(crate) fn record(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let name = table.name();
        let r = &mut self.recovered;
        match table {
            Table::Framework if key == FRAMEWORK_ID_KEY => {
                r.framework_id = Some(decode::<FrameworkId>(name, key, value)?);
            }
            Table::Counters if key == NEXT_SERVICE_PORT_KEY => {
                r.next_service_port = Some(decode(name, key, value)?);
            }
            Table::Framework | Table::Counters => {
                return Err(StoreError::Corrupt {
                    table: name.into(),
                    key: key.to_owned(),
                    reason: "an unknown key".into(),
                });
            }
            Table::Apps => r.apps.push(decode(name, key, value)?),
            Table::Versions => {
                let record: VersionRecord = decode(name, key, value)?;
                r.versions.push((record.app, record.version, record.spec));
            }
            Table::Groups => r.groups.push(decode(name, key, value)?),
            Table::Instances => r.instances.push(decode(name, key, value)?),
            Table::Deployments => r.deployments.push(decode(name, key, value)?),
            Table::TaskFailures => r.task_failures.push(decode(name, key, value)?),
            Table::Subscribers => r.subscribers.push(decode(name, key, value)?),
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Recovered {
        self.recovered
    }
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(storage)
}

fn decode<T: serde::de::DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: table.into(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
