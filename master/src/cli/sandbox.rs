//! A task's sandbox from the command line: `agora task log|ls|cat`, and the files `agora run`
//! streams. The master knows the task's agent (`/tasks?task_id=`, `/slaves?slave_id=`);
//! the agent knows the sandbox (`/state` while the task is live; afterwards the newest of
//! `<framework>/<task>` and its `.run-N` siblings in `/files/browse`) and serves its files
//! (`/files/read`, `/files/download`).
//!
//! [`FileFollower`] reads a file on from where it last stopped, as `tail -f` does (in text:
//! the agent's `/files/read` answers UTF-8, an invalid byte as U+FFFD, so the offset of the
//! next read, counted in the text's bytes, is exact only for UTF-8 output), and
//! [`follow`] streams it until the task has ended and the file is drained: the end is
//! checked *before* a read, so every byte written before the task ended is printed.

use std::io::Write;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::listing::encode;
use super::{CliError, MasterClient};

/// Longest one call to an agent may take.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes one read asks for (the agent's bound too).
const READ_LENGTH: u64 = 1024 * 1024;
/// `--tail` looks for its lines in at most this many bytes at the end of the file.
pub const TAIL_WINDOW: u64 = 4 * 1024 * 1024;
/// Most lines `--tail` prints.
pub const MAX_TAIL_LINES: usize = 100_000;
/// Tasks with one id the master lists at most when looking one up.
const MAX_SAME_ID: usize = 100;

/// A task and where its sandbox is.
#[derive(Clone, Debug)]
pub struct Location {
    /// The task as the master's `/tasks` lists it.
    pub task: Value,
    pub task_id: String,
    pub framework_id: String,
    pub agent_id: String,
    /// The agent's HTTP endpoint, `http://host:port`.
    pub agent_url: String,
    /// The sandbox, relative to the agent's sandboxes root; `None` before it is made.
    pub sandbox: Option<String>,
    /// Tasks with the same id in other frameworks (older ones; this is the newest).
    pub others: usize,
    /// How the agent is verified (the CLI's `--tls-ca`).
    pub tls: Option<agora_proto::tls::ClientTls>,
}

impl Location {
    /// Whether the task has ended (the master says so).
    pub fn ended(task: &Value) -> bool {
        task["state"].as_str().is_none_or(|s| {
            agora_proto::model::TaskState::ALL.iter().find(|t| t.as_str() == s).is_none_or(|t| t.is_terminal())
        })
    }

    pub fn files(&self) -> Result<AgentFiles, CliError> {
        AgentFiles::with_tls(&self.agent_id, &self.agent_url, self.tls.as_ref())
    }

    /// The sandbox, or an error saying there is none yet.
    pub fn sandbox(&self) -> Result<&str, CliError> {
        self.sandbox.as_deref().ok_or_else(|| {
            CliError::NotFound(format!(
                "task {} has no sandbox on agent {} ({}) yet",
                self.task_id, self.agent_id, self.agent_url
            ))
        })
    }
}

/// The newest task called `task_id` (in `framework_id`, if given) and its sandbox.
pub async fn locate(client: &MasterClient, task_id: &str, framework_id: Option<&str>) -> Result<Location, CliError> {
    let task_id = task_id.trim();
    if task_id.is_empty() {
        return Err(CliError::Usage("TASK_ID: must not be empty".to_owned()));
    }
    let mut path = format!("/tasks?task_id={}&limit={MAX_SAME_ID}", encode(task_id));
    if let Some(framework_id) = framework_id {
        path.push_str(&format!("&framework_id={}", encode(framework_id)));
    }
    let found = client.get(&path).await?;
    let tasks = found["tasks"].as_array().cloned().unwrap_or_default();
    let Some(task) = tasks.first().cloned() else {
        return Err(CliError::NotFound(format!(
            "no task {task_id} is known to the master{} (`agora tasks --all` lists them)",
            framework_id.map(|f| format!(" in framework {f}")).unwrap_or_default()
        )));
    };
    let agent_id = task["slave_id"].as_str().unwrap_or_default().to_owned();
    let framework_id = task["framework_id"].as_str().unwrap_or_default().to_owned();
    let listed = client.get(&format!("/slaves?slave_id={}", encode(&agent_id))).await?;
    let Some(agent) = listed["slaves"].as_array().and_then(|a| a.first()).cloned() else {
        return Err(CliError::NotFound(format!(
            "task {task_id} ran on agent {agent_id}, which the master no longer knows"
        )));
    };
    let agent_url = format!("http://{}:{}", agent["hostname"].as_str().unwrap_or_default(), agent["port"]);
    let files = AgentFiles::with_tls(&agent_id, &agent_url, client.tls())?;
    let agent_url = files.base().to_owned();
    let sandbox = files.sandbox_of(&framework_id, task_id).await?;
    Ok(Location {
        task,
        task_id: task_id.to_owned(),
        framework_id,
        agent_id,
        agent_url,
        sandbox,
        others: tasks.len() - 1,
        tls: client.tls().cloned(),
    })
}

