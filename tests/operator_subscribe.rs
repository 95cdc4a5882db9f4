//! The operator API's SUBSCRIBE (`POST /api/v1 {"type": "SUBSCRIBE"}`) against a real
//! master and agent: the stream opens with SUBSCRIBED (the whole state), then shows a
//! scripted scenario in order — a framework subscribes, launches a task that finishes,
//! tears down, and the agent leaves — while a second subscriber that never reads does the
//! master no harm.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use agora_master::runtime::mesos::recordio::Reader;
use common::Cluster;
use reqwest::StatusCode;
use serde_json::{Value, json};

const JSON: &str = "application/json";
const EVENT_WAIT: Duration = Duration::from_secs(30);

struct Events {
    response: reqwest::Response,
    reader: Reader,
    ready: VecDeque<Vec<u8>>,
}

impl Events {
    async fn next_json(&mut self) -> Value {
        loop {
            if let Some(record) = self.ready.pop_front() {
                return serde_json::from_slice(&record).expect("a JSON event");
            }
            let chunk = tokio::time::timeout(EVENT_WAIT, self.response.chunk())
                .await
                .expect("an event within the wait")
                .expect("the stream reads")
                .expect("the stream is open");
            self.ready.extend(self.reader.feed(&chunk).expect("RecordIO framing"));
        }
    }

    /// The next event other than a heartbeat (and, on a framework's stream, offers).
    async fn next_event(&mut self) -> Value {
        loop {
            let event = self.next_json().await;
            if event["type"] != "HEARTBEAT" && event["type"] != "OFFERS" {
                return event;
            }
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client")
}

async fn open(url: &str, body: Value, stream_id: Option<&str>) -> reqwest::Response {
    let mut request = client().post(url).header("Content-Type", JSON).header("Accept", JSON).body(body.to_string());
    if let Some(stream_id) = stream_id {
        request = request.header("Mesos-Stream-Id", stream_id);
    }
    request.send().await.expect("the master answers")
}

async fn operator_subscribe(url: &str) -> Events {
    let response = open(url, json!({"type": "SUBSCRIBE"}), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], JSON);
    Events { response, reader: Reader::new(1 << 24), ready: VecDeque::new() }
}

/// The event's type and the id it is about, for comparing a sequence.
fn summary(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or_default();
    let detail = match kind {
        "TASK_ADDED" => event["task_added"]["task"]["task_id"]["value"].clone(),
        "TASK_UPDATED" => event["task_updated"]["status"]["state"].clone(),
        "AGENT_ADDED" => json!("agent"),
        "AGENT_REMOVED" => json!("agent"),
        "FRAMEWORK_ADDED" => event["framework_added"]["framework"]["framework_info"]["name"].clone(),
        "FRAMEWORK_UPDATED" => event["framework_updated"]["framework"]["active"].clone(),
        "FRAMEWORK_REMOVED" => event["framework_removed"]["framework_info"]["name"].clone(),
        _ => Value::Null,
    };
    format!("{kind} {}", detail.as_str().map(str::to_owned).unwrap_or_else(|| detail.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_subscriber_sees_a_framework_launch_a_task_that_finishes_and_the_agent_leave_in_order() {
    let mut cluster = Cluster::master_only(&[
        "--agent-heartbeat-interval",
        "200ms",
        "--agent-timeout",
        "2s",
        "--agent-reregister-timeout",
        "3s",
    ])
    .await;
    let operator = cluster.url("/api/v1");
    let mut watcher = operator_subscribe(&operator).await;
    let subscribed = watcher.next_json().await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    assert_eq!(subscribed["subscribed"]["heartbeat_interval_seconds"], 15.0);
    assert_eq!(subscribed["subscribed"]["get_state"]["get_agents"]["agents"], json!([]));
    // A subscriber that never reads: the master must not care.
    let _idle = operator_subscribe(&operator).await;

    let agent = cluster.add_agent("agent", "cpus:2;mem:512");
    let added = watcher.next_event().await;
    assert_eq!(added["type"], "AGENT_ADDED", "{added}");
    let agent_id = added["agent_added"]["agent"]["agent_info"]["id"].clone();
    assert_eq!(added["agent_added"]["agent"]["agent_info"]["port"].as_u64().map(|p| p > 0), Some(true));

    // A framework on the scheduler API launches one task that finishes.
    let scheduler = cluster.url("/api/v1/scheduler");
    let info = json!({"user": "", "name": "watched", "failover_timeout": 60});
    let response = open(&scheduler, json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stream_id = response.headers()["mesos-stream-id"].to_str().expect("ascii").to_owned();
    let mut framework = Events { response, reader: Reader::new(1 << 24), ready: VecDeque::new() };
    let framework_id = framework.next_json().await["subscribed"]["framework_id"].clone();
    let offer = loop {
        let event = framework.next_json().await;
        if event["type"] == "OFFERS" {
            break event["offers"]["offers"][0].clone();
        }
    };
    let task = json!({"name": "done", "task_id": {"value": "done"}, "agent_id": agent_id,
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}],
        "command": {"value": "true"}});
    let accept = json!({"type": "ACCEPT", "framework_id": framework_id, "accept": {"offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}});
    assert_eq!(open(&scheduler, accept, Some(&stream_id)).await.status(), StatusCode::ACCEPTED);
    loop {
        let event = framework.next_event().await;
        let status = &event["update"]["status"];
        if event["type"] != "UPDATE" {
            continue;
        }
        let ack = json!({"type": "ACKNOWLEDGE", "framework_id": framework_id, "acknowledge": {
            "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}});
        assert_eq!(open(&scheduler, ack, Some(&stream_id)).await.status(), StatusCode::ACCEPTED);
        if status["state"] == "TASK_FINISHED" {
            break;
        }
    }
    let teardown = json!({"type": "TEARDOWN", "framework_id": framework_id});
    assert_eq!(open(&scheduler, teardown, Some(&stream_id)).await.status(), StatusCode::ACCEPTED);

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("FRAMEWORK_REMOVED watched") {
        seen.push(summary(&watcher.next_event().await));
    }
    assert_eq!(
        seen,
        [
            "FRAMEWORK_ADDED watched",
            "TASK_ADDED done",
            "TASK_UPDATED TASK_STARTING",
            "TASK_UPDATED TASK_RUNNING",
            "TASK_UPDATED TASK_FINISHED",
            "FRAMEWORK_REMOVED watched",
        ],
        "the scenario's events in order"
    );

    // The agent leaves: unreachable after its timeout, which subscribers see as removed.
    cluster.procs[agent].kill();
    let removed = watcher.next_event().await;
    assert_eq!(removed["type"], "AGENT_REMOVED", "{removed}");
    assert_eq!(removed["agent_removed"]["agent_id"], agent_id);

    // The master still answers, and a new subscriber gets the state as it is now.
    let mut late = operator_subscribe(&operator).await;
    let state = late.next_json().await;
    let tasks = &state["subscribed"]["get_state"]["get_tasks"];
    assert_eq!(tasks["completed_tasks"][0]["state"], "TASK_FINISHED", "{state}");
    assert_eq!(
        state["subscribed"]["get_state"]["get_frameworks"]["completed_frameworks"][0]["framework_info"]["name"],
        "watched"
    );
}
