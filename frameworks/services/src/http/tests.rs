//! The API over a planner recovered from a fixed state, behind the test handle: shapes,
//! statuses, and that every key rendered is one marathon-python 0.13 accepts.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::model::{AgentId, TaskId, TaskState};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ApiInfo, router};
use crate::core::{MAX_CALLBACK_URL_LEN, MAX_SUBSCRIBERS, Planner, PlannerConfig, Recovered, ServiceEvent};
use crate::marathon::Problems;
use crate::marathon::app::{AppContext, parse_app};
use crate::model::{
    ActionKind, AppRecord, AppSpec, Deployment, DeploymentAction, DeploymentId, DeploymentOrigin, DeploymentStep,
    Instance, PathId, TaskFailure, Timestamp,
};
use crate::runtime::{Published, ServicesHandle, StampedEvent, TEST_EVENT_CAPACITY, spawn_for_tests};

const T1: Timestamp = Timestamp(1_423_647_085_123);
const T2: Timestamp = Timestamp(1_423_647_185_456);

fn spec(value: Value) -> AppSpec {
    let mut problems = Problems::new();
    parse_app(&value, &AppContext::top(None), &mut problems).unwrap_or_else(|| panic!("{:?}", problems.grouped()))
}

fn web_spec(instances: u32) -> AppSpec {
    spec(json!({
        "id": "/shop/web", "cmd": "python3 -m http.server $PORT0", "instances": instances,
        "healthChecks": [{"protocol": "HTTP", "path": "/health"}],
        "portDefinitions": [{"port": 10001, "name": "http"}], "labels": {"tier": "front"},
        "readinessChecks": [{"portName": "http"}], "deploymentTimeoutSeconds": 120
    }))
}

fn instance(task: &str, host: &str, port: u16, state: TaskState, healthy: Option<bool>) -> Instance {
    Instance {
        task_id: TaskId::from(task),
        app_id: PathId::parse("/shop/web").expect("valid"),
        app_version: T2,
        agent_id: AgentId::from(format!("agent-{host}").as_str()),
        host: host.into(),
        ports: vec![port],
        state,
        healthy,
        ready: healthy == Some(true),
        staged_at: T1,
        started_at: (state == TaskState::TaskRunning).then_some(T2),
        killing_since: None,
        unreachable_since: None,
        message: String::new(),
    }
}

/// `/shop/web` (2 instances: one running and healthy, one staging) being restarted by
/// deployment `d-1`, and `/db` (no ports, no tasks).
fn fixture() -> Planner {
    let web = Arc::new(web_spec(2));
    let old_web = Arc::new(web_spec(1));
    let db = Arc::new(spec(json!({"id": "/db", "args": ["postgres", "-D", "/data"], "portDefinitions": []})));
    let web_id = web.id.clone();
    Planner::recover(
        PlannerConfig::default(),
        Recovered {
            framework_id: Some("fw-1".into()),
            apps: vec![
                AppRecord { spec: web.clone(), version: T2, last_config_change_at: T2, last_scaling_at: T2 },
                AppRecord { spec: db.clone(), version: T1, last_config_change_at: T1, last_scaling_at: T1 },
            ],
            versions: vec![
                (web_id.clone(), T1, old_web.clone()),
                (web_id.clone(), T2, web.clone()),
                (db.id.clone(), T1, db),
            ],
            groups: Vec::new(),
            instances: vec![
                instance("shop_web.a", "host-a", 31000, TaskState::TaskRunning, Some(true)),
                instance("shop_web.b", "host-b", 31001, TaskState::TaskStaging, None),
            ],
            deployments: vec![Deployment {
                id: DeploymentId("d-1".into()),
                version: T2,
                origin: DeploymentOrigin::User,
                steps: vec![DeploymentStep {
                    actions: vec![DeploymentAction { kind: ActionKind::RestartApplication, app: web_id.clone() }],
                }],
                current_step: 0,
                original: BTreeMap::from([(web_id.clone(), Some(old_web))]),
                original_versions: BTreeMap::from([(web_id.clone(), T1)]),
                target: BTreeMap::from([(web_id.clone(), Some(web))]),
                started_at: T2,
                deadline: Timestamp(T2.0 + 120_000),
            }],
            task_failures: vec![TaskFailure {
                app_id: web_id,
                task_id: TaskId::from("shop_web.old"),
                host: "host-c".into(),
                state: TaskState::TaskFailed,
                message: "exited with status 1".into(),
                timestamp: T1,
                version: T1,
            }],
            next_service_port: None,
            subscribers: Vec::new(),
        },
    )
}

fn info() -> ApiInfo {
    ApiInfo {
        framework_name: "agora-services".into(),
        version: "0.1.0".into(),
        address: "10.0.0.1:8080".into(),
        http_port: 8080,
        master: "127.0.0.1:5050".into(),
        role: "*".into(),
        user: "nobody".into(),
        leader: Arc::new(|| Some("10.0.0.1:8080".to_owned())),
        abdicate: None,
        ha: false,
        http_callbacks: true,
    }
}

