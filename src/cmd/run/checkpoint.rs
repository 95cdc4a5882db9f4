//! `agora run --checkpoint FILE`: what a run writes down so that, SIGKILLed or crashed, it
//! can be started again and resume as the same framework instead of starting anew.
//!
//! The file is a journal, one JSON object per line, appended and fsynced before the run
//! relies on it: the header (`{"run": {"name", "instances"}}`), the framework id once the
//! master assigned it (`{"framework_id"}`), the tasks of each launch before the ACCEPT is
//! sent (`{"launched": [task ids], "agent_id"}`), launches the master certainly did not get
//! (`{"withdrawn": [task ids]}`), and each task's end before its update is acknowledged
//! (`{"ended": status}`). Only the last line can be torn by a crash; it is dropped when
//! the file is opened again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use agora_proto::model::{AgentId, FrameworkId, TaskId, TaskStatus};
use anyhow::Context;
use serde_json::{Value, json};

/// Largest checkpoint read back: a run of the most instances, each launched and ended,
/// stays far below it; anything larger is not a checkpoint of ours.
const MAX_BYTES: u64 = 256 << 20;

/// What an earlier life of the run wrote down.
#[derive(Debug, Default, PartialEq)]
pub struct Resumed {
    pub framework_id: Option<FrameworkId>,
    /// Tasks handed to the master, with the agent each went to.
    pub launched: BTreeMap<TaskId, AgentId>,
    /// Tasks whose end the run saw (and acknowledged after writing it here).
    pub ended: BTreeMap<TaskId, TaskStatus>,
}

/// The open journal.
#[derive(Debug)]
pub struct Checkpoint {
    file: File,
    path: PathBuf,
}

impl Checkpoint {
    /// Opens `path`, creating it for a new run. An existing journal must belong to a run
    /// of the same name and instance count; what it holds is returned for resuming.
    pub fn open(path: &Path, name: &str, instances: u32) -> anyhow::Result<(Checkpoint, Option<Resumed>)> {
        let shown = path.display();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("--checkpoint: cannot open {shown}"))?;
        let size = file.metadata().with_context(|| format!("--checkpoint: {shown}"))?.len();
        if size > MAX_BYTES {
            anyhow::bail!("--checkpoint: {shown} is {size} bytes, more than a run ever writes");
        }
        let mut text = String::new();
        file.read_to_string(&mut text).with_context(|| format!("--checkpoint: cannot read {shown}"))?;
        let (resumed, good_bytes) =
            replay(&text, name, instances).map_err(|e| anyhow::anyhow!("--checkpoint: {shown}: {e}"))?;
        if good_bytes < text.len() {
            // A torn last line: cut it off, or the next record would be glued to it.
            file.set_len(good_bytes as u64).with_context(|| format!("--checkpoint: cannot truncate {shown}"))?;
            file.seek(SeekFrom::End(0)).with_context(|| format!("--checkpoint: {shown}"))?;
        }
        let mut checkpoint = Checkpoint { file, path: path.to_owned() };
        if resumed.is_none() {
            checkpoint.append(&json!({"run": {"name": name, "instances": instances}}))?;
            // The file itself must survive a crash, not only its contents.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .with_context(|| format!("--checkpoint: sync {}", dir.display()))?;
            }
        }
        Ok((checkpoint, resumed))
    }

    pub fn framework_id(&mut self, framework_id: &FrameworkId) -> anyhow::Result<()> {
        self.append(&json!({"framework_id": framework_id.as_str()}))
    }

    pub fn launched(&mut self, task_ids: &[TaskId], agent_id: &AgentId) -> anyhow::Result<()> {
        let ids: Vec<&str> = task_ids.iter().map(TaskId::as_str).collect();
        self.append(&json!({"launched": ids, "agent_id": agent_id.as_str()}))
    }

    pub fn withdrawn(&mut self, task_ids: &[TaskId]) -> anyhow::Result<()> {
        let ids: Vec<&str> = task_ids.iter().map(TaskId::as_str).collect();
        self.append(&json!({"withdrawn": ids}))
    }

    pub fn ended(&mut self, status: &TaskStatus) -> anyhow::Result<()> {
        let status = serde_json::to_value(status).context("--checkpoint: encode a status")?;
        self.append(&json!({"ended": status}))
    }

    /// One line, on disk before this returns.
    fn append(&mut self, record: &Value) -> anyhow::Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("--checkpoint: cannot write {}", self.path.display()))
    }
}

/// Reads a journal back: `None` for an empty one, and how many bytes of it are whole lines
/// (a torn last line is left out; a bad line anywhere else is an error).
fn replay(text: &str, name: &str, instances: u32) -> Result<(Option<Resumed>, usize), String> {
    let mut resumed: Option<Resumed> = None;
    let mut good_bytes = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let Some(end) = rest.find('\n') else {
            // No newline: the write of the last record was cut short. It was never relied
            // on, since a record counts only once it is fsynced whole.
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let record: Value = serde_json::from_str(line).map_err(|e| format!("line {:?}: {e}", line))?;
        match resumed.as_mut() {
            None => {
                let run = &record["run"];
                let (their_name, their_instances) = (run["name"].as_str(), run["instances"].as_u64());
                if their_name != Some(name) || their_instances != Some(u64::from(instances)) {
                    return Err(format!(
                        "it belongs to another run ({}, {} instance(s)), not to --name {name} --instances {instances}",
                        their_name.unwrap_or("?"),
                        their_instances.map_or("?".to_owned(), |n| n.to_string())
                    ));
                }
                resumed = Some(Resumed::default());
            }
            Some(resumed) => apply(resumed, &record).map_err(|e| format!("line {line:?}: {e}"))?,
        }
        good_bytes = text.len() - rest.len();
    }
    Ok((resumed, good_bytes))
}

