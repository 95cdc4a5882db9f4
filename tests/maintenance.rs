//! End-to-end tests of taking agents and machines out of service through the operator
//! API and Mesos' legacy maintenance endpoints, against a real master and agents on
//! loopback: draining (tasks killed with grace, no offers, DRAINED, kept across a master
//! restart), deactivation, machines going down and up, and bad input on every call.

mod common;

use std::time::Duration;

use common::run::RunProc;
use common::{Cluster, eventually, get_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client")
}

/// Sends an operator call; returns the status and the JSON answer (`Null` when empty).
async fn operator(cluster: &Cluster, body: Value) -> (StatusCode, Value) {
    let response = client()
        .post(cluster.url("/api/v1"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the master answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_json(cluster: &Cluster, path: &str, body: &str) -> (StatusCode, Value) {
    let response = client()
        .post(cluster.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the master answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

/// The only agent's entry in GET_AGENTS, once there is one.
async fn the_agent(cluster: &Cluster) -> Value {
    eventually("an agent in GET_AGENTS", async || {
        let (_, agents) = operator(cluster, json!({"type": "GET_AGENTS"})).await;
        agents["get_agents"]["agents"].as_array()?.first().cloned()
    })
    .await
}

async fn slave(cluster: &Cluster, agent_id: &str) -> Option<Value> {
    let state = get_json(&cluster.url("/state")).await?;
    state["slaves"].as_array()?.iter().find(|s| s["id"] == agent_id).cloned()
}

/// A task that records SIGTERM in `marker` and then ends, as a task given a grace period
/// does.
fn graceful_task(marker: &std::path::Path) -> Vec<String> {
    let script = format!("trap 'echo term > {}; exit 0' TERM; while true; do sleep 0.1; done", marker.display());
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

fn agent_call(kind: &str, field: &str, agent_id: &str) -> Value {
    json!({"type": kind, field: {"agent_id": {"value": agent_id}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_agent_ends_its_tasks_with_grace_gets_no_offers_and_stays_drained_across_a_master_restart() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:1;mem:1024");
    cluster.wait_for_agents(1).await;
    let agent_id = the_agent(&cluster).await["agent_info"]["id"]["value"].as_str().expect("an id").to_owned();
    let marker = cluster.dir.path().join("terminated");
    let command = graceful_task(&marker);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let dir = cluster.dir.path().to_owned();
    let first = RunProc::start(&dir, "first", &cluster.master, &["--cpus", "0.5"], &command);
    eventually("the first task to run", async || {
        first.states("first-0").contains(&"TASK_RUNNING".to_owned()).then_some(())
    })
    .await;

    let drain = json!({"type": "DRAIN_AGENT", "drain_agent": {
        "agent_id": {"value": agent_id}, "max_grace_period": {"seconds": 10}}});
    let (status, body) = operator(&cluster, drain).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the task to be killed", async || {
        first.states("first-0").contains(&"TASK_KILLED".to_owned()).then_some(())
    })
    .await;
    assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("term\n"), "the task got SIGTERM first");
    let drained = eventually("DRAINED in GET_AGENTS", async || {
        let agent = the_agent(&cluster).await;
        (agent["drain_info"]["state"] == "DRAINED").then_some(agent)
    })
    .await;
    assert_eq!(drained["deactivated"], true);
    assert_eq!(drained["active"], false);
    assert_eq!(
        drained["drain_info"]["config"],
        json!({"mark_gone": false, "max_grace_period": {"nanoseconds": 10_000_000_000u64}})
    );
    let state = slave(&cluster, &agent_id).await.expect("in /state");
    assert_eq!((&state["deactivated"], &state["drain_info"]["state"]), (&json!(true), &json!("DRAINED")));
    let (status, body) = operator(&cluster, agent_call("REACTIVATE_AGENT", "reactivate_agent", "no-such-agent")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(message(&body).starts_with("reactivate_agent.agent_id"), "{body}");

    // A new framework gets nothing from the drained agent, before and after a restart.
    let second = RunProc::start(&dir, "second", &cluster.master, &["--cpus", "0.5"], &["sleep", "60"]);
    eventually("the second framework to subscribe", async || (!second.framework_ids().is_empty()).then_some(())).await;
    cluster.restart_master().await;
    eventually("the agent back after the restart", async || {
        let agent = slave(&cluster, &agent_id).await?;
        (agent["reachable"] == true && agent["drain_info"]["state"] == "DRAINED").then_some(())
    })
    .await;
    assert_eq!(the_agent(&cluster).await["deactivated"], true);
    // A bounded wait for what must not happen: offers go out within milliseconds of a change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(second.updates("second-0").is_empty(), "nothing was launched on the drained agent");

    let (status, body) = operator(&cluster, agent_call("REACTIVATE_AGENT", "reactivate_agent", &agent_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the second task to run once reactivated", async || {
        second.states("second-0").contains(&"TASK_RUNNING".to_owned()).then_some(())
    })
    .await;
    let agent = the_agent(&cluster).await;
    assert_eq!((&agent["deactivated"], agent.get("drain_info")), (&json!(false), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_agent_keeps_its_tasks_and_is_offered_again_once_reactivated() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:1;mem:1024");
    cluster.wait_for_agents(1).await;
    let agent_id = the_agent(&cluster).await["agent_info"]["id"]["value"].as_str().expect("an id").to_owned();
    let dir = cluster.dir.path().to_owned();
    let first = RunProc::start(&dir, "first", &cluster.master, &["--cpus", "0.5"], &["sleep", "60"]);
    eventually("the first task to run", async || {
        first.states("first-0").contains(&"TASK_RUNNING".to_owned()).then_some(())
    })
    .await;

    let (status, body) = operator(&cluster, agent_call("DEACTIVATE_AGENT", "deactivate_agent", &agent_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let agent = the_agent(&cluster).await;
    assert_eq!((&agent["deactivated"], &agent["active"]), (&json!(true), &json!(false)));
    let second = RunProc::start(&dir, "second", &cluster.master, &["--cpus", "0.5"], &["sleep", "60"]);
    eventually("the second framework to subscribe", async || (!second.framework_ids().is_empty()).then_some(())).await;
    // A bounded wait for what must not happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(second.updates("second-0").is_empty(), "nothing is launched on a deactivated agent");
    assert_eq!(first.states("first-0").last().map(String::as_str), Some("TASK_RUNNING"), "tasks are left alone");

    let (status, _) = operator(&cluster, agent_call("REACTIVATE_AGENT", "reactivate_agent", &agent_id)).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the second task to run", async || {
        second.states("second-0").contains(&"TASK_RUNNING".to_owned()).then_some(())
    })
    .await;
    let (status, body) = operator(&cluster, agent_call("REACTIVATE_AGENT", "reactivate_agent", &agent_id)).await;
    assert_eq!(status, StatusCode::CONFLICT, "not deactivated any more: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_down_for_maintenance_refuses_its_agent_until_it_is_up_again() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:1;mem:1024");
    cluster.wait_for_agents(1).await;
    let agent = the_agent(&cluster).await;
    let hostname = agent["agent_info"]["hostname"].as_str().expect("a hostname").to_owned();
    let first_id = agent["agent_info"]["id"]["value"].clone();

    let schedule = json!({"windows": [{"machine_ids": [{"hostname": hostname}],
        "unavailability": {"start": {"nanoseconds": 1_000_000_000u64}, "duration": {"nanoseconds": 3_600_000_000_000u64}}}]});
    let (status, body) = post_json(&cluster, "/maintenance/schedule", &schedule.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read = get_json(&cluster.url("/master/maintenance/schedule")).await.expect("the schedule");
    assert_eq!(read, schedule);
    let (_, answer) = operator(&cluster, json!({"type": "GET_MAINTENANCE_SCHEDULE"})).await;
    assert_eq!(answer["get_maintenance_schedule"]["schedule"], schedule);
    let status_now = get_json(&cluster.url("/maintenance/status")).await.expect("the status");
    assert_eq!(
        status_now,
        json!({"draining_machines": [{"id": {"hostname": hostname}, "statuses": []}], "down_machines": []})
    );
    let drain = json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": first_id}}});
    let (status, body) = operator(&cluster, drain).await;
    assert_eq!(status, StatusCode::CONFLICT, "a scheduled machine drains by its schedule: {body}");

    let machines = json!([{"hostname": hostname}]).to_string();
    let (status, body) = post_json(&cluster, "/machine/down", &machines).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the agent to be removed", async || {
        let state = get_json(&cluster.url("/state")).await?;
        state["slaves"].as_array()?.is_empty().then_some(())
    })
    .await;
    let (_, answer) = operator(&cluster, json!({"type": "GET_MAINTENANCE_STATUS"})).await;
    assert_eq!(answer["get_maintenance_status"]["status"]["down_machines"], json!([{"hostname": hostname}]));

    // Down survives a restart, and the agent, which keeps trying, is refused meanwhile.
    cluster.restart_master().await;
    let status_now = get_json(&cluster.url("/maintenance/status")).await.expect("the status");
    assert_eq!(status_now["down_machines"], json!([{"hostname": hostname}]));
    // A bounded wait for what must not happen: the agent retries registering at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.state().await["slaves"], json!([]), "a machine that is down registers no agent");

    let stop = json!({"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": [{"hostname": hostname}]}});
    let (status, body) = operator(&cluster, stop).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    cluster.wait_for_agents(1).await;
    let agent = the_agent(&cluster).await;
    assert_ne!(agent["agent_info"]["id"]["value"], first_id, "the agent registered afresh");
    let status_now = get_json(&cluster.url("/maintenance/status")).await.expect("the status");
    assert_eq!(status_now, json!({"draining_machines": [], "down_machines": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_calls_read_and_change_weights_quota_reservations_and_frameworks_in_mesos_shapes() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:2;mem:2048");
    cluster.wait_for_agents(1).await;
    let agent_id = the_agent(&cluster).await["agent_info"]["id"]["value"].as_str().expect("an id").to_owned();

    let (_, flags) = operator(&cluster, json!({"type": "GET_FLAGS"})).await;
    let flags = flags["get_flags"]["flags"].as_array().expect("flags").clone();
    assert!(flags.iter().any(|f| f["name"] == "agent_timeout" && f["value"] == "75s"), "{flags:?}");
    let (_, metrics) = operator(&cluster, json!({"type": "GET_METRICS", "get_metrics": {}})).await;
    let metrics = metrics["get_metrics"]["metrics"].as_array().expect("metrics").clone();
    let metric = |name: &str| metrics.iter().find(|m| m["name"] == name).map(|m| m["value"].clone());
    assert_eq!(metric("master/elected"), Some(json!(1.0)));
    assert_eq!(metric("master/slaves_active"), Some(json!(1.0)));
    let (_, master) = operator(&cluster, json!({"type": "GET_MASTER"})).await;
    assert!(master["get_master"]["master_info"]["id"].is_string(), "{master}");
    assert!(master["get_master"]["start_time"].as_f64().is_some_and(|t| t > 0.0), "{master}");
    let (_, level) = operator(&cluster, json!({"type": "GET_LOGGING_LEVEL"})).await;
    assert!(level["get_logging_level"]["level"].is_u64(), "{level}");
    let (_, executors) = operator(&cluster, json!({"type": "GET_EXECUTORS"})).await;
    assert_eq!(executors["get_executors"], json!({"executors": []}));

    let update =
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "eng", "weight": 2.5}]}});
    assert_eq!(operator(&cluster, update).await.0, StatusCode::OK);
    let (_, weights) = operator(&cluster, json!({"type": "GET_WEIGHTS"})).await;
    assert_eq!(weights["get_weights"], json!({"weight_infos": [{"role": "eng", "weight": 2.5}]}));
    let quota = json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "eng", "guarantees": {"cpus": {"value": 0.5}}, "limits": {"cpus": {"value": 1}, "mem": {"value": 512}}}]}});
    let (status, body) = operator(&cluster, quota).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, quota) = operator(&cluster, json!({"type": "GET_QUOTA"})).await;
    assert_eq!(
        quota["get_quota"]["status"]["configs"],
        json!([{"role": "eng", "guarantees": {"cpus": {"value": 0.5}}, "limits": {"cpus": {"value": 1.0}, "mem": {"value": 512.0}}}])
    );
    let (_, roles) = operator(&cluster, json!({"type": "GET_ROLES"})).await;
    let eng = roles["get_roles"]["roles"].as_array().expect("roles").iter().find(|r| r["name"] == "eng").cloned();
    assert_eq!(eng.map(|r| r["weight"].clone()), Some(json!(2.5)));
    let reset = json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "eng"}]}});
    assert_eq!(operator(&cluster, reset).await.0, StatusCode::OK);
    let (_, quota) = operator(&cluster, json!({"type": "GET_QUOTA"})).await;
    assert_eq!(quota["get_quota"]["status"]["configs"], json!([]));

    let reserved = json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
        "reservations": [{"type": "DYNAMIC", "role": "eng"}]}]);
    let reserve = json!({"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": {"value": agent_id}, "resources": reserved}});
    let (status, body) = operator(&cluster, reserve).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = slave(&cluster, &agent_id).await.expect("in /state");
    assert_eq!(state["reserved_resources"]["eng"]["cpus"], json!(1.0), "{state}");
    let unreserve = json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {"agent_id": {"value": agent_id}, "resources": reserved}});
    assert_eq!(operator(&cluster, unreserve).await.0, StatusCode::ACCEPTED);

    let dir = cluster.dir.path().to_owned();
    let run = RunProc::start(&dir, "doomed", &cluster.master, &[], &["sleep", "60"]);
    eventually("the task to run", async || run.states("doomed-0").contains(&"TASK_RUNNING".to_owned()).then_some(()))
        .await;
    let framework_id = run.framework_ids()[0].clone();
    let teardown = json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": framework_id}}});
    let (status, body) = operator(&cluster, teardown).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the framework to be completed", async || {
        let state = get_json(&cluster.url("/state")).await?;
        let completed = state["completed_frameworks"].as_array()?;
        completed.iter().any(|f| f["id"] == framework_id.as_str()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_operator_calls_are_refused_naming_the_field_and_store_nothing() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:1;mem:1024");
    cluster.wait_for_agents(1).await;
    let cases = [
        (json!({"type": "DRAIN_AGENT"}), StatusCode::BAD_REQUEST, "drain_agent: is required"),
        (json!({"type": "DRAIN_AGENT", "drain_agent": {}}), StatusCode::BAD_REQUEST, "drain_agent.agent_id.value"),
        (
            json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "x"}, "max_grace_period": {"seconds": -1}}}),
            StatusCode::BAD_REQUEST,
            "drain_agent.max_grace_period",
        ),
        (
            json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "x"}, "mark_gone": "yes"}}),
            StatusCode::BAD_REQUEST,
            "drain_agent.mark_gone",
        ),
        (agent_call("DRAIN_AGENT", "drain_agent", "nope"), StatusCode::NOT_FOUND, "drain_agent.agent_id"),
        (
            agent_call("DEACTIVATE_AGENT", "deactivate_agent", "nope"),
            StatusCode::NOT_FOUND,
            "deactivate_agent.agent_id",
        ),
        (agent_call("MARK_AGENT_GONE", "mark_agent_gone", "nope"), StatusCode::NOT_FOUND, "mark_agent_gone.agent_id"),
        (
            json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nope"}}}),
            StatusCode::NOT_FOUND,
            "teardown.framework_id",
        ),
        (
            json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "eng", "weight": 0}]}}),
            StatusCode::BAD_REQUEST,
            "update_weights.weight_infos[0].weight",
        ),
        (
            json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "eng", "limits": {"gpus": {"value": 1}}}]}}),
            StatusCode::BAD_REQUEST,
            "update_quota.quota_configs[0].limits.gpus",
        ),
        (
            json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
                {"role": "eng", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 1}}}]}}),
            StatusCode::BAD_REQUEST,
            "update_quota.quota_configs[0].limits",
        ),
        (
            json!({"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": {"value": "x"},
                "resources": [{"name": "gpus", "type": "SCALAR", "scalar": {"value": 1}}]}}),
            StatusCode::BAD_REQUEST,
            "reserve_resources.resources[0].name",
        ),
        (
            json!({"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {"schedule": {"windows": [
                {"machine_ids": [{"ip": "not-an-ip"}], "unavailability": {"start": {"nanoseconds": 0}}}]}}}),
            StatusCode::BAD_REQUEST,
            "update_maintenance_schedule.schedule.windows[0].machine_ids[0].ip",
        ),
        (
            json!({"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {"schedule": {"windows": [
                {"machine_ids": [{"hostname": "a"}]}]}}}),
            StatusCode::BAD_REQUEST,
            "update_maintenance_schedule.schedule.windows[0]",
        ),
        (
            json!({"type": "START_MAINTENANCE", "start_maintenance": {"machines": [{"hostname": "unscheduled"}]}}),
            StatusCode::CONFLICT,
            "start_maintenance.machines[0]",
        ),
        (
            json!({"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": []}}),
            StatusCode::BAD_REQUEST,
            "stop_maintenance.machines",
        ),
    ];
    for (call, expected, field) in cases {
        let (status, body) = operator(&cluster, call.clone()).await;
        assert_eq!(status, expected, "{call}: {body}");
        assert!(message(&body).starts_with(field), "{call}: {body}");
    }
    for (path, body, field) in [
        ("/maintenance/schedule", "{\"windows\": [{", "body"),
        ("/master/machine/down", "[{\"ip\": 7}]", "machines[0].ip"),
        ("/machine/up", "[{}]", "machines[0]"),
    ] {
        let (status, answer) = post_json(&cluster, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert!(message(&answer).starts_with(field), "{path}: {answer}");
    }
    // Nothing was stored by the refused calls.
    let (_, weights) = operator(&cluster, json!({"type": "GET_WEIGHTS"})).await;
    assert_eq!(weights["get_weights"]["weight_infos"], json!([]));
    let (_, quota) = operator(&cluster, json!({"type": "GET_QUOTA"})).await;
    assert_eq!(quota["get_quota"]["status"]["configs"], json!([]));
    assert_eq!(get_json(&cluster.url("/maintenance/schedule")).await, Some(json!({"windows": []})));
    let agent = the_agent(&cluster).await;
    assert_eq!((&agent["active"], &agent["deactivated"]), (&json!(true), &json!(false)));
}

