//! The operator's command line: `agora agents`, `agora frameworks`, `agora tasks`,
//! `agora task show|log|ls|cat|kill`, `agora framework teardown` and `agora agent
//! drain|deactivate|reactivate`. Each is a client of the public HTTP APIs, as any script
//! would be: the master's read endpoints and operator API, and the agents' sandbox files.
//!
//! - `client`: the masters (`--master a:5050,b:5050`), tried in turn; a follower's 307 is
//!   followed to the leader, and the one that answered is asked first next time.
//! - `listing`: tables (and `--json`) of agents, frameworks and tasks, from the endpoints
//!   that read the master's read model and scale (`/state-summary`, `/slaves`, `/tasks`
//!   with filters), never a whole `/state`.
//! - `sandbox`: where a task's sandbox is (agent and path) and its files: listed, read,
//!   and followed as they grow ([`sandbox::FileFollower`], which `agora run` uses too).
//! - `actions`: KILL_TASK and TEARDOWN through the operator API; `agent`: the agent calls.
//!
//! Every function returns what to print; errors are one line naming what is wrong.

pub mod actions;
pub mod agent;
pub mod client;
pub mod listing;
pub mod sandbox;

pub use agent::{AgentCommand, run};
pub use client::MasterClient;

/// What went wrong; each is printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("--master: expected HOST:PORT (like 127.0.0.1:5050), got {0:?}")]
    Master(String),
    #[error("AGENT_ID: must not be empty")]
    AgentId,
    #[error("--grace-period: at most a year")]
    GracePeriod,
    /// A flag or argument the master was never asked about.
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the master at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The master refused the call; `message` names the field at fault.
    #[error("{call}: {status}: {message}")]
    Refused { call: String, status: reqwest::StatusCode, message: String },
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The agent that holds the sandbox could not be read.
    #[error("agent {agent} at {url}: {reason}")]
    Agent { agent: String, url: String, reason: String },
    /// Standard output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}
