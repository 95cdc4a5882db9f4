//! The master's durable registry in an embedded, crash-safe database file (redb: ACID
//! transactions, a copy-on-write B-tree, an fsync on every commit). One write transaction
//! per delivery round holds every change of that round, so a crash leaves either all of
//! them or none.

use std::path::Path;

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens the registry file, creating it (and its tables) when new.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(AGENTS).map_err(storage)?;
        txn.open_table(FRAMEWORKS).map_err(storage)?;
        txn.open_table(REMOVED_FRAMEWORKS).map_err(storage)?;
        txn.open_table(GONE_AGENTS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Store { db })
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
            for op in ops {
                match op {
                    RegistryOp::PutAgent { agent_id, agent } => {
                        agents.insert(agent_id.as_str(), encode(agent)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::RemoveAgent { agent_id } => {
                        agents.remove(agent_id.as_str()).map_err(storage)?;
                        append(&mut gone, agent_id.as_str())?;
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
        };
        let ops = vec![
            RegistryOp::PutAgent { agent_id: AgentId::new("a1"), agent: agent.clone() },
            RegistryOp::PutFramework { framework_id: FrameworkId::new("f1"), info: framework("f1") },
            RegistryOp::PutFramework { framework_id: FrameworkId::new("f2"), info: framework("f2") },
            RegistryOp::RemoveFramework { framework_id: FrameworkId::new("f2") },
            RegistryOp::PutAgent { agent_id: AgentId::new("a2"), agent: agent.clone() },
            RegistryOp::RemoveAgent { agent_id: AgentId::new("a2") },
        ];
        let mut expected = Registry::default();
        for op in ops.clone() {
            expected.apply(op);
        }
        {
            let store = Store::open(&path).expect("open");
            store.apply(&ops).expect("apply");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.load().expect("load"), expected);
        assert_eq!(expected.frameworks.len(), 1);
        assert_eq!(expected.removed_frameworks, vec![FrameworkId::new("f2")]);
        assert_eq!(expected.gone_agents, vec![AgentId::new("a2")]);
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