/// A framework on Mesos' scheduler HTTP API: its subscription's events, read as RecordIO.
struct HttpFramework {
    url: String,
    stream_id: String,
    framework_id: Value,
    response: reqwest::Response,
    reader: agora_master::runtime::mesos::recordio::Reader,
    ready: std::collections::VecDeque<Vec<u8>>,
}

impl HttpFramework {
    async fn subscribe(cluster: &Cluster) -> HttpFramework {
        let url = cluster.url("/api/v1/scheduler");
        let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "inverse"}}});
        let response = client()
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("subscribed");
        let stream_id = response.headers()["mesos-stream-id"].to_str().expect("ascii").to_owned();
        let reader = agora_master::runtime::mesos::recordio::Reader::new(1 << 24);
        let mut framework =
            HttpFramework { url, stream_id, framework_id: Value::Null, response, reader, ready: Default::default() };
        let subscribed = framework.next_of("SUBSCRIBED").await;
        framework.framework_id = subscribed["subscribed"]["framework_id"].clone();
        framework
    }

    /// The next event of `kind`, skipping others, within a bounded wait.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            while let Some(record) = self.ready.pop_front() {
                let event: Value = serde_json::from_slice(&record).expect("a JSON event");
                if event["type"] == kind {
                    return event;
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within the wait")
                .expect("the stream reads")
                .expect("the stream is open");
            self.ready.extend(self.reader.feed(&chunk).expect("RecordIO framing"));
        }
    }

    async fn call(&self, mut body: Value) -> StatusCode {
        body["framework_id"] = self.framework_id.clone();
        let response = client()
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Mesos-Stream-Id", &self.stream_id)
            .body(body.to_string())
            .send()
            .await
            .expect("the master answers");
        response.status()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_with_tasks_on_a_scheduled_machine_gets_an_inverse_offer_and_its_answer_is_the_status() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:1;mem:1024");
    cluster.wait_for_agents(1).await;
    let mut framework = HttpFramework::subscribe(&cluster).await;
    let offers = framework.next_of("OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    let hostname = offer["hostname"].as_str().expect("a hostname").to_owned();
    let task = json!({"name": "sleeper", "task_id": {"value": "sleeper"}, "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
        "command": {"value": "sleep 60"}});
    let accept = json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}});
    assert_eq!(framework.call(accept).await, StatusCode::ACCEPTED);
    framework.next_of("UPDATE").await;

    let schedule = json!({"windows": [{"machine_ids": [{"hostname": hostname}],
        "unavailability": {"start": {"nanoseconds": 2_000_000_000u64}}}]});
    let (status, body) = post_json(&cluster, "/maintenance/schedule", &schedule.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let inverse = loop {
        let event = framework.next_of("OFFERS").await;
        if let Some(inverse) = event["offers"]["inverse_offers"].as_array().and_then(|list| list.first()) {
            break inverse.clone();
        }
    };
    assert_eq!(inverse["agent_id"], offer["agent_id"]);
    assert_eq!(inverse["framework_id"], framework.framework_id);
    assert_eq!(inverse["unavailability"], json!({"start": {"nanoseconds": 2_000_000_000u64}}));
    // What is left of the agent is offered again, saying when its machine goes away.
    let reoffered = loop {
        let event = framework.next_of("OFFERS").await;
        if let Some(offer) = event["offers"]["offers"].as_array().and_then(|list| list.first()) {
            break offer.clone();
        }
    };
    assert_eq!(reoffered["unavailability"], json!({"start": {"nanoseconds": 2_000_000_000u64}}));
    let status_now = get_json(&cluster.url("/maintenance/status")).await.expect("the status");
    assert_eq!(status_now["draining_machines"][0]["statuses"][0]["status"], "UNKNOWN", "{status_now}");

    let answer =
        json!({"type": "DECLINE_INVERSE_OFFERS", "decline_inverse_offers": {"inverse_offer_ids": [inverse["id"]]}});
    assert_eq!(framework.call(answer).await, StatusCode::ACCEPTED);
    let (_, status_now) = operator(&cluster, json!({"type": "GET_MAINTENANCE_STATUS"})).await;
    let statuses = &status_now["get_maintenance_status"]["status"]["draining_machines"][0]["statuses"];
    assert_eq!(statuses[0]["status"], "DECLINE", "{status_now}");
    assert_eq!(statuses[0]["framework_id"], framework.framework_id);
    let bad = json!({"type": "ACCEPT_INVERSE_OFFERS", "accept_inverse_offers": {"inverse_offer_ids": [{"value": 7}]}});
    assert_eq!(framework.call(bad).await, StatusCode::BAD_REQUEST);
}