/// The sandbox files of one agent.
#[derive(Clone, Debug)]
pub struct AgentFiles {
    agent_id: String,
    base: String,
    http: reqwest::Client,
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Not there (yet).
    Missing,
    Failed(CliError),
}

impl AgentFiles {
    /// The files of agent `agent_id` at `base` (`http://host:port`).
    pub fn new(agent_id: &str, base: &str) -> Result<AgentFiles, CliError> {
        AgentFiles::connect(agent_id, base, None, None)
    }

    /// [`AgentFiles::new`] presenting `credential` (else the environment's, if any).
    pub fn as_principal(
        agent_id: &str,
        base: &str,
        credential: Option<&agora_proto::auth::Credential>,
    ) -> Result<AgentFiles, CliError> {
        AgentFiles::connect(agent_id, base, credential, None)
    }

    /// [`AgentFiles::new`] for a client with TLS settings (`--tls-ca`).
    pub fn with_tls(
        agent_id: &str,
        base: &str,
        tls: Option<&agora_proto::tls::ClientTls>,
    ) -> Result<AgentFiles, CliError> {
        AgentFiles::connect(agent_id, base, None, tls)
    }

    /// The files of agent `agent_id` at `base`, presenting `credential` (else the
    /// environment's, if any). With TLS settings (`--tls-ca`) the cluster is taken to be
    /// secure as a whole: the agent is dialled with `https://` and verified with `tls`.
    pub fn connect(
        agent_id: &str,
        base: &str,
        credential: Option<&agora_proto::auth::Credential>,
        tls: Option<&agora_proto::tls::ClientTls>,
    ) -> Result<AgentFiles, CliError> {
        let failed = |reason: String| CliError::Agent { agent: agent_id.to_owned(), url: base.to_owned(), reason };
        // The same client as the master's: an agent run with --authenticate-http gets the
        // operator's credential too.
        let http = agora_sdk::cli::http_client_for(AGENT_TIMEOUT, credential, tls).map_err(failed)?;
        let base = base.trim_end_matches('/');
        let base = match (tls, base.strip_prefix("http://")) {
            (Some(_), Some(bare)) => format!("https://{bare}"),
            _ => base.to_owned(),
        };
        Ok(AgentFiles { agent_id: agent_id.to_owned(), base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn failed(&self, reason: String) -> CliError {
        CliError::Agent { agent: self.agent_id.clone(), url: self.base.clone(), reason }
    }

    /// `GET endpoint?query`: the answer, `Missing` on a 404, else why it failed.
    async fn get(&self, endpoint: &str, query: &[(&str, String)]) -> Result<reqwest::Response, ReadError> {
        let response = self
            .http
            .get(format!("{}{endpoint}", self.base))
            .query(query)
            .send()
            .await
            .map_err(|e| ReadError::Failed(self.failed(agora_sdk::cli::error_chain(&e))))?;
        match response.status() {
            status if status.is_success() => Ok(response),
            StatusCode::NOT_FOUND => Err(ReadError::Missing),
            status => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let message = body["message"].as_str().map_or_else(|| status.to_string(), str::to_owned);
                Err(ReadError::Failed(self.failed(format!("{endpoint}: {message}"))))
            }
        }
    }

    async fn get_json(&self, endpoint: &str, query: &[(&str, String)]) -> Result<Value, ReadError> {
        let response = self.get(endpoint, query).await?;
        response.json().await.map_err(|e| ReadError::Failed(self.failed(format!("{endpoint}: {e}"))))
    }

    /// Where the sandbox of `task_id` of `framework_id` is: the agent's `/state` while the
    /// task is live, else the newest run's directory under the framework's.
    pub async fn sandbox_of(&self, framework_id: &str, task_id: &str) -> Result<Option<String>, CliError> {
        let state = self.get_json("/state", &[]).await.map_err(|e| self.either(e))?;
        let live = state["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == task_id && t["framework_id"] == framework_id);
        if let Some(sandbox) = live.and_then(|t| t["sandbox"].as_str()) {
            return Ok(Some(sandbox.to_owned()));
        }
        let entries = match self.browse(framework_id).await {
            Ok(entries) => entries,
            Err(ReadError::Missing) => return Ok(None),
            Err(ReadError::Failed(error)) => return Err(error),
        };
        Ok(newest_run(&entries, framework_id, task_id))
    }

    fn either(&self, error: ReadError) -> CliError {
        match error {
            ReadError::Missing => self.failed("not found".to_owned()),
            ReadError::Failed(error) => error,
        }
    }

    /// The entries of a sandbox directory (`/files/browse`).
    pub async fn browse(&self, path: &str) -> Result<Vec<Value>, ReadError> {
        let listed = self.get_json("/files/browse", &[("path", path.to_owned())]).await?;
        Ok(listed.as_array().cloned().unwrap_or_default())
    }

    /// A file's size now.
    pub async fn size(&self, path: &str) -> Result<u64, ReadError> {
        let answer = self.get_json("/files/read", &[("path", path.to_owned()), ("offset", "-1".to_owned())]).await?;
        Ok(answer["offset"].as_u64().unwrap_or(0))
    }

    /// At most `length` bytes of the file from `offset`, as text (see the agent's `/files/read`).
    pub async fn read(&self, path: &str, offset: u64, length: u64) -> Result<String, ReadError> {
        let query = [("path", path.to_owned()), ("offset", offset.to_string()), ("length", length.to_string())];
        let answer = self.get_json("/files/read", &query).await?;
        Ok(answer["data"].as_str().unwrap_or_default().to_owned())
    }

    /// Copies the whole file to `out`, bytes as they are.
    pub async fn download(&self, path: &str, out: &mut dyn Write) -> Result<(), ReadError> {
        let mut response = self.get("/files/download", &[("path", path.to_owned())]).await?;
        while let Some(chunk) =
            response.chunk().await.map_err(|e| ReadError::Failed(self.failed(agora_sdk::cli::error_chain(&e))))?
        {
            out.write_all(&chunk).map_err(|e| ReadError::Failed(CliError::Output(e)))?;
        }
        Ok(())
    }
}

/// The newest run's directory of `task_id` among a framework directory's entries:
/// `<framework>/<task>` is the first run, `<framework>/<task>.run-N` the N-th.
fn newest_run(entries: &[Value], framework_id: &str, task_id: &str) -> Option<String> {
    let prefix = format!("{framework_id}/{task_id}");
    entries
        .iter()
        .filter_map(|e| e["path"].as_str())
        .filter_map(|path| {
            let rest = path.strip_prefix(&prefix)?;
            let run = if rest.is_empty() { Some(1) } else { rest.strip_prefix(".run-")?.parse::<u32>().ok() }?;
            Some((run, path.to_owned()))
        })
        .max()
        .map(|(_, path)| path)
}

/// Reads one file on from where it last stopped.
#[derive(Debug)]
pub struct FileFollower {
    files: AgentFiles,
    path: String,
    offset: u64,
}

impl FileFollower {
    /// Follows `path` from `offset`.
    pub fn new(files: AgentFiles, path: String, offset: u64) -> FileFollower {
        FileFollower { files, path, offset }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Moves to the start of the last `lines` lines (looked for in the last
    /// [`TAIL_WINDOW`] bytes) and returns them.
    pub async fn tail(&mut self, lines: usize) -> Result<String, ReadError> {
        let size = self.files.size(&self.path).await?;
        let mut text = String::new();
        let mut offset = size.saturating_sub(TAIL_WINDOW);
        while offset < size {
            let chunk = self.files.read(&self.path, offset, READ_LENGTH.min(size - offset)).await?;
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            text.push_str(&chunk);
        }
        self.offset = offset;
        Ok(last_lines(&text, lines).to_owned())
    }

    /// What was written since the last call: empty when nothing was.
    pub async fn next(&mut self) -> Result<String, ReadError> {
        let chunk = self.files.read(&self.path, self.offset, READ_LENGTH).await?;
        self.offset += chunk.len() as u64;
        Ok(chunk)
    }
}

/// The last `count` lines of `text` (a last line without its newline counts).
fn last_lines(text: &str, count: usize) -> &str {
    if count == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let start = body.match_indices('\n').rev().nth(count - 1).map_or(0, |(i, _)| i + 1);
    &text[start..]
}

/// Copies what the file holds and what is written to it to `out` until `ended` turns true
/// (the task is over) and the file is drained; a file not there yet is waited for while the
/// task lives. Polls every `poll`.
pub async fn follow(
    follower: &mut FileFollower,
    out: &mut impl FnMut(&str) -> std::io::Result<()>,
    ended: &tokio::sync::watch::Receiver<bool>,
    poll: Duration,
) -> Result<(), CliError> {
    loop {
        // Looked at before reading: whatever the task wrote before it ended is read below.
        let over = *ended.borrow();
        loop {
            match follower.next().await {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => out(&chunk)?,
                Err(ReadError::Missing) => break,
                Err(ReadError::Failed(error)) => return Err(error),
            }
        }
        if over {
            return Ok(());
        }
        // The end wakes the wait at once: the last read follows without a poll's delay.
        let mut woken = ended.clone();
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            // A sender gone says nothing: the poll goes on.
            Ok(_) = woken.wait_for(|over| *over) => {}
        }
    }
}

/// Which of this process's outputs a task's file goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
}

/// Cuts text into lines, each prefixed (`[web-1] `); without a prefix, text passes as it is.
#[derive(Debug, Default)]
pub struct LinePrefixer {
    prefix: Option<String>,
    partial: String,
}

impl LinePrefixer {
    pub fn new(prefix: Option<String>) -> LinePrefixer {
        LinePrefixer { prefix, partial: String::new() }
    }

    /// The complete lines `text` finishes, prefixed; the rest waits for its newline.
    pub fn push(&mut self, text: &str) -> String {
        let Some(prefix) = &self.prefix else { return text.to_owned() };
        self.partial.push_str(text);
        let Some(end) = self.partial.rfind('\n') else { return String::new() };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete.lines().map(|line| format!("{prefix}{line}\n")).collect()
    }

    /// A last line without its newline, prefixed and ended.
    pub fn finish(&mut self) -> String {
        match (&self.prefix, self.partial.is_empty()) {
            (Some(prefix), false) => format!("{prefix}{}\n", std::mem::take(&mut self.partial)),
            _ => String::new(),
        }
    }
}

/// Streams a task's stdout and stderr to this process's, as they are written, until `ended`
/// turns true and both files are drained (what `agora run` shows). Waits for the sandbox
/// while the task lives; a task that ended without one printed nothing.
pub async fn stream_output(
    files: AgentFiles,
    framework_id: String,
    task_id: String,
    prefix: Option<String>,
    ended: tokio::sync::watch::Receiver<bool>,
) -> Result<(), CliError> {
    let sandbox = loop {
        let over = *ended.borrow();
        if let Some(sandbox) = files.sandbox_of(&framework_id, &task_id).await? {
            break sandbox;
        }
        if over {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    };
    let one = |name: &str, target: Target| {
        let mut follower = FileFollower::new(files.clone(), format!("{sandbox}/{name}"), 0);
        let ended = ended.clone();
        let mut lines = LinePrefixer::new(prefix.clone());
        async move {
            let mut write = |text: &str| -> std::io::Result<()> { emit(target, &lines.push(text)) };
            follow(&mut follower, &mut write, &ended, FOLLOW_POLL).await?;
            emit(target, &lines.finish())?;
            Ok::<(), CliError>(())
        }
    };
    let (out, err) = tokio::join!(one("stdout", Target::Stdout), one("stderr", Target::Stderr));
    out.and(err)
}

/// Writes to this process's stdout or stderr at once (flushed).
fn emit(target: Target, text: &str) -> std::io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    match target {
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        }
        Target::Stderr => {
            let mut out = std::io::stderr().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        }
    }
}

/// `agora task ls ID [PATH]`: a directory of the sandbox.
pub async fn ls(
    client: &MasterClient,
    task_id: &str,
    path: &str,
    framework_id: Option<&str>,
    json: bool,
) -> Result<String, CliError> {
    let location = locate(client, task_id, framework_id).await?;
    let sandbox = location.sandbox()?;
    let files = location.files()?;
    let dir = join(sandbox, path)?;
    let entries = match files.browse(&dir).await {
        Ok(entries) => entries,
        Err(ReadError::Missing) => return Err(CliError::NotFound(format!("{path}: not in the sandbox of {task_id}"))),
        Err(ReadError::Failed(error)) => return Err(error),
    };
    if json {
        return Ok(serde_json::to_string_pretty(&entries).unwrap_or_default());
    }
    let mut rows = vec![agora_sdk::cli::row(["MODE", "SIZE", "MODIFIED", "NAME"])];
    for entry in &entries {
        let full = entry["path"].as_str().unwrap_or_default();
        let name = full.rsplit('/').next().unwrap_or(full);
        rows.push(vec![
            agora_sdk::cli::cell(&entry["mode"]),
            agora_sdk::cli::cell(&entry["size"]),
            entry["mtime"].as_f64().map_or_else(|| "-".to_owned(), super::listing::date_time),
            name.to_owned(),
        ]);
    }
    Ok(agora_sdk::cli::table(&rows))
}

/// `agora task cat ID PATH`: a file of the sandbox, bytes as they are, to `out`.
pub async fn cat(
    client: &MasterClient,
    task_id: &str,
    path: &str,
    framework_id: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let location = locate(client, task_id, framework_id).await?;
    let file = join(location.sandbox()?, path)?;
    match location.files()?.download(&file, out).await {
        Ok(()) => Ok(()),
        Err(ReadError::Missing) => Err(CliError::NotFound(format!("{path}: not in the sandbox of {task_id}"))),
        Err(ReadError::Failed(error)) => Err(error),
    }
}

/// A path inside the sandbox; one that climbs out is refused here (the agent refuses it too).
fn join(sandbox: &str, path: &str) -> Result<String, CliError> {
    let path = path.trim().trim_start_matches("./");
    if path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(CliError::Usage(format!("{path}: a path inside the sandbox, without .. or a leading /")));
    }
    Ok(if path.is_empty() || path == "." { sandbox.to_owned() } else { format!("{sandbox}/{path}") })
}

/// What `agora task log` does.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub framework_id: Option<String>,
    pub stderr: bool,
    pub follow: bool,
    /// Only the last N lines (then what follows, with `follow`).
    pub tail: Option<usize>,
}

