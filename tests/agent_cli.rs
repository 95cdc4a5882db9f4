//! End to end: `agora agent drain|deactivate|reactivate` against two masters on a real
//! etcd, sent to a follower (which redirects to the leader), and a drain kept in etcd
//! across the leader's death.

mod common;

use std::process::{Command, Output};

use common::agent::Agent;
use common::etcd::Etcd;
use common::masters::Masters;
use common::{AGORA, eventually, get_json, run_bounded};
use serde_json::{Value, json};

fn agora(args: &[&str], master_env: Option<&str>) -> Output {
    let mut command = Command::new(AGORA);
    command.args(args).env("RUST_LOG", "warn").env_remove("AGORA_MASTER");
    if let Some(master) = master_env {
        command.env("AGORA_MASTER", master);
    }
    run_bounded(command)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

async fn agent_on(master: &str, agent_id: &str) -> Option<Value> {
    let state = get_json(&format!("http://{master}/state")).await?;
    state["slaves"].as_array()?.iter().find(|s| s["id"] == agent_id).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_commands_reach_the_leader_through_a_follower_and_a_drain_outlives_a_failover() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--etcd-lease-ttl", "2s", "--agent-heartbeat-interval", "200ms", "--agent-timeout", "10s"];
    let mut masters = Masters::start(&etcd, dir.path(), 2, &flags);
    let leader_index = masters.leader().await;
    let leader = masters.addrs[leader_index].clone();
    let follower = masters.addrs[(leader_index + 1) % 2].clone();
    let _agent = Agent::start(dir.path(), "agent", &masters.list(), "cpus:1;mem:512");
    let agent_id = eventually("the agent on the leader", async || {
        let state = get_json(&format!("http://{leader}/state")).await?;
        state["slaves"][0]["id"].as_str().map(str::to_owned)
    })
    .await;

    let out = agora(&["agent", "deactivate", &agent_id, "--master", &follower], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("agent {agent_id} is deactivated"));
    let agent = agent_on(&leader, &agent_id).await.expect("listed");
    assert_eq!((&agent["deactivated"], &agent["active"]), (&json!(true), &json!(false)));

    let out = agora(&["agent", "reactivate", &agent_id], Some(&follower));
    assert!(out.status.success(), "AGORA_MASTER names the master: {}", stderr(&out));
    assert_eq!(agent_on(&leader, &agent_id).await.expect("listed")["deactivated"], false);

    let out = agora(&["agent", "drain", &agent_id, "--grace-period", "5s", "--master", &follower], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("agent {agent_id} is draining"));
    let drained = eventually("the agent drained", async || {
        let agent = agent_on(&leader, &agent_id).await?;
        (agent["drain_info"]["state"] == "DRAINED").then_some(agent)
    })
    .await;
    assert_eq!(drained["drain_info"]["config"]["max_grace_period"], json!({"nanoseconds": 5_000_000_000u64}));

    // Every way to get the command wrong is one line naming what is wrong.
    let out = agora(&["agent", "drain", "no-such-agent", "--master", &leader], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("agora agent: DRAIN_AGENT: 404 Not Found: drain_agent.agent_id"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    let out = agora(&["agent", "reactivate", &agent_id, "--master", "not-a-master"], None);
    assert_eq!(stderr(&out), "agora agent: --master: expected HOST:PORT (like 127.0.0.1:5050), got \"not-a-master\"");
    let out = agora(&["agent", "drain", &agent_id, "--grace-period", "soon", "--master", &leader], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--grace-period"), "{}", stderr(&out));

    // The drain is in etcd: the next leader shows it.
    masters.kill(leader_index);
    eventually("the follower to lead with the agent still drained", async || {
        let agent = agent_on(&follower, &agent_id).await?;
        (agent["drain_info"]["state"] == "DRAINED" && agent["deactivated"] == true).then_some(())
    })
    .await;
    let out = agora(&["agent", "reactivate", &agent_id, "--master", &follower], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("agent {agent_id} is reactivated"));
}
