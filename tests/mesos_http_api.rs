//! Mesos' v1 scheduler HTTP API (`POST /api/v1/scheduler`) spoken by a raw HTTP client
//! against `agora local`: the RecordIO event stream and its `Mesos-Stream-Id`, a launch
//! through to TASK_FINISHED with every update acknowledged, each error status, protobuf
//! bodies, and a framework failing over between the HTTP and gRPC transports.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use agora_master::runtime::mesos::recordio::Reader;
use agora_master::runtime::mesos::types;
use agora_proto::pb;
use common::{Cluster, eventually};
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";

/// Longest wait for one event (heartbeats come every 15 s; these tests never need one).
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// A subscription's response body read back as records.
struct Events {
    response: reqwest::Response,
    reader: Reader,
    ready: VecDeque<Vec<u8>>,
}

impl Events {
    fn new(response: reqwest::Response) -> Self {
        Self { response, reader: Reader::new(1 << 24), ready: VecDeque::new() }
    }

    /// The next record, or `None` once the master ended the stream.
    async fn next_record(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(record) = self.ready.pop_front() {
                return Some(record);
            }
            let chunk = tokio::time::timeout(EVENT_WAIT, self.response.chunk())
                .await
                .expect("an event within the wait")
                .expect("the stream reads");
            let chunk = chunk?;
            self.ready.extend(self.reader.feed(&chunk).expect("RecordIO framing"));
        }
    }

    async fn next_json(&mut self) -> Value {
        let record = self.next_record().await.expect("the stream is open");
        serde_json::from_slice(&record).expect("a JSON event")
    }

    /// The next event of `kind`, skipping others (heartbeats, offers).
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let event = self.next_json().await;
            if event["type"] == kind {
                return event;
            }
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("http client")
}

async fn post(url: &str, content_type: &str, stream_id: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = client().post(url).header("Content-Type", content_type).header("Accept", JSON).body(body);
    if let Some(stream_id) = stream_id {
        request = request.header("Mesos-Stream-Id", stream_id);
    }
    request.send().await.expect("the master answers")
}

async fn call(url: &str, stream_id: Option<&str>, body: Value) -> (StatusCode, Value) {
    let response = post(url, JSON, stream_id, body.to_string().into_bytes()).await;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn subscribe_json(url: &str, framework_info: Value) -> (String, Events) {
    let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}});
    let response = post(url, JSON, None, body.to_string().into_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], JSON);
    let stream_id = response.headers()["mesos-stream-id"].to_str().expect("ascii").to_owned();
    (stream_id, Events::new(response))
}