/// How often `task log --follow` reads the file.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// How often `task log --follow` asks the master whether the task has ended.
const ENDED_POLL: Duration = Duration::from_secs(1);

/// `agora task log ID`: the task's stdout (or stderr) to `out`, followed as it grows with
/// `follow` until the task has ended and the file is drained.
pub async fn log(
    client: &MasterClient,
    task_id: &str,
    options: &LogOptions,
    out: &mut dyn Write,
    notes: &mut dyn FnMut(&str),
) -> Result<(), CliError> {
    let mut location = locate(client, task_id, options.framework_id.as_deref()).await?;
    if location.others > 0 {
        notes(&format!(
            "{} other task(s) are called {task_id}; showing the newest, of framework {} (--framework to choose)",
            location.others, location.framework_id
        ));
    }
    let name = if options.stderr { "stderr" } else { "stdout" };
    let files = location.files()?;
    // A task still starting has no sandbox yet: wait for it while it lives.
    while location.sandbox.is_none() && options.follow && !Location::ended(&location.task) {
        tokio::time::sleep(ENDED_POLL).await;
        location = locate(client, task_id, Some(&location.framework_id)).await?;
    }
    let path = format!("{}/{name}", location.sandbox()?);
    let mut follower = FileFollower::new(files, path, 0);
    let mut write = |text: &str| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.flush()
    };
    if let Some(lines) = options.tail {
        match follower.tail(lines.min(MAX_TAIL_LINES)).await {
            Ok(text) => write(&text)?,
            Err(ReadError::Missing) if options.follow => {}
            Err(ReadError::Missing) => return Err(missing(&location, name)),
            Err(ReadError::Failed(error)) => return Err(error),
        }
    }
    if !options.follow {
        if options.tail.is_none() {
            // One pass to the end; a missing file is an error here.
            loop {
                match follower.next().await {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => write(&chunk)?,
                    Err(ReadError::Missing) => return Err(missing(&location, name)),
                    Err(ReadError::Failed(error)) => return Err(error),
                }
            }
        }
        return Ok(());
    }
    let (ended_tx, ended) = tokio::sync::watch::channel(Location::ended(&location.task));
    let path = format!("/tasks?task_id={}&framework_id={}&limit=1", encode(task_id), encode(&location.framework_id));
    // Asks the master whether the task has ended, until it has.
    let watch = async {
        while !*ended_tx.borrow() {
            tokio::time::sleep(ENDED_POLL).await;
            let found = client.get(&path).await?;
            if found["tasks"].as_array().and_then(|t| t.first()).is_none_or(Location::ended) {
                ended_tx.send_replace(true);
            }
        }
        // Kept pending: the follower ends the join once it has drained the file.
        std::future::pending::<Result<(), CliError>>().await
    };
    tokio::select! {
        followed = follow(&mut follower, &mut write, &ended, FOLLOW_POLL) => followed,
        failed = watch => failed,
    }
}

