//! `agora agent drain|deactivate|reactivate AGENT_ID`: the operator API's agent calls
//! from the command line. One `POST /api/v1` to the master (see `client`); the answer is
//! one line, an error one line naming what is wrong.

use std::time::Duration;

use serde_json::{Value, json};

use super::{CliError, MasterClient};

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

/// Sends the command for `agent_id` to `master` (one or several, comma-separated); returns
/// the line to print.
/// `tls` verifies the masters (`--tls-ca`); with it a bare address means `https://`.
pub async fn run(
    master: &str,
    tls: Option<&agora_proto::tls::ClientTls>,
    agent_id: &str,
    command: AgentCommand,
) -> Result<String, CliError> {
    let client = MasterClient::with_tls(master, tls)?;
    let (kind, body) = call(agent_id, &command)?;
    client.call(kind, &body).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