fn apply(resumed: &mut Resumed, record: &Value) -> Result<(), String> {
    let ids = |field: &str| -> Result<Vec<TaskId>, String> {
        record[field]
            .as_array()
            .ok_or(format!("{field}: not a list"))?
            .iter()
            .map(|id| id.as_str().map(TaskId::new).ok_or(format!("{field}: not a task id")))
            .collect()
    };
    if let Some(id) = record.get("framework_id") {
        resumed.framework_id = Some(FrameworkId::new(id.as_str().ok_or("framework_id: not a string")?));
    } else if record.get("launched").is_some() {
        let agent_id = AgentId::new(record["agent_id"].as_str().ok_or("agent_id: not a string")?);
        for task_id in ids("launched")? {
            resumed.launched.insert(task_id, agent_id.clone());
        }
    } else if record.get("withdrawn").is_some() {
        for task_id in ids("withdrawn")? {
            resumed.launched.remove(&task_id);
        }
    } else if let Some(status) = record.get("ended") {
        let status: TaskStatus = serde_json::from_value(status.clone()).map_err(|e| format!("ended: {e}"))?;
        resumed.ended.insert(status.task_id.clone(), status);
    } else {
        return Err("not a record of `agora run`".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::model::{TaskState, TaskStatusReason, TaskStatusSource};

    fn finished(task_id: &str) -> TaskStatus {
        TaskStatus {
            task_id: TaskId::new(task_id),
            agent_id: Some(AgentId::new("a1")),
            state: TaskState::TaskFinished,
            reason: TaskStatusReason::CommandExited,
            source: TaskStatusSource::Agent,
            message: "Command exited with status 0".into(),
            timestamp_ms: 7,
            uuid: None,
            exit_code: Some(0),
            signal: None,
            healthy: None,
            ready: None,
        }
    }

    #[test]
    fn a_reopened_checkpoint_gives_back_the_framework_id_launches_and_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run.json");
        let (mut checkpoint, resumed) = Checkpoint::open(&path, "r", 3).expect("new");
        assert_eq!(resumed, None);
        checkpoint.framework_id(&FrameworkId::new("f1")).expect("write");
        checkpoint.launched(&[TaskId::new("r-0"), TaskId::new("r-1")], &AgentId::new("a1")).expect("write");
        checkpoint.launched(&[TaskId::new("r-2")], &AgentId::new("a2")).expect("write");
        checkpoint.withdrawn(&[TaskId::new("r-2")]).expect("write");
        checkpoint.ended(&finished("r-0")).expect("write");
        drop(checkpoint);

        let (_, resumed) = Checkpoint::open(&path, "r", 3).expect("reopen");
        let resumed = resumed.expect("something to resume");
        assert_eq!(resumed.framework_id, Some(FrameworkId::new("f1")));
        let launched: Vec<_> = resumed.launched.iter().map(|(t, a)| (t.as_str(), a.as_str())).collect();
        assert_eq!(launched, vec![("r-0", "a1"), ("r-1", "a1")]);
        assert_eq!(resumed.ended.get(&TaskId::new("r-0")), Some(&finished("r-0")));
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_later_records_still_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run.json");
        let (mut checkpoint, _) = Checkpoint::open(&path, "r", 1).expect("new");
        checkpoint.framework_id(&FrameworkId::new("f1")).expect("write");
        drop(checkpoint);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"launched\": [\"r-").expect("tear");
        drop(file);

        let (mut checkpoint, resumed) = Checkpoint::open(&path, "r", 1).expect("reopen");
        assert_eq!(resumed.expect("resumed").launched, BTreeMap::new());
        checkpoint.launched(&[TaskId::new("r-0")], &AgentId::new("a1")).expect("write");
        drop(checkpoint);
        let (_, resumed) = Checkpoint::open(&path, "r", 1).expect("reopen again");
        assert_eq!(resumed.expect("resumed").launched.len(), 1);
    }

    #[test]
    fn a_checkpoint_of_another_run_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run.json");
        Checkpoint::open(&path, "r", 1).expect("new");
        let error = Checkpoint::open(&path, "other", 1).expect_err("another name").to_string();
        assert!(error.contains("--checkpoint") && error.contains("another run"), "{error}");
        let error = Checkpoint::open(&path, "r", 2).expect_err("another count").to_string();
        assert!(error.contains("another run"), "{error}");
        std::fs::write(&path, "{\"run\": {\"name\": \"r\", \"instances\": 1}}\nnot json\n{}\n").expect("write");
        let error = Checkpoint::open(&path, "r", 1).expect_err("garbage").to_string();
        assert!(error.contains("--checkpoint"), "{error}");
    }
}
