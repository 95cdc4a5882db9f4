//! `agora services` for end-to-end tests: a process that keeps its port and work directory
//! across SIGKILLs and restarts, a small client of its REST API, and the CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Proc, eventually_with, free_port, run_bounded};

/// An `agora services` process; index-free, so a test may hold several (HA).
pub struct Services {
    pub name: String,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub work_dir: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    lives: usize,
    proc: Option<Proc>,
}

impl Services {
    /// Starts `agora services --master MASTERS` (or with `extra` such as `--etcd URL`), its
    /// work directory in `dir/NAME`, its logs `dir/NAME-LIFE.log`.
    pub fn start(dir: &Path, name: &str, masters: &str, extra: &[&str]) -> Services {
        let port = free_port();
        let work_dir = dir.join(name);
        let mut args: Vec<String> = [
            "services",
            "--port",
            &port.to_string(),
            "--work-dir",
            work_dir.to_str().expect("utf-8 path"),
            // Tests reconcile often, so a lost task is noticed within them.
            "--reconcile-interval",
            "5s",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if !masters.is_empty() {
            args.extend(["--master".to_owned(), masters.to_owned()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut services = Services {
            name: name.to_owned(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            work_dir,
            args,
            dir: dir.to_owned(),
            lives: 0,
            proc: None,
        };
        services.spawn();
        services
    }

    /// Starts the process (again) with the same flags, port and work directory.
    pub fn spawn(&mut self) {
        self.lives += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(&format!("{}-{}", self.name, self.lives), &self.dir, &args);
        // Every life's log stays in the directory; printing only the current one would mislead.
        proc.print_log_on_panic = false;
        self.proc = Some(proc);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(proc) = self.proc.as_mut() {
            proc.kill();
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.as_mut().and_then(Proc::exited)
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// Waits until this process serves the API and is subscribed (its framework id shows).
    pub async fn wait_subscribed(&self) -> String {
        let api = self.api();
        eventually_with(&format!("{} to subscribe", self.name), async || {
            let info = api.get("/v2/info").await.map_err(|e| e.to_string())?;
            info["frameworkId"].as_str().map(str::to_owned).ok_or_else(|| info.to_string())
        })
        .await
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Every life's log, for a failing test's message.
    pub fn all_logs(&self) -> String {
        (1..=self.lives)
            .map(|life| {
                let path = self.dir.join(format!("{}-{life}.log", self.name));
                format!("---- {} life {life} ----\n{}", self.name, std::fs::read_to_string(path).unwrap_or_default())
            })
            .collect()
    }
}

/// A small client of the REST API. Follows followers' redirects, as Marathon's clients do.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
        Api { base: base.trim_end_matches('/').to_owned(), client }
    }

    /// GET, failing on anything but 2xx.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        match self.call(reqwest::Method::GET, path, None).await? {
            (status, body) if status.is_success() => Ok(body),
            (status, body) => Err(format!("GET {path}: {status}: {body}")),
        }
    }

    /// Any call; the status and the JSON body (`Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), String> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// `GET /v2/apps/{id}`'s app, or `None` (404, or unreachable).
    pub async fn app(&self, id: &str) -> Option<Value> {
        let app = self.get(&format!("/v2/apps/{}", id.trim_start_matches('/'))).await.ok()?;
        Some(app["app"].clone())
    }

    /// The app's tasks.
    pub async fn tasks(&self, id: &str) -> Result<Vec<Value>, String> {
        let tasks = self.get(&format!("/v2/apps/{}/tasks", id.trim_start_matches('/'))).await?;
        Ok(tasks["tasks"].as_array().cloned().unwrap_or_default())
    }

    /// Deployments in progress.
    pub async fn deployments(&self) -> Result<Vec<Value>, String> {
        Ok(self.get("/v2/deployments").await?.as_array().cloned().unwrap_or_default())
    }

    /// Waits until the app has `count` running tasks, all healthy (by its health check) and
    /// no deployment in progress; returns its tasks.
    pub async fn wait_settled(&self, id: &str, count: usize) -> Vec<Value> {
        eventually_with(&format!("{id} settled at {count} healthy tasks"), async || {
            let tasks = self.tasks(id).await?;
            let healthy = tasks.iter().filter(|t| is_running(t) && is_healthy(t)).count();
            let deployments = self.deployments().await?;
            if healthy == count && tasks.len() == count && deployments.is_empty() {
                Ok(tasks)
            } else {
                Err(format!("{healthy} healthy of {} tasks, {} deployments: {tasks:?}", tasks.len(), deployments.len()))
            }
        })
        .await
    }
}

pub fn is_running(task: &Value) -> bool {
    task["state"] == "TASK_RUNNING"
}

/// Healthy by its health check results (none yet is not healthy).
pub fn is_healthy(task: &Value) -> bool {
    task["healthCheckResults"].as_array().is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["alive"] == true))
}

/// `host:port` of a task's first port.
pub fn endpoint(task: &Value) -> String {
    format!("{}:{}", task["host"].as_str().unwrap_or("127.0.0.1"), task["ports"][0])
}

/// An app serving its sandbox over HTTP on `$PORT0` (`python3 -m http.server`), with an HTTP
/// health check on `/` every second. The sandbox holds `version` (`$VERSION`) and `pid`
/// (the server's process id), so a test can ask a task which version it runs and kill it.
/// `start_delay_s` delays the server (and so its health) after the task starts.
pub fn http_app(id: &str, instances: u32, version: &str, start_delay_s: u32) -> Value {
    let sleep = if start_delay_s > 0 { format!("sleep {start_delay_s}; ") } else { String::new() };
    json!({
        "id": id,
        "cmd": format!("echo $VERSION > version; {sleep}echo $$ > pid; exec python3 -m http.server $PORT0 --bind 127.0.0.1"),
        "cpus": 0.05,
        "mem": 32,
        "instances": instances,
        "env": { "VERSION": version },
        "portDefinitions": [{ "port": 0, "name": "http" }],
        "healthChecks": [{
            "protocol": "HTTP",
            "path": "/",
            "portIndex": 0,
            "gracePeriodSeconds": 30,
            "intervalSeconds": 1,
            "timeoutSeconds": 1,
            "delaySeconds": 0,
            "maxConsecutiveFailures": 3
        }],
        "upgradeStrategy": { "minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0 },
        "backoffSeconds": 1,
        "taskKillGracePeriodSeconds": 1
    })
}

/// What a task's HTTP server answers for `path` (`version`, `pid`), if it answers.
pub async fn fetch(task: &Value, path: &str) -> Option<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().ok()?;
    let response = client.get(format!("http://{}/{path}", endpoint(task))).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(response.text().await.ok()?.trim().to_owned())
}

/// Runs `agora services ARGS --services URL` (the CLI) to completion.
pub fn cli(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(super::AGORA);
    command.arg("services").args(args).args(["--services", url]).env("RUST_LOG", "warn");
    run_bounded(command)
}

/// Writes `value` as JSON to `dir/NAME.json` and returns the path.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("json")).expect("write json");
    path
}

/// Both output streams of a command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Ports per agent in these tests.
const AGENT_PORTS: u16 = 40;

/// Each agent's share in these tests: room for dozens of small tasks, and a block of ports
/// of its own. The apps here bind their ports, so two clusters of tests running at once
/// must not offer the same ones: a task would fail to bind, and a test asking "its" port
/// would reach another test's task.
pub fn agent_resources() -> String {
    let (first, last) = free_port_block(AGENT_PORTS);
    format!("cpus:4;mem:4096;disk:1000;ports:[{first}-{last}]")
}

/// A block of `len` ports that are free now, between 12000 and 20000: below the ports
/// `free_port` hands out and below Linux's ephemeral range, spread by process id.
pub fn free_port_block(len: u16) -> (u16, u16) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let blocks = 8_000 / u64::from(len);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..blocks {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let block = seed.wrapping_add(n.wrapping_mul(7_919)) % blocks;
        let first = 12_000 + u16::try_from(block).expect("below 8000") * len;
        let last = first + len - 1;
        if (first..=last).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return (first, last);
        }
    }
    panic!("no free block of {len} ports between 12000 and 20000");
}

/// A master process, agents processes and one `agora services` process, each of which a
/// test can SIGKILL and start again.
pub struct Stack {
    pub cluster: super::Cluster,
    pub agents: Vec<super::agent::Agent>,
    pub services: Services,
}

impl Stack {
    /// Starts the master, `agents` agents and services, and waits until services is
    /// subscribed. `master_flags` tune the master (short timeouts, say).
    pub async fn start(agents: usize, master_flags: &[&str]) -> Stack {
        let cluster = super::Cluster::master_only(master_flags).await;
        let dir = cluster.dir.path().to_owned();
        let agents: Vec<_> = (0..agents)
            .map(|i| super::agent::Agent::start(&dir, &format!("agent{i}"), &cluster.master, &agent_resources()))
            .collect();
        cluster.wait_for_agents(agents.len()).await;
        let services = Services::start(&dir, "services", &cluster.master, &[]);
        services.wait_subscribed().await;
        Stack { cluster, agents, services }
    }

    pub fn api(&self) -> Api {
        self.services.api()
    }

    pub fn dir(&self) -> &Path {
        self.cluster.dir.path()
    }
}
