//! The agent's checkpoint on disk: its id, every task's record and each task's process
//! facts, written so that a crash at any point leaves what was there before a write or what
//! the write put there, never a torn mix.
//!
//! Layout under `<work_dir>/meta/`:
//!
//! - `agent.json`: the agent id and the master it registered with (replaced whole:
//!   temporary file, fsync, rename, fsync of the directory);
//! - `journal`: the tasks' records, as a log of entries, one line each
//!   (`<checksum> <json>`): a task's [`TaskRecord`] saved, the pid and start time (in clock
//!   ticks) of its supervisor, which tell it apart from a later process given the same pid,
//!   or its run removed. Read back, the latest entry of a run wins;
//! - `runs/<run>/supervisor_pid`: the supervisor's pid, written by the supervisor itself
//!   before it starts the command, for an agent that died before recording it;
//! - `runs/<run>/exit_status`: written by the supervisor when the task ends, `exit <code>`
//!   or `signal <number>` (see `process.rs`).
//!
//! Why a journal rather than a file per task: the owner writes every change of the steps
//! it took together as one [`Batch`], which is one append and one `fdatasync` however many
//! tasks it touches. On a disk where
//! a sync takes milliseconds, a file per record replaced through its own syncs held the
//! agent to a few hundred launches a second at best. The journal is rewritten whole (a
//! snapshot of the live records: temporary file, fsync, rename, fsync of `meta/`) at start,
//! whenever it grows to several times what it holds, and after a failed write.
//!
//! A run's directory is made by its launch, after the run's record is in the journal, and
//! deleted (off the owner's path) once its removal is; a directory the journal does not
//! know is left from a launch or a removal a crash interrupted, and is deleted at start. Agents before the journal kept each record in `runs/<run>/task.json` and the
//! supervisor's pid in `runs/<run>/pid`: both are still read, folded into the journal at
//! start and then deleted.
//!
//! Plain JSON lines rather than an embedded database: a few small records per task need no
//! more than an append, and an operator can read them with `cat`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use agora_proto::model::AgentId;

use crate::core::{Checkpoint, ProcessExit, RunId, TaskRecord};

/// Largest small file (`agent.json`, a legacy `task.json`, `exit_status`, …) or journal
/// entry read back; a task record holds a task and at most three updates, far below this.
/// A larger one is damaged and is skipped.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest journal read back. A journal is compacted at four times its live records, which
/// are at most `max_tasks` (10,000 by default) of a few KiB: far below this.
const MAX_JOURNAL_BYTES: u64 = 1 << 30;
/// A journal is compacted once it is this large and [`COMPACT_FACTOR`] times what it holds
/// live: small journals are not worth rewriting.
const COMPACT_MIN_BYTES: u64 = 8 * 1024 * 1024;
const COMPACT_FACTOR: u64 = 4;

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
    /// Files and entries that could not be read, each with why; reported, never fatal.
    pub damaged: Vec<String>,
}

/// Where the checkpoint lives, and the files written outside the journal.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    meta: PathBuf,
}

/// One line of the journal, as written.
#[derive(serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum EntryOut<'a> {
    Save(&'a TaskRecord),
    Supervisor { run: RunId, pid: u32, start_ticks: u64 },
    Remove { run: RunId },
}

/// One line of the journal, as read back.
#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Save(Box<TaskRecord>),
    Supervisor { run: RunId, pid: u32, start_ticks: u64 },
    Remove { run: RunId },
}

/// What the journal holds, replayed.
#[derive(Debug, Default)]
struct Replayed {
    records: BTreeMap<RunId, TaskRecord>,
    supervisors: BTreeMap<RunId, (u32, u64)>,
}

impl Store {
    /// Opens (creating) `<work_dir>/meta`.
    pub fn open(work_dir: &Path) -> io::Result<Self> {
        let meta = work_dir.join("meta");
        fs::create_dir_all(meta.join("runs"))?;
        Ok(Self { meta })
    }

    pub fn run_dir(&self, run: RunId) -> PathBuf {
        self.runs_dir().join(run.0.to_string())
    }

