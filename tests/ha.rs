//! End to end: three masters on a real etcd. The leader is SIGKILLed while a task runs; a
//! follower is elected, the agent re-registers with its task, the framework re-subscribes
//! with its id, and nothing is killed. Followers redirect HTTP and refuse gRPC naming the
//! leader.

mod common;

use std::time::Instant;

use agora_proto::model::TaskState;
use agora_proto::pb;
use common::etcd::Etcd;
use common::framework::Framework;
use common::masters::{leader_of as leader, no_redirects};
use common::{Proc, eventually, free_port, get_json};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_is_replaced_and_no_task_is_killed() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters, mut procs, http, first) = three_masters_with_a_leader(&etcd, dir.path()).await;

    let all = masters.join(",");
    let agent_work = dir.path().join("agent");
    let agent_port = free_port().to_string();
    let agent_args = [
        "agent",
        "--master",
        &all,
        "--port",
        &agent_port,
        "--work-dir",
        agent_work.to_str().expect("utf-8 path"),
        "--resources",
        "cpus:1;mem:256;disk:100;ports:[31000-31010]",
    ];
    let _agent = Proc::spawn("agent", dir.path(), &agent_args);
    let mut framework = Framework::start(&all, "sleep 1000");
    let running = framework.wait_for(TaskState::TaskRunning).await;
    let before = eventually("the agent on the leader", async || {
        let state = get_json(&format!("http://{first}/state")).await?;
        (state["slaves"][0]["active"] == true).then_some(state)
    })
    .await;
    let agent_id = before["slaves"][0]["id"].clone();
    let framework_id = before["frameworks"][0]["id"].clone();

    // Followers redirect HTTP to the leader and say who leads on /health.
    let follower = masters.iter().find(|m| **m != first).expect("a follower").clone();
    let answer = http.get(format!("http://{follower}/state?x=1")).send().await.expect("follower answers");
    assert_eq!(answer.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(answer.headers()["location"], format!("http://{first}/state?x=1").as_str());
    let health = get_json(&format!("http://{follower}/health")).await.expect("follower health");
    assert_eq!(health["leading_master"], first.as_str(), "{health}");
    // Followers refuse gRPC calls as UNAVAILABLE, naming the leader.
    let mut scheduler =
        pb::scheduler_client::SchedulerClient::connect(format!("http://{follower}")).await.expect("dial");
    let refused = scheduler.subscribe(pb::Subscribe { framework: None }).await.expect_err("a follower refuses");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(refused.metadata().get("agora-leader").and_then(|v| v.to_str().ok()), Some(first.as_str()));
    assert!(refused.message().contains(&first), "{refused:?}");

    // SIGKILL the leader.
    let index = masters.iter().position(|m| *m == first).expect("the leader is one of them");
    let killed = Instant::now();
    procs[index].kill();
    let rest: Vec<String> = masters.iter().filter(|m| **m != first).cloned().collect();
    let second = eventually("a new leader", async || leader(&http, &rest).await).await;
    let leader_after = killed.elapsed();

    let url = format!("http://{second}/state");
    let (mut agent_back_after, mut framework_back_after) = (None, None);
    let state = eventually("the agent and the framework on the new leader", async || {
        let state = get_json(&url).await?;
        if state["slaves"][0]["id"] == agent_id && state["slaves"][0]["active"] == true {
            agent_back_after.get_or_insert_with(|| killed.elapsed());
        }
        if state["frameworks"][0]["id"] == framework_id && state["frameworks"][0]["active"] == true {
            framework_back_after.get_or_insert_with(|| killed.elapsed());
        }
        (agent_back_after.is_some() && framework_back_after.is_some()).then_some(state)
    })
    .await;
    let task = &state["frameworks"][0]["tasks"][0];
    assert_eq!(task["id"], running.task_id.as_str(), "{state}");
    assert_eq!(task["state"], "TASK_RUNNING", "{state}");
    assert_eq!(task["slave_id"], agent_id, "{state}");
    while let Ok(status) = framework.updates.try_recv() {
        assert!(!status.state.is_terminal(), "a failover must not end the task: {status:?}");
    }
    let ms = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_millis());
    eprintln!(
        "leader failover (lease TTL 2s): new leader serving /state after {} ms; agent re-registered after {} ms; \
         framework re-subscribed after {} ms",
        leader_after.as_millis(),
        ms(agent_back_after),
        ms(framework_back_after)
    );

    // The new leader serves the framework's calls: the task still answers a kill.
    let handle = framework.handle.clone();
    eventually("the driver to see its new subscription", async || handle.is_subscribed().then_some(())).await;
    framework.handle.kill(&running.task_id, running.agent_id.as_ref()).await.expect("kill");
    framework.wait_for(TaskState::TaskKilled).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_given_only_etcd_follows_the_leader_through_a_failover_and_its_task_keeps_running() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters, mut procs, http, first) = three_masters_with_a_leader(&etcd, dir.path()).await;

    let agent_work = dir.path().join("agent");
    let agent_port = free_port().to_string();
    let agent_args = [
        "agent",
        "--etcd",
        etcd.endpoint(),
        "--port",
        &agent_port,
        "--work-dir",
        agent_work.to_str().expect("utf-8 path"),
        "--resources",
        "cpus:1;mem:256;disk:100;ports:[31000-31010]",
    ];
    let _agent = Proc::spawn("agent", dir.path(), &agent_args);
    let marker = dir.path().join("pid");
    let mut framework =
        Framework::start(&masters.join(","), &format!("echo $$ > {}; exec sleep 1000", marker.display()));
    let running = framework.wait_for(TaskState::TaskRunning).await;
    let pid: i32 =
        eventually("the task to write its pid", async || std::fs::read_to_string(&marker).ok()?.trim().parse().ok())
            .await;
    let before = eventually("the agent on the leader", async || {
        let state = get_json(&format!("http://{first}/state")).await?;
        (state["slaves"][0]["active"] == true).then_some(state)
    })
    .await;
    let agent_id = before["slaves"][0]["id"].clone();

    let index = masters.iter().position(|m| *m == first).expect("the leader is one of them");
    procs[index].kill();
    let rest: Vec<String> = masters.iter().filter(|m| **m != first).cloned().collect();
    let second = eventually("a new leader", async || leader(&http, &rest).await).await;
    let url = format!("http://{second}/state");
    let state = eventually("the agent re-registered with the new leader, its task running", async || {
        let state = get_json(&url).await?;
        let agent_back = state["slaves"][0]["id"] == agent_id && state["slaves"][0]["active"] == true;
        let task = &state["frameworks"][0]["tasks"][0];
        (agent_back && task["state"] == "TASK_RUNNING").then_some(state)
    })
    .await;
    assert_eq!(state["frameworks"][0]["tasks"][0]["id"], running.task_id.as_str(), "{state}");
    assert!(alive(pid), "the task's process {pid} still runs");
    while let Ok(status) = framework.updates.try_recv() {
        assert!(!status.state.is_terminal(), "a failover must not end the task: {status:?}");
    }
    // The agent never had a master's address: it read the new leader's from etcd.
    let agent_url = format!("http://127.0.0.1:{agent_port}/state");
    // The master may list the agent a moment before the agent has taken in the answer.
    eventually("the agent to show itself registered with the new leader", async || {
        let state = get_json(&agent_url).await?;
        (state["master"] == second.as_str() && state["connected"] == true).then_some(())
    })
    .await;

    // The task still answers its framework through the new leader, and leaves nothing behind.
    let handle = framework.handle.clone();
    eventually("the driver to see its new subscription", async || handle.is_subscribed().then_some(())).await;
    framework.handle.kill(&running.task_id, running.agent_id.as_ref()).await.expect("kill");
    framework.wait_for(TaskState::TaskKilled).await;
    eventually("the killed task's process to be gone", async || (!alive(pid)).then_some(())).await;
}

