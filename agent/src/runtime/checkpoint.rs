//! The agent's checkpoint on disk: its id, every task's record and each task's process
//! facts, written crash-safely (temporary file, fsync, rename, fsync of the directory) so
//! that a file is either the old version or the new one, never a torn mix.
//!
//! Layout under `<work_dir>/meta/`:
//!
//! - `agent.json`: the agent id and the master it registered with;
//! - `runs/<run>/task.json`: the task's [`TaskRecord`] (task, framework, state, pid,
//!   sandbox, unacknowledged updates in order);
//! - `runs/<run>/pid`: `<pid> <start time in clock ticks>` of the task's supervisor, so a
//!   recycled pid is never mistaken for the task;
//! - `runs/<run>/supervisor_pid`: the supervisor's pid, written by the supervisor itself
//!   before it starts the command, for an agent that died before writing `pid`;
//! - `runs/<run>/exit_status`: written by the supervisor when the task ends, `exit <code>`
//!   or `signal <number>` (see `process.rs`).
//!
//! Plain JSON files rather than an embedded database: a few small records per task, each
//! rewritten whole, need no more than `rename`, and an operator can read them with `cat`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agora_proto::model::AgentId;

use crate::core::{ProcessExit, RunId, TaskRecord};

/// Largest checkpoint file read back; a task record holds a task and at most three updates,
/// far below this. A larger file is damaged and is skipped.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The agent's own record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AgentRecord {
    pub agent_id: AgentId,
    pub master: String,
}

/// A task read back, with what the supervisor left behind.
#[derive(Debug)]
pub(crate) struct StoredRun {
    pub record: TaskRecord,
    /// The supervisor's pid and start time, when recorded.
    pub supervisor: Option<(u32, u64)>,
    /// The pid the supervisor wrote itself, when the agent recorded none.
    pub own_pid: Option<u32>,
    /// How the task ended, when its supervisor recorded it.
    pub exit: Option<ProcessExit>,
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    pub agent: Option<AgentRecord>,
    pub runs: Vec<StoredRun>,
    /// Files that could not be read, each with why; reported, never fatal.
    pub damaged: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Store {
    meta: PathBuf,
}

impl Store {
    /// Opens (creating) `<work_dir>/meta`.
    pub fn open(work_dir: &Path) -> io::Result<Self> {
        let meta = work_dir.join("meta");
        fs::create_dir_all(meta.join("runs"))?;
        Ok(Self { meta })
    }

    pub fn run_dir(&self, run: RunId) -> PathBuf {
        self.meta.join("runs").join(run.0.to_string())
    }

    /// Where the supervisor of `run` writes how the task ended.
    pub fn exit_status_path(&self, run: RunId) -> PathBuf {
        self.run_dir(run).join("exit_status")
    }

    pub fn save_agent(&self, record: &AgentRecord) -> io::Result<()> {
        write_atomic(&self.meta.join("agent.json"), &to_json(record)?)
    }

    /// Forgets the agent's id, when the master refused it.
    pub fn remove_agent(&self) -> io::Result<()> {
        match fs::remove_file(self.meta.join("agent.json")) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => sync_dir(&self.meta),
        }
    }

    pub fn save_task(&self, record: &TaskRecord) -> io::Result<()> {
        let dir = self.run_dir(record.run);
        if !dir.exists() {
            fs::create_dir_all(&dir)?;
            sync_dir(&self.meta.join("runs"))?;
        }
        write_atomic(&dir.join("task.json"), &to_json(record)?)
    }

    /// Deletes everything of `run` but its sandbox, which stays for operators to read.
    pub fn remove_run(&self, run: RunId) -> io::Result<()> {
        match fs::remove_dir_all(self.run_dir(run)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => sync_dir(&self.meta.join("runs")),
        }
    }