    /// Where the supervisor of `run` writes how the task ended.
    pub fn exit_status_path(&self, run: RunId) -> PathBuf {
        self.run_dir(run).join("exit_status")
    }

    fn runs_dir(&self) -> PathBuf {
        self.meta.join("runs")
    }

    fn journal_path(&self) -> PathBuf {
        self.meta.join("journal")
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

    /// Deletes the directories of runs whose removal is in the journal (not synced: one that
    /// comes back after a crash is a directory the journal does not know, deleted at start).
    pub fn remove_run_dirs(&self, runs: &[RunId]) {
        for run in runs {
            if let Err(error) = self.remove_run(*run) {
                tracing::warn!(run = run.0, %error, "cannot delete a finished run's checkpoint directory");
            }
        }
    }

    /// Deletes everything of `run` but its sandbox, which stays for operators to read: the
    /// files its supervisor writes and the directory, without listing it (the cheapest way
    /// on a busy file system), or whatever else a directory left by an older agent holds.
    fn remove_run(&self, run: RunId) -> io::Result<()> {
        let dir = self.run_dir(run);
        for file in ["supervisor_pid", "exit_status"] {
            match fs::remove_file(dir.join(file)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        match fs::remove_dir(&dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(_) => match fs::remove_dir_all(&dir) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
            Ok(()) => Ok(()),
        }
    }

    /// Reads back the agent record and at most `max_runs` task records, lowest run first:
    /// those of the journal, and those an agent from before the journal left in
    /// `runs/<run>/task.json`.
    pub fn load(&self, max_runs: usize) -> Stored {
        let mut stored = Stored::default();
        match read_json::<AgentRecord>(&self.meta.join("agent.json")) {
            Ok(agent) => stored.agent = agent,
            Err(error) => stored.damaged.push(format!("agent.json: {error}")),
        }
        let mut replayed = self.replay(&mut stored.damaged);
        let mut runs: BTreeSet<RunId> = replayed.records.keys().copied().collect();
        match fs::read_dir(self.runs_dir()) {
            Ok(entries) => runs.extend(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).map(RunId)),
            Err(error) => stored.damaged.push(format!("runs: {error}")),
        }
        for run in runs {
            let dir = self.run_dir(run);
            if stored.runs.len() >= max_runs {
                // More runs than the agent may hold: the highest are set aside, out of the
                // way of the numbers new runs take.
                stored.damaged.push(format!("runs/{}: beyond the limit of {max_runs} tasks", run.0));
                self.set_aside(&dir, run);
                continue;
            }
            let record = match replayed.records.remove(&run) {
                Some(record) => record,
                None => match read_json::<TaskRecord>(&dir.join("task.json")) {
                    Ok(Some(record)) if record.run == run => record,
                    Ok(Some(_)) => {
                        stored.damaged.push(format!("runs/{}/task.json: names another run", run.0));
                        continue;
                    }
                    // A directory no record names: the run's removal was journaled but the
                    // agent died before it deleted the directory (or, before the journal, the
                    // agent died between making it and writing the record, before anything
                    // was launched). A new run may take its number.
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
                },
            };
            let supervisor = replayed
                .supervisors
                .remove(&run)
                .or_else(|| read_small(&dir.join("pid")).ok().flatten().and_then(|text| parse_pid(&text)));
            let own_pid =
                read_small(&dir.join("supervisor_pid")).ok().flatten().and_then(|text| text.trim().parse().ok());
            let exit = read_exit_status(&self.exit_status_path(run));
            stored.runs.push(StoredRun { record, supervisor, own_pid, exit });
        }
        stored
    }

    /// The journal's records and supervisors, up to its first damaged entry: a batch is
    /// durable only once its sync returned, so what follows a damaged entry may be torn too.
    fn replay(&self, damaged: &mut Vec<String>) -> Replayed {
        let mut replayed = Replayed::default();
        let path = self.journal_path();
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return replayed,
            Err(error) => {
                damaged.push(format!("journal: {error}"));
                return replayed;
            }
        };
        let mut reader = io::BufReader::new(io::Read::take(file, MAX_JOURNAL_BYTES.saturating_add(1)));
        let mut line = Vec::new();
        let (mut offset, mut number) = (0u64, 0u64);
        loop {
            line.clear();
            let read = match io::Read::take(&mut reader, MAX_FILE_BYTES.saturating_add(1)).read_until(b'\n', &mut line)
            {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) => {
                    damaged.push(format!("journal: cannot read past byte {offset}: {error}"));
                    break;
                }
            };
            number += 1;
            if offset.saturating_add(read as u64) > MAX_JOURNAL_BYTES {
                damaged.push(format!("journal: larger than {MAX_JOURNAL_BYTES} bytes; read up to byte {offset}"));
                self.keep_damaged_journal(damaged);
                break;
            }
            if line.last() != Some(&b'\n') {
                if line.len() as u64 > MAX_FILE_BYTES {
                    damaged.push(format!("journal: entry {number} (byte {offset}) is longer than {MAX_FILE_BYTES} bytes; it and what follows are ignored"));
                    self.keep_damaged_journal(damaged);
                } else {
                    // The agent died writing its last batch, which was never synced and
                    // so never acted on.
                    damaged.push(format!("journal: the last entry (byte {offset}) is incomplete and is ignored"));
                }
                break;
            }
            match decode(&line) {
                Ok(Entry::Save(record)) => {
                    replayed.records.insert(record.run, *record);
                }
                Ok(Entry::Supervisor { run, pid, start_ticks }) => {
                    replayed.supervisors.insert(run, (pid, start_ticks));
                }
                Ok(Entry::Remove { run }) => {
                    replayed.records.remove(&run);
                    replayed.supervisors.remove(&run);
                }
                Err(why) => {
                    damaged.push(format!(
                        "journal: entry {number} (byte {offset}) {why}; it and what follows are ignored"
                    ));
                    self.keep_damaged_journal(damaged);
                    break;
                }
            }
            offset = offset.saturating_add(read as u64);
        }
        // Facts about runs without a record (a supervisor reported in the batch that removed
        // its run, say) are of no use.
        replayed.supervisors.retain(|run, _| replayed.records.contains_key(run));
        replayed
    }

