//! The API over a real core owned by a test task (no master; the store a map of the runs
//! it persisted): statuses, shapes and refusals as Chronos' clients see them.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;

use super::{ApiInfo, CronApi, Leadership, router};
use crate::chronos::ApiError;
use crate::core::{Command, CoreConfig, CoreError, Cron, Output, Reply, StoreOp};
use crate::model::{JobName, RunKey, RunRecord};

type Read = Box<dyn FnOnce(&Cron, Timestamp) + Send>;

enum Call {
    Read(Read),
    Command(Command, oneshot::Sender<Result<Reply, CoreError>>),
    Runs(JobName, oneshot::Sender<Option<Vec<RunRecord>>>),
}

/// A handle over a core owned by one task, as the runtime's owner does it, minus the
/// store and the master.
#[derive(Clone, Debug)]
struct TestCron {
    calls: mpsc::Sender<Call>,
}

impl TestCron {
    fn spawn() -> Self {
        let (calls, mut inbox) = mpsc::channel::<Call>(16);
        tokio::spawn(async move {
            let mut cron = Cron::new(CoreConfig::default());
            let mut stored: std::collections::BTreeMap<RunKey, RunRecord> = Default::default();
            while let Some(call) = inbox.recv().await {
                match call {
                    Call::Read(read) => read(&cron, Timestamp::now()),
                    Call::Command(command, reply) => {
                        let result = cron.command(Timestamp::now(), command);
                        // What the runtime would commit (the runs) and execute (nothing).
                        for output in cron.take_outputs() {
                            match output {
                                Output::Persist(StoreOp::PutRun(run)) => {
                                    stored.insert(run.key.clone(), *run);
                                }
                                Output::Persist(StoreOp::DeleteRun(key)) => {
                                    stored.remove(&key);
                                }
                                _ => {}
                            }
                        }
                        let _ = reply.send(result);
                    }
                    Call::Runs(name, reply) => {
                        // As the owner answers: finished runs from the store, the others
                        // from the core.
                        let runs = cron.job(&name).map(|_| {
                            let finished = stored.values().filter(|r| r.key.job == name && r.state.is_final()).cloned();
                            let mut runs: Vec<RunRecord> = finished.chain(cron.active_runs(&name).cloned()).collect();
                            runs.sort_by(|a, b| a.key.cmp(&b.key));
                            runs
                        });
                        let _ = reply.send(runs);
                    }
                }
            }
        });
        TestCron { calls }
    }
}

fn gone() -> ApiError {
    ApiError::unavailable("the test owner is gone")
}

