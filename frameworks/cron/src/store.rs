//! The durable store of cron's state: the framework id, the jobs (with their counters and
//! how far their triggers are settled) and every run kept (in flight and history).
//!
//! Two backends from the SDK's [`kv`](agora_sdk::kv) keep one contract: [`Store::load`]
//! returns everything committed (finished runs as the core keeps them, [`FinishedRun`]s),
//! [`Store::runs_of`] one job's whole records, and [`Store::apply`] commits one batch of
//! [`StoreOp`]s atomically or fails (the owner then stops the process).
//!
//! Memory: the history is read from the store when asked for, never held whole. The redb
//! file is read record by record at start (a finished run becomes a few tens of bytes)
//! and redb's page cache is bounded ([`FILE_CACHE_BYTES`]); a month of history for ten
//! thousand jobs is half a million records, hundreds of MiB on disk.
//! - a redb file, `cron.redb` in `--work-dir`;
//! - etcd under `/agora/cron` with `--etcd`, every write fenced by the leader's term.
//!
//! Tables: `framework` (`id`), `jobs` (name → `JobRecord` JSON), `runs` (`<job>@<scheduled>`
//! → `RunRecord` JSON; `@` never appears in a job name, and the time is written so that a
//! job's runs sort by it).

use agora_proto::model::FrameworkId;
use agora_sdk::kv::{EtcdTables, FileTables, KvError, Record, Write};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{Recovered, StoreOp};
use crate::model::{FinishedRun, JobName, RunKey, RunRecord};