    /// Copies a damaged journal to `meta/damaged/journal` before the next snapshot replaces
    /// it, for an operator to read.
    fn keep_damaged_journal(&self, damaged: &mut Vec<String>) {
        let dir = self.meta.join("damaged");
        let copied = fs::create_dir_all(&dir).and_then(|()| fs::copy(self.journal_path(), dir.join("journal")));
        match copied {
            Ok(_) => damaged.push("journal: a copy of it as read is in meta/damaged/journal".to_owned()),
            Err(error) => damaged.push(format!("journal: cannot keep a copy in meta/damaged/: {error}")),
        }
    }

    /// Moves a run's directory to `meta/damaged/`: out of the way of the runs numbered after
    /// the recovered ones, and kept for an operator to read.
    fn set_aside(&self, dir: &Path, run: RunId) {
        let damaged = self.meta.join("damaged");
        let moved = fs::create_dir_all(&damaged).and_then(|()| fs::rename(dir, damaged.join(run.0.to_string())));
        match moved {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(run = run.0, %error, "cannot set a run's checkpoint aside"),
        }
    }
}

/// The checkpoint changes of the steps the owner took together, written by
/// [`Journal::write`] before any output of those steps is executed.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// As [`crate::core::Core::take_checkpoints`] returned them.
    pub changes: Vec<Checkpoint>,
    /// Supervisors started: run, pid, start time in clock ticks.
    pub supervisors: Vec<(RunId, u32, u64)>,
    /// Every live record, given when [`Journal::wants_snapshot`] says so: written as a new
    /// journal instead of appending `changes`, which it includes.
    pub snapshot: Option<Vec<TaskRecord>>,
}

/// What [`Journal::write`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Runs whose removal is on disk: their directories may be deleted.
    pub removed: Vec<RunId>,
    /// Why the batch could not be written, if it could not.
    pub error: Option<String>,
}

