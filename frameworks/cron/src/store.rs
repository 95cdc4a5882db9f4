//! The durable store of cron's state: the framework id, the jobs (with their counters and
//! how far their triggers are settled) and every run kept (in flight and history).
//!
//! Two backends from the SDK's [`kv`](agora_sdk::kv) keep one contract: [`Store::load`]
//! returns everything committed, and [`Store::apply`] commits one batch of [`StoreOp`]s
//! atomically or fails (the owner then stops the process).
//! - a redb file, `cron.redb` in `--work-dir`;
//! - etcd under `/agora/cron` with `--etcd`, every write fenced by the leader's term.
//!
//! Tables: `framework` (`id`), `jobs` (name → `JobRecord` JSON), `runs` (`<job>@<scheduled>`
//! → `RunRecord` JSON; `@` never appears in a job name, and the time is written so that a
//! job's runs sort by it).

use agora_proto::model::FrameworkId;
use agora_sdk::kv::{EtcdTables, FileTables, KvError, Record, Write};
use serde::Serialize;

use crate::core::{Recovered, StoreOp};
use crate::model::RunKey;

const FRAMEWORK: &str = "framework";
const JOBS: &str = "jobs";
const RUNS: &str = "runs";
const TABLES: &[&str] = &[FRAMEWORK, JOBS, RUNS];
const FRAMEWORK_ID_KEY: &str = "id";
/// The file in `--work-dir`.
pub const FILE_NAME: &str = "cron.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("the store holds a record that cannot be read ({table} {key}): {reason}")]
    Corrupt { table: String, key: String, reason: String },
}

impl StoreError {
    /// Whether the write failed because another process leads now.
    pub fn is_deposed(&self) -> bool {
        matches!(self, StoreError::Kv(error) if error.is_deposed())
    }
}

/// Where the state lives.
#[derive(Debug)]
pub enum Store {
    File(FileTables),
    Etcd(Box<EtcdTables>),
}

impl Store {
    /// The redb file at `path`, created when new.
    pub fn open_file(path: &std::path::Path) -> Result<Store, StoreError> {
        Ok(Store::File(FileTables::open(path, TABLES)?))
    }

    /// Everything committed.
    pub async fn load(&mut self) -> Result<Recovered, StoreError> {
        let records = match self {
            Store::File(tables) => tables.load().await?,
            Store::Etcd(tables) => tables.load().await?,
        };
        let mut recovered = Recovered::default();
        for record in records {
            read(&mut recovered, record)?;
        }
        Ok(recovered)
    }

    /// Commits `batch`: all of it or, on an error, possibly none of it.
    pub async fn apply(&mut self, batch: &[StoreOp]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let writes = writes(batch)?;
        match self {
            Store::File(tables) => tables.commit(writes).await?,
            Store::Etcd(tables) => tables.commit(&writes).await?,
        }
        Ok(())
    }
}

/// The key of a run: its job, `@`, and its scheduled time as seconds since the epoch
/// shifted to be positive (20 digits) and nanoseconds (9 digits).
pub fn run_key(key: &RunKey) -> String {
    let seconds = i128::from(key.scheduled.as_second()) + (1_i128 << 62);
    format!("{}@{seconds:020}.{:09}", key.job, key.scheduled.subsec_nanosecond())
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn writes(batch: &[StoreOp]) -> Result<Vec<Write>, StoreError> {
    let put = |table: &str, key: String, value: Vec<u8>| Write::Put { table: table.into(), key, value };
    let mut writes = Vec::with_capacity(batch.len());
    for op in batch {
        writes.push(match op {
            StoreOp::FrameworkId(id) => put(FRAMEWORK, FRAMEWORK_ID_KEY.into(), encode(id)?),
            StoreOp::PutJob(job) => put(JOBS, job.spec.name.to_string(), encode(job)?),
            StoreOp::DeleteJob(name) => Write::Delete { table: JOBS.into(), key: name.to_string() },
            StoreOp::PutRun(run) => put(RUNS, run_key(&run.key), encode(run)?),
            StoreOp::DeleteRun(key) => Write::Delete { table: RUNS.into(), key: run_key(key) },
        });
    }
    Ok(writes)
}

fn read(recovered: &mut Recovered, record: Record) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { table: record.table.clone(), key: record.key.clone(), reason };
    match (record.table.as_str(), record.key.as_str()) {
        (FRAMEWORK, FRAMEWORK_ID_KEY) => {
            recovered.framework_id =
                Some(serde_json::from_slice::<FrameworkId>(&record.value).map_err(|e| corrupt(e.to_string()))?);
        }
        (JOBS, _) => recovered.jobs.push(serde_json::from_slice(&record.value).map_err(|e| corrupt(e.to_string()))?),
        (RUNS, _) => recovered.runs.push(serde_json::from_slice(&record.value).map_err(|e| corrupt(e.to_string()))?),
        _ => return Err(corrupt("an unknown record".into())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Command, CoreConfig, Cron, Input};

    #[test]
    fn run_keys_sort_by_time_within_a_job_and_keep_jobs_apart() {
        let key =
            |job: &str, t: &str| RunKey { job: crate::model::JobName::new(job), scheduled: t.parse().expect("time") };
        let early = run_key(&key("a", "1969-12-31T23:59:59.5Z"));
        let later = run_key(&key("a", "2026-03-02T10:00:00Z"));
        let later_nano = run_key(&key("a", "2026-03-02T10:00:00.000000001Z"));
        assert!(early < later && later < later_nano, "{early} {later} {later_nano}");
        assert!(run_key(&key("a b", "2026-03-02T10:00:00Z")).starts_with("a b@"));
    }

    #[tokio::test]
    async fn what_the_core_persisted_is_what_a_restarted_core_recovers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(FILE_NAME);
        let now: jiff::Timestamp = "2026-03-02T10:00:00Z".parse().expect("time");
        let schedule = crate::model::Schedule::parse("*/5 * * * *", Some("Europe/London"), now).expect("schedule");
        let spec = crate::core::tests::spec("etl", crate::model::Trigger::Schedule(schedule));
        let mut cron = Cron::new(CoreConfig::default());
        cron.input(now, Input::Subscribed { framework_id: FrameworkId::new("fw-1") });
        cron.command(now, Command::PutJob(Box::new(spec))).expect("valid");
        cron.command(now, Command::RunNow { name: crate::model::JobName::new("etl"), arguments: vec!["x".into()] })
            .expect("known");
        let ops: Vec<StoreOp> = cron
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                crate::core::Output::Persist(op) => Some(op),
                _ => None,
            })
            .collect();
        {
            let mut store = Store::open_file(&path).expect("open");
            store.apply(&ops).await.expect("commit");
        }
        let mut store = Store::open_file(&path).expect("reopen");
        let recovered = store.load().await.expect("load");
        assert_eq!(recovered.framework_id, Some(FrameworkId::new("fw-1")));
        assert_eq!(recovered.jobs, cron.jobs().cloned().collect::<Vec<_>>());
        assert_eq!(recovered.runs, cron.all_active_runs().cloned().collect::<Vec<_>>());
    }
}
