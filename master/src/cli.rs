//! `agora agent drain|deactivate|reactivate AGENT_ID`: the operator API's agent calls
//! from the command line. One `POST /api/v1` to the master (a follower's 307 to the leader
//! is followed, method and body kept); the answer is one line, an error one line naming
//! what is wrong.

use std::time::Duration;

use serde_json::{Value, json};

/// Longest a call may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed at most: a follower names the leader, which answers.
const MAX_REDIRECTS: usize = 5;
/// Longest grace period a drain may name, as the operator API takes it.
const MAX_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to do to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentCommand {
    /// Kill its tasks (each with its grace period, at most `max_grace_period`), offer it no
    /// more; gone once drained with `mark_gone`.
    Drain {
        max_grace_period: Option<Duration>,
        mark_gone: bool,
    },
    Deactivate,
    Reactivate,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("--master: expected HOST:PORT (like 127.0.0.1:5050), got {0:?}")]
    Master(String),
    #[error("AGENT_ID: must not be empty")]
    AgentId,
    #[error("--grace-period: at most a year")]
    GracePeriod,
    #[error("cannot reach the master at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The master refused the call; `message` names the field at fault.
    #[error("{call}: {status}: {message}")]
    Refused { call: &'static str, status: reqwest::StatusCode, message: String },
}

/// The operator API's URL of a master given as `HOST:PORT` or `http://HOST:PORT`.
fn api_url(master: &str) -> Result<String, CliError> {
    let address = master.trim().trim_end_matches('/');
    let bare = address.strip_prefix("http://").unwrap_or(address);
    let valid =
        bare.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid || bare.contains('/') {
        return Err(CliError::Master(master.to_owned()));
    }
    Ok(format!("http://{bare}/api/v1"))
}

/// The call's type and body.
fn call(agent_id: &str, command: &AgentCommand) -> Result<(&'static str, Value), CliError> {
    if agent_id.trim().is_empty() {
        return Err(CliError::AgentId);
    }
    let id = json!({ "value": agent_id.trim() });
    Ok(match command {
        AgentCommand::Drain { max_grace_period, mark_gone } => {
            let mut drain = json!({ "agent_id": id, "mark_gone": mark_gone });
            if let Some(grace) = max_grace_period {
                if *grace > MAX_GRACE {
                    return Err(CliError::GracePeriod);
                }
                drain["max_grace_period"] = json!({ "seconds": grace.as_secs(), "nanos": grace.subsec_nanos() });
            }
            ("DRAIN_AGENT", json!({ "type": "DRAIN_AGENT", "drain_agent": drain }))
        }
        AgentCommand::Deactivate => {
            ("DEACTIVATE_AGENT", json!({ "type": "DEACTIVATE_AGENT", "deactivate_agent": { "agent_id": id } }))
        }
        AgentCommand::Reactivate => {
            ("REACTIVATE_AGENT", json!({ "type": "REACTIVATE_AGENT", "reactivate_agent": { "agent_id": id } }))
        }
    })
}

/// Sends the command for `agent_id` to `master`; returns the line to print.
pub async fn run(master: &str, agent_id: &str, command: AgentCommand) -> Result<String, CliError> {
    let url = api_url(master)?;
    let (kind, body) = call(agent_id, &command)?;
    let unreachable = |e: &dyn std::fmt::Display| CliError::Unreachable { url: url.clone(), reason: e.to_string() };
    // A master run with --authenticate-http needs the operator's credential:
    // `$AGORA_PRINCIPAL` and `$AGORA_SECRET_FILE`.
    let mut headers = reqwest::header::HeaderMap::new();
    let credential = agora_proto::auth::Credential::from_env().map_err(|e| unreachable(&e))?;
    if let Some(credential) = credential
        && let Ok(mut value) = reqwest::header::HeaderValue::try_from(credential.basic())
    {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .build()
        .map_err(|e| unreachable(&e))?;
    let response = http.post(&url).json(&body).send().await.map_err(|e| unreachable(&error_chain(&e)))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| unreachable(&e))?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(CliError::Refused { call: kind, status, message });
    }
    let id = agent_id.trim();
    Ok(match command {
        AgentCommand::Drain { mark_gone: true, .. } => {
            format!("agent {id} is draining; it will be gone once its tasks have ended")
        }
        AgentCommand::Drain { .. } => format!("agent {id} is draining"),
        AgentCommand::Deactivate => format!("agent {id} is deactivated"),
        AgentCommand::Reactivate => format!("agent {id} is reactivated"),
    })
}

/// An error with its causes, on one line (reqwest's own says little: "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_is_named_by_host_and_port_with_or_without_its_scheme() {
        assert_eq!(api_url("127.0.0.1:5050").ok(), Some("http://127.0.0.1:5050/api/v1".to_owned()));
        assert_eq!(api_url("http://node-1:5050/").ok(), Some("http://node-1:5050/api/v1".to_owned()));
        for bad in ["", "node-1", ":5050", "node-1:0", "node-1:http", "https://node-1:5050", "node-1:5050/x"] {
            assert!(matches!(api_url(bad), Err(CliError::Master(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_drain_names_its_grace_period_in_seconds_and_nanoseconds() {
        let command = AgentCommand::Drain { max_grace_period: Some(Duration::from_millis(1_500)), mark_gone: true };
        let (kind, body) = call(" a1 ", &command).expect("valid");
        assert_eq!(kind, "DRAIN_AGENT");
        assert_eq!(
            body,
            json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "a1"}, "mark_gone": true,
                "max_grace_period": {"seconds": 1, "nanos": 500_000_000}}})
        );
        let (_, body) = call("a1", &AgentCommand::Drain { max_grace_period: None, mark_gone: false }).expect("valid");
        assert_eq!(body["drain_agent"].get("max_grace_period"), None);
        assert!(matches!(call(" ", &AgentCommand::Deactivate), Err(CliError::AgentId)));
        let too_long = AgentCommand::Drain { max_grace_period: Some(MAX_GRACE * 2), mark_gone: false };
        assert!(matches!(call("a1", &too_long), Err(CliError::GracePeriod)));
    }
}
