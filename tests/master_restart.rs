//! End to end: a master SIGKILLed while tasks run comes back from its registry; agents
//! re-register with their tasks, frameworks re-subscribe with their ids, nothing is killed.

mod common;

use agora_proto::model::TaskState;
use common::framework::Framework;
use common::{Cluster, eventually, get_json};

#[tokio::test(flavor = "multi_thread")]
async fn a_master_restart_kills_no_task_and_keeps_agents_and_frameworks() {
    let mut cluster = Cluster::master_only(&["--agent-heartbeat-interval", "200ms", "--agent-timeout", "5s"]).await;
    cluster.add_agent("agent", "cpus:1;mem:256;disk:100;ports:[31000-31010]");
    cluster.wait_for_agents(1).await;
    let mut framework = Framework::start(&cluster.master, "sleep 1000");
    let running = framework.wait_for(TaskState::TaskRunning).await;
    let before = cluster.state().await;
    let agent_id = before["slaves"][0]["id"].clone();
    let framework_id = before["frameworks"][0]["id"].clone();

    cluster.restart_master().await;

    // The framework's driver re-subscribes by itself; the agent re-registers by itself.
    let url = cluster.url("/state");
    let state = eventually("the agent and the framework to come back", async || {
        let state = get_json(&url).await?;
        let agent_back = state["slaves"][0]["id"] == agent_id && state["slaves"][0]["active"] == true;
        let framework_back = state["frameworks"][0]["id"] == framework_id && state["frameworks"][0]["active"] == true;
        (agent_back && framework_back).then_some(state)
    })
    .await;
    let task = &state["frameworks"][0]["tasks"][0];
    assert_eq!(task["id"], running.task_id.as_str(), "{state}");
    assert_eq!(task["state"], "TASK_RUNNING", "{state}");
    assert_eq!(task["slave_id"], agent_id, "{state}");

    // Nothing terminal reached the framework, and the task still answers a kill.
    while let Ok(status) = framework.updates.try_recv() {
        assert!(!status.state.is_terminal(), "a restart must not end the task: {status:?}");
    }
    let handle = framework.handle.clone();
    eventually("the driver to see its new subscription", async || handle.is_subscribed().then_some(())).await;
    framework.handle.kill(&running.task_id, running.agent_id.as_ref()).await.expect("kill");
    framework.wait_for(TaskState::TaskKilled).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_down_framework_stays_removed_after_a_master_restart() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent", "cpus:1;mem:256;disk:100;ports:[31000-31010]");
    cluster.wait_for_agents(1).await;
    let mut framework = Framework::start(&cluster.master, "sleep 1000");
    framework.wait_for(TaskState::TaskRunning).await;
    let framework_id = framework.handle.framework_id().expect("subscribed");
    framework.handle.teardown().await.expect("teardown");
    drop(framework);

    cluster.restart_master().await;
    let again = Framework::start_with_id(&cluster.master, "sleep 1000", Some(framework_id.clone()));
    // The master refuses the removed id: the driver gets the error and stops for good.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !again.task_finished() {
        assert!(tokio::time::Instant::now() < deadline, "the driver of a removed framework kept going");
        assert!(!again.handle.is_subscribed(), "the removed framework was let back in");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let state = cluster.state().await;
    assert!(
        state["frameworks"].as_array().is_some_and(|f| f.iter().all(|f| f["id"] != framework_id.as_str())),
        "{state}"
    );
}
