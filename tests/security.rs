//! Authentication and authorization end to end, against a real master process: frameworks
//! on gRPC (the SDK) and on Mesos' HTTP scheduler API, each refused with the right status
//! when they present no credential, a wrong secret, another principal's framework id, or a
//! principal they did not authenticate as; and each refusal leaves the master unchanged.

mod common;

use std::path::Path;
use std::time::Duration;

use agora_proto::auth::Credential;
use agora_proto::model::{FrameworkId, FrameworkInfo, Role};
use agora_proto::pb;
use agora_sdk::{Driver, DriverConfig, DriverHandle, Scheduler};
use common::{Cluster, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const CREDENTIALS: &str = r#"{"credentials": [
    {"principal": "web", "secret": "web-secret"},
    {"principal": "ops", "secret": "ops-secret"}
]}"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.to_str().expect("utf-8 path").to_owned()
}

/// A master requiring `flags`, with the two principals above.
async fn master(dir: &Path, flags: &[&str]) -> Cluster {
    let credentials = write(dir, "credentials.json", CREDENTIALS);
    let mut args = vec!["--credentials", credentials.as_str()];
    args.extend_from_slice(flags);
    Cluster::master_only(&args).await
}

fn info(id: Option<FrameworkId>, principal: &str) -> FrameworkInfo {
    FrameworkInfo {
        id,
        name: "secure".into(),
        user: "nobody".into(),
        roles: vec![Role::unreserved()],
        failover_timeout_ms: 60_000,
        hostname: String::new(),
        principal: principal.into(),
    }
}

/// Tells the test its framework id once subscribed.
struct Subscribed(mpsc::UnboundedSender<FrameworkId>);

impl Scheduler for Subscribed {
    async fn subscribed(&mut self, _driver: &DriverHandle, framework_id: &FrameworkId, _reconnected: bool) {
        let _ = self.0.send(framework_id.clone());
    }
}

/// Runs a driver until it either subscribes (its framework id) or ends (its error).
async fn subscribe_sdk(
    master: &str,
    info: FrameworkInfo,
    credential: Option<Credential>,
) -> (Result<FrameworkId, String>, DriverHandle) {
    let mut config = DriverConfig::new(vec![master.to_owned()], info);
    config.credential = credential;
    let driver = Driver::new(config).expect("a valid configuration");
    let handle = driver.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(async move { driver.run(&mut Subscribed(tx)).await });
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            Some(id) = rx.recv() => Ok(id),
            ended = run => Err(format!("{ended:?}")),
        }
    })
    .await
    .expect("the driver subscribes or ends within 30 s");
    (outcome, handle)
}

