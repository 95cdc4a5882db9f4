//! End to end: a rolling upgrade survives a SIGKILL of `agora services`, of the master and
//! of an agent in the middle of it. After the process is started again the deployment
//! completes; no app is lost; and at no moment are fewer of the app's tasks healthy (as
//! the agents that check them say) than its instances, so no healthy task was killed but
//! by the upgrade itself, after its replacement was healthy.

mod common;

use std::time::{Duration, Instant};

use common::services::{Stack, fetch, http_app};
use serde_json::Value;

/// How many tasks the agents run with a passing health check, if every agent answers
/// (the agents run the checks: theirs is the truth, through any restart of the master).
async fn healthy_on_agents(ports: &[u16]) -> Option<usize> {
    let mut healthy = 0;
    for port in ports {
        let state = common::get_json(&format!("http://127.0.0.1:{port}/state")).await?;
        let tasks = state["tasks"].as_array()?;
        healthy += tasks.iter().filter(|t| t["state"] == "TASK_RUNNING" && t["healthy"] == true).count();
    }
    Some(healthy)
}

/// Which component a test kills in the middle of the rollout.
#[derive(Clone, Copy, Debug)]
enum Victim {
    Services,
    Master,
    /// The agent running the first task of the new version.
    Agent,
}

/// Deploys v1 (2 instances), starts a rolling upgrade to v2 (whose tasks take a few seconds
/// to get healthy), SIGKILLs `victim` once the first v2 task is launched, starts it again,
/// and checks the rollout completes without the health floor ever being crossed.
async fn rollout_survives(victim: Victim) {
    let mut stack = Stack::start(2, &[]).await;
    let api = stack.api();
    let (status, answer) =
        api.call(reqwest::Method::POST, "/v2/apps", Some(&http_app("/web", 2, "v1", 0))).await.expect("POST");
    assert!(status.is_success(), "{status}: {answer}");
    let v1 = api.wait_settled("/web", 2).await;
    let v1_ids: Vec<Value> = v1.iter().map(|t| t["id"].clone()).collect();

    let (status, answer) =
        api.call(reqwest::Method::PUT, "/v2/apps/web", Some(&http_app("/web", 2, "v2", 3))).await.expect("PUT");
    assert!(status.is_success(), "{status}: {answer}");
    let first_new = common::eventually_with("a v2 task to be launched", async || {
        let tasks = api.tasks("/web").await?;
        tasks.iter().find(|t| !v1_ids.contains(&t["id"])).cloned().ok_or_else(|| format!("{tasks:?}"))
    })
    .await;

    // The health floor, as the agents see it, watched from now to the end.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ports: Vec<u16> = stack.agents.iter().map(|a| a.port).collect();
    let floor = tokio::spawn({
        let watching = watching.clone();
        async move {
            let mut lowest = usize::MAX;
            let mut samples = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                // A SIGKILLed agent does not answer; its tasks run on, and are counted again
                // once it is back.
                if let Some(healthy) = healthy_on_agents(&ports).await {
                    lowest = lowest.min(healthy);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (lowest, samples)
        }
    });

    match victim {
        Victim::Services => {
            stack.services.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.services.spawn();
        }
        Victim::Master => {
            stack.cluster.restart_master().await;
        }
        Victim::Agent => {
            let agent_id = first_new["slaveId"].as_str().expect("the task's agent").to_owned();
            let state = stack.cluster.state().await;
            let index = state["slaves"]
                .as_array()
                .and_then(|agents| {
                    agents.iter().find(|a| a["id"] == agent_id.as_str()).and_then(|a| a["port"].as_u64())
                })
                .and_then(|port| stack.agents.iter().position(|a| u64::from(a.port) == port))
                .expect("the agent of the new task is one of ours");
            stack.agents[index].kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.agents[index].spawn();
        }
    }

    // The deployment completes after the restart: v2 everywhere, nothing lost.
    let started = Instant::now();
    let tasks = api.wait_settled("/web", 2).await;
    for task in &tasks {
        assert!(!v1_ids.contains(&task["id"]), "every v1 task was replaced: {task}");
        assert_eq!(fetch(task, "version").await.as_deref(), Some("v2"), "{task}");
    }
    let app = api.app("/web").await.expect("the app survived");
    assert_eq!(app["env"]["VERSION"], "v2", "{app}");
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (lowest, samples) = floor.await.expect("floor watcher");
    assert!(samples > 0, "the agents were watched");
    assert!(lowest >= 2, "{victim:?}: the agents had only {lowest} healthy tasks at one point");
    let ports: Vec<u16> = stack.agents.iter().map(|a| a.port).collect();
    assert_eq!(healthy_on_agents(&ports).await, Some(2));
    // The master shows the same, a restarted one included (agents report their tasks'
    // health when they register again).
    let state = stack.cluster.state().await;
    let on_master = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().into_iter().flatten())
        .filter(|t| {
            t["state"] == "TASK_RUNNING"
                && t["statuses"].as_array().and_then(|s| s.last()).is_some_and(|s| s["healthy"] == true)
        })
        .count();
    assert_eq!(on_master, 2, "{victim:?}: the master's /state: {state}");
    report_took(victim, started.elapsed());
}

/// Logged for whoever reads the test's output: how long the rollout took to finish.
fn report_took(victim: Victim, took: Duration) {
    eprintln!("{victim:?}: the rollout finished {took:?} after the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_completes_after_services_is_killed_in_the_middle() {
    rollout_survives(Victim::Services).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_completes_after_the_master_is_killed_in_the_middle() {
    rollout_survives(Victim::Master).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_completes_after_an_agent_is_killed_in_the_middle() {
    rollout_survives(Victim::Agent).await;
}
