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