fn framework_id_of(subscribed: &Value) -> String {
    subscribed["subscribed"]["framework_id"]["value"].as_str().expect("a framework id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_http_client_subscribes_launches_acknowledges_and_tears_down() {
    let cluster = Cluster::local(1).await;
    let url = cluster.url("/api/v1/scheduler");
    let (stream_id, mut events) =
        subscribe_json(&url, json!({"user": "", "name": "raw", "failover_timeout": 60})).await;
    let subscribed = events.next_json().await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "the first event: {subscribed}");
    assert_eq!(subscribed["subscribed"]["heartbeat_interval_seconds"], 15.0);
    assert!(subscribed["subscribed"]["master_info"]["port"].is_u64(), "{subscribed}");
    let framework_id = framework_id_of(&subscribed);
    let fw = json!({"value": framework_id});

    let offers = events.next_of("OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    assert_eq!(offer["framework_id"], fw);
    let cpus = offer["resources"].as_array().expect("resources").iter().find(|r| r["name"] == "cpus").expect("cpus");
    assert_eq!((&cpus["type"], &cpus["role"]), (&json!("SCALAR"), &json!("*")));

    // The task reads a file the agent fetched into its sandbox (Mesos' CommandInfo.URI).
    let greeting = cluster.dir.path().join("greeting.txt");
    std::fs::write(&greeting, "hello\n").expect("write the file to fetch");
    let uri = format!("file://{}", greeting.display());
    let task = json!({
        "name": "hello", "task_id": {"value": "hello"}, "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}],
        "command": {"value": "test \"$(cat greeting.txt)\" = hello", "uris": [{"value": uri, "extract": false}]}
    });
    let accept = json!({"type": "ACCEPT", "framework_id": fw, "accept": {
        "offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}});
    assert_eq!(call(&url, Some(&stream_id), accept).await.0, StatusCode::ACCEPTED);

    let mut states = Vec::new();
    loop {
        let update = events.next_of("UPDATE").await;
        let status = &update["update"]["status"];
        assert_eq!(status["task_id"]["value"], "hello");
        states.push(status["state"].as_str().expect("a state").to_owned());
        let uuid = status["uuid"].as_str().expect("agent updates carry a uuid");
        let ack = json!({"type": "ACKNOWLEDGE", "framework_id": fw, "acknowledge": {
            "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": uuid}});
        assert_eq!(call(&url, Some(&stream_id), ack).await.0, StatusCode::ACCEPTED);
        if status["state"] == "TASK_FINISHED" {
            break;
        }
    }
    assert_eq!(states, ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]);

    // Every way to get a call wrong, each answered with what is wrong.
    let revive = json!({"type": "REVIVE", "framework_id": fw});
    let (status, body) = call(&url, None, revive.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap_or_default().contains("Mesos-Stream-Id"), "{body}");
    // A wrong stream id gets one answer whether or not the framework exists.
    let (status, body) = call(&url, Some("not-a-stream"), revive.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let other = json!({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}});
    assert_eq!(call(&url, Some("not-a-stream"), other).await, (status, body));
    let bad_id = json!({"type": "DECLINE", "framework_id": fw, "decline": {"offer_ids": [{"value": 7}]}});
    let (status, body) = call(&url, Some(&stream_id), bad_id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap_or_default().contains("decline.offer_ids[0].value"), "{body}");
    let (status, body) = call(&url, Some(&stream_id), json!({"type": "LAUNCH_ROCKETS", "framework_id": fw})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap_or_default().contains("LAUNCH_ROCKETS"), "{body}");
    let response = post(&url, JSON, Some(&stream_id), b"{not json".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = post(&url, "text/plain", Some(&stream_id), revive.to_string().into_bytes()).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = vec![b' '; 5 * 1024 * 1024];
    assert_eq!(post(&url, JSON, Some(&stream_id), huge).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let refused = client()
        .post(&url)
        .header("Content-Type", JSON)
        .header("Accept", "text/html")
        .body(json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "x"}}}).to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    // Calls Agora has no use for are accepted as Mesos accepts them, after the same checks.
    let request = json!({"type": "REQUEST", "framework_id": fw, "request": {"requests": []}});
    assert_eq!(call(&url, Some(&stream_id), request).await.0, StatusCode::ACCEPTED);
    assert_eq!(call(&url, Some(&stream_id), revive.clone()).await.0, StatusCode::ACCEPTED);
    let suppress = json!({"type": "SUPPRESS", "framework_id": fw, "suppress": {"roles": ["*"]}});
    assert_eq!(call(&url, Some(&stream_id), suppress).await.0, StatusCode::ACCEPTED);
    let update = json!({"type": "UPDATE_FRAMEWORK", "framework_id": fw, "update_framework": {"framework_info": {
        "user": "", "name": "raw-renamed", "id": fw, "failover_timeout": 60}}});
    assert_eq!(call(&url, Some(&stream_id), update).await.0, StatusCode::OK);

    let teardown = json!({"type": "TEARDOWN", "framework_id": fw});
    assert_eq!(call(&url, Some(&stream_id), teardown).await.0, StatusCode::ACCEPTED);
    // The master ends the stream of a framework that is gone.
    while events.next_record().await.is_some() {}
    let (status, _) = call(&url, Some(&stream_id), revive).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a torn-down framework is not subscribed");
}

async fn subscribe_protobuf(url: &str, info: types::FrameworkInfo) -> (String, Events) {
    let call = types::Call {
        r#type: types::call_type::value("SUBSCRIBE"),
        framework_id: info.id.clone(),
        subscribe: Some(types::Subscribe { framework_info: Some(info), ..Default::default() }),
        ..Default::default()
    };
    let response = client()
        .post(url)
        .header("Content-Type", PROTOBUF)
        .header("Accept", PROTOBUF)
        .body(call.encode_to_vec())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let stream_id = response.headers()["mesos-stream-id"].to_str().expect("ascii").to_owned();
    (stream_id, Events::new(response))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_fails_over_between_the_http_and_grpc_transports_with_protobuf_bodies() {
    let cluster = Cluster::local(1).await;
    let url = cluster.url("/api/v1/scheduler");
    let info = types::FrameworkInfo {
        user: Some(String::new()),
        name: Some("both-ways".to_owned()),
        failover_timeout: Some(60.0),
        ..Default::default()
    };
    let (http_stream, mut events) = subscribe_protobuf(&url, info.clone()).await;
    let record = events.next_record().await.expect("an event");
    let subscribed = types::Event::decode(record.as_slice()).expect("a protobuf event");
    assert_eq!(subscribed.r#type, types::event_type::value("SUBSCRIBED"));
    let framework_id = subscribed.subscribed.expect("subscribed").framework_id.value;

    // The same framework subscribes over gRPC: the HTTP stream is over.
    let mut grpc =
        pb::scheduler_client::SchedulerClient::connect(cluster.url("")).await.expect("the master's gRPC endpoint");
    let framework = pb::FrameworkInfo {
        name: "both-ways".to_owned(),
        id: framework_id.clone(),
        failover_timeout_ms: Some(60_000),
        ..Default::default()
    };
    let mut grpc_events =
        grpc.subscribe(pb::Subscribe { framework: Some(framework) }).await.expect("subscribed over gRPC").into_inner();
    let first = grpc_events.message().await.expect("an event").expect("the stream is open");
    let Some(pb::event::Event::Subscribed(again)) = first.event else { panic!("not SUBSCRIBED: {first:?}") };
    assert_eq!(again.framework_id, framework_id, "the same framework");
    while events.next_record().await.is_some() {}
    let revive = types::Call {
        r#type: types::call_type::value("REVIVE"),
        framework_id: Some(types::Id::new(framework_id.clone())),
        ..Default::default()
    };
    let status = eventually("the old HTTP stream id refused", async || {
        let status = post(&url, PROTOBUF, Some(&http_stream), revive.encode_to_vec()).await.status();
        (status != StatusCode::ACCEPTED).then_some(status)
    })
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no HTTP subscription is current");

    // And back to HTTP with its id: the gRPC stream ends.
    let info = types::FrameworkInfo { id: Some(types::Id::new(framework_id.clone())), ..info };
    let (http_stream, mut events) = subscribe_protobuf(&url, info).await;
    let record = events.next_record().await.expect("an event");
    let subscribed = types::Event::decode(record.as_slice()).expect("a protobuf event");
    assert_eq!(subscribed.subscribed.expect("subscribed").framework_id.value, framework_id);
    let ended =
        tokio::time::timeout(EVENT_WAIT, async { while let Ok(Some(_)) = grpc_events.message().await {} }).await;
    assert!(ended.is_ok(), "the gRPC stream ends when the framework re-subscribes over HTTP");
    assert_eq!(post(&url, PROTOBUF, Some(&http_stream), revive.encode_to_vec()).await.status(), StatusCode::ACCEPTED);
    let garbage = post(&url, PROTOBUF, Some(&http_stream), b"\xff\xff\xff".to_vec()).await;
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_arrive_at_the_interval_the_subscribed_event_advertises() {
    let cluster = Cluster::master_only(&["--framework-heartbeat-interval", "200ms"]).await;
    let url = cluster.url("/api/v1/scheduler");
    let (_stream_id, mut events) = subscribe_json(&url, json!({"user": "", "name": "beats"})).await;
    let subscribed = events.next_json().await;
    assert_eq!(subscribed["subscribed"]["heartbeat_interval_seconds"], 0.2, "{subscribed}");
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(events.next_json().await, json!({"type": "HEARTBEAT"}));
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "three heartbeats 200 ms apart took {elapsed:?}");
}

async fn operator(url: &str, body: Value) -> (StatusCode, Value) {
    let response = client().post(url).header("Content-Type", JSON).body(body.to_string()).send().await.expect("answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_answers_health_version_state_agents_frameworks_and_tasks_in_mesos_shapes() {
    let cluster = Cluster::local(1).await;
    let ran = cluster.run(&["--name", "once", "--", "true"]);
    assert!(ran.status.success(), "agora run: {}", String::from_utf8_lossy(&ran.stderr));
    let url = cluster.url("/api/v1");

    assert_eq!(
        operator(&url, json!({"type": "GET_HEALTH"})).await.1,
        json!({"type": "GET_HEALTH", "get_health": {"healthy": true}})
    );
    let (status, version) = operator(&url, json!({"type": "GET_VERSION"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(version["get_version"]["version_info"]["version"].is_string(), "{version}");

    let (_, agents) = operator(&url, json!({"type": "GET_AGENTS"})).await;
    let agent = &agents["get_agents"]["agents"][0];
    assert!(agent["agent_info"]["id"]["value"].is_string(), "{agents}");
    assert_eq!(agent["active"], true);
    let cpus = agent["total_resources"].as_array().expect("a list").iter().find(|r| r["name"] == "cpus").expect("cpus");
    assert_eq!(cpus["type"], "SCALAR");

    let (_, frameworks) = operator(&url, json!({"type": "GET_FRAMEWORKS"})).await;
    let completed = frameworks["get_frameworks"]["completed_frameworks"].as_array().expect("a list");
    let once = completed.iter().find(|f| f["framework_info"]["name"] == "once").expect("the finished agora run");
    let framework_id = once["framework_info"]["id"].clone();

    let (_, tasks) = operator(&url, json!({"type": "GET_TASKS"})).await;
    let done = tasks["get_tasks"]["completed_tasks"].as_array().expect("a list");
    let task = done.iter().find(|t| t["framework_id"] == framework_id).expect("the run's task");
    assert_eq!(task["state"], "TASK_FINISHED");
    let states: Vec<&Value> = task["statuses"].as_array().expect("statuses").iter().map(|s| &s["state"]).collect();
    assert_eq!(states.last(), Some(&&json!("TASK_FINISHED")), "{task}");

    let (_, state) = operator(&url, json!({"type": "GET_STATE"})).await;
    let get_state = &state["get_state"];
    assert_eq!(get_state["get_agents"], agents["get_agents"]);
    assert_eq!(get_state["get_tasks"]["completed_tasks"], tasks["get_tasks"]["completed_tasks"]);
    assert!(get_state["get_frameworks"]["completed_frameworks"].is_array());

    let (status, body) = operator(&url, json!({"type": "GET_WEATHER"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap_or_default().contains("GET_WEATHER"), "{body}");
    let (status, _) = operator(&url, json!({"kind": "GET_HEALTH"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a call without a type");
    let protobuf = client().post(&url).header("Content-Type", PROTOBUF).body(vec![8, 1]).send().await.expect("answer");
    assert_eq!(protobuf.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