    /// Reads back the agent record and at most `max_runs` task records, lowest run first.
    pub fn load(&self, max_runs: usize) -> Stored {
        let mut stored = Stored::default();
        match read_json::<AgentRecord>(&self.meta.join("agent.json")) {
            Ok(agent) => stored.agent = agent,
            Err(error) => stored.damaged.push(format!("agent.json: {error}")),
        }
        let mut runs: Vec<u64> = match fs::read_dir(self.meta.join("runs")) {
            Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
            Err(error) => {
                stored.damaged.push(format!("runs: {error}"));
                Vec::new()
            }
        };
        runs.sort_unstable();
        for run in runs {
            let run = RunId(run);
            let dir = self.run_dir(run);
            if stored.runs.len() >= max_runs {
                // More runs than the agent may hold: the highest are set aside, out of the
                // way of the numbers new runs take.
                stored.damaged.push(format!("runs/{}: beyond the limit of {max_runs} tasks", run.0));
                self.set_aside(&dir, run);
                continue;
            }
            let record = match read_json::<TaskRecord>(&dir.join("task.json")) {
                Ok(Some(record)) if record.run == run => record,
                Ok(Some(_)) => {
                    stored.damaged.push(format!("runs/{}/task.json: names another run", run.0));
                    continue;
                }
                // The agent died between creating the directory and writing the record:
                // nothing was launched for it yet, and a new run may take its number.
                Ok(None) => {
                    if let Err(error) = self.remove_run(run) {
                        stored.damaged.push(format!("runs/{}: cannot delete an incomplete run: {error}", run.0));
                    }
                    continue;
                }
                Err(error) => {
                    stored.damaged.push(format!("runs/{}/task.json: {error}; moved to meta/damaged/", run.0));
                    self.set_aside(&dir, run);
                    continue;
                }
            };
            let supervisor = read_small(&dir.join("pid")).ok().flatten().and_then(|text| parse_pid(&text));
            let own_pid =
                read_small(&dir.join("supervisor_pid")).ok().flatten().and_then(|text| text.trim().parse().ok());
            let exit = read_small(&self.exit_status_path(run)).ok().flatten().and_then(|text| parse_exit(&text));
            stored.runs.push(StoredRun { record, supervisor, own_pid, exit });
        }
        stored
    }
}

impl Store {
    /// Moves a run's directory to `meta/damaged/`: out of the way of the runs numbered after
    /// the recovered ones, and kept for an operator to read.
    fn set_aside(&self, dir: &Path, run: RunId) {
        let damaged = self.meta.join("damaged");
        let moved = fs::create_dir_all(&damaged).and_then(|()| fs::rename(dir, damaged.join(run.0.to_string())));
        if let Err(error) = moved {
            tracing::warn!(run = run.0, %error, "cannot set a run's checkpoint aside");
        }
    }
}

/// Reads the exit status a supervisor wrote, if any.
pub(crate) fn read_exit_status(path: &Path) -> Option<ProcessExit> {
    read_small(path).ok().flatten().and_then(|text| parse_exit(&text))
}

/// `exit 3` or `signal 15`, as the supervisor writes them.
pub(crate) fn parse_exit(text: &str) -> Option<ProcessExit> {
    let (kind, number) = text.trim().split_once(' ')?;
    let number: i32 = number.trim().parse().ok()?;
    match kind {
        "exit" => Some(ProcessExit::Code(number)),
        "signal" => Some(ProcessExit::Signal(number)),
        _ => None,
    }
}

fn parse_pid(text: &str) -> Option<(u32, u64)> {
    let (pid, start) = text.trim().split_once(' ')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

fn to_json<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(io::Error::other)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match read_small(path)? {
        Some(text) => serde_json::from_str(&text).map(Some).map_err(io::Error::other),
        None => Ok(None),
    }
}

