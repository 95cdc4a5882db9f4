//! A framework's durable state as tables of text keys and byte values, in one of two
//! backends that keep one contract: [`load`](FileTables::load) returns every record
//! committed, and `commit` writes one batch atomically or fails (and the framework then
//! stops: a store it cannot write is a state it cannot keep).
//!
//! - [`FileTables`]: an embedded redb database (ACID transactions, a copy-on-write B-tree,
//!   an fsync on every commit, run on a blocking thread so that no tokio worker stalls).
//! - [`EtcdTables`]: keys `<root>/state/<table>/<key>` in etcd, every write a transaction
//!   fenced by the leader's [`Term`], so that a deposed leader cannot write even once. A
//!   batch that fits one etcd transaction (128 operations, 1 MiB) is one transaction; a
//!   larger one goes through a journal: its writes are put under `<root>/journal/<n>`, then
//!   `<root>/journal/commit` (the point where the batch counts as committed), then the
//!   records in as many transactions as they need, then the journal is deleted. `load`
//!   finishes a committed journal a crashed leader left (its writes are idempotent) and
//!   drops an uncommitted one, so that a reader never sees half a batch.
//!
//! A framework maps its own records to [`Write`]s; which tables exist is its choice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use agora_proto::etcd_client::{Etcd, EtcdError, KvWrite, Term};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Most operations in one etcd transaction: etcd's `--max-txn-ops` default.
const TXN_OPS: usize = 128;
/// Most key and value bytes in one transaction, under etcd's 1.5 MiB request limit.
const TXN_BYTES: usize = 1 << 20;
/// Most bytes of one journal entry (one key, one transaction).
const JOURNAL_ENTRY_BYTES: usize = 512 << 10;
const COMMIT: &str = "commit";

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store storage failed: {0}")]
    Storage(String),
    #[error("the store holds a record that cannot be read ({table} {key}): {reason}")]
    Corrupt { table: String, key: String, reason: String },
    #[error("state in etcd: {0}")]
    Etcd(#[from] EtcdError),
}

impl KvError {
    /// Whether the write failed because another process leads now.
    pub fn is_deposed(&self) -> bool {
        matches!(self, KvError::Etcd(EtcdError::Deposed))
    }
}

fn storage(error: impl std::fmt::Display) -> KvError {
    KvError::Storage(error.to_string())
}

/// One change to one key of a table, or to every key of a table that starts with a
/// prefix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Write {
    Put { table: String, key: String, value: Vec<u8> },
    Delete { table: String, key: String },
    DeletePrefix { table: String, prefix: String },
}

impl Write {
    fn table(&self) -> &str {
        match self {
            Write::Put { table, .. } | Write::Delete { table, .. } | Write::DeletePrefix { table, .. } => table,
        }
    }
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub table: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// Tables in a redb file.
#[derive(Debug, Clone)]
pub struct FileTables {
    /// Shared with the blocking threads commits run on.
    db: Arc<Database>,
    tables: Arc<[String]>,
}

fn definition(table: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(table)
}

impl FileTables {
    /// Opens the file, creating it and `tables` when new. redb locks the file: a second
    /// process opening it gets an error.
    pub fn open(path: &Path, tables: &[&str]) -> Result<FileTables, KvError> {
        Self::open_with_cache(path, tables, None)
    }