async fn frameworks(cluster: &Cluster, credential: &Credential) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(cluster.url("/state"))
        .header("Authorization", credential.basic())
        .send()
        .await
        .expect("/state answers");
    let state: Value = response.json().await.expect("JSON");
    state["frameworks"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn frameworks_on_grpc_must_prove_their_principal_and_cannot_take_over_anothers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = master(dir.path(), &["--authenticate-frameworks"]).await;
    let web = Credential::new("web", "web-secret");
    let ops = Credential::new("ops", "ops-secret");

    let (none, _) = subscribe_sdk(&cluster.master, info(None, ""), None).await;
    let none = none.expect_err("no credential is refused");
    assert!(none.contains("Unauthenticated") && none.contains("authentication is required"), "{none}");
    let (wrong, _) = subscribe_sdk(&cluster.master, info(None, ""), Some(Credential::new("web", "nope"))).await;
    let wrong = wrong.expect_err("a wrong secret is refused");
    assert!(wrong.contains("Unauthenticated") && wrong.contains("not valid"), "{wrong}");
    let (claimed, _) = subscribe_sdk(&cluster.master, info(None, "ops"), Some(web.clone())).await;
    let claimed = claimed.expect_err("claiming another principal is refused");
    assert!(claimed.contains("PermissionDenied") && claimed.contains("not the authenticated principal"), "{claimed}");
    assert_eq!(frameworks(&cluster, &web).await, Vec::<Value>::new(), "no refusal registered anything");

    let (owned, handle) = subscribe_sdk(&cluster.master, info(None, ""), Some(web.clone())).await;
    let framework_id = owned.expect("the right secret subscribes");
    let listed = frameworks(&cluster, &web).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["principal"], "web", "the principal comes from authentication");

    // Another principal, with a valid credential of its own, fails over into it: refused.
    let (takeover, _) = subscribe_sdk(&cluster.master, info(Some(framework_id.clone()), ""), Some(ops)).await;
    let takeover = takeover.expect_err("another principal's framework is refused");
    assert!(takeover.contains("PermissionDenied") && takeover.contains("another principal"), "{takeover}");
    assert!(handle.is_subscribed(), "the owner keeps its subscription");
    handle.revive().await.expect("the owner's calls still go through");
    let listed = frameworks(&cluster, &web).await;
    assert_eq!((listed.len(), listed[0]["active"].clone()), (1, json!(true)));

    // A guessed stream id gets one answer whether or not the framework exists.
    let mut client = pb::scheduler_client::SchedulerClient::connect(format!("http://{}", cluster.master))
        .await
        .expect("the master accepts connections");
    let mut guess = async |framework_id: &str| {
        let call = pb::Call {
            framework_id: framework_id.to_owned(),
            stream_id: "00000000-0000-4000-8000-000000000000".to_owned(),
            call: Some(pb::call::Call::Revive(pb::Revive { roles: Vec::new() })),
        };
        let mut request = tonic::Request::new(call);
        request.metadata_mut().insert("authorization", web.basic().parse().expect("ASCII"));
        let status = client.call(request).await.expect_err("a guessed stream id is refused");
        (status.code(), status.message().to_owned())
    };
    let known = guess(framework_id.as_str()).await;
    assert_eq!(known.0, tonic::Code::FailedPrecondition, "{known:?}");
    assert_eq!(guess("no-such-framework").await, known);
}

async fn post_scheduler(cluster: &Cluster, auth: Option<&str>, stream: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(cluster.url("/api/v1/scheduler"))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    if let Some(stream) = stream {
        request = request.header("Mesos-Stream-Id", stream);
    }
    request.send().await.expect("the master answers")
}

async fn message(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error");
    body["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn frameworks_on_the_http_scheduler_api_authenticate_with_basic_on_every_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = master(dir.path(), &["--authenticate-frameworks"]).await;
    let web = Credential::new("web", "web-secret").basic();
    let ops = Credential::new("ops", "ops-secret").basic();
    let subscribe = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "nobody", "name": "raw"}}});

    let refused = post_scheduler(&cluster, None, None, subscribe.clone()).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["www-authenticate"], "Basic realm=\"agora\"");
    let wrong = Credential::new("web", "guess").basic();
    assert_eq!(
        post_scheduler(&cluster, Some(&wrong), None, subscribe.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let claims = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
        "user": "nobody", "name": "raw", "principal": "ops"}}});
    let claimed = post_scheduler(&cluster, Some(&web), None, claims).await;
    assert_eq!(claimed.status(), StatusCode::FORBIDDEN);
    assert!(message(claimed).await.contains("not the authenticated principal"));

    let mut stream = post_scheduler(&cluster, Some(&web), None, subscribe.clone()).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let stream_id = stream.headers()["mesos-stream-id"].to_str().expect("ASCII").to_owned();
    assert_eq!(uuid_like(&stream_id), true, "{stream_id}");
    let first = tokio::time::timeout(Duration::from_secs(30), stream.chunk()).await.expect("SUBSCRIBED").expect("read");
    let text = String::from_utf8_lossy(&first.expect("a chunk")).into_owned();
    let framework_id = text.split("\"framework_id\":{\"value\":\"").nth(1).and_then(|t| t.split('"').next());
    let framework_id = framework_id.expect("SUBSCRIBED names the framework id").to_owned();

    let revive = json!({"type": "REVIVE", "framework_id": {"value": framework_id}});
    let anonymous = post_scheduler(&cluster, None, Some(&stream_id), revive.clone()).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "every call authenticates");
    let other = post_scheduler(&cluster, Some(&ops), Some(&stream_id), revive.clone()).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN, "the stream id alone does not let another principal in");
    let teardown = json!({"type": "TEARDOWN", "framework_id": {"value": framework_id}});
    assert_eq!(post_scheduler(&cluster, Some(&ops), Some(&stream_id), teardown).await.status(), StatusCode::FORBIDDEN);
    // A guessed stream id gets the same answer whether or not the framework exists.
    let guessed = message(post_scheduler(&cluster, Some(&web), Some("guess"), revive.clone()).await).await;
    let unknown = json!({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}});
    assert_eq!(message(post_scheduler(&cluster, Some(&web), Some("guess"), unknown).await).await, guessed);

    // Another principal subscribing with the framework's id is refused; the owner goes on.
    let takeover = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
        "user": "nobody", "name": "raw", "id": {"value": framework_id}}}});
    assert_eq!(post_scheduler(&cluster, Some(&ops), None, takeover).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(post_scheduler(&cluster, Some(&web), Some(&stream_id), revive).await.status(), StatusCode::ACCEPTED);
    let state = eventually("the framework listed", async || {
        let listed = frameworks(&cluster, &Credential::new("web", "web-secret")).await;
        (listed.len() == 1).then_some(listed)
    })
    .await;
    assert_eq!((state[0]["principal"].clone(), state[0]["active"].clone()), (json!("web"), json!(true)));
}