impl CronApi for TestCron {
    async fn read<R, F>(&self, read: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&Cron, Timestamp) -> R + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call = Call::Read(Box::new(move |cron, now| {
            let _ = reply.send(read(cron, now));
        }));
        self.calls.send(call).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    async fn command(&self, command: Command) -> Result<Result<Reply, CoreError>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.calls.send(Call::Command(command, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    async fn runs(&self, name: JobName) -> Result<Option<Vec<RunRecord>>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.calls.send(Call::Runs(name, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

fn app() -> Router {
    router(TestCron::spawn(), ApiInfo::single("127.0.0.1:4400".into()))
}

fn app_as(leadership: Leadership) -> Router {
    let info = ApiInfo { leadership: Arc::new(move || leadership.clone()) };
    router(TestCron::spawn(), info)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    location: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Vec<u8>>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(body.map_or_else(Body::empty, Body::from)).expect("a valid request");
    let response = app.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let header_text = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let location = header_text(header::LOCATION);
    let body = axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("a body").to_vec();
    Answer { status, content_type, location, body }
}

async fn get(app: &Router, uri: &str) -> Answer {
    call(app, "GET", uri, None).await
}

async fn post(app: &Router, uri: &str, body: Value) -> Answer {
    call(app, "POST", uri, Some(body.to_string().into_bytes())).await
}

fn nightly() -> Value {
    json!({"name": "nightly", "command": "backup.sh", "owner": "ops@example.com", "disabled": false,
           "schedule": "R/2026-03-02T02:00:00Z/P1D", "scheduleTimeZone": "Europe/London"})
}

fn report() -> Value {
    json!({"name": "report", "command": "make report", "owner": "ops@example.com", "disabled": false,
           "parents": ["nightly"]})
}

async fn with_jobs() -> Router {
    let app = app();
    assert_eq!(post(&app, "/v1/scheduler/iso8601", nightly()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(post(&app, "/v1/scheduler/dependency", report()).await.status, StatusCode::NO_CONTENT);
    app
}

fn detail_paths(answer: &Answer) -> Vec<String> {
    let body = answer.json();
    body["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["path"].as_str().expect("a path").to_owned())
        .collect()
}

#[tokio::test]
async fn a_posted_job_is_listed_with_chronos_fields_and_fresh_counters() {
    let app = with_jobs().await;
    let jobs = get(&app, "/v1/scheduler/jobs").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert_eq!(jobs.content_type, "application/json");
    let jobs = jobs.json();
    let names: Vec<&str> =
        jobs.as_array().expect("a list").iter().map(|j| j["name"].as_str().expect("a name")).collect();
    assert_eq!(names, ["nightly", "report"]);
    let nightly = &jobs[0];
    // With a zone, the start is wall-clock time there (its written offset dropped).
    assert_eq!(nightly["schedule"], "R/2026-03-02T02:00:00/P1D");
    assert_eq!(nightly["scheduleTimeZone"], "Europe/London");
    assert_eq!(nightly["successCount"], 0);
    assert_eq!(nightly["lastSuccess"], "");
    assert_eq!(nightly["lastError"], "");
    assert_eq!(nightly["retries"], 2);
    assert_eq!(nightly["cpus"], 0.1);
    assert_eq!(jobs[1]["parents"], json!(["nightly"]));
    let one = get(&app, "/v1/scheduler/job/report").await;
    assert_eq!(one.json(), jobs[1]);
}

#[tokio::test]
async fn the_old_scheduler_prefix_and_put_work_as_chronos_2_had_them() {
    let app = app();
    let put = call(&app, "PUT", "/scheduler/iso8601", Some(nightly().to_string().into_bytes())).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&app, "/scheduler/job/nightly").await.json()["name"], "nightly");
    assert_eq!(get(&app, "//v1/scheduler/jobs/").await.json().as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn posting_a_job_again_replaces_it() {
    let app = with_jobs().await;
    let mut changed = nightly();
    changed["command"] = json!("backup.sh --full");
    assert_eq!(post(&app, "/v1/scheduler/iso8601", changed).await.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&app, "/v1/scheduler/job/nightly").await.json()["command"], "backup.sh --full");
}

#[tokio::test]
async fn bad_definitions_are_refused_naming_the_field_and_nothing_is_stored() {
    let app = app();
    let cases = [
        (json!({"name": "a", "command": "x", "schedule": "61 * * * *"}), "/schedule"),
        (json!({"name": "a", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT0S"}), "/schedule"),
        (
            json!({"name": "a", "command": "x", "schedule": "@daily", "scheduleTimeZone": "Mars/Base"}),
            "/scheduleTimeZone",
        ),
        (json!({"name": "a", "command": "x", "schedule": "@daily", "retries": 1_000_000}), "/retries"),
        (json!({"name": "a/b", "command": "x", "schedule": "@daily"}), "/name"),
    ];
    for (body, path) in cases {
        let answer = post(&app, "/v1/scheduler/iso8601", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(detail_paths(&answer), [path], "{body}");
        let json = answer.json();
        assert_eq!(json["status"], "Bad Request");
        assert!(json["message"].as_str().expect("a message").starts_with(&path[1..]), "{json}");
    }
    let malformed = call(&app, "POST", "/v1/scheduler/iso8601", Some(b"{\"name\": ".to_vec())).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(malformed.json()["message"].as_str().expect("a message").contains("not valid JSON"));
    assert_eq!(get(&app, "/v1/scheduler/jobs").await.json(), json!([]));
}

#[tokio::test]
async fn an_unknown_parent_and_a_cycle_are_refused_naming_them() {
    let app = with_jobs().await;
    let orphan =
        post(&app, "/v1/scheduler/dependency", json!({"name": "x", "command": "x", "parents": ["ghost"]})).await;
    assert_eq!(orphan.status, StatusCode::BAD_REQUEST);
    assert!(orphan.json()["message"].as_str().expect("a message").contains("ghost"), "{}", orphan.text());
    let cycle =
        post(&app, "/v1/scheduler/dependency", json!({"name": "nightly", "command": "x", "parents": ["report"]})).await;
    assert_eq!(cycle.status, StatusCode::BAD_REQUEST);
    assert!(cycle.json()["message"].as_str().expect("a message").contains("report"), "{}", cycle.text());
    assert!(get(&app, "/v1/scheduler/job/nightly").await.json().get("schedule").is_some());
}

#[tokio::test]
async fn an_unknown_job_is_a_bad_request_as_in_chronos() {
    let app = app();
    for (method, uri) in [
        ("GET", "/v1/scheduler/job/ghost"),
        ("PUT", "/v1/scheduler/job/ghost"),
        ("DELETE", "/v1/scheduler/job/ghost"),
        ("GET", "/v1/scheduler/job/stat/ghost"),
        ("DELETE", "/v1/scheduler/task/kill/ghost"),
        ("GET", "/v1/scheduler/job/ghost/next"),
        ("GET", "/v1/scheduler/job/ghost/history"),
    ] {
        let answer = call(&app, method, uri, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {uri}");
        assert_eq!(answer.json()["message"], "name: Job 'ghost' not found", "{method} {uri}");
    }
}

#[tokio::test]
async fn run_now_records_a_manual_run_with_its_arguments() {
    let app = with_jobs().await;
    let run = call(&app, "PUT", "/v1/scheduler/job/nightly?arguments=-v%20--dry&argument=two%20words", None).await;
    assert_eq!(run.status, StatusCode::NO_CONTENT);
    let history = get(&app, "/v1/scheduler/job/nightly/history").await.json();
    assert_eq!(history[0]["trigger"], "manual");
    assert_eq!(history[0]["arguments"], json!(["-v", "--dry", "two words"]));
    assert_eq!(history[0]["state"], "pending");
    assert_eq!(get(&app, "/v1/scheduler/graph/csv").await.text().lines().next(), Some("node,nightly,fresh,queued"));
    assert_eq!(call(&app, "DELETE", "/v1/scheduler/task/kill/nightly", None).await.status, StatusCode::NO_CONTENT);
    let history = get(&app, "/v1/scheduler/job/nightly/history").await.json();
    assert_ne!(history[0]["state"], "pending");
}

#[tokio::test]
async fn a_parent_with_children_is_deleted_only_when_forced() {
    let app = with_jobs().await;
    let refused = call(&app, "DELETE", "/v1/scheduler/job/nightly", None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.json()["message"].as_str().expect("a message").contains("report"), "{}", refused.text());
    assert_eq!(call(&app, "DELETE", "/v1/scheduler/job/report", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, "DELETE", "/v1/scheduler/job/nightly", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&app, "/v1/scheduler/jobs").await.json(), json!([]));
    let app = with_jobs().await;
    assert_eq!(call(&app, "DELETE", "/v1/scheduler/job/nightly?force=true", None).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn next_lists_times_in_the_schedule_zone_and_bounds_the_count() {
    let app = with_jobs().await;
    let next = get(&app, "/v1/scheduler/job/nightly/next?count=2&from=2026-03-28T12:00:00Z").await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(next.json()["times"], json!(["2026-03-29T02:00:00+01:00", "2026-03-30T02:00:00+01:00"]));
    let too_many = get(&app, "/v1/scheduler/job/nightly/next?count=100000").await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail_paths(&too_many), ["?count"]);
    let bad_from = get(&app, "/v1/scheduler/job/nightly/next?from=yesterday").await;
    assert_eq!(detail_paths(&bad_from), ["?from"]);
    let dependent = get(&app, "/v1/scheduler/job/report/next").await;
    assert_eq!(dependent.status, StatusCode::BAD_REQUEST);
    assert!(dependent.json()["message"].as_str().expect("a message").contains("nightly"));
}

#[tokio::test]
async fn a_huge_history_request_is_refused_naming_the_limit() {
    let app = with_jobs().await;
    let answer = get(&app, "/v1/scheduler/job/nightly/history?limit=10000000").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail_paths(&answer), ["?limit"]);
}

#[tokio::test]
async fn stat_graph_summary_and_stats_have_chronos_shapes() {
    let app = with_jobs().await;
    let stat = get(&app, "/v1/scheduler/job/stat/nightly").await.json();
    assert_eq!(stat["histogram"]["count"], 0);
    assert_eq!(stat["taskStatHistory"], json!([]));
    let dot = get(&app, "/v1/scheduler/graph/dot").await;
    assert!(dot.content_type.starts_with("text/plain"));
    assert!(dot.text().contains("\"nightly\" -> \"report\";"), "{}", dot.text());
    let csv = get(&app, "/v1/scheduler/graph/csv").await.text();
    assert_eq!(csv, "node,nightly,fresh,idle\nnode,report,fresh,idle\nlink,nightly,report\n");
    let summary = get(&app, "/v1/scheduler/jobs/summary").await.json();
    assert_eq!(
        summary["jobs"][1],
        json!({"name": "report", "status": "fresh", "state": "idle", "schedule": "",
        "parents": ["nightly"], "disabled": false})
    );
    assert_eq!(get(&app, "/v1/scheduler/stats/99thPercentile").await.json(), json!([]));
    let unknown = get(&app, "/v1/scheduler/stats/fastest").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail_paths(&unknown), ["/percentile"]);
}

#[tokio::test]
async fn search_matches_name_command_or_any_case_insensitively_ten_at_a_time() {
    let app = with_jobs().await;
    let names = |answer: Answer| -> Vec<String> {
        answer
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|j| j["name"].as_str().expect("a name").to_owned())
            .collect()
    };
    assert_eq!(names(get(&app, "/v1/scheduler/jobs/search?name=NIGHT").await), ["nightly"]);
    assert_eq!(names(get(&app, "/v1/scheduler/jobs/search?command=make").await), ["report"]);
    assert_eq!(names(get(&app, "/v1/scheduler/jobs/search?any=backup").await), ["nightly"]);
    assert_eq!(names(get(&app, "/v1/scheduler/jobs/search").await), ["nightly", "report"]);
    for i in 0..12 {
        let job = json!({"name": format!("bulk-{i:02}"), "command": "x", "schedule": "@daily"});
        assert_eq!(post(&app, "/v1/scheduler/iso8601", job).await.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(names(get(&app, "/v1/scheduler/jobs/search?name=bulk").await).len(), 10);
    assert_eq!(names(get(&app, "/v1/scheduler/jobs/search?name=bulk&offset=10&limit=5").await), ["bulk-10", "bulk-11"]);
}

#[tokio::test]
async fn mark_success_answers_true_and_counts_a_success() {
    let app = with_jobs().await;
    let answer = call(&app, "PUT", "/v1/scheduler/job/success/nightly", None).await;
    assert_eq!((answer.status, answer.json()), (StatusCode::OK, json!(true)));
    let nightly = get(&app, "/v1/scheduler/job/nightly").await.json();
    assert_eq!(nightly["successCount"], 1);
    assert_ne!(nightly["lastSuccess"], "");
}

#[tokio::test]
async fn metrics_and_ping_answer_in_their_formats() {
    let app = with_jobs().await;
    let ping = get(&app, "/ping").await;
    assert_eq!((ping.status, ping.text()), (StatusCode::OK, "pong".to_owned()));
    let metrics = get(&app, "/metrics").await;
    assert!(metrics.content_type.starts_with("text/plain"));
    let text = metrics.text();
    for line in [
        "cron_jobs 2",
        "cron_runs_total{outcome=\"succeeded\"} 0",
        "cron_run_lateness_seconds_count 0",
        "cron_queue_runs 0",
        "cron_run_lateness_seconds_bucket{le=\"0.1\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
    assert!(text.contains("cron_http_requests_total{method=\"POST\",status=\"204\"} 2"), "{text}");
    assert_eq!(get(&app, "/leader").await.json(), json!({"leader": "127.0.0.1:4400"}));
}

#[tokio::test]
async fn a_job_definition_that_does_not_say_it_is_json_is_refused_with_415() {
    let app = app();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = Request::builder().method("POST").uri("/v1/scheduler/iso8601");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::from(nightly().to_string())).expect("a valid request");
        let response = app.clone().oneshot(request).await.expect("the router answers");
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
    }
    assert_eq!(get(&app, "/v1/scheduler/jobs").await.json(), json!([]));
    let charset = Request::builder()
        .method("POST")
        .uri("/v1/scheduler/iso8601")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(nightly().to_string()))
        .expect("a valid request");
    assert_eq!(app.clone().oneshot(charset).await.expect("answers").status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn unknown_endpoints_methods_and_huge_bodies_get_json_errors() {
    let app = app();
    let missing = get(&app, "/v1/scheduler/nothing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["message"].is_string());
    let wrong = call(&app, "PATCH", "/v1/scheduler/jobs", None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    let huge = call(&app, "POST", "/v1/scheduler/iso8601", Some(vec![b' '; super::MAX_BODY_BYTES + 1])).await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(huge.json()["message"].is_string());
}

/// A leader serving on loopback, for followers to forward to.
async fn serve_leader() -> (Router, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("an address").to_string();
    let leader = router(TestCron::spawn(), ApiInfo::single(address.clone()));
    let served = leader.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    (leader, address)
}

#[tokio::test]
async fn a_follower_redirects_reads_and_forwards_changes_to_the_leader() {
    let (leader, address) = serve_leader().await;
    let follower = app_as(Leadership::Follower { leader: Some(address.clone()) });
    let read = get(&follower, "/v1/scheduler/jobs?x=1").await;
    assert_eq!(read.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(read.location, Some(format!("http://{address}/v1/scheduler/jobs?x=1")));
    // chronos-python does not follow a 307 for a change: the follower forwards it.
    let added = post(&follower, "/v1/scheduler/iso8601", nightly()).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&leader, "/v1/scheduler/job/nightly").await.json()["name"], "nightly");
    let refused =
        post(&follower, "/v1/scheduler/iso8601", json!({"name": "x", "command": "x", "schedule": "61 * * * *"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail_paths(&refused), ["/schedule"]);
    assert_eq!(call(&follower, "DELETE", "/v1/scheduler/job/nightly", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&leader, "/v1/scheduler/jobs").await.json(), json!([]));
    assert_eq!(get(&follower, "/ping").await.status, StatusCode::OK);
    assert_eq!(get(&follower, "/leader").await.json(), json!({ "leader": address }));
}

#[tokio::test]
async fn a_follower_without_a_reachable_leader_answers_503() {
    let lost = app_as(Leadership::Follower { leader: None });
    assert_eq!(get(&lost, "/v1/scheduler/jobs").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&lost, "/ping").await.status, StatusCode::OK);
    let gone = app_as(Leadership::Follower { leader: Some("127.0.0.1:1".into()) });
    let answer = post(&gone, "/v1/scheduler/iso8601", nightly()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.json()["message"].as_str().expect("a message").contains("cannot reach the leader"));
}

#[tokio::test]
async fn a_change_forwarded_to_a_follower_is_not_forwarded_again() {
    let follower = app_as(Leadership::Follower { leader: Some("127.0.0.1:1".into()) });
    let request = Request::builder()
        .method("POST")
        .uri("/v1/scheduler/iso8601")
        .header("x-agora-cron-forwarded", "1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(nightly().to_string()))
        .expect("a valid request");
    let response = follower.oneshot(request).await.expect("the router answers");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_leader_serves_what_it_is_asked_and_counts_it() {
    // The leadership is asked on every request: a process that loses it redirects at once.
    let leading = Arc::new(Mutex::new(true));
    let flag = leading.clone();
    let info = ApiInfo {
        leadership: Arc::new(move || {
            if *flag.lock().expect("not poisoned") {
                Leadership::Leader { address: "127.0.0.1:4400".into() }
            } else {
                Leadership::Follower { leader: Some("10.0.0.9:4400".into()) }
            }
        }),
    };
    let app = router(TestCron::spawn(), info);
    assert_eq!(get(&app, "/v1/scheduler/jobs").await.status, StatusCode::OK);
    *leading.lock().expect("not poisoned") = false;
    assert_eq!(get(&app, "/v1/scheduler/jobs").await.status, StatusCode::TEMPORARY_REDIRECT);
}

#[tokio::test]
async fn a_cross_site_change_is_refused_and_stores_nothing() {
    let app = app();
    let job = nightly().to_string();
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = Request::builder().method("POST").uri("/v1/scheduler/iso8601");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(Body::from(job.clone())).expect("a valid request")
    };
    let form = app.clone().oneshot(send(&[("content-type", "text/plain")])).await.expect("answers");
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    const FOREIGN: &[(&str, &str)] =
        &[("content-type", "application/json"), ("origin", "http://evil.example"), ("host", "c:4400")];
    let refused = app.clone().oneshot(send(FOREIGN)).await.expect("answers");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/v1/scheduler/jobs").await.json(), json!([]));
    // chronos-python runs a job with a PUT that has no body and no content type.
    assert_eq!(post(&app, "/v1/scheduler/iso8601", nightly()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, "PUT", "/v1/scheduler/job/nightly", None).await.status, StatusCode::NO_CONTENT);
}
