//! [`EtcdStore`]: services' state in etcd, for several `agora services` processes of
//! which one leads. Records live at `<root>/state/<table>/<key>`; every write is a
//! transaction fenced by the leader's [`Term`] (it compares the leader key's create
//! revision), so a process that lost its leadership cannot write, even once.
//!
//! A batch is committed atomically however large it is. One that fits one etcd
//! transaction (128 operations, 1 MiB) is one transaction. A larger one (a launch of
//! thousands of instances) goes through a journal: its ops are written under
//! `<root>/journal/<n>`, then `<root>/journal/commit` is put (the point at which the
//! batch counts as committed), then the records are written in as many transactions as
//! they need, then the journal is deleted. `load` first finishes a committed journal a
//! crashed leader left behind (its writes are idempotent puts and deletes) and drops an
//! uncommitted one, so a reader never sees half a batch.
//!
//! etcd refuses a transaction that names one key twice (or a key inside a range it
//! deletes), so a batch's writes are first folded into one write per key, the last one
//! winning; deleting an app's versions becomes a delete of each version key the store
//! knows it holds (it is the only writer while its term lasts, so it tracks them).

use std::collections::{BTreeMap, BTreeSet};

use agora_proto::etcd_client::{Etcd, KvWrite, Term};

use super::{Loader, StoreError, Table, Write, storage, writes};
use crate::core::{Recovered, StoreOp};

/// Most operations in one etcd transaction: etcd's `--max-txn-ops` default.
const TXN_OPS: usize = 128;
/// Most key and value bytes in one transaction, under etcd's 1.5 MiB request limit.
const TXN_BYTES: usize = 1 << 20;
/// Most bytes of one journal entry (one key, one transaction).
const JOURNAL_ENTRY_BYTES: usize = 512 << 10;
const COMMIT: &str = "commit";

/// The store in etcd while `term` leads.
#[derive(Debug)]
pub struct EtcdStore {
    client: Etcd,
    term: Term,
    root: String,
    /// The keys of the versions table, as committed (read at `load`).
    version_keys: BTreeSet<Vec<u8>>,
}

impl EtcdStore {
    /// A store under `root` (e.g. `/agora/services`), written while `term` holds.
    pub fn new(client: Etcd, root: &str, term: Term) -> EtcdStore {
        EtcdStore { client, term, root: root.trim_end_matches('/').to_owned(), version_keys: BTreeSet::new() }
    }

    fn state_prefix(&self) -> String {
        format!("{}/state/", self.root)
    }

    fn journal_prefix(&self) -> String {
        format!("{}/journal/", self.root)
    }

    fn key(&self, table: Table, key: &str) -> Vec<u8> {
        format!("{}{}/{key}", self.state_prefix(), table.name()).into_bytes()
    }

