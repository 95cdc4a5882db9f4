//! Descriptions of agents, frameworks and tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{AgentId, FrameworkId, Resources, Role, TaskId};

/// One week: a framework that disconnects keeps its tasks this long by default, so a
/// short outage of a scheduler never kills the services it runs (Mesos' default of zero
/// does).
pub const DEFAULT_FAILOVER_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

impl Attribute {
    /// Parses `rack:r1;zone:a`.
    pub fn parse_list(text: &str) -> Result<Vec<Attribute>, String> {
        text.split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (name, value) =
                    entry.split_once(':').ok_or_else(|| format!("attribute {entry:?}: expected NAME:VALUE"))?;
                let (name, value) = (name.trim(), value.trim());
                if name.is_empty() {
                    return Err(format!("attribute {entry:?}: the name is empty"));
                }
                Ok(Attribute { name: name.to_owned(), value: value.to_owned() })
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentInfo {
    pub hostname: String,
    /// The agent's HTTP port, where its sandboxes are served.
    pub port: u16,
    pub resources: Resources,
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameworkInfo {
    pub id: Option<FrameworkId>,
    pub name: String,
    pub user: String,
    /// At least one role; `*` when the framework named none.
    pub roles: Vec<Role>,
    pub failover_timeout_ms: u64,
    pub hostname: String,
    pub principal: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandInfo {
    /// Run with `/bin/sh -c` when set.
    pub shell: Option<String>,
    /// Executed directly when `shell` is not set; never empty then.
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Fetched into the sandbox, in order, before the command starts. Absent from records
    /// written before fetching existed, hence the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<FetchUri>,
    /// The user the command runs as on the agent; `None` means the framework's user.
    /// Absent from records written before users existed, hence the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Most URIs one task fetches.
pub const MAX_FETCH_URIS: usize = 64;
/// Longest URI fetched.
pub const MAX_FETCH_URI_LEN: usize = 4096;
/// Longest `output_file`: a file name.
pub const MAX_OUTPUT_FILE_LEN: usize = 255;

/// A file the agent fetches into the task's sandbox before the command starts (Mesos'
/// `CommandInfo.URI`, Marathon's `fetch`, Chronos' `uris`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchUri {
    /// `http://`, `https://`, `file://` or an absolute path.
    pub uri: String,
    /// Made executable (mode 0755) once fetched.
    pub executable: bool,
    /// An archive unpacked into the sandbox (see [`FetchUri::archive`]).
    pub extract: bool,
    /// Kept in the agent's fetch cache and copied from it when fetched again.
    pub cache: bool,
    /// The file's name in the sandbox; the URI's last path segment when `None`.
    pub output_file: Option<String>,
}

/// How a fetched archive is unpacked, told by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    /// `.tar`, `.tar.gz`, `.tgz`, `.tar.bz2`, `.tbz2`, `.tar.xz`, `.txz`: `tar -x`.
    Tar,
    /// `.zip`: `unzip`.
    Zip,
    /// `.gz` alone: one file, decompressed beside it without the suffix.
    Gzip,
}

impl FetchUri {
    /// A URI fetched with Mesos' defaults for Marathon's plain `uris` list: archives
    /// unpacked, nothing made executable, no cache.
    pub fn plain(uri: impl Into<String>) -> FetchUri {
        FetchUri { uri: uri.into(), extract: true, ..FetchUri::default() }
    }

    /// Checks the URI and the output file name; the error names the part at fault
    /// (`uri` or `output_file`).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let uri = self.uri.as_str();
        if uri.is_empty() {
            return Err(("uri", "is required".into()));
        }
        if uri.len() > MAX_FETCH_URI_LEN {
            return Err(("uri", format!("is longer than {MAX_FETCH_URI_LEN} bytes")));
        }
        if uri.contains(['\0', '\n', '\r']) {
            return Err(("uri", "holds a control character".into()));
        }
        let scheme_ok = ["http://", "https://", "file:///"].iter().any(|s| uri.starts_with(s)) || uri.starts_with('/');
        if !scheme_ok {
            return Err((
                "uri",
                format!("{uri:?} is not fetchable: give an http://, https:// or file:/// URI, or an absolute path"),
            ));
        }
        if let Some(name) = &self.output_file {
            check_file_name(name).map_err(|e| ("output_file", e))?;
        } else if self.file_name().is_none() {
            return Err(("uri", format!("{uri:?} names no file: give an output file name")));
        }
        Ok(())
    }

    /// The name the file gets in the sandbox: `output_file`, else the URI's last path
    /// segment (without query or fragment); `None` when that is no usable name.
    pub fn file_name(&self) -> Option<&str> {
        if let Some(name) = &self.output_file {
            return Some(name);
        }
        let path = self.uri.split(['?', '#']).next().unwrap_or_default();
        // After the scheme comes the host (empty for `file:///`), then the path.
        let path = match path.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |slash| &rest[slash..]),
            None => path,
        };
        let last = path.rsplit('/').next().unwrap_or_default();
        check_file_name(last).ok().map(|()| last)
    }

