//! The master's durable registry in an embedded, crash-safe database file (redb: ACID
//! transactions, a copy-on-write B-tree, an fsync on every commit). One write transaction
//! per delivery round holds every change of that round, so a crash leaves either all of
//! them or none.

use std::path::Path;

use agora_proto::model::{AgentId, FrameworkId, FrameworkInfo};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::core::{DurableAgent, MAX_REMOVED_FRAMEWORK_IDS, Registry, RegistryOp};

const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
/// Removed framework ids with the sequence number of their removal, so that the oldest
/// can be forgotten first once there are too many.
const REMOVED_FRAMEWORKS: TableDefinition<&str, u64> = TableDefinition::new("removed_frameworks");

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
        let mut removed = Vec::new();
        for entry in txn.open_table(REMOVED_FRAMEWORKS).map_err(storage)?.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            removed.push((value.value(), FrameworkId::new(key.value())));
        }
        removed.sort();
        registry.removed_frameworks = removed.into_iter().map(|(_, id)| id).collect();
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
            let mut next_removal = removed.iter().map_err(storage)?.filter_map(Result::ok).map(|(_, v)| v.value()).max();
            for op in ops {
                match op {
                    RegistryOp::PutAgent { agent_id, agent } => {
                        agents.insert(agent_id.as_str(), encode(agent)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::PutFramework { framework_id, info } => {
                        frameworks.insert(framework_id.as_str(), encode(info)?.as_slice()).map_err(storage)?;
                    }
                    RegistryOp::RemoveFramework { framework_id } => {
                        frameworks.remove(framework_id.as_str()).map_err(storage)?;
                        let sequence = next_removal.map_or(0, |n| n + 1);
                        next_removal = Some(sequence);
                        removed.insert(framework_id.as_str(), sequence).map_err(storage)?;
                    }
                }
            }
            forget_oldest_removals(&mut removed)?;
        }
        txn.commit().map_err(storage)
    }
}

/// Keeps at most `MAX_REMOVED_FRAMEWORK_IDS` removed ids, as the core does.
fn forget_oldest_removals(removed: &mut redb::Table<&str, u64>) -> Result<(), StoreError> {
    let len = removed.len().map_err(storage)? as usize;
    if len <= MAX_REMOVED_FRAMEWORK_IDS {
        return Ok(());
    }
    let mut all: Vec<(u64, String)> = Vec::with_capacity(len);
    for entry in removed.iter().map_err(storage)? {
        let (key, value) = entry.map_err(storage)?;
        all.push((value.value(), key.value().to_owned()));
    }
    all.sort();
    for (_, key) in all.iter().take(len - MAX_REMOVED_FRAMEWORK_IDS) {
        removed.remove(key.as_str()).map_err(storage)?;
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
    }

    #[test]
    fn a_second_master_cannot_open_a_registry_in_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.redb");
        let _first = Store::open(&path).expect("open");
        assert!(Store::open(&path).is_err());
    }
}