    /// The batch's writes as one write per key, the last winning, and the version keys
    /// there will be once they are committed.
    fn kv_writes(&self, writes: &[Write]) -> (Vec<KvWrite>, BTreeSet<Vec<u8>>) {
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut prefixes = Vec::new();
        let mut versions = self.version_keys.clone();
        for write in writes {
            match write {
                Write::Put(table, key, value) => {
                    let key = self.key(*table, key);
                    if *table == Table::Versions {
                        versions.insert(key.clone());
                    }
                    last.insert(key, Some(value.clone()));
                }
                Write::Delete(table, key) => {
                    let key = self.key(*table, key);
                    versions.remove(&key);
                    last.insert(key, None);
                }
                Write::DeletePrefix(Table::Versions, prefix) => {
                    let prefix = self.key(Table::Versions, prefix);
                    let doomed: Vec<Vec<u8>> =
                        versions.range(prefix.clone()..).take_while(|k| k.starts_with(&prefix)).cloned().collect();
                    for key in doomed {
                        versions.remove(&key);
                        last.insert(key, None);
                    }
                }
                // Only versions are deleted by prefix today; any other table's range is
                // deleted as a range, after the batch's single-key writes were folded.
                Write::DeletePrefix(table, prefix) => {
                    let prefix = self.key(*table, prefix);
                    last.retain(|key, _| !key.starts_with(&prefix));
                    prefixes.push(KvWrite::DeletePrefix { prefix });
                }
            }
        }
        let mut kv: Vec<KvWrite> = last
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => KvWrite::Put { key, value },
                None => KvWrite::Delete { key },
            })
            .collect();
        kv.extend(prefixes);
        (kv, versions)
    }

    /// Everything committed, after finishing (or dropping) a journal left behind.
    pub async fn load(&mut self) -> Result<Recovered, StoreError> {
        // The version keys are needed to replay a journal; the records again after it.
        let first = self.read_state().await?;
        if self.recover_journal().await? { self.read_state().await } else { Ok(first) }
    }

    /// Reads every record (and notes the version keys).
    async fn read_state(&mut self) -> Result<Recovered, StoreError> {
        let prefix = self.state_prefix();
        let versions_prefix = self.key(Table::Versions, "");
        let mut loader = Loader::default();
        let mut version_keys = BTreeSet::new();
        for kv in self.client.range_prefix(prefix.as_bytes()).await? {
            let full = String::from_utf8_lossy(&kv.key).into_owned();
            let corrupt =
                |reason: &str| StoreError::Corrupt { table: "state", key: full.clone(), reason: reason.into() };
            let rest = full.strip_prefix(&prefix).ok_or_else(|| corrupt("outside the state prefix"))?;
            let (table, key) = rest.split_once('/').ok_or_else(|| corrupt("a key outside every table"))?;
            let table = Table::named(table).ok_or_else(|| corrupt("an unknown table"))?;
            loader.record(table, key, &kv.value)?;
            if kv.key.starts_with(&versions_prefix) {
                version_keys.insert(kv.key.clone());
            }
        }
        self.version_keys = version_keys;
        Ok(loader.finish())
    }

    /// Commits `batch` atomically (see the module's doc).
    pub async fn apply(&mut self, batch: &[StoreOp]) -> Result<(), StoreError> {
        let (writes, version_keys) = self.kv_writes(&writes(batch)?);
        if writes.len() <= TXN_OPS && writes.iter().map(KvWrite::size).sum::<usize>() <= TXN_BYTES {
            self.client.fenced_txn(&self.term, &writes).await?;
            self.version_keys = version_keys;
            return Ok(());
        }
        let entries = journal_entries(batch)?;
        let journal = self.journal_prefix();
        for (index, entry) in entries.iter().enumerate() {
            let put = KvWrite::Put { key: format!("{journal}{index:08}").into_bytes(), value: entry.clone() };
            self.client.fenced_txn(&self.term, &[put]).await?;
        }
        let commit = KvWrite::Put {
            key: format!("{journal}{COMMIT}").into_bytes(),
            value: entries.len().to_string().into_bytes(),
        };
        self.client.fenced_txn(&self.term, &[commit]).await?;
        self.write_in_chunks(&writes).await?;
        self.version_keys = version_keys;
        self.client.fenced_txn(&self.term, &[KvWrite::DeletePrefix { prefix: journal.into_bytes() }]).await?;
        Ok(())
    }

    async fn write_in_chunks(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let mut start = 0;
        while start < writes.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < writes.len()
                && end - start < TXN_OPS
                && (end == start || bytes + writes[end].size() <= TXN_BYTES)
            {
                bytes += writes[end].size();
                end += 1;
            }
            self.client.fenced_txn(&self.term, &writes[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    /// Finishes a committed journal, or drops an uncommitted one; whether there was one.
    async fn recover_journal(&mut self) -> Result<bool, StoreError> {
        let journal = self.journal_prefix();
        let kvs = self.client.range_prefix(journal.as_bytes()).await?;
        if kvs.is_empty() {
            return Ok(false);
        }
        let committed = kvs.iter().find(|kv| kv.key.ends_with(COMMIT.as_bytes()));
        if let Some(commit) = committed {
            let count: usize = String::from_utf8_lossy(&commit.value).parse().map_err(|_| StoreError::Corrupt {
                table: "journal",
                key: COMMIT.into(),
                reason: "not a count".into(),
            })?;
            let mut batch = Vec::new();
            for index in 0..count {
                let key = format!("{journal}{index:08}");
                let entry = kvs.iter().find(|kv| kv.key == key.as_bytes()).ok_or_else(|| StoreError::Corrupt {
                    table: "journal",
                    key: key.clone(),
                    reason: "a committed journal is missing an entry".into(),
                })?;
                let ops: Vec<StoreOp> = serde_json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt {
                    table: "journal",
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
                batch.extend(ops);
            }
            tracing::info!(ops = batch.len(), "finishing the batch a previous leader committed to its journal");
            let (writes, _) = self.kv_writes(&writes(&batch)?);
            self.write_in_chunks(&writes).await?;
        } else {
            tracing::info!("dropping a journal a previous leader did not commit");
        }
        self.client.fenced_txn(&self.term, &[KvWrite::DeletePrefix { prefix: journal.into_bytes() }]).await?;
        Ok(true)
    }
}

/// The batch as journal entries: JSON arrays of ops of at most `JOURNAL_ENTRY_BYTES` each
/// (one op larger than that gets an entry of its own).
fn journal_entries(batch: &[StoreOp]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut entries = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for op in batch {
        let encoded = serde_json::to_vec(op).map_err(storage)?;
        if !current.is_empty() && current.len() + encoded.len() + 2 > JOURNAL_ENTRY_BYTES {
            current.push(b']');
            entries.push(std::mem::take(&mut current));
        }
        current.push(if current.is_empty() { b'[' } else { b',' });
        current.extend_from_slice(&encoded);
    }
    if !current.is_empty() {
        current.push(b']');
        entries.push(current);
    }
    Ok(entries)
}