const FRAMEWORK: &str = "framework";
const JOBS: &str = "jobs";
const RUNS: &str = "runs";
const TABLES: &[&str] = &[FRAMEWORK, JOBS, RUNS];
const FRAMEWORK_ID_KEY: &str = "id";
/// The file in `--work-dir`.
pub const FILE_NAME: &str = "cron.redb";
/// redb's page cache (its default is 1 GiB, which a start reading every record would
/// fill with the whole file): the store is read whole once, then one job's runs at a
/// time, and a minute's commit of every job's run touches a few MiB.
pub const FILE_CACHE_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("cannot encode a record: {0}")]
    Encode(String),
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
        Ok(Store::File(FileTables::open_with_cache(path, TABLES, Some(FILE_CACHE_BYTES))?))
    }

    /// Everything committed; from a file one record at a time.
    pub async fn load(&mut self) -> Result<Recovered, StoreError> {
        match self {
            Store::File(tables) => Ok(tables.visit(Recovered::default(), read).await?),
            Store::Etcd(tables) => {
                let mut recovered = Recovered::default();
                for record in tables.load().await? {
                    read(&mut recovered, record)?;
                }
                Ok(recovered)
            }
        }
    }

    /// Every run of `job` committed (finished and in flight), oldest scheduled first.
    pub async fn runs_of(&self, job: &JobName) -> Result<Vec<RunRecord>, StoreError> {
        let prefix = format!("{job}@");
        let records = match self {
            Store::File(tables) => tables.range(RUNS, &prefix).await?,
            Store::Etcd(tables) => tables.range(RUNS, &prefix).await?,
        };
        records.iter().map(|record| Ok(decode(record)?)).collect()
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

/// The batch's writes, one per record: a record written twice in a batch (a run recorded
/// and launched in the same batch, a job settled and counted) is written once, as it is
/// last. The batch is one transaction, so the order between records does not matter.
fn writes(batch: &[StoreOp]) -> Result<Vec<Write>, StoreError> {
    let put = |table: &str, key: String, value: Vec<u8>| Write::Put { table: table.into(), key, value };
    // Looked up only, never iterated: its order cannot leak into the writes.
    let mut last: std::collections::HashMap<(&str, String), usize> = std::collections::HashMap::new();
    let keys: Vec<(&str, String)> = batch
        .iter()
        .map(|op| match op {
            StoreOp::FrameworkId(_) => (FRAMEWORK, FRAMEWORK_ID_KEY.to_owned()),
            StoreOp::PutJob(job) => (JOBS, job.spec.name.to_string()),
            StoreOp::DeleteJob(name) => (JOBS, name.to_string()),
            StoreOp::PutRun(run) => (RUNS, run_key(&run.key)),
            StoreOp::DeleteRun(key) => (RUNS, run_key(key)),
        })
        .collect();
    for (index, key) in keys.iter().enumerate() {
        last.insert(key.clone(), index);
    }
    let mut writes = Vec::with_capacity(last.len());
    for (index, (op, key)) in batch.iter().zip(&keys).enumerate() {
        if last.get(key) != Some(&index) {
            continue;
        }
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

fn decode<T: DeserializeOwned>(record: &Record) -> Result<T, KvError> {
    serde_json::from_slice(&record.value).map_err(|e| KvError::Corrupt {
        table: record.table.clone(),
        key: record.key.clone(),
        reason: e.to_string(),
    })
}

/// Adds one record to what was recovered: a finished run only as the core keeps it.
fn read(recovered: &mut Recovered, record: Record) -> Result<(), KvError> {
    match (record.table.as_str(), record.key.as_str()) {
        (FRAMEWORK, FRAMEWORK_ID_KEY) => recovered.framework_id = Some(decode::<FrameworkId>(&record)?),
        (JOBS, _) => recovered.jobs.push(decode(&record)?),
        (RUNS, _) => {
            let run: RunRecord = decode(&record)?;
            if run.state.is_final() {
                let finished = FinishedRun::of(&run);
                recovered.finished.entry(run.key.job).or_default().push(finished);
            } else {
                recovered.runs.push(run);
            }
        }
        _ => {
            let (table, key) = (record.table, record.key);
            return Err(KvError::Corrupt { table, key, reason: "an unknown record".into() });
        }
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
    async fn a_finished_run_is_recovered_as_the_core_keeps_it_and_read_whole_with_its_job_s_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open_file(&dir.path().join(FILE_NAME)).expect("open");
        let now: jiff::Timestamp = "2026-03-02T10:00:00Z".parse().expect("time");
        let run = |job: &str, state: crate::model::RunState| {
            let key = RunKey { job: JobName::new(job), scheduled: now };
            RunRecord {
                task_id: key.task_id(1),
                key,
                trigger: crate::model::RunTrigger::Schedule,
                attempt: 1,
                failures: 0,
                state,
                killing: None,
                recorded_at: now,
                deadline: None,
                agent: None,
                started: Some(now),
                attempt_started: Some(now),
                ended: Some(now + jiff::SignedDuration::from_millis(1500)),
                exit_code: Some(0),
                message: "Command exited with status 0".into(),
            }
        };
        let done = run("a", crate::model::RunState::Succeeded);
        let mut going = run("a b", crate::model::RunState::Running);
        going.ended = None;
        let ops = [StoreOp::PutRun(Box::new(done.clone())), StoreOp::PutRun(Box::new(going.clone()))];
        store.apply(&ops).await.expect("commit");

        let recovered = store.load().await.expect("load");
        assert_eq!(recovered.runs, [going.clone()]);
        let kept = recovered.finished.get(&JobName::new("a")).expect("a's history");
        assert_eq!(kept, &[FinishedRun { scheduled: now, state: "succeeded", succeeded_ms: Some(1500.0) }]);
        assert_eq!(store.runs_of(&JobName::new("a")).await.expect("read"), [done]);
        assert_eq!(store.runs_of(&JobName::new("a b")).await.expect("read"), [going]);
        assert!(store.runs_of(&JobName::new("b")).await.expect("read").is_empty());
    }

    #[test]
    fn a_record_written_twice_in_a_batch_is_written_once_as_it_is_last() {
        let key = RunKey { job: JobName::new("a"), scheduled: "2026-03-02T10:00:00Z".parse().expect("time") };
        let other = RunKey { job: JobName::new("b"), ..key.clone() };
        let batch = [
            StoreOp::DeleteRun(key.clone()),
            StoreOp::DeleteRun(other.clone()),
            StoreOp::FrameworkId(FrameworkId::new("fw-1")),
            StoreOp::DeleteJob(JobName::new("a")),
            StoreOp::FrameworkId(FrameworkId::new("fw-2")),
            StoreOp::DeleteRun(key.clone()),
        ];
        let written = writes(&batch).expect("encodes");
        let shape: Vec<String> = written
            .iter()
            .map(|w| match w {
                Write::Put { table, key, value } => format!("put {table} {key} {}", String::from_utf8_lossy(value)),
                Write::Delete { table, key } => format!("delete {table} {key}"),
                Write::DeletePrefix { table, prefix } => format!("delete {table} {prefix}*"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                format!("delete runs {}", run_key(&other)),
                "delete jobs a".to_owned(),
                "put framework id \"fw-2\"".to_owned(),
                format!("delete runs {}", run_key(&key)),
            ]
        );
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
