//! End to end: TLS on every port. Certificates are made in the test (rcgen, through
//! `agora_proto::tls::pki`); the processes are real, on loopback.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use agora_proto::tls::pki::{Authority, Usage};
use common::{AGORA, Proc, eventually, free_port, run_bounded};

const DAY: Duration = Duration::from_secs(86_400);

/// A CA's certificate and what it signed, as files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    agent_cert: PathBuf,
    agent_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a PEM file");
    path
}

fn pki(dir: &Path, tag: &str) -> Pki {
    let ca = Authority::new(&format!("{tag} CA"), SystemTime::now(), DAY).expect("a CA");
    let server = ca.issue(&["127.0.0.1", "localhost"], Usage::Server).expect("a server certificate");
    // One certificate for the agent's HTTP and for its link to the master.
    let agent = ca.issue(&["127.0.0.1", "agent-1"], Usage::ServerAndClient).expect("an agent certificate");
    Pki {
        ca: write(dir, &format!("{tag}-ca.pem"), ca.cert_pem()),
        server_cert: write(dir, &format!("{tag}-server.pem"), &server.cert_pem),
        server_key: write(dir, &format!("{tag}-server-key.pem"), &server.key_pem),
        agent_cert: write(dir, &format!("{tag}-agent.pem"), &agent.cert_pem),
        agent_key: write(dir, &format!("{tag}-agent-key.pem"), &agent.key_pem),
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// An HTTPS client that trusts only `ca`.
fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("the CA");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTPS client")
}

/// An HTTPS client trusting `ca` that presents `secret` (a bearer token) on every request.
fn authenticated_https_client(ca: &Path, secret: &str) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("the CA");
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}")).expect("an ASCII secret");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .default_headers(headers)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTPS client")
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn active_agents(client: &reqwest::Client, master: &str) -> Option<usize> {
    let state = get_json(client, &format!("https://{master}/state")).await?;
    Some(state["slaves"].as_array()?.iter().filter(|a| a["active"] == true).count())
}

fn agora_run(master: &str, flags: &[&str]) -> std::process::Output {
    let mut command = Command::new(AGORA);
    command
        .args(["run", "--master", master])
        .args(flags)
        .args(["--", "true"])
        .env("RUST_LOG", "warn")
        .env("USER", "root")
        .env_remove("AGORA_TLS_CA");
    run_bounded(command)
}