fn uuid_like(token: &str) -> bool {
    token.len() == 36 && token.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

const ACLS: &str = r#"{
    "register_frameworks": [{"principals": {"type": "NONE"}, "roles": {"values": ["forbidden"]}}],
    "run_tasks": [{"principals": {"type": "NONE"}, "users": {"values": ["root"]}}],
    "update_weights": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
    ],
    "update_quotas": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
    ],
    "teardown_frameworks": [
        {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}
    ],
    "view_frameworks": [
        {"principals": {"values": ["ops", "web"]}, "users": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
    ],
    "view_tasks": [
        {"principals": {"values": ["ops", "web"]}, "users": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
    ]
}"#;

const CREDENTIALS_WITH_GUEST: &str = "web web-secret\nops ops-secret\nguest guest-secret\n";

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the master answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn operators_authenticate_and_the_acls_refuse_what_they_forbid_changing_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = write(dir.path(), "credentials", CREDENTIALS_WITH_GUEST);
    let acls = write(dir.path(), "acls.json", ACLS);
    let cluster = Cluster::master_only(&[
        "--credentials",
        &credentials,
        "--acls",
        &acls,
        "--authenticate-frameworks",
        "--authenticate-http",
    ])
    .await;
    let http = reqwest::Client::new();
    let web = Credential::new("web", "web-secret");

    // Operators: nothing without a credential but the health probe.
    let (status, body) = send(http.get(cluster.url("/state"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(send(http.get(cluster.url("/weights"))).await.0, StatusCode::UNAUTHORIZED);
    assert!(http.get(cluster.url("/health")).send().await.expect("answers").status().is_success());
    let wrong = http.get(cluster.url("/state")).basic_auth("ops", Some("guess"));
    assert_eq!(send(wrong).await.0, StatusCode::UNAUTHORIZED);

    // A role the ACLs forbid: the subscription is refused, naming the rule.
    let forbidden = FrameworkInfo { roles: vec![Role::parse("forbidden").expect("a role")], ..info(None, "") };
    let (refused, _) = subscribe_sdk(&cluster.master, forbidden, Some(web.clone())).await;
    let refused = refused.expect_err("register_frameworks forbids the role");
    assert!(refused.contains("PermissionDenied") && refused.contains("register_frameworks[0]"), "{refused}");
    let (subscribed, _handle) = subscribe_sdk(&cluster.master, info(None, ""), Some(web.clone())).await;
    let framework_id = subscribed.expect("the default role is allowed");

    // Weights and quota: web may not, ops may (Basic, Bearer and Marathon's token=).
    let weights = json!([{"role": "eng", "weight": 3.0}]);
    let (status, body) =
        send(http.put(cluster.url("/weights")).basic_auth("web", Some("web-secret")).json(&weights)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["details"][0]["acl"], "update_weights[1]", "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("principal \"web\" may not update_weights"),
        "{body}"
    );
    let (_, listed) = send(http.get(cluster.url("/weights")).bearer_auth("ops-secret")).await;
    assert!(!listed.to_string().contains("eng"), "the refusal changed nothing: {listed}");
    let (status, body) = send(http.put(cluster.url("/weights")).bearer_auth("ops-secret").json(&weights)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An authenticated change passes the cross-site guard from any origin.
    let cross_site = http.put(cluster.url("/weights")).header("Origin", "http://127.0.0.2:9").bearer_auth("ops-secret");
    assert_eq!(send(cross_site.json(&weights)).await.0, StatusCode::OK);
    // No agent holds a guarantee here: a limit is what the ACL is asked about.
    let quota = json!({"role": "eng", "limit": {"cpus": 0.5}});
    let as_web = http.post(cluster.url("/quota")).header("Authorization", "token=web-secret").json(&quota);
    assert_eq!(send(as_web).await.0, StatusCode::FORBIDDEN);
    let as_ops = http.post(cluster.url("/quota")).header("Authorization", "token=ops-secret").json(&quota);
    assert_eq!(send(as_ops).await.0, StatusCode::OK);

    // Views: web and ops see the framework; guest, authenticated, sees none and may not
    // subscribe to the event stream.
    let seen = |principal: &'static str, secret: &'static str| {
        let request = http
            .post(cluster.url("/api/v1"))
            .basic_auth(principal, Some(secret))
            .json(&json!({"type": "GET_FRAMEWORKS"}));
        async move {
            let (status, body) = send(request).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["get_frameworks"]["frameworks"].as_array().map(Vec::len).unwrap_or_default()
        }
    };
    assert_eq!((seen("web", "web-secret").await, seen("ops", "ops-secret").await), (1, 1));
    assert_eq!(seen("guest", "guest-secret").await, 0);
    let (_, state) = send(http.get(cluster.url("/state")).basic_auth("guest", Some("guest-secret"))).await;
    assert_eq!(state["frameworks"], json!([]), "{state}");
    let (_, listed) = send(http.get(cluster.url("/frameworks")).basic_auth("guest", Some("guest-secret"))).await;
    assert_eq!(listed["frameworks"], json!([]), "{listed}");
    let stream =
        http.post(cluster.url("/api/v1")).basic_auth("guest", Some("guest-secret")).json(&json!({"type": "SUBSCRIBE"}));
    assert_eq!(send(stream).await.0, StatusCode::FORBIDDEN);

    // Teardown by an operator: web may not (the framework stays), ops may.
    let teardown = json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": framework_id.to_string()}}});
    let (status, body) =
        send(http.post(cluster.url("/api/v1")).basic_auth("web", Some("web-secret")).json(&teardown)).await;
    assert_eq!((status, body["details"][0]["acl"].clone()), (StatusCode::FORBIDDEN, json!("teardown_frameworks[1]")));
    assert_eq!(frameworks(&cluster, &web).await.len(), 1, "the framework is still there");
    let (status, body) =
        send(http.post(cluster.url("/api/v1")).basic_auth("ops", Some("ops-secret")).json(&teardown)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the framework torn down", async || frameworks(&cluster, &web).await.is_empty().then_some(())).await;
}

#[tokio::test]
async fn a_task_as_a_user_the_acls_forbid_fails_with_task_error_and_agora_run_authenticates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = write(dir.path(), "credentials", CREDENTIALS_WITH_GUEST);
    let secret = write(dir.path(), "web.secret", "web-secret\n");
    let acls = write(dir.path(), "acls.json", ACLS);
    let mut cluster =
        Cluster::master_only(&["--credentials", &credentials, "--acls", &acls, "--authenticate-frameworks"]).await;
    cluster.add_agent("agent", "cpus:1;mem:256");
    cluster.wait_for_agents(1).await;

    let anonymous = cluster.run(&["--timeout", "30", "--", "true"]);
    assert!(!anonymous.status.success());
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(stderr.contains("authentication is required"), "{stderr}");

    let as_root = cluster.run(&[
        "--principal",
        "web",
        "--secret-file",
        &secret,
        "--user",
        "root",
        "--timeout",
        "30",
        "--",
        "true",
    ]);
    let output = format!("{}{}", String::from_utf8_lossy(&as_root.stdout), String::from_utf8_lossy(&as_root.stderr));
    assert!(!as_root.status.success(), "{output}");
    assert!(output.contains("TASK_ERROR") && output.contains("run_tasks[0]"), "{output}");

    let as_nobody = cluster.run(&[
        "--principal",
        "web",
        "--secret-file",
        &secret,
        "--user",
        "nobody",
        "--timeout",
        "30",
        "--",
        "true",
    ]);
    let output =
        format!("{}{}", String::from_utf8_lossy(&as_nobody.stdout), String::from_utf8_lossy(&as_nobody.stderr));
    assert!(as_nobody.status.success(), "{output}");
}

/// One registration on a raw agent stream (kept open), as a rogue agent would send it.
async fn attach(master: &str, credential: Option<&Credential>, agent_id: &str) -> Result<String, tonic::Status> {
    use agora_proto::pb::agent_link_client::AgentLinkClient;
    use tonic::codegen::tokio_stream::{self, StreamExt as _};
    let mut client =
        AgentLinkClient::connect(format!("http://{master}")).await.expect("the master accepts connections");
    let resources = agora_proto::model::Resources::parse("cpus:64;mem:65536").expect("valid resources");
    let register = pb::Register {
        info: Some(pb::AgentInfo {
            hostname: "rogue".into(),
            port: 5051,
            resources: Some(pb::Resources::from(&resources)),
            attributes: Vec::new(),
        }),
        agent_id: agent_id.into(),
        tasks: Vec::new(),
    };
    let first = pb::AgentMessage { message: Some(pb::agent_message::Message::Register(register)) };
    let messages = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
    let mut request = tonic::Request::new(messages);
    if let Some(credential) = credential {
        let value = credential.basic().parse().expect("ASCII");
        request.metadata_mut().insert("authorization", value);
    }
    let mut inbound = client.attach(request).await?.into_inner();
    match inbound.message().await?.and_then(|m| m.message) {
        Some(pb::master_message::Message::Registered(registered)) => Ok(registered.agent_id),
        other => Err(tonic::Status::unknown(format!("not registered: {other:?}"))),
    }
}

#[tokio::test]
async fn agents_must_authenticate_and_cannot_take_over_another_principals_agent_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = write(dir.path(), "credentials", "agent-a a-secret\nagent-b b-secret\nops ops-secret\n");
    let agent_credential = write(dir.path(), "agent-a.credential", r#"{"principal": "agent-a", "secret": "a-secret"}"#);
    let cluster = Cluster::master_only(&["--credentials", &credentials, "--authenticate-agents"]).await;

    // A real agent without a credential is refused (and keeps trying); one with it registers.
    let bare_work = dir.path().join("bare");
    let bare_port = common::free_port().to_string();
    let mut bare = common::Proc::spawn(
        "bare-agent",
        dir.path(),
        &[
            "agent",
            "--master",
            &cluster.master,
            "--port",
            &bare_port,
            "--work-dir",
            bare_work.to_str().expect("utf-8"),
            "--resources",
            "cpus:1;mem:128",
        ],
    );
    eventually("the bare agent told it must authenticate", async || {
        bare.log_text().contains("authentication is required").then_some(())
    })
    .await;
    bare.kill();
    let work = dir.path().join("agent-a");
    let port = common::free_port().to_string();
    let _agent = common::Proc::spawn(
        "agent-a",
        dir.path(),
        &[
            "agent",
            "--master",
            &cluster.master,
            "--port",
            &port,
            "--work-dir",
            work.to_str().expect("utf-8"),
            "--resources",
            "cpus:1;mem:128",
            "--credential",
            &agent_credential,
        ],
    );
    cluster.wait_for_agents(1).await;
    let state = cluster.state().await;
    let agent_id = state["slaves"][0]["id"].as_str().expect("the agent's id").to_owned();

    let none = attach(&cluster.master, None, "").await.expect_err("no credential");
    assert_eq!(none.code(), tonic::Code::Unauthenticated, "{none:?}");
    let wrong =
        attach(&cluster.master, Some(&Credential::new("agent-b", "guess")), "").await.expect_err("wrong secret");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    let takeover = attach(&cluster.master, Some(&Credential::new("agent-b", "b-secret")), &agent_id).await;
    let takeover = takeover.expect_err("another principal's agent id");
    assert_eq!(takeover.code(), tonic::Code::PermissionDenied, "{takeover:?}");
    let state = cluster.state().await;
    let slaves = state["slaves"].as_array().cloned().unwrap_or_default();
    assert_eq!(slaves.len(), 1, "nothing registered: {slaves:?}");
    assert_eq!((slaves[0]["id"].as_str(), slaves[0]["active"].clone()), (Some(agent_id.as_str()), json!(true)));
    // The same principal may come back under its id (an agent restarted elsewhere).
    let back = attach(&cluster.master, Some(&Credential::new("agent-a", "a-secret")), &agent_id).await;
    assert_eq!(back.expect("the same principal re-registers"), agent_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_cron_authenticate_to_the_master_and_refuse_unauthenticated_rest_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = write(dir.path(), "credentials", "services s-secret\ncron c-secret\nops ops-secret\n");
    let services_secret = write(dir.path(), "services.secret", "s-secret\n");
    let cron_secret = write(dir.path(), "cron.secret", "c-secret");
    let cluster = Cluster::master_only(&["--credentials", &credentials, "--authenticate-frameworks"]).await;
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let (services_port, cron_port) = (common::free_port().to_string(), common::free_port().to_string());
    let mut procs = Vec::new();
    for (name, port, secret) in [("services", &services_port, &services_secret), ("cron", &cron_port, &cron_secret)] {
        let work = path(name);
        let args = [
            name,
            "--master",
            &cluster.master,
            "--port",
            port,
            "--work-dir",
            &work,
            "--principal",
            name,
            "--secret-file",
            secret,
            "--credentials",
            &credentials,
            "--authenticate-http",
        ];
        procs.push(common::Proc::spawn(name, dir.path(), &args));
    }
    // Both subscribe as their principals.
    let ops = Credential::new("ops", "ops-secret");
    eventually("services and cron subscribed with their principals", async || {
        let mut principals: Vec<String> = frameworks(&cluster, &ops)
            .await
            .iter()
            .filter_map(|f| f["principal"].as_str().map(str::to_owned))
            .collect();
        principals.sort();
        (principals == ["cron", "services"]).then_some(())
    })
    .await;

    let http = reqwest::Client::new();
    let services = format!("http://127.0.0.1:{services_port}");
    let cron = format!("http://127.0.0.1:{cron_port}");
    for url in [format!("{services}/v2/apps"), format!("{cron}/v1/scheduler/jobs")] {
        let refused = http.get(&url).send().await.expect("answers");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(refused.headers()["www-authenticate"], "Basic realm=\"agora\"");
        let wrong = http.get(&url).basic_auth("ops", Some("nope")).send().await.expect("answers");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{url}");
        for request in [
            http.get(&url).basic_auth("ops", Some("ops-secret")),
            http.get(&url).bearer_auth("ops-secret"),
            http.get(&url).header("Authorization", "token=ops-secret"),
        ] {
            assert_eq!(request.send().await.expect("answers").status(), StatusCode::OK, "{url}");
        }
    }
    let app = json!({"id": "/web", "cmd": "sleep 60", "cpus": 0.1, "mem": 16, "instances": 0});
    let created = http.post(format!("{services}/v2/apps")).json(&app).send().await.expect("answers");
    assert_eq!(created.status(), StatusCode::UNAUTHORIZED, "a change without a credential");
    let listed: Value = http
        .get(format!("{services}/v2/apps"))
        .bearer_auth("ops-secret")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["apps"], json!([]), "the refused change changed nothing");
    for ping in [format!("{services}/ping"), format!("{cron}/ping")] {
        assert!(http.get(&ping).send().await.expect("answers").status().is_success(), "{ping} stays open");
    }

    // The real clients present their credentials.
    let Some(python) = common::python::test_python() else { return };
    let master = cluster.master.clone();
    let cron_host = format!("127.0.0.1:{cron_port}");
    let (passed, output) = tokio::task::spawn_blocking(move || {
        let args = [services.as_str(), cron_host.as_str(), master.as_str(), "ops", "ops-secret"];
        common::python::run_script(&python, "auth_clients.py", &args, Duration::from_secs(120))
    })
    .await
    .expect("join");
    assert!(passed && output.contains("PASSED"), "{output}");
}

#[tokio::test]
async fn an_agent_authenticates_sandbox_readers_and_applies_access_sandboxes_by_the_tasks_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = write(dir.path(), "credentials", "ops ops-secret\nweb web-secret\n");
    let acls = write(
        dir.path(),
        "acls.json",
        r#"{"access_sandboxes": [
            {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
            {"principals": {"values": ["web"]}, "users": {"values": ["root"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
        ]}"#,
    );
    let cluster = Cluster::master_only(&[]).await;
    let work = dir.path().join("agent");
    let port = common::free_port().to_string();
    let _agent = common::Proc::spawn(
        "agent",
        dir.path(),
        &[
            "agent",
            "--master",
            &cluster.master,
            "--port",
            &port,
            "--work-dir",
            work.to_str().expect("utf-8"),
            "--resources",
            "cpus:1;mem:256",
            "--credentials",
            &credentials,
            "--authenticate-http",
            "--acls",
            &acls,
        ],
    );
    cluster.wait_for_agents(1).await;
    let run = cluster.run(&["--name", "greet", "--user", "nobody", "--shell", "--", "echo hello-sandbox"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let http = reqwest::Client::new();
    let agent = format!("http://127.0.0.1:{port}");
    assert!(http.get(format!("{agent}/health")).send().await.expect("answers").status().is_success());
    let anonymous = http.get(format!("{agent}/files/browse?path=")).send().await.expect("answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, listing) = send(http.get(format!("{agent}/files/browse?path=")).bearer_auth("ops-secret")).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let framework = listing[0]["path"].as_str().expect("the framework's directory").to_owned();
    let (status, _) = send(http.get(format!("{agent}/files/browse?path=")).bearer_auth("web-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "web may not list every user's sandboxes");

    let stdout = format!("{agent}/files/read?path={framework}/greet-0/stdout&offset=0");
    let (status, read) = send(http.get(&stdout).basic_auth("ops", Some("ops-secret"))).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read["data"].as_str().unwrap_or_default().contains("hello-sandbox"), "{read}");
    let (status, refused) = send(http.get(&stdout).basic_auth("web", Some("web-secret"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["details"][0]["acl"], "access_sandboxes[2]", "{refused}");
    assert!(refused["message"].as_str().unwrap_or_default().contains("users \"nobody\""), "{refused}");

    // The operator's CLI reads the sandbox with $AGORA_PRINCIPAL's credential, and without
    // one is told so in one line.
    let secret = write(dir.path(), "ops.secret", "ops-secret");
    let log = |credential: bool| {
        let mut command = std::process::Command::new(common::AGORA);
        command.args(["task", "log", "greet-0", "--master", &cluster.master]).env("RUST_LOG", "warn");
        command.env_remove("AGORA_PRINCIPAL").env_remove("AGORA_SECRET_FILE");
        if credential {
            command.env("AGORA_PRINCIPAL", "ops").env("AGORA_SECRET_FILE", &secret);
        }
        common::run_bounded(command)
    };
    // `agora run` streams its task's output from the agent with the same credential.
    let mut command = std::process::Command::new(common::AGORA);
    command.args(["run", "--master", &cluster.master, "--name", "again", "--user", "nobody", "--", "echo", "streamed"]);
    command.env("RUST_LOG", "warn").env("AGORA_PRINCIPAL", "ops").env("AGORA_SECRET_FILE", &secret);
    let streamed = common::run_bounded(command);
    assert!(streamed.status.success(), "{}", String::from_utf8_lossy(&streamed.stderr));
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout),
        "streamed\n",
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    let read = log(true);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(String::from_utf8_lossy(&read.stdout), "hello-sandbox\n");
    let refused = log(false);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.starts_with("agora task log: agent ") && said.contains("authentication is required"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agora_local_with_authenticate_makes_credentials_and_every_part_uses_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("local");
    let (port, services_port, cron_port) = (common::free_port(), common::free_port(), common::free_port());
    let _local = common::Proc::spawn(
        "local",
        dir.path(),
        &[
            "local",
            "--authenticate",
            "--agents",
            "1",
            "--port",
            &port.to_string(),
            "--services-port",
            &services_port.to_string(),
            "--cron-port",
            &cron_port.to_string(),
            "--work-dir",
            work.to_str().expect("utf-8"),
        ],
    );
    let secret_file = work.join("auth/operator.secret");
    let secret = eventually("the operator's secret written", async || {
        std::fs::read_to_string(&secret_file).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    })
    .await;
    let http = reqwest::Client::new();
    let master = format!("127.0.0.1:{port}");
    // The agent, services and cron all authenticate: the agent registers, both frameworks subscribe.
    eventually("the agent and both frameworks in", async || {
        let response = http.get(format!("http://{master}/state")).bearer_auth(&secret).send().await.ok()?;
        let state: Value = response.json().await.ok()?;
        let agents = state["slaves"].as_array()?.len();
        let mut principals: Vec<&str> =
            state["frameworks"].as_array()?.iter().filter_map(|f| f["principal"].as_str()).collect();
        principals.sort_unstable();
        (agents == 1 && principals == ["cron", "services"]).then_some(())
    })
    .await;
    for url in [
        format!("http://{master}/state"),
        format!("http://127.0.0.1:{services_port}/v2/apps"),
        format!("http://127.0.0.1:{cron_port}/v1/scheduler/jobs"),
    ] {
        assert_eq!(http.get(&url).send().await.expect("answers").status(), StatusCode::UNAUTHORIZED, "{url}");
        let authenticated = http.get(&url).basic_auth("operator", Some(&secret)).send().await.expect("answers");
        assert_eq!(authenticated.status(), StatusCode::OK, "{url}");
    }

    let run = |with_credential: bool| {
        let mut command = std::process::Command::new(common::AGORA);
        command.args(["run", "--master", &master, "--timeout", "30", "--", "true"]).env("RUST_LOG", "warn");
        command.env_remove("AGORA_PRINCIPAL").env_remove("AGORA_SECRET_FILE");
        if with_credential {
            command.env("AGORA_PRINCIPAL", "operator").env("AGORA_SECRET_FILE", &secret_file);
        }
        common::run_bounded(command)
    };
    let refused = run(false);
    assert!(!refused.status.success(), "agora run without a credential is refused");
    let done = run(true);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
}

#[tokio::test]
async fn an_operator_kill_takes_the_teardown_permission_over_the_tasks_framework() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = write(dir.path(), "credentials", CREDENTIALS_WITH_GUEST);
    let acls = write(dir.path(), "acls.json", ACLS);
    let web_secret = write(dir.path(), "web.secret", "web-secret");
    let ops_secret = write(dir.path(), "ops.secret", "ops-secret");
    let mut cluster = Cluster::master_only(&[
        "--credentials",
        &credentials,
        "--acls",
        &acls,
        "--authenticate-frameworks",
        "--authenticate-http",
    ])
    .await;
    cluster.add_agent("agent", "cpus:1;mem:256");
    let agora = |principal: &str, secret: &str, args: &[&str]| {
        let mut command = std::process::Command::new(common::AGORA);
        command.args(args).env("AGORA_MASTER", &cluster.master).current_dir(cluster.dir.path());
        command.env("RUST_LOG", "warn").env("AGORA_PRINCIPAL", principal).env("AGORA_SECRET_FILE", secret);
        common::run_bounded(command)
    };
    // The agent registers with the master, which wants no credential from it here.
    let http = reqwest::Client::new();
    let state = cluster.url("/state");
    eventually("the agent", async || {
        let (_, state) = send(http.get(&state).basic_auth("ops", Some("ops-secret"))).await;
        (state["slaves"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let launched =
        agora("web", &web_secret, &["run", "--name", "held", "--user", "nobody", "--detach", "--", "sleep", "300"]);
    assert!(launched.status.success(), "{}", String::from_utf8_lossy(&launched.stderr));

    let refused = agora("web", &web_secret, &["task", "kill", "held-0"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.starts_with("agora task kill: KILL_TASK: 403 Forbidden: ") && said.contains("teardown_frameworks"),
        "{said}"
    );
    let killed = agora("ops", &ops_secret, &["task", "kill", "held-0"]);
    assert!(killed.status.success(), "{}", String::from_utf8_lossy(&killed.stderr));
    eventually("the task killed", async || {
        let shown = agora("ops", &ops_secret, &["task", "show", "held-0", "--json"]);
        let task: Value = serde_json::from_slice(&shown.stdout).ok()?;
        (task["state"] == "TASK_KILLED").then_some(())
    })
    .await;
}
