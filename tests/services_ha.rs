//! End to end: two `agora services --etcd` processes on a real etcd. One leads, the other
//! redirects to it; the leader is SIGKILLed and the follower takes over with the apps and
//! their running tasks; a leader that abdicates hands over too.

mod common;

use common::etcd::Etcd;
use common::masters::no_redirects;
use common::services::{Api, Services, agent_resources, fetch, http_app};
use serde_json::{Value, json};

/// The index of the process that serves `/v2/info` itself (the leader), if exactly one does.
async fn leading(client: &reqwest::Client, services: &[&Services]) -> Option<usize> {
    let mut leaders = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let answer = client.get(format!("{}/v2/info", s.url)).send().await;
        if answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK) {
            leaders.push(i);
        }
    }
    (leaders.len() == 1).then(|| leaders[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_is_replaced_by_the_follower_with_every_app_and_task() {
    let etcd = Etcd::start();
    let cluster = common::Cluster::master_only(&[]).await;
    let dir = cluster.dir.path().to_owned();
    let _agent = common::agent::Agent::start(&dir, "agent", &cluster.master, &agent_resources());
    cluster.wait_for_agents(1).await;
    let flags = ["--etcd", etcd.url.as_str(), "--etcd-lease-ttl", "2s"];
    let mut a = Services::start(&dir, "services-a", &cluster.master, &flags);
    let mut b = Services::start(&dir, "services-b", &cluster.master, &flags);
    let client = no_redirects();
    let first = common::eventually("a leader", async || leading(&client, &[&a, &b]).await).await;
    let (leader, follower) = if first == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
    leader.wait_subscribed().await;

    // The follower redirects, keeping path and query, and names the leader — once it has
    // read the leader key (until then it answers 503: it knows of no leader to send to).
    let answer = common::eventually("the follower to know the leader", async || {
        let answer = client.get(format!("{}/v2/apps?embed=apps.tasks", follower.url)).send().await.ok()?;
        (answer.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(answer)
    })
    .await;
    assert_eq!(answer.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let location = format!("http://127.0.0.1:{}/v2/apps?embed=apps.tasks", leader.port);
    assert_eq!(answer.headers()["location"], location.as_str());
    let named = common::get_json(&format!("{}/v2/leader", follower.url)).await.expect("/v2/leader");
    assert_eq!(named["leader"], format!("127.0.0.1:{}", leader.port), "{named}");
    assert_eq!(client.get(format!("{}/ping", follower.url)).send().await.expect("ping").status(), 200);

    // An app posted to the follower lands on the leader.
    let via_follower = Api::new(&follower.url);
    let (status, body) =
        via_follower.call(reqwest::Method::POST, "/v2/apps", Some(&http_app("/web", 2, "v1", 0))).await.expect("POST");
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let before = leader.api().wait_settled("/web", 2).await;
    let ids: Vec<Value> = before.iter().map(|t| t["id"].clone()).collect();
    let framework_id = leader.wait_subscribed().await;

    // SIGKILL the leader: the follower takes over with the same framework, the app and its
    // tasks, none of them killed.
    leader.kill();
    let new_leader = follower;
    common::eventually("the follower to lead", async || {
        (client.get(format!("{}/v2/info", new_leader.url)).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    assert_eq!(new_leader.wait_subscribed().await, framework_id, "the same framework id");
    let api = new_leader.api();
    let after = api.wait_settled("/web", 2).await;
    for task in &after {
        assert!(ids.contains(&task["id"]), "the tasks kept running: {task}");
        assert_eq!(fetch(task, "version").await.as_deref(), Some("v1"));
    }
    // And it takes changes.
    let (status, body) =
        api.call(reqwest::Method::PUT, "/v2/apps/web", Some(&json!({ "instances": 3 }))).await.expect("PUT");
    assert!(status.is_success(), "{status}: {body}");
    api.wait_settled("/web", 3).await;

    // The killed one comes back as a follower; the leader abdicates and it takes over.
    leader.spawn();
    common::eventually("the restarted process to follow", async || {
        let answer = client.get(format!("{}/v2/apps", leader.url)).send().await.ok()?;
        (answer.status() == reqwest::StatusCode::TEMPORARY_REDIRECT).then_some(())
    })
    .await;
    let abdicated = client.delete(format!("{}/v2/leader", new_leader.url)).send().await.expect("abdicate");
    assert_eq!(abdicated.status(), reqwest::StatusCode::ACCEPTED);
    common::eventually("the restarted process to lead", async || {
        (client.get(format!("{}/v2/info", leader.url)).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    let tasks = leader.api().wait_settled("/web", 3).await;
    assert!(tasks.iter().filter(|t| ids.contains(&t["id"])).count() == 2, "the first tasks still run: {tasks:?}");
    assert!(new_leader.exited().is_none(), "an abdicated leader keeps running as a follower");
}