    /// How the fetched file is unpacked, when `extract` is set and its name says it is an
    /// archive.
    pub fn archive(&self) -> Option<Archive> {
        if !self.extract {
            return None;
        }
        let name = self.file_name()?.to_ascii_lowercase();
        let tar = [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz"];
        if tar.iter().any(|suffix| name.ends_with(suffix)) {
            Some(Archive::Tar)
        } else if name.ends_with(".zip") {
            Some(Archive::Zip)
        } else if name.ends_with(".gz") {
            Some(Archive::Gzip)
        } else {
            None
        }
    }
}

/// A plain file name: not empty, not `.` or `..`, no `/`, no NUL, not too long.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if name.contains(['/', '\0']) {
        return Err(format!("{name:?} is not a plain file name (no '/')"));
    }
    if name.len() > MAX_OUTPUT_FILE_LEN {
        return Err(format!("is longer than {MAX_OUTPUT_FILE_LEN} bytes"));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskInfo {
    pub task_id: TaskId,
    pub name: String,
    pub agent_id: AgentId,
    pub resources: Resources,
    pub command: CommandInfo,
    pub labels: Vec<(String, String)>,
    pub kill_grace_period_ms: Option<u64>,
    /// Run by the agent while the task runs. Absent from records written before checks
    /// existed, hence the default.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Run by the agent until it passes once.
    #[serde(default)]
    pub readiness_check: Option<ReadinessCheck>,
}

/// A health check the agent runs against a task (Mesos' HealthCheck; Marathon's
/// MESOS_HTTP/MESOS_TCP/COMMAND semantics).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Failures during this time after the task started do not count (Marathon 300 s).
    pub grace_period_ms: u64,
    /// Between the end of one check and the start of the next (Marathon 60 s).
    pub interval_ms: u64,
    /// A check not answered within this time failed (Marathon 20 s).
    pub timeout_ms: u64,
    /// After this many consecutive failures (outside the grace period) the agent kills the
    /// task; 0 = never kill.
    pub max_consecutive_failures: u32,
    /// Delay before the first check after the task started (Mesos `delay_seconds`); 0 ok.
    pub delay_ms: u64,
}

impl HealthCheck {
    /// A check of `kind` with Marathon's defaults: 300 s grace period, every 60 s, 20 s
    /// timeout, killed after 3 consecutive failures, no delay.
    pub fn new(kind: HealthCheckKind) -> Self {
        Self {
            kind,
            grace_period_ms: 300_000,
            interval_ms: 60_000,
            timeout_ms: 20_000,
            max_consecutive_failures: 3,
            delay_ms: 0,
        }
    }

    /// An HTTP GET of `path` on `port`, with Marathon's defaults.
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        Self::new(HealthCheckKind::Http { scheme: HttpScheme::Http, port, path: path.into() })
    }

    /// A TCP connect to `port`, with Marathon's defaults.
    pub fn tcp(port: u16) -> Self {
        Self::new(HealthCheckKind::Tcp { port })
    }

    /// `/bin/sh -c shell` in the task's sandbox, with Marathon's defaults.
    pub fn command(shell: impl Into<String>) -> Self {
        Self::new(HealthCheckKind::Command { shell: shell.into() })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HealthCheckKind {
    /// HTTP(S) GET http(s)://127.0.0.1:{port}{path}; healthy on status 200..=399.
    Http { scheme: HttpScheme, port: u16, path: String },
    /// A TCP connect to 127.0.0.1:{port}.
    Tcp { port: u16 },
    /// `/bin/sh -c shell` in the task's sandbox with the task's environment; healthy on exit 0.
    Command { shell: String },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HttpScheme {
    #[default]
    Http,
    Https,
}

impl HttpScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }
}

/// Marathon's readiness check, run by the agent: repeated until it passes once, then the
/// agent reports `ready: Some(true)` and stops checking.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadinessCheck {
    pub scheme: HttpScheme,
    pub port: u16,
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Status codes that mean ready (Marathon default [200]).
    pub ready_status_codes: Vec<u16>,
}