fn api() -> (Router, ServicesHandle) {
    let handle = spawn_for_tests(fixture());
    (router(handle.clone(), info()), handle)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn call(router: &Router, method: &str, uri: &str, body: Option<&str>) -> Answer {
    call_with(router, method, uri, body, &[]).await
}

async fn call_with(router: &Router, method: &str, uri: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    Answer { status, headers, body }
}

// ---------------------------------------------------------------------------------------
// marathon-python's models: the keys each accepts (its `__init__` parameters, camelCase
// turned to snake_case its way).
// ---------------------------------------------------------------------------------------

const APP_KEYS: &[&str] = &[
    "accepted_resource_roles",
    "args",
    "backoff_factor",
    "backoff_seconds",
    "cmd",
    "constraints",
    "container",
    "cpus",
    "dependencies",
    "deployments",
    "disk",
    "env",
    "executor",
    "health_checks",
    "id",
    "role",
    "instances",
    "kill_selection",
    "labels",
    "last_task_failure",
    "max_launch_delay_seconds",
    "mem",
    "ports",
    "require_ports",
    "store_urls",
    "task_rate_limit",
    "tasks",
    "tasks_running",
    "tasks_staged",
    "tasks_healthy",
    "task_kill_grace_period_seconds",
    "tasks_unhealthy",
    "upgrade_strategy",
    "unreachable_strategy",
    "uris",
    "user",
    "version",
    "version_info",
    "ip_address",
    "fetch",
    "task_stats",
    "readiness_checks",
    "readiness_check_results",
    "secrets",
    "port_definitions",
    "residency",
    "gpus",
    "networks",
];
const TASK_KEYS: &[&str] = &[
    "app_id",
    "health_check_results",
    "host",
    "id",
    "ports",
    "service_ports",
    "slave_id",
    "staged_at",
    "started_at",
    "version",
    "ip_addresses",
    "state",
    "local_volumes",
    "region",
    "zone",
    "role",
];
const HEALTH_RESULT_KEYS: &[&str] = &[
    "alive",
    "consecutive_failures",
    "first_success",
    "last_failure",
    "last_success",
    "task_id",
    "last_failure_cause",
    "instance_id",
];
const FAILURE_KEYS: &[&str] =
    &["app_id", "host", "message", "task_id", "instance_id", "slave_id", "state", "timestamp", "version"];
const DEPLOYMENT_KEYS: &[&str] =
    &["affected_apps", "current_actions", "current_step", "id", "steps", "total_steps", "version", "affected_pods"];
const ACTION_KEYS: &[&str] = &["action", "app", "apps", "type", "readiness_check_results", "pod"];
const GROUP_KEYS: &[&str] = &["apps", "dependencies", "groups", "id", "pods", "version"];
const QUEUE_KEYS: &[&str] =
    &["app", "overdue", "count", "delay", "since", "processed_offers_summary", "last_unused_offers"];
const INFO_KEYS: &[&str] = &[
    "event_subscriber",
    "framework_id",
    "http_config",
    "leader",
    "marathon_config",
    "name",
    "version",
    "elected",
    "zookeeper_config",
    "buildref",
];
const MARATHON_CONFIG_KEYS: &[&str] = &[
    "checkpoint",
    "executor",
    "failover_timeout",
    "framework_name",
    "ha",
    "hostname",
    "leader_proxy_connection_timeout_ms",
    "leader_proxy_read_timeout_ms",
    "local_port_min",
    "local_port_max",
    "maintenance_mode",
    "master",
    "mesos_leader_ui_url",
    "mesos_role",
    "mesos_user",
    "new_group_enforce_role",
    "webui_url",
    "reconciliation_initial_delay",
    "reconciliation_interval",
    "task_launch_timeout",
    "marathon_store_timeout",
    "task_reservation_timeout",
    "features",
    "access_control_allow_origin",
    "decline_offer_duration",
    "default_network_name",
    "env_vars_prefix",
    "launch_token",
    "launch_token_refresh_interval",
    "max_instances_per_offer",
    "mesos_bridge_name",
    "mesos_heartbeat_failure_threshold",
    "mesos_heartbeat_interval",
    "min_revive_offers_interval",
    "offer_matching_timeout",
    "on_elected_prepare_timeout",
    "revive_offers_for_new_apps",
    "revive_offers_repetitions",
    "scale_apps_initial_delay",
    "scale_apps_interval",
    "store_cache",
    "task_launch_confirm_timeout",
    "task_lost_expunge_initial_delay",
    "task_lost_expunge_interval",
];

/// marathon-python's `to_snake_case`.
fn snake(key: &str) -> String {
    let first = regex::Regex::new("(.)([A-Z][a-z]+)").expect("valid");
    let second = regex::Regex::new("([a-z0-9])([A-Z])").expect("valid");
    second.replace_all(&first.replace_all(key, "${1}_${2}"), "${1}_${2}").to_lowercase()
}

fn assert_keys(value: &Value, accepted: &[&str], what: &str) {
    let object = value.as_object().unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    for key in object.keys() {
        assert!(accepted.contains(&snake(key).as_str()), "{what}: marathon-python does not accept {key:?}");
    }
}

/// The app and everything in it, as marathon-python's `MarathonApp` reads it.
fn assert_app_keys(app: &Value) {
    let mut app = app.clone();
    // Ours, shown only on apps that set it; marathon-python users do not set it.
    if let Some(map) = app.as_object_mut() {
        map.remove("deploymentTimeoutSeconds");
    }
    assert_keys(&app, APP_KEYS, "app");
    for task in app["tasks"].as_array().into_iter().flatten() {
        assert_task_keys(task);
    }
    for d in app["portDefinitions"].as_array().into_iter().flatten() {
        assert_keys(d, &["port", "protocol", "name", "labels"], "port definition");
    }
    for r in app["readinessChecks"].as_array().into_iter().flatten() {
        assert_keys(
            r,
            &[
                "name",
                "protocol",
                "path",
                "port_name",
                "interval_seconds",
                "http_status_codes_for_ready",
                "preserve_last_response",
                "timeout_seconds",
            ],
            "readiness check",
        );
    }
    assert_keys(&app["upgradeStrategy"], &["maximum_over_capacity", "minimum_health_capacity"], "upgrade strategy");
    if app["unreachableStrategy"].is_object() {
        assert_keys(
            &app["unreachableStrategy"],
            &[
                "unreachable_inactive_after_seconds",
                "unreachable_expunge_after_seconds",
                "inactive_after_seconds",
                "expunge_after_seconds",
            ],
            "unreachable strategy",
        );
    }
    if !app["versionInfo"].is_null() {
        assert_keys(&app["versionInfo"], &["last_scaling_at", "last_config_change_at"], "version info");
    }
    if !app["lastTaskFailure"].is_null() {
        assert_keys(&app["lastTaskFailure"], FAILURE_KEYS, "last task failure");
    }
    for d in app["deployments"].as_array().into_iter().flatten() {
        assert_keys(d, DEPLOYMENT_KEYS, "app deployment");
    }
}

fn assert_task_keys(task: &Value) {
    assert_keys(task, TASK_KEYS, "task");
    for r in task["healthCheckResults"].as_array().into_iter().flatten() {
        assert_keys(r, HEALTH_RESULT_KEYS, "health check result");
    }
}

fn assert_marathon_time(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("{value} is not a string"));
    let pattern = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").expect("valid");
    assert!(pattern.is_match(text), "{text} is not in Marathon's time format");
}