    /// [`FileTables::open`] with redb's page cache bounded to `cache_bytes` (`None`:
    /// redb's default, 1 GiB). A framework that reads most records on demand, not all at
    /// start, keeps its memory down with a small cache: every page a full read or a large
    /// commit touches would otherwise stay in memory, up to the default.
    pub fn open_with_cache(path: &Path, tables: &[&str], cache_bytes: Option<usize>) -> Result<FileTables, KvError> {
        let open = |reason: String| KvError::Open { path: path.display().to_string(), reason };
        let mut builder = Database::builder();
        if let Some(bytes) = cache_bytes {
            builder.set_cache_size(bytes);
        }
        let db = builder.create(path).map_err(|e| open(e.to_string()))?;
        let txn = db.begin_write().map_err(storage)?;
        for table in tables {
            txn.open_table(definition(table)).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
        Ok(FileTables { db: Arc::new(db), tables: tables.into() })
    }

    /// Every record, table by table in the order given at `open`, keys in order, handed
    /// one at a time to `visit` with `state` (on a blocking thread): a reader that keeps
    /// less than every record never holds them all at once. The state at the end, or the
    /// first error (the store's, or `visit`'s).
    pub async fn visit<S, F>(&self, state: S, mut visit: F) -> Result<S, KvError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, Record) -> Result<(), KvError> + Send + 'static,
    {
        let (db, tables) = (self.db.clone(), self.tables.clone());
        tokio::task::spawn_blocking(move || {
            let mut state = state;
            let txn = db.begin_read().map_err(storage)?;
            for table in tables.iter() {
                for entry in txn.open_table(definition(table)).map_err(storage)?.iter().map_err(storage)? {
                    let (key, value) = entry.map_err(storage)?;
                    let record =
                        Record { table: table.clone(), key: key.value().to_owned(), value: value.value().to_vec() };
                    visit(&mut state, record)?;
                }
            }
            Ok(state)
        })
        .await
        .map_err(storage)?
    }

    /// The records of `table` whose keys start with `prefix`, in key order.
    pub async fn range(&self, table: &str, prefix: &str) -> Result<Vec<Record>, KvError> {
        let (db, table, prefix) = (self.db.clone(), table.to_owned(), prefix.to_owned());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            let handle = txn.open_table(definition(&table)).map_err(storage)?;
            let mut records = Vec::new();
            for entry in handle.range(prefix.as_str()..).map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                records.push(Record {
                    table: table.clone(),
                    key: key.value().to_owned(),
                    value: value.value().to_vec(),
                });
            }
            Ok(records)
        })
        .await
        .map_err(storage)?
    }

    /// Every record, table by table in the order given at `open`, keys in order.
    pub async fn load(&self) -> Result<Vec<Record>, KvError> {
        let (db, tables) = (self.db.clone(), self.tables.clone());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            let mut records = Vec::new();
            for table in tables.iter() {
                for entry in txn.open_table(definition(table)).map_err(storage)?.iter().map_err(storage)? {
                    let (key, value) = entry.map_err(storage)?;
                    records.push(Record {
                        table: table.clone(),
                        key: key.value().to_owned(),
                        value: value.value().to_vec(),
                    });
                }
            }
            Ok(records)
        })
        .await
        .map_err(storage)?
    }

    /// Commits `writes` in one transaction, with an fsync, in order.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), KvError> {
        if writes.is_empty() {
            return Ok(());
        }
        let (db, tables) = (self.db.clone(), self.tables.clone());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut open = BTreeMap::new();
                for table in tables.iter() {
                    open.insert(table.as_str(), txn.open_table(definition(table)).map_err(storage)?);
                }
                for write in &writes {
                    let table = write.table();
                    let handle = open.get_mut(table).ok_or_else(|| storage(format!("no table {table}")))?;
                    match write {
                        Write::Put { key, value, .. } => {
                            handle.insert(key.as_str(), value.as_slice()).map_err(storage)?;
                        }
                        Write::Delete { key, .. } => {
                            handle.remove(key.as_str()).map_err(storage)?;
                        }
                        Write::DeletePrefix { prefix, .. } => {
                            let mut doomed = Vec::new();
                            for entry in handle.range(prefix.as_str()..).map_err(storage)? {
                                let (key, _) = entry.map_err(storage)?;
                                if !key.value().starts_with(prefix.as_str()) {
                                    break;
                                }
                                doomed.push(key.value().to_owned());
                            }
                            for key in doomed {
                                handle.remove(key.as_str()).map_err(storage)?;
                            }
                        }
                    }
                }
            }
            txn.commit().map_err(storage)
        })
        .await
        .map_err(storage)?
    }
}