fn missing(location: &Location, name: &str) -> CliError {
    CliError::NotFound(format!(
        "task {} has no {name} in its sandbox {} on agent {} ({})",
        location.task_id,
        location.sandbox.as_deref().unwrap_or("-"),
        location.agent_id,
        location.agent_url
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_newest_run_of_a_task_is_its_highest_numbered_directory() {
        let entries = vec![
            json!({"path": "f1/web"}),
            json!({"path": "f1/web.run-2"}),
            json!({"path": "f1/web.run-10"}),
            json!({"path": "f1/webby"}),
            json!({"path": "f1/web.run-x"}),
        ];
        assert_eq!(newest_run(&entries, "f1", "web"), Some("f1/web.run-10".to_owned()));
        assert_eq!(newest_run(&entries, "f1", "webby"), Some("f1/webby".to_owned()));
        assert_eq!(newest_run(&entries, "f1", "db"), None);
    }

    #[test]
    fn the_last_lines_of_a_text_count_a_last_line_without_its_newline() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
    }

    #[test]
    fn prefixed_lines_wait_for_their_newline_and_a_last_line_is_ended() {
        let mut lines = LinePrefixer::new(Some("[t-1] ".to_owned()));
        assert_eq!(lines.push("a\nb"), "[t-1] a\n");
        assert_eq!(lines.push("c\n\nd"), "[t-1] bc\n[t-1] \n");
        assert_eq!(lines.finish(), "[t-1] d\n");
        assert_eq!(lines.finish(), "");
        let mut bare = LinePrefixer::new(None);
        assert_eq!(bare.push("no newline"), "no newline");
        assert_eq!(bare.finish(), "");
    }

    #[test]
    fn paths_stay_inside_the_sandbox() {
        assert_eq!(join("f/t", "").ok(), Some("f/t".to_owned()));
        assert_eq!(join("f/t", "./out/x.log").ok(), Some("f/t/out/x.log".to_owned()));
        assert!(join("f/t", "../u/stdout").is_err());
        assert!(join("f/t", "/etc/passwd").is_err());
    }
}