// ---------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn apps_list_with_embedded_tasks_counts_and_failures() {
    let (api, _) = api();
    let answer =
        call(&api, "GET", "/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure&embed=app.readiness", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()), Some(&b"application/json"[..]));
    let body = answer.json();
    let apps = body["apps"].as_array().expect("apps");
    assert_eq!(apps.len(), 2);
    let db = &apps[0];
    assert_eq!(db["id"], "/db");
    assert_eq!(db["args"], json!(["postgres", "-D", "/data"]));
    assert!(db.get("cmd").is_none());
    let web = &apps[1];
    assert_eq!(web["id"], "/shop/web");
    assert_eq!(web["instances"], 2);
    assert_eq!((web["tasksRunning"].clone(), web["tasksStaged"].clone()), (json!(1), json!(1)));
    assert_eq!((web["tasksHealthy"].clone(), web["tasksUnhealthy"].clone()), (json!(1), json!(0)));
    assert_eq!(web["deployments"], json!([{"id": "d-1"}]));
    assert_eq!(web["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(web["tasks"][0]["healthCheckResults"][0]["alive"], true);
    assert_eq!(web["tasks"][0]["servicePorts"], json!([10001]));
    assert_eq!(web["tasks"][1]["state"], "TASK_STAGING");
    assert!(web["tasks"][1].get("startedAt").is_none());
    assert_eq!(web["lastTaskFailure"]["message"], "exited with status 1");
    assert_eq!(web["readinessCheckResults"].as_array().map(Vec::len), Some(2));
    assert_eq!(web["deploymentTimeoutSeconds"], 120);
    assert!(db.get("deploymentTimeoutSeconds").is_none(), "shown only on apps that set it");
    assert_marathon_time(&web["version"]);
    assert_marathon_time(&web["versionInfo"]["lastConfigChangeAt"]);
    assert_marathon_time(&web["tasks"][0]["stagedAt"]);
    assert_marathon_time(&web["lastTaskFailure"]["timestamp"]);
    for app in apps {
        assert_app_keys(app);
    }
}

#[tokio::test]
async fn apps_list_filters_by_id_cmd_and_label() {
    let (api, _) = api();
    let ids = |body: Value| -> Vec<String> {
        body["apps"].as_array().expect("apps").iter().map(|a| a["id"].as_str().unwrap_or("").to_owned()).collect()
    };
    assert_eq!(ids(call(&api, "GET", "/v2/apps?id=WEB", None).await.json()), ["/shop/web"]);
    assert_eq!(ids(call(&api, "GET", "/v2/apps?cmd=http.server", None).await.json()), ["/shop/web"]);
    assert_eq!(ids(call(&api, "GET", "/v2/apps?label=tier%3D%3Dfront", None).await.json()), ["/shop/web"]);
    assert!(ids(call(&api, "GET", "/v2/apps?label=tier!%3Dfront", None).await.json()).is_empty());
    assert_eq!(call(&api, "GET", "/v2/apps?label=a%20in%20b", None).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn one_app_embeds_its_tasks_and_deployments_by_default() {
    let (api, _) = api();
    let answer = call(&api, "GET", "/v2/apps/shop/web", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let app = &answer.json()["app"];
    assert_eq!(app["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(app["tasksRunning"], 1);
    assert_eq!(app["deployments"], json!([{"id": "d-1"}]));
    assert_app_keys(app);
    // Repeated and trailing slashes are tolerated.
    let again = call(&api, "GET", "//v2//apps/shop//web/", None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["app"]["id"], "/shop/web");
    let star = call(&api, "GET", "/v2/apps/shop/*", None).await.json();
    assert_eq!(star["*"][0]["id"], "/shop/web");
}

#[tokio::test]
async fn an_unknown_app_is_404_in_marathons_error_shape() {
    let (api, _) = api();
    for uri in ["/v2/apps/nope", "/v2/apps/nope/tasks", "/v2/apps/nope/versions", "/v2/apps/Not_Valid"] {
        let answer = call(&api, "GET", uri, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        let body = answer.json();
        assert!(body["message"].as_str().is_some_and(|m| m.contains("does not exist")), "{uri}: {body}");
        assert_eq!(body["details"], json!([]));
    }
    let answer = call(&api, "GET", "/v2/nothing", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_definition_read_back_parses_to_the_same_spec() {
    let (api, _) = api();
    let app = call(&api, "GET", "/v2/apps/shop/web?embed=apps.readiness", None).await.json()["app"].clone();
    let url_id = PathId::parse("/shop/web").expect("valid");
    let cx = AppContext { url_id: Some(&url_id), ..AppContext::top(None) };
    let mut problems = Problems::new();
    let parsed = parse_app(&app, &cx, &mut problems);
    assert!(problems.is_empty(), "{:?}", problems.grouped());
    assert_eq!(parsed, Some(web_spec(2)));
}

#[tokio::test]
async fn app_tasks_and_all_tasks_in_json_and_text() {
    let (api, _) = api();
    let tasks = call(&api, "GET", "/v2/apps/shop/web/tasks", None).await.json();
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(2));
    for task in tasks["tasks"].as_array().into_iter().flatten() {
        assert_task_keys(task);
    }
    let running = call(&api, "GET", "/v2/tasks?status=running", None).await.json();
    assert_eq!(running["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(running["tasks"][0]["id"], "shop_web.a");
    let text = call_with(&api, "GET", "/v2/tasks", None, &[("accept", "text/plain")]).await;
    assert_eq!(text.status, StatusCode::OK);
    assert_eq!(String::from_utf8_lossy(&text.body), "db\t \t\nshop_web\t10001\thost-a:31000\thost-b:31001\t\n");
}

#[tokio::test]
async fn versions_list_newest_first_and_show_each_definition() {
    let (api, _) = api();
    let versions = call(&api, "GET", "/v2/apps/shop/web/versions", None).await.json();
    assert_eq!(versions, json!({"versions": [T2.to_string(), T1.to_string()]}));
    let old = call(&api, "GET", &format!("/v2/apps/shop/web/versions/{T1}"), None).await;
    assert_eq!(old.status, StatusCode::OK);
    let old = old.json();
    assert_eq!((old["instances"].clone(), old["version"].clone()), (json!(1), json!(T1.to_string())));
    assert_app_keys(&old);
    let missing = call(&api, "GET", "/v2/apps/shop/web/versions/2001-01-01T00:00:00.000Z", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deployments_show_their_steps_and_current_actions() {
    let (api, _) = api();
    let answer = call(&api, "GET", "/v2/deployments", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    let d = &body[0];
    assert_eq!(d["id"], "d-1");
    assert_eq!(d["affectedApps"], json!(["/shop/web"]));
    assert_eq!(d["steps"], json!([{"actions": [{"action": "RestartApplication", "app": "/shop/web"}]}]));
    assert_eq!((d["currentStep"].clone(), d["totalSteps"].clone()), (json!(1), json!(1)));
    assert_eq!(d["currentActions"][0]["action"], "RestartApplication");
    // Only the running instance is checked for readiness.
    assert_eq!(
        d["currentActions"][0]["readinessCheckResults"],
        json!([{"name": "readinessCheck", "taskId": "shop_web.a", "ready": true}])
    );
    assert_marathon_time(&d["version"]);
    assert_keys(d, DEPLOYMENT_KEYS, "deployment");
    for action in d["currentActions"].as_array().into_iter().flatten() {
        assert_keys(action, ACTION_KEYS, "current action");
    }
    for step in d["steps"].as_array().into_iter().flatten() {
        assert_keys(step, &["actions"], "step");
        for action in step["actions"].as_array().into_iter().flatten() {
            assert_keys(action, ACTION_KEYS, "action");
        }
    }
}

#[tokio::test]
async fn info_leader_ping_and_metrics() {
    let (api, _) = api();
    let info = call(&api, "GET", "/v2/info", None).await.json();
    assert_keys(&info, INFO_KEYS, "info");
    assert_keys(&info["marathon_config"], MARATHON_CONFIG_KEYS, "marathon_config");
    assert_keys(&info["http_config"], &["assets_path", "http_port", "https_port"], "http_config");
    assert_eq!((info["elected"].clone(), info["frameworkId"].clone()), (json!(true), json!("fw-1")));
    assert!(info["zookeeper_config"].is_object(), "marathon-python reads it as an object");
    assert_eq!(call(&api, "GET", "/v2/leader", None).await.json(), json!({"leader": "10.0.0.1:8080"}));
    assert_eq!(call(&api, "DELETE", "/v2/leader", None).await.status, StatusCode::NOT_FOUND);
    let ping = call(&api, "GET", "/ping", None).await;
    assert_eq!((ping.status, &ping.body[..]), (StatusCode::OK, &b"pong"[..]));
    let metrics = call(&api, "GET", "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("services_apps 2\n"), "{text}");
    assert!(text.contains("services_instances{state=\"TASK_RUNNING\"} 1\n"), "{text}");
    assert!(text.contains("services_deployments 1\n"), "{text}");
    assert!(text.contains("services_http_requests_total{method=\"GET\",status=\"200\"}"), "{text}");
    let json = call_with(&api, "GET", "/metrics", None, &[("accept", "application/json")]).await.json();
    assert_eq!(json["gauges"]["services.apps"]["value"], 2);
    assert_eq!(json["gauges"]["services.instances.TASK_STAGING"]["value"], 1);
    let wrong = call(&api, "POST", "/v2/info", None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong.json()["message"].is_string());
}

#[tokio::test]
async fn groups_are_implied_by_app_ids_and_embed_their_apps() {
    let (api, _) = api();
    let root = call(&api, "GET", "/v2/groups", None).await;
    assert_eq!(root.status, StatusCode::OK);
    let root = root.json();
    assert_keys(&root, GROUP_KEYS, "group");
    assert_eq!(root["id"], "/");
    assert_eq!(root["apps"][0]["id"], "/db");
    assert_eq!(root["groups"][0]["id"], "/shop");
    assert_eq!(root["groups"][0]["apps"][0]["id"], "/shop/web");
    assert_eq!(root["version"], T2.to_string(), "the latest change inside");
    for app in root["apps"].as_array().into_iter().flatten() {
        assert_app_keys(app);
    }
    let shop = call(&api, "GET", "/v2/groups/shop?embed=group.apps&embed=group.apps.tasks", None).await.json();
    assert_keys(&shop, GROUP_KEYS, "group");
    assert!(shop.get("groups").is_none(), "only what was embedded");
    assert_eq!(shop["apps"][0]["tasks"].as_array().map(Vec::len), Some(2));
    let versions = call(&api, "GET", "/v2/groups/shop/versions", None).await.json();
    assert_eq!(versions, json!([T2.to_string(), T1.to_string()]));
    assert_eq!(call(&api, "GET", "/v2/groups/nope", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_queue_shows_each_waiting_app_with_its_delay() {
    use crate::core::QueueEntry;
    use crate::marathon::render::QueueView;
    let planner = fixture();
    let entries = [QueueEntry {
        app: PathId::parse("/shop/web").expect("valid"),
        count: 1,
        delayed_until: Some(Timestamp(T2.0 + 2_500)),
        offers_processed: 7,
        offers_unused: 3,
        since: T1,
    }];
    let queue = serde_json::to_value(QueueView { planner: &planner, entries: &entries, now_ms: T2.0 }).expect("json");
    let item = &queue["queue"][0];
    assert_keys(item, QUEUE_KEYS, "queue item");
    assert_app_keys(&item["app"]);
    assert_eq!(item["delay"], json!({"timeLeftSeconds": 3, "overdue": false}));
    assert_eq!(item["processedOffersSummary"], json!({"processedOffersCount": 7, "unusedOffersCount": 3}));
    assert_eq!(item["since"], T1.to_string());
}

// ---------------------------------------------------------------------------------------
// Changes refused before they reach the planner
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_400_and_an_invalid_app_422_naming_the_field() {
    let (api, _) = api();
    let malformed = call(&api, "POST", "/v2/apps", Some("{\"id\": ")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let body = malformed.json();
    assert_eq!(body["message"], "Invalid JSON");
    assert_eq!(body["details"][0]["path"], "/");

    let invalid =
        call(&api, "POST", "/v2/apps", Some(r#"{"id": "/x", "cmd": "y", "instances": -2, "cpus": "a"}"#)).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = invalid.json();
    assert_eq!(body["message"], "Object is not valid");
    let paths: Vec<&str> =
        body["details"].as_array().expect("details").iter().filter_map(|d| d["path"].as_str()).collect();
    assert_eq!(paths, ["/cpus", "/instances"]);

    let unknown = call(&api, "PUT", "/v2/apps/shop/web", Some(r#"{"instancez": 3}"#)).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.json()["details"][0]["path"], "/instancez");

    let huge = call(&api, "PATCH", "/v2/apps/shop/web", Some(r#"{"instances": 100000000}"#)).await;
    assert_eq!(huge.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(huge.json()["details"][0]["path"], "/instances");

    let too_big = call(&api, "POST", "/v2/apps", Some(&" ".repeat(super::MAX_BODY_BYTES + 1))).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(too_big.json()["message"].is_string());
}

#[tokio::test]
async fn creating_an_app_that_exists_is_a_conflict() {
    let (api, _) = api();
    let answer = call(&api, "POST", "/v2/apps", Some(r#"{"id": "shop/web", "cmd": "x"}"#)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(answer.json()["message"].as_str().is_some_and(|m| m.contains("/shop/web")));
}

#[tokio::test]
async fn patching_or_rolling_back_what_does_not_exist_is_404() {
    let (api, _) = api();
    assert_eq!(call(&api, "PATCH", "/v2/apps/nope", Some(r#"{"instances": 1}"#)).await.status, StatusCode::NOT_FOUND);
    let rollback = call(&api, "PUT", "/v2/apps/shop/web", Some(r#"{"version": "2001-01-01T00:00:00.000Z"}"#)).await;
    assert_eq!(rollback.status, StatusCode::NOT_FOUND);
    let bad = call(&api, "PUT", "/v2/apps/shop/web", Some(r#"{"version": "yesterday"}"#)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["details"][0]["path"], "/version");
}

#[tokio::test]
async fn kill_flags_are_case_insensitive_and_scale_excludes_wipe() {
    let (api, _) = api();
    let both = call(&api, "DELETE", "/v2/apps/shop/web/tasks?scale=TRUE&wipe=True", None).await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    assert!(both.json()["message"].as_str().is_some_and(|m| m.contains("scale and wipe")));
    let bad = call(&api, "DELETE", "/v2/apps/shop/web?force=maybe", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown_task = call(&api, "DELETE", "/v2/apps/shop/web/tasks/shop_web.zzz", None).await;
    assert_eq!(unknown_task.status, StatusCode::NOT_FOUND);
    let no_ids = call(&api, "POST", "/v2/tasks/delete", Some(r#"{"ids": "shop_web.a"}"#)).await;
    assert_eq!(no_ids.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_ids.json()["details"][0]["path"], "/ids");
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// Reads SSE frames (`event:` and `data:` lines) until `count` frames or the end.
async fn frames(body: Body, count: usize) -> Vec<(String, Value)> {
    frames_until(body, count, "").await
}

/// Reads frames until `count` frames, one of type `last`, or the end.
async fn frames_until(body: Body, count: usize, last: &str) -> Vec<(String, Value)> {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let mut out: Vec<(String, Value)> = Vec::new();
    while out.len() < count && !out.iter().any(|(t, _)| t == last) {
        let Some(chunk) = stream.next().await else { break };
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                    event = e.trim().to_owned();
                }
                if let Some(d) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    data = serde_json::from_str(d).expect("json data");
                }
            }
            if !event.is_empty() {
                out.push((event, data));
            }
        }
    }
    out
}

fn post_event(handle: &ServicesHandle) {
    handle.publish(StampedEvent {
        at: T2,
        event: Published::ApiPost { uri: "/v2/apps".into(), client_ip: "10.1.1.1".into(), app: Arc::new(web_spec(3)) },
    });
}

#[tokio::test]
async fn the_event_stream_starts_attached_and_carries_marathons_events() {
    let (api, handle) = api();
    let request =
        Request::get("/v2/events").header("accept", "text/event-stream").body(Body::empty()).expect("request");
    let response = api.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    );
    post_event(&handle);
    let got = frames(response.into_body(), 2).await;
    assert_eq!(got[0].0, "event_stream_attached");
    assert_eq!(got[0].1["eventType"], "event_stream_attached");
    assert_marathon_time(&got[0].1["timestamp"]);
    assert_eq!(got[1].0, "api_post_event");
    assert_eq!(got[1].1["eventType"], "api_post_event");
    assert_eq!(got[1].1["timestamp"], T2.to_string());
    assert_eq!(got[1].1["appDefinition"]["instances"], 3);
    assert_eq!(got[1].1["clientIp"], "10.1.1.1");
}

#[tokio::test]
async fn the_event_stream_filters_by_event_type() {
    let (api, handle) = api();
    let request = Request::get("/v2/events?event_type=deployment_info&event_type=api_post_event")
        .body(Body::empty())
        .expect("request");
    let response = api.clone().oneshot(request).await.expect("infallible");
    post_event(&handle);
    let got = frames(response.into_body(), 1).await;
    assert_eq!(got[0].0, "api_post_event", "event_stream_attached was not asked for");
}

#[tokio::test]
async fn a_client_that_falls_behind_is_disconnected_instead_of_buffered() {
    let (api, handle) = api();
    let request = Request::get("/v2/events").body(Body::empty()).expect("request");
    let response = api.clone().oneshot(request).await.expect("infallible");
    // More events than the channel holds, published before the client reads any.
    for _ in 0..TEST_EVENT_CAPACITY + 10 {
        post_event(&handle);
    }
    let got = frames(response.into_body(), usize::MAX).await;
    assert_eq!(got.len(), 1, "only `attached` is sent before the lag is noticed; the stream then ends");
    assert_eq!(got[0].0, "event_stream_attached");
}

// ---------------------------------------------------------------------------------------
// Changes through the planner
// ---------------------------------------------------------------------------------------

fn deployment_id(answer: &Answer) -> String {
    let body = answer.json();
    let id = body["deploymentId"].as_str().unwrap_or_else(|| panic!("no deploymentId in {body}")).to_owned();
    assert_marathon_time(&body["version"]);
    assert_eq!(answer.headers.get("Marathon-Deployment-Id").map(|v| v.as_bytes()), Some(id.as_bytes()));
    id
}

async fn app_json(api: &Router, id: &str) -> Value {
    let answer = call(api, "GET", &format!("/v2/apps{id}"), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    answer.json()["app"].clone()
}

#[tokio::test]
async fn creating_an_app_answers_201_with_the_app_its_location_and_deployment() {
    let (api, _) = api();
    let answer = call(&api, "POST", "/v2/apps", Some(r#"{"id": "/new", "cmd": "sleep 100", "instances": 2}"#)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.headers.get(header::LOCATION).map(|v| v.as_bytes()), Some(&b"/v2/apps/new"[..]));
    let deployment = answer.headers.get("Marathon-Deployment-Id").expect("header").to_str().expect("ascii").to_owned();
    let app = answer.json();
    assert_app_keys(&app);
    assert_eq!((app["id"].clone(), app["instances"].clone()), (json!("/new"), json!(2)));
    assert_eq!(app["tasksRunning"], 0);
    assert_eq!(app["deployments"], json!([{"id": deployment}]));
    assert_eq!(app["portDefinitions"][0]["name"], "default");
    assert_ne!(app["portDefinitions"][0]["port"], 0, "a service port was assigned");
    let deployments = call(&api, "GET", "/v2/deployments", None).await.json();
    assert!(deployments.as_array().expect("list").iter().any(|d| d["id"] == deployment.as_str()));
}

#[tokio::test]
async fn a_change_to_a_locked_app_is_409_naming_the_deployment_until_forced() {
    let (api, _) = api();
    let locked = call(&api, "PUT", "/v2/apps/shop/web", Some(r#"{"instances": 4}"#)).await;
    assert_eq!(locked.status, StatusCode::CONFLICT);
    let body = locked.json();
    assert_eq!(body["deployments"], json!([{"id": "d-1"}]));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("force")));
    assert_eq!(body["details"], json!([]));
    let forced = call(&api, "PUT", "/v2/apps/shop/web?force=TRUE", Some(r#"{"instances": 4}"#)).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", String::from_utf8_lossy(&forced.body));
    deployment_id(&forced);
    let app = app_json(&api, "/shop/web").await;
    assert_eq!(app["instances"], 4);
    assert_eq!(app["cmd"], "python3 -m http.server $PORT0", "the rest of the definition stays");
    assert_eq!(app["healthChecks"][0]["path"], "/health");
}

#[tokio::test]
async fn put_merges_patch_merges_and_a_full_replacement_resets_to_defaults() {
    let (api, _) = api();
    let created =
        call(&api, "PUT", "/v2/apps/svc", Some(r#"{"cmd": "sleep 1", "instances": 3, "env": {"A": "1"}}"#)).await;
    assert_eq!(created.status, StatusCode::CREATED, "PUT creates: {}", String::from_utf8_lossy(&created.body));
    assert_eq!(created.headers.get(header::LOCATION).map(|v| v.as_bytes()), Some(&b"/v2/apps/svc"[..]));
    deployment_id(&created);
    let patched =
        call(&api, "PATCH", "/v2/apps/svc?force=true", Some(r#"{"labels": {"team": "a"}, "env": null}"#)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", String::from_utf8_lossy(&patched.body));
    let app = app_json(&api, "/svc").await;
    assert_eq!((app["instances"].clone(), app["labels"].clone()), (json!(3), json!({"team": "a"})));
    assert_eq!(app["env"], json!({}), "null resets a field");
    let replaced =
        call(&api, "PUT", "/v2/apps/svc?force=true&partialUpdate=false", Some(r#"{"args": ["sleep", "2"]}"#)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", String::from_utf8_lossy(&replaced.body));
    let app = app_json(&api, "/svc").await;
    assert_eq!((app["instances"].clone(), app["labels"].clone()), (json!(1), json!({})));
    assert_eq!(app["args"], json!(["sleep", "2"]));
    assert!(app.get("cmd").is_none());
}

#[tokio::test]
async fn a_get_modify_put_round_trip_is_accepted() {
    let (api, _) = api();
    let mut app = app_json(&api, "/shop/web").await;
    app["instances"] = json!(6);
    let answer = call(&api, "PUT", "/v2/apps/shop/web?force=true", Some(&app.to_string())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(app_json(&api, "/shop/web").await["instances"], 6);
    // The same through the list form, as the client's update_apps sends it.
    let list = json!([app_json(&api, "/shop/web").await]);
    let answer = call(&api, "PUT", "/v2/apps?force=true", Some(&list.to_string())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
}

#[tokio::test]
async fn a_version_alone_rolls_the_app_back_to_it() {
    let (api, _) = api();
    let body = json!({"version": T1.to_string()}).to_string();
    let answer = call(&api, "PUT", "/v2/apps/shop/web?force=true", Some(&body)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    deployment_id(&answer);
    assert_eq!(app_json(&api, "/shop/web").await["instances"], 1, "the definition of version T1");
}

#[tokio::test]
async fn restart_delete_and_cancel_answer_deployments() {
    let (api, _) = api();
    let restart = call(&api, "POST", "/v2/apps/shop/web/restart?force=true", None).await;
    assert_eq!(restart.status, StatusCode::OK, "{}", String::from_utf8_lossy(&restart.body));
    let restart_id = deployment_id(&restart);
    let cancel = call(&api, "DELETE", &format!("/v2/deployments/{restart_id}?force=true"), None).await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&cancel.body));
    let missing = call(&api, "DELETE", "/v2/deployments/nope", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let delete = call(&api, "DELETE", "/v2/apps/db", None).await;
    assert_eq!(delete.status, StatusCode::OK, "{}", String::from_utf8_lossy(&delete.body));
    deployment_id(&delete);
    assert_eq!(call(&api, "DELETE", "/v2/apps/nope", None).await.status, StatusCode::NOT_FOUND);
    // Deleting overrides the deployment holding the app, unless told not to.
    let (api, _) = self::api();
    let held = call(&api, "DELETE", "/v2/apps/shop/web?force=false", None).await;
    assert_eq!(held.status, StatusCode::CONFLICT);
    let deleted = call(&api, "DELETE", "/v2/apps/shop/web", None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", String::from_utf8_lossy(&deleted.body));
    let dry = call(&api, "PUT", "/v2/groups/shop?dryRun=true", Some(r#"{"apps": []}"#)).await;
    assert_eq!(dry.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn killing_tasks_answers_them_or_the_scaling_deployment() {
    let (api, _) = api();
    let one = call(&api, "DELETE", "/v2/apps/shop/web/tasks/shop_web.b", None).await;
    assert_eq!(one.status, StatusCode::OK, "{}", String::from_utf8_lossy(&one.body));
    let body = one.json();
    assert_eq!(body["task"]["id"], "shop_web.b");
    assert_task_keys(&body["task"]);
    let listed = call(&api, "POST", "/v2/tasks/delete", Some(r#"{"ids": ["shop_web.a", "nope.1"]}"#)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", String::from_utf8_lossy(&listed.body));
    let ids: Vec<Value> = listed.json()["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, [json!("shop_web.a")], "unknown ids are ignored");
    let scaled = call(&api, "DELETE", "/v2/apps/shop/web/tasks?host=host-a&scale=true&force=true", None).await;
    assert_eq!(scaled.status, StatusCode::OK, "{}", String::from_utf8_lossy(&scaled.body));
    deployment_id(&scaled);
    assert_eq!(app_json(&api, "/shop/web").await["instances"], 1, "scaled down by the one task on host-a");
}

#[tokio::test]
async fn a_group_is_created_changed_scaled_and_deleted() {
    let (api, _) = api();
    let stack = json!({"id": "/stack", "apps": [
            {"id": "db", "cmd": "db", "instances": 1},
            {"id": "web", "cmd": "web", "instances": 2, "dependencies": ["db"]}],
        "groups": [{"id": "jobs", "apps": [{"id": "worker", "cmd": "w"}]}]});
    let created = call(&api, "POST", "/v2/groups", Some(&stack.to_string())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    deployment_id(&created);
    let again = call(&api, "POST", "/v2/groups", Some(&stack.to_string())).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let group = call(&api, "GET", "/v2/groups/stack", None).await.json();
    let apps: Vec<Value> = group["apps"].as_array().expect("apps").iter().map(|a| a["id"].clone()).collect();
    assert_eq!(apps, [json!("/stack/db"), json!("/stack/web")]);
    assert_eq!(group["groups"][0]["apps"][0]["id"], "/stack/jobs/worker");
    assert_eq!(group["apps"][1]["dependencies"], json!(["/stack/db"]));

    let scaled = call(&api, "PUT", "/v2/groups/stack?force=true", Some(r#"{"scaleBy": 1.5}"#)).await;
    assert_eq!(scaled.status, StatusCode::OK, "{}", String::from_utf8_lossy(&scaled.body));
    assert_eq!(app_json(&api, "/stack/web").await["instances"], 3);
    assert_eq!(app_json(&api, "/stack/jobs/worker").await["instances"], 2, "1 × 1.5, rounded up");

    let changed = call(&api, "PUT", "/v2/groups/stack?force=true", Some(r#"{"groups": []}"#)).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", String::from_utf8_lossy(&changed.body));
    let group = call(&api, "GET", "/v2/groups/stack", None).await.json();
    assert_eq!(group["apps"].as_array().map(Vec::len), Some(2), "the apps were not given, so they stay");

    let bad = call(&api, "PUT", "/v2/groups/stack", Some(r#"{"apps": [{"id": "x"}]}"#)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["details"][0]["path"], "/apps(0)/cmd");

    let deleted = call(&api, "DELETE", "/v2/groups/stack?force=true", None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", String::from_utf8_lossy(&deleted.body));
    deployment_id(&deleted);
}

#[tokio::test]
async fn the_queue_delay_is_reset_with_204() {
    let (api, _) = api();
    assert_eq!(call(&api, "DELETE", "/v2/queue/shop/web/delay", None).await.status, StatusCode::NO_CONTENT);
    let queue = call(&api, "GET", "/v2/queue", None).await;
    assert_eq!(queue.status, StatusCode::OK);
    for item in queue.json()["queue"].as_array().expect("queue") {
        assert_keys(item, QUEUE_KEYS, "queue item");
    }
}

#[tokio::test]
async fn a_change_reaches_the_event_stream_as_marathons_events() {
    let (api, _) = api();
    let request = Request::get("/v2/events").body(Body::empty()).expect("request");
    let response = api.clone().oneshot(request).await.expect("infallible");
    let created = call(&api, "POST", "/v2/apps", Some(r#"{"id": "/evt", "cmd": "sleep 1"}"#)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let got = frames_until(response.into_body(), 50, "api_post_event").await;
    let types: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert!(types.contains(&"deployment_info"), "{types:?}");
    assert!(types.contains(&"api_post_event"), "{types:?}");
    for (event_type, data) in &got {
        assert_eq!(data["eventType"], event_type.as_str());
        assert_marathon_time(&data["timestamp"]);
        if event_type == "deployment_info" {
            // marathon-python builds the plan with its original and target states.
            for key in ["id", "steps", "version", "original", "target"] {
                assert!(data["plan"].get(key).is_some(), "plan lacks {key}: {data}");
            }
            assert!(data["currentStep"]["actions"].is_array());
        }
    }
}

/// Every event the planner can publish, rendered: each has its type and time, and the
/// nested objects marathon-python turns into models carry only keys those accept.
#[test]
fn every_event_renders_with_its_type_time_and_known_plan_keys() {
    use crate::core::ServiceEvent;
    use agora_proto::model::{TaskStatus, TaskStatusReason};
    let planner = fixture();
    let deployment = planner.deployments().next().expect("d-1").clone();
    let running = instance("shop_web.a", "host-a", 31000, TaskState::TaskRunning, Some(true));
    let status = TaskStatus::from_master(
        running.task_id.clone(),
        Some(running.agent_id.clone()),
        TaskState::TaskRunning,
        TaskStatusReason::Unspecified,
        "",
        T2.0,
    );
    let events = [
        ServiceEvent::StatusUpdate { instance: running.clone(), status },
        ServiceEvent::HealthChanged { instance: running.clone(), healthy: false },
        ServiceEvent::UnhealthyKilled { instance: running, message: "3 checks failed".into() },
        ServiceEvent::DeploymentInfo { deployment: deployment.clone() },
        ServiceEvent::DeploymentStepSuccess { deployment: deployment.clone() },
        ServiceEvent::DeploymentStepFailure { deployment: deployment.clone() },
        ServiceEvent::DeploymentSuccess { deployment: deployment.clone() },
        ServiceEvent::DeploymentFailed {
            deployment,
            reason: "timed out".into(),
            rollback: Some(DeploymentId("d-2".into())),
        },
        ServiceEvent::AppTerminated { app: PathId::parse("/db").expect("valid") },
        ServiceEvent::GroupChangeSuccess { group: PathId::parse("/shop").expect("valid"), version: T2 },
        ServiceEvent::LaunchDelayed { app: PathId::parse("/db").expect("valid"), until: T2 },
    ];
    let mut types = Vec::new();
    for event in events {
        for (event_type, data) in
            crate::marathon::events::render(&StampedEvent { at: T1, event: Published::Service(event) })
        {
            types.push(event_type);
            assert_eq!(data["eventType"], event_type);
            assert_eq!(data["timestamp"], T1.to_string());
            if let Some(plan) = data.get("plan") {
                assert_keys(plan, &["original", "target", "steps", "id", "version"], "plan");
                for side in ["original", "target"] {
                    assert_keys(&plan[side], &["dependencies", "apps", "id", "version", "groups", "pods"], side);
                    for app in plan[side]["apps"].as_array().into_iter().flatten() {
                        assert_app_keys(app);
                    }
                }
                for step in plan["steps"].as_array().expect("steps") {
                    assert_keys(step, &["actions"], "plan step");
                }
            }
        }
    }
    assert_eq!(
        types,
        [
            "status_update_event",
            "instance_changed_event",
            "health_status_changed_event",
            "instance_health_changed_event",
            "unhealthy_instance_kill_event",
            "deployment_info",
            "deployment_step_success",
            "deployment_step_failure",
            "deployment_success",
            "deployment_failed",
            "app_terminated_event",
            "group_change_success",
            "launch_delayed_event",
        ]
    );
    let filter = crate::marathon::events::EventFilter::default();
    assert!(filter.wants("deployment_info") && !filter.wants("launch_delayed_event"));
    let asked = crate::marathon::events::EventFilter::new(["launch_delayed_event".to_owned()]);
    assert!(asked.wants("launch_delayed_event") && !asked.wants("deployment_info"));
}

#[tokio::test]
async fn racing_patches_of_different_fields_all_apply_and_racing_posts_create_once() {
    let (api, _) = api();
    let created = call(&api, "POST", "/v2/apps", Some(r#"{"id": "/race", "cmd": "sleep 1", "instances": 1}"#)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    // Every PATCH reads the definition before any writes it back: each must merge into
    // the others' results, not into what it read.
    let patches = [
        r#"{"labels": {"team": "a"}}"#,
        r#"{"env": {"A": "1"}}"#,
        r#"{"instances": 4}"#,
        r#"{"cpus": 0.25}"#,
        r#"{"mem": 64}"#,
        r#"{"backoffSeconds": 7}"#,
    ];
    let answers =
        futures::future::join_all(patches.iter().map(|p| call(&api, "PATCH", "/v2/apps/race?force=true", Some(p))))
            .await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    }
    let app = app_json(&api, "/race").await;
    assert_eq!(
        (&app["labels"], &app["env"], &app["instances"], &app["cpus"], &app["mem"], &app["backoffSeconds"]),
        (&json!({"team": "a"}), &json!({"A": "1"}), &json!(4), &json!(0.25), &json!(64.0), &json!(7)),
    );

    let post = r#"{"id": "/twice", "cmd": "sleep 1"}"#;
    let answers = futures::future::join_all((0..4).map(|_| call(&api, "POST", "/v2/apps", Some(post)))).await;
    let mut statuses: Vec<StatusCode> = answers.iter().map(|a| a.status).collect();
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT, StatusCode::CONFLICT, StatusCode::CONFLICT]);
}

#[tokio::test]
async fn event_subscriptions_are_added_once_listed_and_removed_and_a_bad_url_is_422() {
    let (api, handle) = api();
    let mut events = handle.subscribe_events();
    let url = "http://10.0.0.7:7000/events?who=lb";
    let encoded = "http%3A%2F%2F10.0.0.7%3A7000%2Fevents%3Fwho%3Dlb";
    for _ in 0..2 {
        let added = call(&api, "POST", &format!("/v2/eventSubscriptions?callbackUrl={encoded}"), None).await;
        assert_eq!(added.status, StatusCode::OK, "{}", String::from_utf8_lossy(&added.body));
        let added = added.json();
        assert_eq!((added["eventType"].as_str(), added["callbackUrl"].as_str()), (Some("subscribe_event"), Some(url)));
        assert_marathon_time(&added["timestamp"]);
    }
    let listed = call(&api, "GET", "/v2/eventSubscriptions", None).await;
    assert_eq!(listed.json(), json!({ "callbackUrls": [url] }), "subscribing twice is one subscription");
    let published = events.recv().await.expect("the subscription is published on the bus");
    assert!(matches!(&published.event,
        Published::Service(ServiceEvent::Subscription { callback_url, subscribed: true, .. }) if callback_url == url));

    let removed = call(&api, "DELETE", &format!("/v2/eventSubscriptions?callbackUrl={encoded}"), None).await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(removed.json()["eventType"], "unsubscribe_event");
    assert_eq!(call(&api, "GET", "/v2/eventSubscriptions", None).await.json(), json!({ "callbackUrls": [] }));

    for bad in [
        "",
        "?callbackUrl=",
        "?callbackUrl=not%20a%20url",
        "?callbackUrl=https%3A%2F%2Fx%2Fe",
        "?callbackUrl=file%3A%2F%2F%2Fetc%2Fpasswd",
    ] {
        let answer = call(&api, "POST", &format!("/v2/eventSubscriptions{bad}"), None).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(answer.json()["details"][0]["path"], "/callbackUrl", "{bad}");
    }
    let long = format!("?callbackUrl=http%3A%2F%2Fx%2F{}", "a".repeat(MAX_CALLBACK_URL_LEN));
    assert_eq!(
        call(&api, "POST", &format!("/v2/eventSubscriptions{long}"), None).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_are_refused_naming_the_field() {
    let (api, _) = api();
    for i in 0..MAX_SUBSCRIBERS {
        let answer =
            call(&api, "POST", &format!("/v2/eventSubscriptions?callbackUrl=http%3A%2F%2Fh{i}%2Fe"), None).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let refused = call(&api, "POST", "/v2/eventSubscriptions?callbackUrl=http%3A%2F%2Fone-more%2Fe", None).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json()["details"][0]["path"], "/callbackUrl");
}

#[tokio::test]
async fn event_subscriptions_are_400_while_http_callbacks_are_off() {
    let handle = spawn_for_tests(fixture());
    let api = router(handle, ApiInfo { http_callbacks: false, ..info() });
    for method in ["GET", "POST", "DELETE"] {
        let answer = call(&api, method, "/v2/eventSubscriptions?callbackUrl=http%3A%2F%2Fh%2Fe", None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method}");
        assert!(answer.json()["message"].as_str().is_some_and(|m| m.contains("--event-subscriber http_callback")));
    }
}

#[tokio::test]
async fn a_group_put_racing_an_app_created_in_the_group_keeps_the_app() {
    let (api, _) = api();
    let (put, post) = futures::future::join(
        call(&api, "PUT", "/v2/groups/shop?force=true", Some(r#"{"dependencies": []}"#)),
        call(&api, "POST", "/v2/apps?force=true", Some(r#"{"id": "/shop/new", "cmd": "sleep 1"}"#)),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(post.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&post.body));
    let app = call(&api, "GET", "/v2/apps/shop/new", None).await;
    assert_eq!(app.status, StatusCode::OK, "the group's change, prepared before the app existed, kept it");
}

/// A request with exactly these headers (no JSON content type added).
async fn call_raw(router: &Router, method: &str, uri: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Body::from(body.to_owned())).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    Answer { status, headers, body }
}

#[tokio::test]
async fn a_cross_site_change_is_refused_and_creates_nothing() {
    let (router, _) = api();
    let app = r#"{"id": "/csrf", "cmd": "sleep 1", "instances": 1}"#;
    let form = call_raw(&router, "POST", "/v2/apps", app, &[("content-type", "text/plain"), ("host", "s:8080")]).await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(form.json()["details"][0]["field"], "Content-Type");
    let foreign = [("content-type", "application/json"), ("origin", "http://evil.example"), ("host", "s:8080")];
    let refused = call_raw(&router, "POST", "/v2/apps", app, &foreign).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["details"][0]["field"], "Origin");
    assert_eq!(call(&router, "GET", "/v2/apps/csrf", None).await.status, StatusCode::NOT_FOUND);
    let own = [("content-type", "application/json"), ("origin", "http://s:8080"), ("host", "s:8080")];
    assert_eq!(call_raw(&router, "POST", "/v2/apps", app, &own).await.status, StatusCode::CREATED);
}
