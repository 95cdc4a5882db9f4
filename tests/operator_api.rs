//! End-to-end tests of the master's operator API for sharing (`/roles`, `/weights`,
//! `/quota`, `/reserve`, `/unreserve`) against a real master and agent on loopback.

mod common;

use common::{Cluster, eventually, get_json};
use serde_json::{Value, json};

/// Sends `body` (raw text) with `method` and returns the status and the JSON answer.
async fn send(cluster: &Cluster, method: reqwest::Method, path: &str, body: Option<String>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, cluster.url(path));
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.expect("the master answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn put(cluster: &Cluster, path: &str, body: Value) -> (u16, Value) {
    send(cluster, reqwest::Method::PUT, path, Some(body.to_string())).await
}

async fn post(cluster: &Cluster, path: &str, body: Value) -> (u16, Value) {
    send(cluster, reqwest::Method::POST, path, Some(body.to_string())).await
}

async fn role(cluster: &Cluster, name: &str) -> Option<Value> {
    let roles = get_json(&cluster.url("/roles")).await?;
    roles["roles"].as_array()?.iter().find(|r| r["name"] == name).cloned()
}

async fn cluster_with_one_agent() -> (Cluster, String) {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:4;mem:4096;disk:1024");
    cluster.wait_for_agents(1).await;
    let state = cluster.state().await;
    let agent_id = state["slaves"][0]["id"].as_str().expect("an agent id").to_owned();
    (cluster, agent_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_set_read_back_and_shown_on_roles() {
    let (cluster, _) = cluster_with_one_agent().await;
    let (status, body) = put(&cluster, "/weights", json!([{ "role": "eng", "weight": 2.5 }])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([{ "role": "eng", "weight": 2.5 }]));
    let weights = get_json(&cluster.url("/weights")).await.expect("/weights");
    assert_eq!(weights, json!([{ "role": "eng", "weight": 2.5 }]));
    let eng = role(&cluster, "eng").await.expect("eng is listed");
    assert_eq!(eng["weight"], json!(2.5));
    assert_eq!(eng["quota"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_weights_are_refused_with_400_naming_the_field() {
    let (cluster, _) = cluster_with_one_agent().await;
    let (status, body) = put(&cluster, "/weights", json!([{ "role": "eng", "weight": 0 }])).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "[0].weight: must be more than 0 and at most 1000000");
    let (status, body) = put(&cluster, "/weights", json!([{ "role": "../x", "weight": 1 }])).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("[0].role: invalid role")), "{body}");
    let (status, body) = send(&cluster, reqwest::Method::PUT, "/weights", Some("[{".to_owned())).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("body: ")), "{body}");
    let (status, body) = put(&cluster, "/weights", json!([{ "role": "eng", "weight": 1, "colour": "red" }])).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("unknown field `colour`")), "{body}");
    // Nothing was applied by the refused requests.
    assert_eq!(get_json(&cluster.url("/weights")).await, Some(json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_set_listed_shown_on_roles_and_removed() {
    let (cluster, _) = cluster_with_one_agent().await;
    let body =
        json!({ "role": "eng/web", "guarantee": { "cpus": 1, "mem": 1024 }, "limit": { "cpus": 2, "mem": 2048 } });
    let (status, answer) = post(&cluster, "/quota", body).await;
    assert_eq!(status, 200, "{answer}");
    // Left out of a limit, disk is unlimited and not shown.
    let expected = json!({
        "role": "eng/web",
        "guarantee": { "cpus": 1.0, "mem": 1024.0, "disk": 0.0 },
        "limit": { "cpus": 2.0, "mem": 2048.0 },
    });
    assert_eq!(answer, expected);
    assert_eq!(get_json(&cluster.url("/quota")).await, Some(json!([expected.clone()])));
    let web = role(&cluster, "eng/web").await.expect("eng/web is listed");
    assert_eq!(web["quota"], expected);
    assert!(role(&cluster, "eng").await.is_some(), "the parent role is listed too");

    let (status, removed) = send(&cluster, reqwest::Method::DELETE, "/quota/eng/web", None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(get_json(&cluster.url("/quota")).await, Some(json!([])));
    let (status, body) = send(&cluster, reqwest::Method::DELETE, "/quota/eng/web", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "role: role eng/web has no quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_quota_is_refused_with_400_naming_the_field() {
    let (cluster, _) = cluster_with_one_agent().await;
    let cases = [
        (json!({ "role": "eng", "guarantee": { "cpus": 2 }, "limit": { "cpus": 1 } }), "limit: "),
        (json!({ "role": "eng", "guarantee": { "cpus": -1 } }), "guarantee.cpus: "),
        (json!({ "role": "eng", "limit": { "mem": 1e300 } }), "limit.mem: "),
        (json!({ "role": "*", "guarantee": { "cpus": 1 } }), "role: "),
        (json!({ "guarantee": { "cpus": 1 } }), "body: missing field `role`"),
        (json!({ "role": "eng", "guarantee": { "gpus": 1 } }), "body: unknown field `gpus`"),
    ];
    for (body, prefix) in cases {
        let (status, answer) = post(&cluster, "/quota", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.starts_with(prefix)), "{body} -> {answer}");
        assert!(answer.get("details").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_reserved_for_a_role_and_unreserved_again() {
    let (cluster, agent_id) = cluster_with_one_agent().await;
    let body = json!({ "agent_id": agent_id, "resources": "cpus(eng):1;mem(eng):512" });
    let (status, answer) = post(&cluster, "/reserve", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    eventually("the reservation on /state", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let reserved = &state["slaves"][0]["reserved_resources"]["eng"];
        (reserved["cpus"] == json!(1.0) && reserved["mem"] == json!(512.0)).then_some(())
    })
    .await;
    assert!(role(&cluster, "eng").await.is_some(), "a reserved role is listed");

    let (status, answer) = post(&cluster, "/unreserve", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&cluster, "/unreserve", body).await;
    assert_eq!(status, 409, "nothing left to unreserve: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reservations_are_refused_with_the_field_named() {
    let (cluster, agent_id) = cluster_with_one_agent().await;
    let (status, answer) = post(&cluster, "/reserve", json!({ "agent_id": agent_id, "resources": "cpus:1" })).await;
    assert_eq!(status, 400);
    assert_eq!(answer["message"], "resources: every resource must name its role, as in `cpus(eng):1`");
    let (status, answer) =
        post(&cluster, "/reserve", json!({ "agent_id": agent_id, "resources": "cpus(eng):x" })).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().is_some_and(|m| m.starts_with("resources: ")), "{answer}");
    let (status, answer) =
        post(&cluster, "/reserve", json!({ "agent_id": "nobody", "resources": "cpus(eng):1" })).await;
    assert_eq!(status, 404);
    assert_eq!(answer["message"], "agent_id: agent nobody is not known");
    let (status, _) = post(&cluster, "/reserve", json!({ "agent_id": agent_id, "resources": "cpus(eng):64" })).await;
    assert_eq!(status, 409, "more than the agent has free");
    let (status, answer) = post(&cluster, "/reserve", json!({ "agent_id": "", "resources": "cpus(eng):1" })).await;
    assert_eq!(status, 400);
    assert_eq!(answer["message"], "agent_id: must not be empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_one_mebibyte_are_refused() {
    let (cluster, _) = cluster_with_one_agent().await;
    let huge = format!("[{}]", vec![r#"{"role":"eng","weight":1}"#; 60_000].join(","));
    let (status, _) = send(&cluster, reqwest::Method::PUT, "/weights", Some(huge)).await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_quota_and_reservations_survive_a_master_restart() {
    let (mut cluster, agent_id) = cluster_with_one_agent().await;
    let (status, _) = put(&cluster, "/weights", json!([{ "role": "eng", "weight": 3 }])).await;
    assert_eq!(status, 200);
    let (status, _) = post(&cluster, "/quota", json!({ "role": "eng", "guarantee": { "cpus": 1 } })).await;
    assert_eq!(status, 200);
    let reservation = json!({ "agent_id": agent_id, "resources": "cpus(eng):1;mem(eng):512" });
    let (status, _) = post(&cluster, "/reserve", reservation).await;
    assert_eq!(status, 200);

    cluster.restart_master().await;

    assert_eq!(get_json(&cluster.url("/weights")).await, Some(json!([{ "role": "eng", "weight": 3.0 }])));
    let quota = get_json(&cluster.url("/quota")).await.expect("/quota");
    assert_eq!(quota[0]["role"], "eng", "{quota}");
    assert_eq!(quota[0]["guarantee"]["cpus"], json!(1.0), "{quota}");
    // The agent re-registers with its plain resources; the master re-applies the reservation.
    eventually("the reservation back on the re-registered agent", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let agent = &state["slaves"][0];
        let reserved = &agent["reserved_resources"]["eng"];
        let back = agent["id"] == agent_id.as_str() && agent["active"] == true && reserved["cpus"] == json!(1.0);
        back.then_some(())
    })
    .await;
}
