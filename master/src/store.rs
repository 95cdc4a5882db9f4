//! The master's durable registry: by default in an embedded, crash-safe database file
//! (redb: ACID transactions, a copy-on-write B-tree, an fsync on every commit), with
//! several masters in etcd (`Store::Etcd`, see `EtcdStore`). Both keep the same contract:
//! `load` returns everything committed, `apply` commits one delivery round's changes or
//! fails, and the owner task stops the master when it fails.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use agora_proto::etcd_client::{Etcd, Term};
use agora_proto::model::{AgentId, FrameworkId, FrameworkInfo};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::core::{DurableAgent, MAX_GONE_AGENT_IDS, MAX_REMOVED_FRAMEWORK_IDS, Registry, RegistryOp};

const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
/// Removed framework ids with the sequence number of their removal, so that the oldest
/// can be forgotten first once there are too many.
const REMOVED_FRAMEWORKS: TableDefinition<&str, u64> = TableDefinition::new("removed_frameworks");
/// Gone agent ids with the sequence number of their removal, likewise.
const GONE_AGENTS: TableDefinition<&str, u64> = TableDefinition::new("gone_agents");
/// Single records, by name: `role_policy` (weights, quota, dynamic reservations) and
/// `maintenance` (the schedule and the machines that are down).
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const ROLE_POLICY: &str = "role_policy";
/// The maintenance schedule and the machines that are down.
const MAINTENANCE: &str = "maintenance";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("registry in etcd: {0}")]
    Etcd(#[from] agora_proto::etcd_client::EtcdError),
    #[error("cannot open the registry at {path}: {source}")]
    Open { path: String, source: redb::DatabaseError },
    #[error("registry storage failed: {0}")]
    Storage(String),
    #[error("the registry holds a record that cannot be read ({table} {key}): {reason}")]
    Corrupt { table: &'static str, key: String, reason: String },
}

fn storage(error: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(error.to_string())
}

/// Where the registry lives.
#[derive(Debug)]
pub enum Store {
    Redb(RedbStore),
    Etcd(Box<EtcdStore>),
}

impl Store {
    /// Opens the registry file, creating it (and its tables) when new.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        RedbStore::open(path).map(Store::Redb)
    }

    /// Everything the registry holds.
    pub fn load(&mut self) -> Result<Registry, StoreError> {
        match self {
            Store::Redb(store) => store.load(),
            Store::Etcd(store) => store.load(),
        }
    }

    /// Commits `ops`: all of them or, on an error, possibly none.
    pub fn apply(&mut self, ops: &[RegistryOp]) -> Result<(), StoreError> {
        match self {
            Store::Redb(store) => store.apply(ops),
            Store::Etcd(store) => store.apply(ops),
        }
    }
}

