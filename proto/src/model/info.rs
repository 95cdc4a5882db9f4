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
