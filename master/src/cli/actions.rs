//! `agora task kill ID` and `agora framework teardown ID`: one operator call each
//! (`KILL_TASK`, Agora's own; `TEARDOWN`, Mesos'), answered once the master has acted.

use serde_json::json;

use super::{CliError, MasterClient};

/// Kills a live task (in `framework_id`, needed only when several frameworks have a live
/// task of that id); returns the line to print.
pub async fn kill_task(client: &MasterClient, task_id: &str, framework_id: Option<&str>) -> Result<String, CliError> {
    let task_id = task_id.trim();
    if task_id.is_empty() {
        return Err(CliError::Usage("TASK_ID: must not be empty".to_owned()));
    }
    let mut call = json!({"type": "KILL_TASK", "kill_task": {"task_id": {"value": task_id}}});
    if let Some(framework_id) = framework_id {
        call["kill_task"]["framework_id"] = json!({ "value": framework_id });
    }
    client.call("KILL_TASK", &call).await?;
    Ok(format!("task {task_id} is being killed (`agora task show {task_id}` follows it)"))
}

/// Removes a framework: its tasks are killed and its id may not subscribe again.
pub async fn teardown(client: &MasterClient, framework_id: &str) -> Result<String, CliError> {
    let framework_id = framework_id.trim();
    if framework_id.is_empty() {
        return Err(CliError::Usage("FRAMEWORK_ID: must not be empty".to_owned()));
    }
    let call = json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": framework_id}}});
    client.call("TEARDOWN", &call).await?;
    Ok(format!("framework {framework_id} is torn down; its tasks are being killed"))
}