#[test]
fn an_agent_refuses_a_bad_etcd_flag_naming_it() {
    let agent = |args: &[&str]| {
        let mut command = std::process::Command::new(common::AGORA);
        command.arg("agent").args(args).args(["--port", "0"]);
        common::run_bounded(command)
    };
    for bad in ["etcd", "etcd:0", "https://etcd:2379", " , "] {
        let output = agent(&["--etcd", bad]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--etcd {bad:?} was accepted: {stderr}");
        assert!(stderr.contains("--etcd"), "--etcd {bad:?}: the error names the flag: {stderr}");
    }
    let both = agent(&["--etcd", "127.0.0.1:2379", "--master", "127.0.0.1:5050"]);
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success() && stderr.contains("--etcd") && stderr.contains("--master"), "{stderr}");
    let neither = agent(&[]);
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert!(!neither.status.success() && stderr.contains("--master") && stderr.contains("--etcd"), "{stderr}");
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// Three masters on `etcd` with a 2 s lease and fast agent heartbeats, once one leads: their
/// addresses, processes, a client that shows redirects, and the leader.
async fn three_masters_with_a_leader(
    etcd: &Etcd,
    dir: &std::path::Path,
) -> (Vec<String>, Vec<Proc>, reqwest::Client, String) {
    let flags = ["--etcd-lease-ttl", "2s", "--agent-heartbeat-interval", "200ms", "--agent-timeout", "10s"];
    let (masters, procs) = etcd_masters(etcd, dir, 3, &flags);
    let http = no_redirects();
    let first = eventually("a leader to be elected", async || leader(&http, &masters).await).await;
    (masters, procs, http, first)
}

/// Starts `count` masters on `etcd`, each with its own port and work directory, plus
/// `flags`; returns their addresses and processes, in the same order.
fn etcd_masters(etcd: &Etcd, dir: &std::path::Path, count: usize, flags: &[&str]) -> (Vec<String>, Vec<Proc>) {
    let masters: Vec<String> = (0..count).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let procs = masters
        .iter()
        .enumerate()
        .map(|(i, master)| {
            let port = master.rsplit_once(':').expect("host:port").1;
            let work = dir.join(format!("master{i}"));
            let args = ["master", "--port", port, "--work-dir", work.to_str().expect("utf-8 path")];
            let etcd_args = ["--etcd", etcd.url.as_str()];
            Proc::spawn(&format!("master{i}"), dir, &[&args[..], &etcd_args[..], flags].concat())
        })
        .collect();
    (masters, procs)
}

/// Starts one `agora master --etcd` and waits until it leads; returns it and its address.
async fn sole_master(etcd: &Etcd, dir: &std::path::Path) -> (Proc, String) {
    let (masters, mut procs) = etcd_masters(etcd, dir, 1, &["--etcd-lease-ttl", "2s"]);
    let http = no_redirects();
    eventually("the master to lead", async || leader(&http, &masters).await).await;
    (procs.remove(0), masters[0].clone())
}

/// Waits for `proc` to exit by itself and returns its exit code.
async fn exit_code(proc: &mut Proc) -> Option<i32> {
    eventually("the master to stop by itself", async || proc.child.try_wait().ok().flatten()).await.code()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_key_is_taken_away_stops() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut master, _) = sole_master(&etcd, dir.path()).await;
    let mut kv = agora_proto::etcd::kv_client::KvClient::connect(etcd.url.clone()).await.expect("dial etcd");
    let delete = agora_proto::etcd::DeleteRangeRequest { key: b"/agora/leader".to_vec(), range_end: Vec::new() };
    assert_eq!(kv.delete_range(delete).await.expect("delete the leader key").into_inner().deleted, 1);
    assert_eq!(exit_code(&mut master).await, Some(1), "{}", master.log_text());
    assert!(master.log_text().contains("lost leadership"), "{}", master.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_cannot_reach_etcd_stops_within_its_lease() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut master, _) = sole_master(&etcd, dir.path()).await;
    let cut = Instant::now();
    etcd.kill();
    assert_eq!(exit_code(&mut master).await, Some(1), "{}", master.log_text());
    // The lease (2 s) cannot be refreshed: the leader must be gone by the time another
    // master could be elected, give or take one refresh interval.
    assert!(cut.elapsed() < std::time::Duration::from_secs(4), "stopped after {:?}", cut.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopped_cleanly_hands_over_without_waiting_for_its_lease() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    // A long lease: a follower elected well within it was handed leadership.
    let (masters, mut procs) = etcd_masters(&etcd, dir.path(), 2, &["--etcd-lease-ttl", "30s"]);
    let http = no_redirects();
    let first = eventually("a leader to be elected", async || leader(&http, &masters).await).await;
    let index = masters.iter().position(|m| *m == first).expect("the leader is one of them");
    let stopped = Instant::now();
    procs[index].signal("TERM");
    let rest: Vec<String> = masters.iter().filter(|m| **m != first).cloned().collect();
    eventually("the other master to lead", async || leader(&http, &rest).await).await;
    assert!(stopped.elapsed() < std::time::Duration::from_secs(15), "took {:?}", stopped.elapsed());
    assert_eq!(exit_code(&mut procs[index]).await, Some(0), "{}", procs[index].log_text());
}