#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens the registry file, creating it (and its tables) when new.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db =
            Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(AGENTS).map_err(storage)?;
        txn.open_table(FRAMEWORKS).map_err(storage)?;
        txn.open_table(REMOVED_FRAMEWORKS).map_err(storage)?;
        txn.open_table(GONE_AGENTS).map_err(storage)?;
        txn.open_table(SETTINGS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(RedbStore { db })
    }

    /// Everything the registry holds.
    pub fn load(&self) -> Result<Registry, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let mut registry = Registry::default();
        for entry in txn.open_table(AGENTS).map_err(storage)?.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let agent: DurableAgent = decode("agents", key.value(), value.value())?;
            registry.agents.insert(AgentId::new(key.value()), agent);
        }
        for entry in txn.open_table(FRAMEWORKS).map_err(storage)?.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let info: FrameworkInfo = decode("frameworks", key.value(), value.value())?;
            registry.frameworks.insert(FrameworkId::new(key.value()), info);
        }
        registry.removed_frameworks = oldest_first(&txn.open_table(REMOVED_FRAMEWORKS).map_err(storage)?)?;
        registry.gone_agents = oldest_first(&txn.open_table(GONE_AGENTS).map_err(storage)?)?;
        if let Some(policy) = txn.open_table(SETTINGS).map_err(storage)?.get(ROLE_POLICY).map_err(storage)? {
            registry.role_policy = decode("settings", ROLE_POLICY, policy.value())?;
        }
        if let Some(maintenance) = txn.open_table(SETTINGS).map_err(storage)?.get(MAINTENANCE).map_err(storage)? {
            registry.maintenance = decode("settings", MAINTENANCE, maintenance.value())?;
        }
        Ok(registry)
    }

    /// Commits `ops` in one durable transaction.
    pub fn apply(&self, ops: &[RegistryOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut agents = txn.open_table(AGENTS).map_err(storage)?;
            let mut frameworks = txn.open_table(FRAMEWORKS).map_err(storage)?;
            let mut removed = txn.open_table(REMOVED_FRAMEWORKS).map_err(storage)?;
            let mut gone = txn.open_table(GONE_AGENTS).map_err(storage)?;
            let mut settings = txn.open_table(SETTINGS).map_err(storage)?;
            for op in ops {
                match op {
                    RegistryOp::PutAgent { agent_id, agent } => {
                        agents.insert(agent_id.as_str(), encode(agent)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::RemoveAgent { agent_id } => {
                        agents.remove(agent_id.as_str()).map_err(storage)?;
                        append(&mut gone, agent_id.as_str())?;
                    }
                    RegistryOp::PutRolePolicy { policy } => {
                        settings.insert(ROLE_POLICY, encode(policy)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::PutMaintenance { maintenance } => {
                        settings.insert(MAINTENANCE, encode(maintenance)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::PutFramework { framework_id, info } => {
                        frameworks.insert(framework_id.as_str(), encode(info)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::RemoveFramework { framework_id } => {
                        frameworks.remove(framework_id.as_str()).map_err(storage)?;
                        append(&mut removed, framework_id.as_str())?;
                    }
                }
            }
            forget_oldest(&mut removed, MAX_REMOVED_FRAMEWORK_IDS)?;
            forget_oldest(&mut gone, MAX_GONE_AGENT_IDS)?;
        }
        txn.commit().map_err(storage)
    }
}

/// Adds `key` to a table of ids kept in the order they were added (the value is the
/// sequence number), unless it is there already.
fn append(table: &mut redb::Table<&str, u64>, key: &str) -> Result<(), StoreError> {
    if table.get(key).map_err(storage)?.is_some() {
        return Ok(());
    }
    let last = table.iter().map_err(storage)?.filter_map(Result::ok).map(|(_, v)| v.value()).max();
    table.insert(key, last.map_or(0, |n| n + 1)).map_err(storage)?;
    Ok(())
}

/// The ids of such a table, oldest first.
fn oldest_first<T: From<String>>(table: &impl ReadableTable<&'static str, u64>) -> Result<Vec<T>, StoreError> {
    let mut all = Vec::new();
    for entry in table.iter().map_err(storage)? {
        let (key, value) = entry.map_err(storage)?;
        all.push((value.value(), key.value().to_owned()));
    }
    all.sort();
    Ok(all.into_iter().map(|(_, id)| T::from(id)).collect())
}

/// Keeps at most `max` ids, as the core does, forgetting the oldest.
fn forget_oldest(table: &mut redb::Table<&str, u64>, max: usize) -> Result<(), StoreError> {
    let len = table.len().map_err(storage)? as usize;
    if len <= max {
        return Ok(());
    }
    let oldest: Vec<String> = oldest_first(table)?;
    for key in oldest.iter().take(len - max) {
        table.remove(key.as_str()).map_err(storage)?;
    }
    Ok(())
}

/// Writes per etcd transaction: etcd refuses transactions of more than `--max-txn-ops`
/// operations (128 by default). A round with more changes is written as several fenced
/// transactions; none of the round's outputs leaves the master before all of them
/// succeeded, so a crash in between leaves changes no one was told of, as a crash right
/// after a single commit does.
const ETCD_TXN_OPS: usize = 128;
/// Longest one registry read or write on etcd may take; past it the master stops rather
/// than wait on an etcd it cannot reach while its leadership may be expiring.
const ETCD_TIMEOUT: Duration = Duration::from_secs(10);

/// The registry in etcd, one key per record under `<root>/registry/`: `agents/<id>` and
/// `frameworks/<id>` hold JSON, `removed_frameworks/<id>` and `gone_agents/<id>` hold the
/// sequence number of the removal (oldest forgotten first). Every write is fenced by the
/// leader's [`Term`], so a deposed leader cannot write.
///
/// The store keeps its own small tokio runtime: the owner task calls it synchronously
/// (as it does redb, whose commit blocks on fsync), and blocking on a future of the
/// owner's own runtime could deadlock a single-threaded one.
#[derive(Debug)]
pub struct EtcdStore {
    runtime: Option<tokio::runtime::Runtime>,
    client: Etcd,
    term: Term,
    prefix: String,
    /// The removed framework and gone agent ids, oldest first, as committed: the store
    /// is the only writer while its term holds, so it needs not read them back.
    removed: Ids,
    gone: Ids,
}

#[derive(Debug, Default, Clone)]
struct Ids {
    order: VecDeque<String>,
    next_seq: u64,
}

impl Ids {
    fn from_loaded(mut loaded: Vec<(u64, String)>) -> Ids {
        loaded.sort();
        let next_seq = loaded.last().map_or(0, |(seq, _)| seq + 1);
        Ids { order: loaded.into_iter().map(|(_, id)| id).collect(), next_seq }
    }

    /// Adds `id` unless present, then forgets the oldest beyond `max`; records the writes.
    fn add(
        &mut self,
        id: &str,
        max: usize,
        table: &str,
        store: &EtcdStore,
        writes: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) {
        if !self.order.iter().any(|known| known == id) {
            writes.insert(store.key(table, id), Some(self.next_seq.to_string().into_bytes()));
            self.order.push_back(id.to_owned());
            self.next_seq += 1;
        }
        while self.order.len() > max {
            if let Some(oldest) = self.order.pop_front() {
                writes.insert(store.key(table, &oldest), None);
            }
        }
    }
}

impl EtcdStore {
    /// A store writing under `root` (e.g. `/agora`) while `term` leads.
    pub fn open(endpoints: &[String], root: &str, term: Term) -> Result<EtcdStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agora-etcd")
            .enable_all()
            .build()
            .map_err(storage)?;
        let client = {
            let _in_runtime = runtime.enter();
            Etcd::connect(endpoints)?
        };
        let prefix = format!("{}/registry/", root.trim_end_matches('/'));
        Ok(EtcdStore { runtime: Some(runtime), client, term, prefix, removed: Ids::default(), gone: Ids::default() })
    }

    fn key(&self, table: &str, id: &str) -> Vec<u8> {
        format!("{}{table}/{id}", self.prefix).into_bytes()
    }

    /// Runs `work` on the store's runtime and waits for it, at most `ETCD_TIMEOUT`.
    fn block<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
        let runtime = self.runtime.as_ref().expect("the runtime is only taken when the store is dropped");
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv_timeout(ETCD_TIMEOUT)
            .map_err(|_| StoreError::Storage(format!("etcd did not answer within {ETCD_TIMEOUT:?}")))
    }

    /// Everything under the registry prefix, read at one revision.
    pub fn load(&mut self) -> Result<Registry, StoreError> {
        let client = self.client.clone();
        let prefix = self.prefix.clone().into_bytes();
        let kvs = self.block(async move { client.range_prefix(&prefix).await })??;
        let mut registry = Registry::default();
        let (mut removed, mut gone) = (Vec::new(), Vec::new());
        for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let rest = key.strip_prefix(&self.prefix).unwrap_or(&key);
            let corrupt = |table: &'static str, reason: &str| StoreError::Corrupt {
                table,
                key: key.clone(),
                reason: reason.to_owned(),
            };
            let Some((table, id)) = rest.split_once('/') else {
                return Err(corrupt("registry", "a key outside every table"));
            };
            let seq = |table: &'static str| -> Result<u64, StoreError> {
                String::from_utf8_lossy(&kv.value).parse().map_err(|_| corrupt(table, "not a sequence number"))
            };
            match table {
                "agents" => {
                    registry.agents.insert(AgentId::new(id), decode("agents", id, &kv.value)?);
                }
                "frameworks" => {
                    registry.frameworks.insert(FrameworkId::new(id), decode("frameworks", id, &kv.value)?);
                }
                "removed_frameworks" => removed.push((seq("removed_frameworks")?, id.to_owned())),
                "gone_agents" => gone.push((seq("gone_agents")?, id.to_owned())),
                "settings" if id == ROLE_POLICY => registry.role_policy = decode("settings", id, &kv.value)?,
                "settings" if id == MAINTENANCE => registry.maintenance = decode("settings", id, &kv.value)?,
                _ => return Err(corrupt("registry", "an unknown table")),
            }
        }
        self.removed = Ids::from_loaded(removed);
        self.gone = Ids::from_loaded(gone);
        registry.removed_frameworks = self.removed.order.iter().map(|id| FrameworkId::new(id.as_str())).collect();
        registry.gone_agents = self.gone.order.iter().map(|id| AgentId::new(id.as_str())).collect();
        Ok(registry)
    }

    /// Commits `ops` in fenced transactions; `StoreError::Etcd(EtcdError::Deposed)` when
    /// this master's term is over.
    pub fn apply(&mut self, ops: &[RegistryOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        // The last change to a key wins: etcd refuses a transaction that writes one key
        // twice, and the round's changes are one atomic step anyway.
        let mut writes = BTreeMap::new();
        let (mut removed, mut gone) = (self.removed.clone(), self.gone.clone());
        for op in ops {
            match op {
                RegistryOp::PutAgent { agent_id, agent } => {
                    writes.insert(self.key("agents", agent_id.as_str()), Some(encode(agent)?));
                }
                RegistryOp::RemoveAgent { agent_id } => {
                    writes.insert(self.key("agents", agent_id.as_str()), None);
                    gone.add(agent_id.as_str(), MAX_GONE_AGENT_IDS, "gone_agents", self, &mut writes);
                }
                RegistryOp::PutFramework { framework_id, info } => {
                    writes.insert(self.key("frameworks", framework_id.as_str()), Some(encode(info)?));
                }
                RegistryOp::PutRolePolicy { policy } => {
                    writes.insert(self.key("settings", ROLE_POLICY), Some(encode(policy)?));
                }
                RegistryOp::PutMaintenance { maintenance } => {
                    writes.insert(self.key("settings", MAINTENANCE), Some(encode(maintenance)?));
                }
                RegistryOp::RemoveFramework { framework_id } => {
                    writes.insert(self.key("frameworks", framework_id.as_str()), None);
                    let id = framework_id.as_str();
                    removed.add(id, MAX_REMOVED_FRAMEWORK_IDS, "removed_frameworks", self, &mut writes);
                }
            }
        }
        let client = self.client.clone();
        let term = self.term.clone();
        let writes: Vec<_> = writes.into_iter().collect();
        self.block(async move { client.fenced_write(&term, writes, ETCD_TXN_OPS).await })??;
        self.removed = removed;
        self.gone = gone;
        Ok(())
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is refused inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(storage)
}

fn decode<T: serde::de::DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { table, key: key.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::model::{AgentInfo, Resources, Role};

    fn framework(name: &str) -> FrameworkInfo {
        FrameworkInfo {
            id: Some(FrameworkId::new(name)),
            name: name.into(),
            user: "u".into(),
            roles: vec![Role::unreserved()],
            failover_timeout_ms: 1000,
            hostname: String::new(),
            principal: String::new(),
        }
    }

    fn policy() -> crate::core::RolePolicy {
        let mut policy = crate::core::RolePolicy::default();
        policy.weights.insert(Role::parse("eng").expect("role"), 2_500);
        policy.reservations.insert(AgentId::new("a1"), Resources::parse("cpus(eng):1").expect("valid"));
        policy
    }

    #[test]
    fn what_is_committed_is_loaded_back_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.redb");
        let agent = DurableAgent {
            info: AgentInfo {
                hostname: "h".into(),
                port: 5051,
                resources: Resources::parse("cpus:2;mem:128").expect("valid"),
                attributes: vec![],
            },
            reachable: true,
            deactivated: true,
            drain: Some(crate::core::DrainInfo {
                state: crate::core::DrainState::Draining,
                max_grace_period_ms: Some(5_000),
                mark_gone: false,
            }),
        };
        let machine = crate::core::MachineId { hostname: "h".into(), ip: String::new() };
        let maintenance = crate::core::Maintenance {
            windows: vec![crate::core::Window {
                machines: vec![machine.clone()],
                unavailability: crate::core::Unavailability { start_ns: 1, duration_ns: Some(2) },
            }],
            down: [machine].into(),
        };
        let ops = vec![
            RegistryOp::PutAgent { agent_id: AgentId::new("a1"), agent: agent.clone() },
            RegistryOp::PutFramework { framework_id: FrameworkId::new("f1"), info: framework("f1") },
            RegistryOp::PutFramework { framework_id: FrameworkId::new("f2"), info: framework("f2") },
            RegistryOp::RemoveFramework { framework_id: FrameworkId::new("f2") },
            RegistryOp::PutAgent { agent_id: AgentId::new("a2"), agent: agent.clone() },
            RegistryOp::RemoveAgent { agent_id: AgentId::new("a2") },
            RegistryOp::PutRolePolicy { policy: policy() },
            RegistryOp::PutMaintenance { maintenance },
        ];
        let mut expected = Registry::default();
        for op in ops.clone() {
            expected.apply(op);
        }
        {
            let mut store = Store::open(&path).expect("open");
            store.apply(&ops).expect("apply");
        }
        let mut store = Store::open(&path).expect("reopen");
        assert_eq!(store.load().expect("load"), expected);
        assert_eq!(expected.frameworks.len(), 1);
        assert_eq!(expected.removed_frameworks, vec![FrameworkId::new("f2")]);
        assert_eq!(expected.gone_agents, vec![AgentId::new("a2")]);
        assert_eq!(expected.role_policy, policy());
        assert_eq!(expected.agents.len(), 1);
    }

    #[test]
    fn a_second_master_cannot_open_a_registry_in_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.redb");
        let _first = Store::open(&path).expect("open");
        assert!(Store::open(&path).is_err());
    }
}