/// The ids of the agents `/state` lists as active.
async fn active_agent_ids(cluster: &Cluster) -> Option<Vec<String>> {
    let state = get_json(&cluster.url("/state")).await?;
    let slaves = state["slaves"].as_array()?;
    Some(slaves.iter().filter(|s| s["active"] == true).filter_map(|s| s["id"].as_str().map(str::to_owned)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_marked_gone_or_drained_with_mark_gone_never_returns_under_its_id() {
    let mut cluster = Cluster::master_only(&[]).await;
    cluster.add_agent("agent-1", "cpus:1;mem:1024");
    cluster.wait_for_agents(1).await;
    let first = the_agent(&cluster).await["agent_info"]["id"]["value"].as_str().expect("an id").to_owned();
    let dir = cluster.dir.path().to_owned();
    let run = RunProc::start(&dir, "doomed", &cluster.master, &[], &["sleep", "60"]);
    eventually("the task to run", async || run.states("doomed-0").contains(&"TASK_RUNNING".to_owned()).then_some(()))
        .await;

    let (status, body) = operator(&cluster, agent_call("MARK_AGENT_GONE", "mark_agent_gone", &first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the framework told its task is gone", async || {
        run.states("doomed-0").contains(&"TASK_GONE_BY_OPERATOR".to_owned()).then_some(())
    })
    .await;
    // The agent, refused under its old id, kills what it ran and registers afresh.
    let second = eventually("the agent back under a new id", async || {
        let ids = active_agent_ids(&cluster).await?;
        (ids.len() == 1 && ids[0] != first).then(|| ids[0].clone())
    })
    .await;
    let (status, _) = operator(&cluster, agent_call("MARK_AGENT_GONE", "mark_agent_gone", &first)).await;
    assert_eq!(status, StatusCode::OK, "marking a gone agent gone again is accepted");

    let drain = json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": second}, "mark_gone": true}});
    let (status, body) = operator(&cluster, drain).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = eventually("the drained agent gone, and back under a new id", async || {
        let ids = active_agent_ids(&cluster).await?;
        (ids.len() == 1 && ids[0] != first && ids[0] != second).then(|| ids[0].clone())
    })
    .await;
    let state = cluster.state().await;
    let listed: Vec<&str> =
        state["slaves"].as_array().expect("slaves").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(listed, vec![third.as_str()], "gone agents are not listed");
}