impl ReadinessCheck {
    /// An HTTP GET of `path` on `port` with Marathon's defaults: every 30 s, 10 s timeout,
    /// ready on 200.
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        Self {
            scheme: HttpScheme::Http,
            port,
            path: path.into(),
            interval_ms: 30_000,
            timeout_ms: 10_000,
            ready_status_codes: vec![200],
        }
    }
}

/// What an offer says about its agent: where it is and what it declares.
///
/// One allocation per agent, shared by the master's record of the agent and by every
/// offer of it: a round makes an offer per agent, and one reference count per offer is
/// cheaper than a copy, or than a count for each of the three.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentDescription {
    pub hostname: String,
    pub attributes: Vec<Attribute>,
    /// Where the agent's HTTP endpoint (sandboxes) is, `http://host:port`.
    #[serde(rename = "agent_url")]
    pub url: String,
    /// When the agent's machine is scheduled to be unavailable (maintenance), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<Unavailability>,
}

/// When a machine is expected to be unavailable: from `start_ns` (nanoseconds since the Unix
/// epoch, as Mesos' `TimeInfo`) for `duration_ns`, or for good when `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unavailability {
    pub start_ns: i64,
    pub duration_ns: Option<i64>,
}

/// Resources of one agent offered to one framework.
///
/// Serialized with the agent's description flattened in (`hostname`, `attributes`,
/// `agent_url`), as when they were fields of their own.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offer {
    pub id: super::OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
    /// The agent's hostname, attributes and URL, shared (see `AgentDescription`).
    #[serde(flatten)]
    pub agent: Arc<AgentDescription>,
    /// The framework role the offer is made for; its tasks are accounted to this role.
    pub allocation_role: Role,
}

impl Offer {
    pub fn hostname(&self) -> &str {
        &self.agent.hostname
    }

    pub fn attributes(&self) -> &[Attribute] {
        &self.agent.attributes
    }

    /// Where the agent's HTTP endpoint (sandboxes) is, `http://host:port`.
    pub fn agent_url(&self) -> &str {
        &self.agent.url
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::{Archive, FetchUri};

    fn uri(text: &str) -> FetchUri {
        FetchUri::plain(text)
    }

    #[test]
    fn a_fetched_file_is_named_by_the_last_path_segment_or_its_output_file() {
        assert_eq!(uri("http://repo:8000/builds/app-1.2.tgz?token=x#top").file_name(), Some("app-1.2.tgz"));
        assert_eq!(uri("/srv/files/run.sh").file_name(), Some("run.sh"));
        assert_eq!(uri("file:///srv/files/data.zip").file_name(), Some("data.zip"));
        assert_eq!(uri("http://repo:8000/").file_name(), None, "a directory names no file");
        assert_eq!(uri("http://repo.example").file_name(), None, "a host is no file name");
        let named = FetchUri { output_file: Some("app.tgz".into()), ..uri("http://repo:8000/download?id=7") };
        assert_eq!(named.file_name(), Some("app.tgz"));
    }

    #[test]
    fn archives_are_told_by_name_and_only_extracted_when_asked() {
        for (name, archive) in [
            ("a.tar", Some(Archive::Tar)),
            ("a.TGZ", Some(Archive::Tar)),
            ("a.tar.gz", Some(Archive::Tar)),
            ("a.tar.bz2", Some(Archive::Tar)),
            ("a.txz", Some(Archive::Tar)),
            ("a.zip", Some(Archive::Zip)),
            ("a.json.gz", Some(Archive::Gzip)),
            ("a.jar", None),
        ] {
            assert_eq!(uri(&format!("http://h/{name}")).archive(), archive, "{name}");
        }
        let kept = FetchUri { extract: false, ..uri("http://h/a.tgz") };
        assert_eq!(kept.archive(), None);
    }

    #[test]
    fn unfetchable_uris_and_unsafe_file_names_are_refused_naming_the_part() {
        for (bad, part) in [
            ("", "uri"),
            ("ftp://h/a", "uri"),
            ("hdfs://nn/a.tgz", "uri"),
            ("relative/path", "uri"),
            ("http://h/", "uri"),
            ("http://h/a\nb", "uri"),
        ] {
            assert_eq!(uri(bad).check().map_err(|(p, _)| p), Err(part), "{bad:?}");
        }
        for name in ["..", ".", "a/b", "../etc/passwd", ""] {
            let given = FetchUri { output_file: Some(name.into()), ..uri("http://h/a") };
            assert_eq!(given.check().map_err(|(p, _)| p), Err("output_file"), "{name:?}");
        }
        let long = format!("http://h/{}", "a".repeat(super::MAX_FETCH_URI_LEN));
        assert!(uri(&long).check().is_err());
        assert!(uri("https://h/app.tgz").check().is_ok());
    }
}