/// Tables in etcd while `term` leads.
///
/// etcd refuses a transaction that names a key twice, or a key inside a range it
/// deletes: a batch is folded into one write per key (the last wins). A prefix delete in
/// a table whose keys are tracked ([`EtcdTables::tracking`]) becomes a delete of each key
/// it holds (this process is the only writer while its term lasts, so it knows them);
/// in any other table it is a range delete, after the batch's other writes.
#[derive(Debug)]
pub struct EtcdTables {
    client: Etcd,
    term: Term,
    root: String,
    tracked: BTreeSet<String>,
    /// The keys of the tracked tables, as committed.
    keys: BTreeSet<Vec<u8>>,
}

impl EtcdTables {
    /// Tables under `root` (e.g. `/agora/cron`), written while `term` holds.
    pub fn new(client: Etcd, root: &str, term: Term) -> EtcdTables {
        EtcdTables {
            client,
            term,
            root: root.trim_end_matches('/').to_owned(),
            tracked: BTreeSet::new(),
            keys: BTreeSet::new(),
        }
    }

    /// Tracks the keys of `tables`, whose prefix deletes may meet other writes to them
    /// in one batch (read at `load`).
    pub fn tracking(mut self, tables: &[&str]) -> EtcdTables {
        self.tracked = tables.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    fn key(&self, table: &str, key: &str) -> Vec<u8> {
        format!("{}{table}/{key}", self.state_prefix()).into_bytes()
    }

    fn state_prefix(&self) -> String {
        format!("{}/state/", self.root)
    }

    fn journal_prefix(&self) -> String {
        format!("{}/journal/", self.root)
    }

    /// The batch as etcd writes (see the type's doc), and the tracked keys there will be
    /// once they are committed.
    fn kv_writes(&self, writes: &[Write]) -> (Vec<KvWrite>, BTreeSet<Vec<u8>>) {
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut ranges = Vec::new();
        let mut keys = self.keys.clone();
        for write in writes {
            let tracked = self.tracked.contains(write.table());
            match write {
                Write::Put { table, key, value } => {
                    let key = self.key(table, key);
                    if tracked {
                        keys.insert(key.clone());
                    }
                    last.insert(key, Some(value.clone()));
                }
                Write::Delete { table, key } => {
                    let key = self.key(table, key);
                    keys.remove(&key);
                    last.insert(key, None);
                }
                Write::DeletePrefix { table, prefix } => {
                    let prefix = self.key(table, prefix);
                    if tracked {
                        let doomed: Vec<Vec<u8>> =
                            keys.range(prefix.clone()..).take_while(|k| k.starts_with(&prefix)).cloned().collect();
                        for key in doomed {
                            keys.remove(&key);
                            last.insert(key, None);
                        }
                    } else {
                        last.retain(|key, _| !key.starts_with(&prefix));
                        ranges.push(KvWrite::DeletePrefix { prefix });
                    }
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
        kv.extend(ranges);
        (kv, keys)
    }

    /// Every record committed (after finishing or dropping a journal left behind), in key
    /// order.
    pub async fn load(&mut self) -> Result<Vec<Record>, KvError> {
        // The tracked keys are needed to replay a journal; the records again after it.
        let first = self.read_state().await?;
        if self.recover_journal().await? { self.read_state().await } else { Ok(first) }
    }

    /// The committed records of `table` whose keys start with `prefix`, in key order.
    pub async fn range(&self, table: &str, prefix: &str) -> Result<Vec<Record>, KvError> {
        let full = self.key(table, prefix);
        let skip = self.key(table, "").len();
        let mut records = Vec::new();
        for kv in self.client.range_prefix(&full).await? {
            let key = String::from_utf8_lossy(kv.key.get(skip..).unwrap_or_default()).into_owned();
            records.push(Record { table: table.to_owned(), key, value: kv.value });
        }
        Ok(records)
    }

    /// Reads every record, and notes the tracked tables' keys.
    async fn read_state(&mut self) -> Result<Vec<Record>, KvError> {
        let prefix = self.state_prefix();
        let mut records = Vec::new();
        let mut keys = BTreeSet::new();
        for kv in self.client.range_prefix(prefix.as_bytes()).await? {
            let full = String::from_utf8_lossy(&kv.key).into_owned();
            let corrupt =
                |reason: &str| KvError::Corrupt { table: "state".into(), key: full.clone(), reason: reason.into() };
            let rest = full.strip_prefix(&prefix).ok_or_else(|| corrupt("outside the state prefix"))?;
            let (table, key) = rest.split_once('/').ok_or_else(|| corrupt("a key outside every table"))?;
            if self.tracked.contains(table) {
                keys.insert(kv.key.clone());
            }
            records.push(Record { table: table.to_owned(), key: key.to_owned(), value: kv.value });
        }
        self.keys = keys;
        Ok(records)
    }

    /// Commits `writes` atomically (see the module's doc).
    pub async fn commit(&mut self, writes: &[Write]) -> Result<(), KvError> {
        let (kv, keys) = self.kv_writes(writes);
        if kv.is_empty() {
            return Ok(());
        }
        if kv.len() <= TXN_OPS && kv.iter().map(KvWrite::size).sum::<usize>() <= TXN_BYTES {
            self.client.fenced_txn(&self.term, &kv).await?;
            self.keys = keys;
            return Ok(());
        }
        let journal = self.journal_prefix();
        let entries = journal_entries(writes)?;
        for (index, entry) in entries.iter().enumerate() {
            let put = KvWrite::Put { key: format!("{journal}{index:08}").into_bytes(), value: entry.clone() };
            self.client.fenced_txn(&self.term, &[put]).await?;
        }
        let commit = KvWrite::Put {
            key: format!("{journal}{COMMIT}").into_bytes(),
            value: entries.len().to_string().into_bytes(),
        };
        self.client.fenced_txn(&self.term, &[commit]).await?;
        self.write_in_chunks(&kv).await?;
        self.keys = keys;
        self.client.fenced_txn(&self.term, &[KvWrite::DeletePrefix { prefix: journal.into_bytes() }]).await?;
        Ok(())
    }

    async fn write_in_chunks(&self, writes: &[KvWrite]) -> Result<(), KvError> {
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
    async fn recover_journal(&mut self) -> Result<bool, KvError> {
        let journal = self.journal_prefix();
        let kvs = self.client.range_prefix(journal.as_bytes()).await?;
        if kvs.is_empty() {
            return Ok(false);
        }
        let corrupt = |key: &str, reason: String| KvError::Corrupt { table: "journal".into(), key: key.into(), reason };
        if let Some(commit) = kvs.iter().find(|kv| kv.key.ends_with(COMMIT.as_bytes())) {
            let count: usize =
                String::from_utf8_lossy(&commit.value).parse().map_err(|_| corrupt(COMMIT, "not a count".into()))?;
            let mut writes = Vec::new();
            for index in 0..count {
                let key = format!("{journal}{index:08}");
                let entry = kvs
                    .iter()
                    .find(|kv| kv.key == key.as_bytes())
                    .ok_or_else(|| corrupt(&key, "a committed journal is missing an entry".into()))?;
                let part: Vec<Write> =
                    serde_json::from_slice(&entry.value).map_err(|e| corrupt(&key, e.to_string()))?;
                writes.extend(part);
            }
            tracing::info!(writes = writes.len(), "finishing the batch a previous leader committed to its journal");
            let (kv, _) = self.kv_writes(&writes);
            self.write_in_chunks(&kv).await?;
        } else {
            tracing::info!("dropping a journal a previous leader did not commit");
        }
        self.client.fenced_txn(&self.term, &[KvWrite::DeletePrefix { prefix: journal.into_bytes() }]).await?;
        Ok(true)
    }
}

/// The writes as journal entries: JSON arrays of at most `JOURNAL_ENTRY_BYTES` each (one
/// write larger than that gets an entry of its own).
fn journal_entries(writes: &[Write]) -> Result<Vec<Vec<u8>>, KvError> {
    let mut entries = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for write in writes {
        let encoded = serde_json::to_vec(write).map_err(storage)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &[&str] = &["jobs", "runs"];

    fn put(table: &str, key: &str, value: &str) -> Write {
        Write::Put { table: table.into(), key: key.into(), value: value.as_bytes().to_vec() }
    }

    #[tokio::test]
    async fn a_file_keeps_what_was_committed_across_a_reopen_in_table_and_key_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.redb");
        {
            let tables = FileTables::open(&path, TABLES).expect("open");
            tables
                .commit(vec![put("runs", "b", "2"), put("jobs", "x", "1"), put("runs", "a", "3")])
                .await
                .expect("commit");
            tables.commit(vec![Write::Delete { table: "runs".into(), key: "b".into() }]).await.expect("commit");
        }
        let tables = FileTables::open(&path, TABLES).expect("reopen");
        let records: Vec<(String, String)> =
            tables.load().await.expect("load").into_iter().map(|r| (r.table, r.key)).collect();
        assert_eq!(records, [("jobs".to_owned(), "x".to_owned()), ("runs".to_owned(), "a".to_owned())]);
    }

    #[tokio::test]
    async fn a_prefix_delete_removes_only_the_keys_under_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tables = FileTables::open(&dir.path().join("state.redb"), TABLES).expect("open");
        let batch = vec![put("runs", "a@1", "1"), put("runs", "a@2", "2"), put("runs", "ab@1", "3")];
        tables.commit(batch).await.expect("commit");
        tables.commit(vec![Write::DeletePrefix { table: "runs".into(), prefix: "a@".into() }]).await.expect("commit");
        let keys: Vec<String> = tables.load().await.expect("load").into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["ab@1"]);
    }

    #[tokio::test]
    async fn a_range_reads_one_prefix_and_a_visit_sees_every_record_once_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tables = FileTables::open_with_cache(&dir.path().join("state.redb"), TABLES, Some(1 << 20)).expect("open");
        let batch =
            vec![put("runs", "a@1", "1"), put("runs", "a@2", "2"), put("runs", "ab@1", "3"), put("jobs", "a", "j")];
        tables.commit(batch).await.expect("commit");
        let values: Vec<Vec<u8>> =
            tables.range("runs", "a@").await.expect("range").into_iter().map(|r| r.value).collect();
        assert_eq!(values, [b"1".to_vec(), b"2".to_vec()]);
        assert!(tables.range("runs", "b@").await.expect("range").is_empty());
        let seen = tables
            .visit(Vec::new(), |seen: &mut Vec<String>, record| {
                seen.push(format!("{}/{}", record.table, record.key));
                Ok(())
            })
            .await
            .expect("visit");
        assert_eq!(seen, ["jobs/a", "runs/a@1", "runs/a@2", "runs/ab@1"]);
        let refused = tables
            .visit((), |(), record| Err(KvError::Corrupt { table: record.table, key: record.key, reason: "no".into() }))
            .await;
        assert!(matches!(refused, Err(KvError::Corrupt { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn a_write_to_an_unknown_table_fails_the_whole_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tables = FileTables::open(&dir.path().join("state.redb"), TABLES).expect("open");
        let result = tables.commit(vec![put("jobs", "x", "1"), put("nope", "y", "2")]).await;
        assert!(result.is_err());
        assert!(tables.load().await.expect("load").is_empty(), "nothing of the batch was kept");
    }

    #[test]
    fn journal_entries_split_a_large_batch_and_read_back_whole() {
        let big = "v".repeat(200 << 10);
        let writes: Vec<Write> = (0..5).map(|i| put("runs", &format!("k{i}"), &big)).collect();
        let entries = journal_entries(&writes).expect("encodes");
        assert!(entries.len() >= 2, "{} entries", entries.len());
        let back: Vec<Write> =
            entries.iter().flat_map(|e| serde_json::from_slice::<Vec<Write>>(e).expect("decodes")).collect();
        assert_eq!(back, writes);
    }
}