/// The file's text, `None` when it does not exist; an error when it is too large.
fn read_small(path: &Path) -> io::Result<Option<String>> {
    match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Err(io::Error::other(format!("{} bytes, more than the {MAX_FILE_BYTES} allowed", meta.len())));
        }
        Ok(_) => {}
    }
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either the old file or
/// the new one: write a temporary sibling, fsync it, rename it over, fsync the directory
/// (which makes the rename itself durable).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("a checkpoint file has a directory"))?;
    let name =
        path.file_name().and_then(|n| n.to_str()).ok_or_else(|| io::Error::other("a checkpoint file has a name"))?;
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The working directory of process `pid`, when it can be read.
pub(crate) fn process_cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), and whether it is a zombie; `None` when there is no such process.
/// Together with the pid it names one process for good: pids are recycled, start times
/// are not.
pub(crate) fn process_start(pid: u32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; what follows its last
    // `)` is space-separated: state is field 3, start time field 22.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let zombie = fields.next()? == "Z";
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, zombie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_back_as_codes_and_signals_and_garbage_is_none() {
        assert_eq!(parse_exit("exit 3\n"), Some(ProcessExit::Code(3)));
        assert_eq!(parse_exit("signal 15"), Some(ProcessExit::Signal(15)));
        assert_eq!(parse_exit("exit"), None);
        assert_eq!(parse_exit("crashed 1"), None);
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.json");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(fs::read_to_string(&path).expect("readable"), "two");
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("listable")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(names, ["agent.json"]);
    }

    fn record(run: u64) -> TaskRecord {
        use agora_proto::model::{CommandInfo, FrameworkId, Resources, TaskId, TaskInfo, TaskState};
        TaskRecord {
            framework_id: FrameworkId::new("f"),
            framework: None,
            info: TaskInfo {
                task_id: TaskId::new(format!("t{run}")),
                name: "t".into(),
                agent_id: AgentId::new("a"),
                resources: Resources::new(),
                command: CommandInfo { shell: Some("true".into()), argv: vec![], environment: Default::default() },
                labels: vec![],
                kill_grace_period_ms: None,
                health_check: None,
                readiness_check: None,
            },
            run: RunId(run),
            state: TaskState::TaskRunning,
            pid: Some(4_000_000),
            sandbox: Some("f/t".into()),
            exited: false,
            kill_grace_period_ms: None,
            pending: vec![],
            healthy: None,
            ready: None,
            running_since_ms: None,
            kill_message: None,
        }
    }

    #[test]
    fn loading_returns_good_records_deletes_incomplete_runs_and_sets_damaged_and_excess_ones_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opened");
        store.save_agent(&AgentRecord { agent_id: AgentId::new("a"), master: "m:5050".into() }).expect("saved");
        store.save_task(&record(1)).expect("saved");
        fs::write(store.run_dir(1.into_run()).join("pid"), "4000000 77\n").expect("written");
        fs::write(store.exit_status_path(1.into_run()), "exit 3\n").expect("written");
        fs::create_dir_all(store.run_dir(2.into_run())).expect("an incomplete run");
        fs::create_dir_all(store.run_dir(3.into_run())).expect("a damaged run");
        fs::write(store.run_dir(3.into_run()).join("task.json"), "{not json").expect("written");
        store.save_task(&record(4)).expect("saved");
        store.save_task(&record(5)).expect("saved");

        let stored = store.load(2);
        assert_eq!(stored.agent, Some(AgentRecord { agent_id: AgentId::new("a"), master: "m:5050".into() }));
        type Seen = (u64, Option<(u32, u64)>, Option<ProcessExit>);
        let runs: Vec<Seen> = stored.runs.iter().map(|r| (r.record.run.0, r.supervisor, r.exit)).collect();
        assert_eq!(runs, [(1, Some((4_000_000, 77)), Some(ProcessExit::Code(3))), (4, None, None)]);
        assert_eq!(stored.damaged.len(), 2, "{:?}", stored.damaged);
        assert!(!store.run_dir(2.into_run()).exists(), "the incomplete run is deleted");
        assert!(dir.path().join("meta/damaged/3/task.json").exists());
        assert!(dir.path().join("meta/damaged/5/task.json").exists());
    }

    trait IntoRun {
        fn into_run(self) -> RunId;
    }

    impl IntoRun for u64 {
        fn into_run(self) -> RunId {
            RunId(self)
        }
    }

    #[test]
    fn this_process_has_a_start_time_and_is_not_a_zombie() {
        let (start, zombie) = process_start(std::process::id()).expect("this process exists");
        assert!(start > 0);
        assert!(!zombie);
    }
}