/// The open journal: the one writer of `meta/journal`.
#[derive(Debug)]
pub(crate) struct Journal {
    store: Store,
    file: fs::File,
    /// Bytes in the journal.
    len: u64,
    /// Every run with a record in the journal, with the size of its latest record's entry.
    live: BTreeMap<RunId, u64>,
    /// The sum of `live`: what a snapshot would hold.
    live_bytes: u64,
    /// The supervisors of live runs, written again with every snapshot.
    supervisors: BTreeMap<RunId, (u32, u64)>,
    /// A write failed part-way: what follows it could not be read back, so the next batch
    /// is a snapshot.
    broken: bool,
}

impl Journal {
    /// Starts a journal holding `records` and their `supervisors` (what [`Store::load`]
    /// read, as recovery settled it), replacing the previous journal, then deletes the
    /// per-task files of agents from before the journal.
    pub fn create<'a>(
        store: &Store,
        records: impl IntoIterator<Item = &'a TaskRecord>,
        supervisors: &BTreeMap<RunId, (u32, u64)>,
    ) -> io::Result<Self> {
        let records: Vec<&TaskRecord> = records.into_iter().collect();
        let journal = Self::write_snapshot(store, &records, supervisors)?;
        for record in records {
            for legacy in ["task.json", ".task.json.tmp", "pid", ".pid.tmp"] {
                match fs::remove_file(store.run_dir(record.run).join(legacy)) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => {
                        tracing::warn!(run = record.run.0, %error, "cannot delete a checkpoint file the journal replaced")
                    }
                    _ => {}
                }
            }
        }
        Ok(journal)
    }

    /// True when the next batch must carry a snapshot: the journal has grown to several
    /// times what it holds, or a write failed part-way.
    pub fn wants_snapshot(&self) -> bool {
        self.broken || (self.len >= COMPACT_MIN_BYTES && self.len / COMPACT_FACTOR > self.live_bytes)
    }

    /// Makes `batch` durable: its entries as one append and one sync (or a snapshot).
    /// Returns the runs whose directories may go now that their removal is on disk (which the
    /// caller deletes off its own path, see [`Store::remove_run_dirs`]) and what failed; the
    /// caller goes on anyway, since a full disk must not stop tasks.
    pub fn write(&mut self, batch: Batch) -> Written {
        let Batch { changes, supervisors, snapshot } = batch;
        let (result, removed) = match &snapshot {
            Some(snapshot) => {
                let kept: BTreeSet<RunId> = snapshot.iter().map(|record| record.run).collect();
                let removed = self.live.keys().filter(|run| !kept.contains(run)).copied().collect();
                let mut facts = self.supervisors.clone();
                facts.extend(supervisors.iter().map(|(run, pid, start)| (*run, (*pid, *start))));
                let records: Vec<&TaskRecord> = snapshot.iter().collect();
                (Self::write_snapshot(&self.store, &records, &facts).map(|journal| *self = journal), removed)
            }
            None => {
                let removed = changes
                    .iter()
                    .filter_map(|change| match change {
                        Checkpoint::Remove { run } => Some(*run),
                        Checkpoint::Save(_) => None,
                    })
                    .collect();
                (self.append(&supervisors, &changes), removed)
            }
        };
        match result {
            Ok(()) => Written { removed, error: None },
            Err(error) => {
                // Not a word of this batch can be trusted to be on disk (so no directory may
                // go); the next one rewrites everything.
                self.broken = true;
                Written { removed: Vec::new(), error: Some(format!("journal: {error}")) }
            }
        }
    }

    /// Appends the batch's entries in one write, then syncs the journal's data.
    fn append(&mut self, supervisors: &[(RunId, u32, u64)], changes: &[Checkpoint]) -> io::Result<()> {
        let mut buffer = Vec::new();
        let mut sizes = Vec::with_capacity(changes.len());
        // The supervisors first: a record that names a pid is never read back without the
        // start time that makes the pid safe to trust.
        for (run, pid, start_ticks) in supervisors {
            encode(&mut buffer, &EntryOut::Supervisor { run: *run, pid: *pid, start_ticks: *start_ticks })?;
        }
        for change in changes {
            let before = buffer.len();
            match change {
                Checkpoint::Save(record) => encode(&mut buffer, &EntryOut::Save(record))?,
                Checkpoint::Remove { run } => encode(&mut buffer, &EntryOut::Remove { run: *run })?,
            }
            sizes.push((buffer.len() - before) as u64);
        }
        let written = self.file.write_all(&buffer).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Cut off what may have gone in, so that the next append does not follow a torn
            // entry; the next batch is a snapshot anyway.
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        self.len += buffer.len() as u64;
        for (run, pid, start_ticks) in supervisors {
            self.supervisors.insert(*run, (*pid, *start_ticks));
        }
        for (change, size) in changes.iter().zip(sizes) {
            match change {
                Checkpoint::Save(record) => {
                    let previous = self.live.insert(record.run, size).unwrap_or(0);
                    self.live_bytes = self.live_bytes - previous + size;
                }
                Checkpoint::Remove { run } => {
                    self.live_bytes -= self.live.remove(run).unwrap_or(0);
                    self.supervisors.remove(run);
                }
            }
        }
        Ok(())
    }

    /// Writes `records` and the supervisors of their runs as a new journal (temporary file,
    /// fsync, rename, fsync of `meta/`) and opens it for appending.
    fn write_snapshot(
        store: &Store,
        records: &[&TaskRecord],
        supervisors: &BTreeMap<RunId, (u32, u64)>,
    ) -> io::Result<Self> {
        let mut buffer = Vec::new();
        let mut live = BTreeMap::new();
        let mut kept = BTreeMap::new();
        for record in records {
            if let Some(&(pid, start_ticks)) = supervisors.get(&record.run) {
                encode(&mut buffer, &EntryOut::Supervisor { run: record.run, pid, start_ticks })?;
                kept.insert(record.run, (pid, start_ticks));
            }
            let before = buffer.len();
            encode(&mut buffer, &EntryOut::Save(record))?;
            live.insert(record.run, (buffer.len() - before) as u64);
        }
        let path = store.journal_path();
        let temp = store.meta.join(".journal.tmp");
        let mut file = fs::File::create(&temp)?;
        file.write_all(&buffer)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &path)?;
        sync_dir(&store.meta)?;
        let file = fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            store: store.clone(),
            file,
            len: buffer.len() as u64,
            live_bytes: live.values().sum(),
            live,
            supervisors: kept,
            broken: false,
        })
    }
}