fn text(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_master_refuses_strangers_and_runs_tasks_on_agents_with_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trusted = pki(dir.path(), "trusted");
    let stranger = pki(dir.path(), "stranger");
    let port = free_port();
    let master = format!("127.0.0.1:{port}");
    let work = dir.path().join("master");
    let _master = Proc::spawn(
        "master",
        dir.path(),
        &[
            "master",
            "--port",
            &port.to_string(),
            "--work-dir",
            path(&work),
            "--tls-cert",
            path(&trusted.server_cert),
            "--tls-key",
            path(&trusted.server_key),
            "--tls-client-ca",
            path(&trusted.ca),
        ],
    );
    let client = https_client(&trusted.ca);
    eventually("the master to answer /health over TLS", async || {
        client.get(format!("https://{master}/health")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;

    // A plain HTTP request is answered once, with a JSON error that says why.
    let plain = reqwest::get(format!("http://{master}/health")).await.expect("an answer in plain HTTP");
    assert_eq!(plain.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = plain.json().await.expect("a JSON error");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("TLS only")), "{body}");

    // A client that trusts another CA is refused, and told the certificate is not trusted.
    let wrong_ca = agora_run(&master, &["--tls-ca", path(&stranger.ca)]);
    assert_eq!(wrong_ca.status.code(), Some(1), "{}", text(&wrong_ca));
    assert!(String::from_utf8_lossy(&wrong_ca.stderr).contains("certificate is not trusted"), "{}", text(&wrong_ca));
    assert!(https_client(&stranger.ca).get(format!("https://{master}/health")).send().await.is_err());

    // A plain client stops at once with one clear line, instead of retrying for a minute.
    let started = Instant::now();
    let plain_run = agora_run(&master, &[]);
    assert_eq!(plain_run.status.code(), Some(1), "{}", text(&plain_run));
    assert!(String::from_utf8_lossy(&plain_run.stderr).contains("speaks TLS only"), "{}", text(&plain_run));
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    // An agent without a client certificate is refused; one with a certificate registers.
    let refused_port = free_port().to_string();
    let refused_work = dir.path().join("refused");
    let refused = Proc::spawn(
        "refused-agent",
        dir.path(),
        &[
            "agent",
            "--master",
            &master,
            "--port",
            &refused_port,
            "--work-dir",
            path(&refused_work),
            "--resources",
            "cpus:1;mem:256",
            "--tls-ca",
            path(&trusted.ca),
        ],
    );
    eventually("the agent without a certificate to be refused", async || {
        refused.log_text().contains("requires agents to present a client certificate").then_some(())
    })
    .await;
    assert_eq!(active_agents(&client, &master).await, Some(0));

    let agent_port = free_port();
    let agent_work = dir.path().join("agent");
    let _agent = Proc::spawn(
        "agent",
        dir.path(),
        &[
            "agent",
            "--master",
            &master,
            "--port",
            &agent_port.to_string(),
            "--work-dir",
            path(&agent_work),
            "--resources",
            "cpus:1;mem:256",
            "--tls-ca",
            path(&trusted.ca),
            "--tls-cert",
            path(&trusted.agent_cert),
            "--tls-key",
            path(&trusted.agent_key),
        ],
    );
    eventually("the agent with a certificate to register", async || {
        (active_agents(&client, &master).await? == 1).then_some(())
    })
    .await;
    // The agent's own HTTP port speaks TLS with the same certificate.
    let agent_health = client.get(format!("https://127.0.0.1:{agent_port}/health")).send().await;
    assert!(agent_health.is_ok_and(|r| r.status().is_success()));

    let run = agora_run(&master, &["--tls-ca", path(&trusted.ca)]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(text(&run).contains("TASK_FINISHED"), "{}", text(&run));

    // The operator CLI reads the master over TLS too.
    let mut tasks = Command::new(AGORA);
    tasks.args(["tasks", "--all", "--master", &master, "--tls-ca", path(&trusted.ca)]);
    let listed = run_bounded(tasks);
    assert!(listed.status.success() && text(&listed).contains("agora-run-0"), "{}", text(&listed));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_local_cluster_runs_a_task_and_serves_services_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let services_port = free_port();
    let master = format!("127.0.0.1:{port}");
    let work = dir.path().join("local");
    let local = Proc::spawn(
        "local",
        dir.path(),
        &[
            "local",
            "--secure",
            "--port",
            &port.to_string(),
            "--services-port",
            &services_port.to_string(),
            "--no-cron",
            "--agents",
            "1",
            "--work-dir",
            path(&work),
        ],
    );
    let ca = work.join("tls").join("ca.pem");
    eventually("agora local --secure to make its CA", async || ca.is_file().then_some(())).await;
    // --secure authenticates every caller too, with the credentials it made.
    let secret_file = work.join("auth").join("operator.secret");
    eventually("agora local --secure to make its credentials", async || {
        work.join("auth").join("credentials").is_file().then_some(())
    })
    .await;
    let secret = std::fs::read_to_string(&secret_file).expect("the operator's secret").trim().to_owned();
    let anonymous = https_client(&ca).get(format!("https://{master}/state")).send().await.expect("an answer");
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let client = authenticated_https_client(&ca, &secret);
    eventually("the agent to register over TLS", async || (active_agents(&client, &master).await? == 1).then_some(()))
        .await;
    assert!(local.log_text().contains(&format!("--tls-ca {}", ca.display())), "{}", local.log_text());

    let run =
        agora_run(&master, &["--tls-ca", path(&ca), "--principal", "operator", "--secret-file", path(&secret_file)]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(text(&run).contains("TASK_FINISHED"), "{}", text(&run));

    let services = format!("https://127.0.0.1:{services_port}");
    eventually("services to answer /v2/apps over TLS", async || {
        get_json(&client, &format!("{services}/v2/apps")).await
    })
    .await;
    let mut list = Command::new(AGORA);
    list.args(["services", "list", "--services", &services, "--tls-ca", path(&ca)]);
    list.env("AGORA_PRINCIPAL", "operator").env("AGORA_SECRET_FILE", &secret_file);
    let listed = run_bounded(list);
    assert!(listed.status.success(), "{}", text(&listed));
    let mut untrusted = Command::new(AGORA);
    untrusted.args(["services", "list", "--services", &services]).env_remove("AGORA_TLS_CA");
    let refused = run_bounded(untrusted);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not trusted"), "{}", text(&refused));
}