/// Appends `entry` as one journal line: the checksum of its JSON, a space, the JSON.
fn encode(buffer: &mut Vec<u8>, entry: &EntryOut<'_>) -> io::Result<()> {
    let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
    buffer.extend_from_slice(format!("{:016x} ", checksum(&json)).as_bytes());
    buffer.extend_from_slice(&json);
    buffer.push(b'\n');
    Ok(())
}

/// One journal line (with its newline) back to its entry, or why it cannot be.
fn decode(line: &[u8]) -> Result<Entry, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (sum, json) = match line.iter().position(|b| *b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => return Err("has no checksum".to_owned()),
    };
    let sum = std::str::from_utf8(sum)
        .ok()
        .and_then(|sum| u64::from_str_radix(sum, 16).ok())
        .ok_or_else(|| "has no checksum".to_owned())?;
    if sum != checksum(json) {
        return Err("does not match its checksum".to_owned());
    }
    serde_json::from_slice(json).map_err(|error| format!("is not an entry: {error}"))
}

/// FNV-1a (64 bits): enough to tell a torn or garbled line from a written one.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
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
                command: CommandInfo { shell: Some("true".into()), ..CommandInfo::default() },
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
            limitation: None,
        }
    }

    fn save(run: u64) -> Checkpoint {
        Checkpoint::Save(Box::new(record(run)))
    }

    /// A store with an empty journal, in a fresh temporary directory.
    fn fresh() -> (tempfile::TempDir, Store, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opened");
        let journal = Journal::create(&store, [], &BTreeMap::new()).expect("created");
        (dir, store, journal)
    }

    type Seen = (u64, Option<u32>, Option<(u32, u64)>);

    fn seen(stored: &Stored) -> Vec<Seen> {
        stored.runs.iter().map(|r| (r.record.run.0, r.record.pid, r.supervisor)).collect()
    }

    #[test]
    fn batches_read_back_as_the_latest_record_of_each_live_run_with_its_supervisor() {
        let (_dir, store, mut journal) = fresh();
        let first = Batch { changes: vec![save(1), save(2), save(3)], ..Batch::default() };
        assert_eq!(journal.write(first), Written::default());
        // The launches make the runs' directories.
        for run in 1..=3 {
            fs::create_dir_all(store.run_dir(RunId(run))).expect("a run directory");
        }
        let mut moved = record(1);
        moved.pid = Some(77);
        let second = Batch {
            changes: vec![Checkpoint::Remove { run: RunId(2) }, Checkpoint::Save(Box::new(moved))],
            supervisors: vec![(RunId(1), 77, 1_234)],
            snapshot: None,
        };
        assert_eq!(journal.write(second), Written { removed: vec![RunId(2)], error: None });
        store.remove_run_dirs(&[RunId(2)]);
        assert!(!store.run_dir(RunId(2)).exists());

        let stored = store.load(10);
        assert_eq!(seen(&stored), [(1, Some(77), Some((77, 1_234))), (3, Some(4_000_000), None)]);
        assert!(stored.damaged.is_empty(), "{:?}", stored.damaged);
    }

    #[test]
    fn a_torn_last_entry_is_ignored_and_what_came_before_it_is_kept() {
        let (_dir, store, mut journal) = fresh();
        journal.write(Batch { changes: vec![save(1)], ..Batch::default() });
        fs::create_dir_all(store.run_dir(RunId(1))).expect("run 1 launched");
        journal.write(Batch { changes: vec![save(2)], ..Batch::default() });
        fs::create_dir_all(store.run_dir(RunId(2))).expect("run 2's launch began");
        // The agent died half-way through writing the second batch.
        let text = fs::read(store.journal_path()).expect("readable");
        fs::write(store.journal_path(), &text[..text.len() - 10]).expect("written");

        let stored = store.load(10);
        assert_eq!(seen(&stored).iter().map(|s| s.0).collect::<Vec<_>>(), [1]);
        assert_eq!(stored.damaged.len(), 1, "{:?}", stored.damaged);
        assert!(stored.damaged[0].contains("incomplete"), "{:?}", stored.damaged);
        assert!(!store.run_dir(RunId(2)).exists(), "the directory of the unfinished batch's run is deleted");
        assert!(store.run_dir(RunId(1)).is_dir());
    }

    #[test]
    fn a_garbled_entry_ends_the_replay_and_the_journal_is_kept_for_the_operator() {
        let (dir, store, mut journal) = fresh();
        journal.write(Batch { changes: vec![save(1), save(2), save(3)], ..Batch::default() });
        let text = fs::read_to_string(store.journal_path()).expect("readable");
        let garbled = text.replacen("\"t2\"", "\"tX\"", 1);
        fs::write(store.journal_path(), garbled).expect("written");

        let stored = store.load(10);
        assert_eq!(seen(&stored).iter().map(|s| s.0).collect::<Vec<_>>(), [1]);
        assert!(stored.damaged.iter().any(|d| d.contains("entry 2") && d.contains("checksum")), "{:?}", stored.damaged);
        assert!(dir.path().join("meta/damaged/journal").is_file());
    }

    #[test]
    fn a_snapshot_replaces_the_journal_with_the_live_records_and_their_supervisors() {
        let (_dir, store, mut journal) = fresh();
        for _ in 0..20 {
            journal.write(Batch {
                changes: vec![save(1), save(2)],
                supervisors: vec![(RunId(2), 5, 6)],
                ..Batch::default()
            });
        }
        let before = fs::metadata(store.journal_path()).expect("a journal").len();
        let written = journal.write(Batch { snapshot: Some(vec![record(2), record(4)]), ..Batch::default() });
        assert_eq!(written, Written { removed: vec![RunId(1)], error: None }, "a run the snapshot leaves out goes");
        let after = fs::metadata(store.journal_path()).expect("a journal").len();
        assert!(after * 10 < before, "{after} bytes after, {before} before");
        assert_eq!(seen(&store.load(10)), [(2, Some(4_000_000), Some((5, 6))), (4, Some(4_000_000), None)]);
        // And the snapshot is appended to like any journal.
        journal.write(Batch { changes: vec![Checkpoint::Remove { run: RunId(4) }], ..Batch::default() });
        assert_eq!(seen(&store.load(10)).len(), 1);
    }

    #[test]
    fn a_journal_wants_a_snapshot_once_it_is_large_and_mostly_dead_entries() {
        let (_dir, _store, mut journal) = fresh();
        assert!(!journal.wants_snapshot());
        journal.len = COMPACT_MIN_BYTES;
        journal.live_bytes = COMPACT_MIN_BYTES / 2;
        assert!(!journal.wants_snapshot(), "half of it is live");
        journal.live_bytes = COMPACT_MIN_BYTES / 8;
        assert!(journal.wants_snapshot());
        journal.len = COMPACT_MIN_BYTES / 2;
        journal.live_bytes = 0;
        assert!(!journal.wants_snapshot(), "too small to be worth it");
        journal.broken = true;
        assert!(journal.wants_snapshot(), "after a failed write");
    }

    #[test]
    fn loading_folds_in_legacy_records_deletes_incomplete_runs_and_sets_damaged_and_excess_ones_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opened");
        store.save_agent(&AgentRecord { agent_id: AgentId::new("a"), master: "m:5050".into() }).expect("saved");
        let legacy = |run: u64| {
            fs::create_dir_all(store.run_dir(RunId(run))).expect("a run directory");
            let json = serde_json::to_vec(&record(run)).expect("serializable");
            fs::write(store.run_dir(RunId(run)).join("task.json"), json).expect("written");
        };
        // Runs 1 and 5 from an agent before the journal, 4 in the journal.
        legacy(1);
        fs::write(store.run_dir(RunId(1)).join("pid"), "4000000 77\n").expect("written");
        fs::write(store.exit_status_path(RunId(1)), "exit 3\n").expect("written");
        fs::create_dir_all(store.run_dir(RunId(2))).expect("an incomplete run");
        fs::create_dir_all(store.run_dir(RunId(3))).expect("a damaged run");
        fs::write(store.run_dir(RunId(3)).join("task.json"), "{not json").expect("written");
        let mut journal = Journal::create(&store, [], &BTreeMap::new()).expect("created");
        journal.write(Batch { changes: vec![save(4)], ..Batch::default() });
        legacy(5);

        let stored = store.load(2);
        assert_eq!(stored.agent, Some(AgentRecord { agent_id: AgentId::new("a"), master: "m:5050".into() }));
        type WithExit = (u64, Option<(u32, u64)>, Option<ProcessExit>);
        let runs: Vec<WithExit> = stored.runs.iter().map(|r| (r.record.run.0, r.supervisor, r.exit)).collect();
        assert_eq!(runs, [(1, Some((4_000_000, 77)), Some(ProcessExit::Code(3))), (4, None, None)]);
        assert_eq!(stored.damaged.len(), 2, "{:?}", stored.damaged);
        assert!(!store.run_dir(RunId(2)).exists(), "the incomplete run is deleted");
        assert!(dir.path().join("meta/damaged/3/task.json").exists());
        assert!(dir.path().join("meta/damaged/5/task.json").exists());

        // Recovery starts a journal from what it read; the legacy files go.
        let supervisors: BTreeMap<RunId, (u32, u64)> =
            stored.runs.iter().filter_map(|r| Some((r.record.run, r.supervisor?))).collect();
        Journal::create(&store, stored.runs.iter().map(|r| &r.record), &supervisors).expect("created");
        assert!(!store.run_dir(RunId(1)).join("task.json").exists());
        assert!(!store.run_dir(RunId(1)).join("pid").exists());
        assert!(store.exit_status_path(RunId(1)).exists(), "the supervisor's record stays");
        assert_eq!(seen(&store.load(10)), [(1, Some(4_000_000), Some((4_000_000, 77))), (4, Some(4_000_000), None)]);
    }

    #[test]
    fn this_process_has_a_start_time_and_is_not_a_zombie() {
        let (start, zombie) = process_start(std::process::id()).expect("this process exists");
        assert!(start > 0);
        assert!(!zombie);
    }
}
