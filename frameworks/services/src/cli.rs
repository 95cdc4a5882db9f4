//! `agora services deploy|scale|list|show|tasks|restart|rollback|delete`: a client of the
//! REST API, as any script would be. Changes are followed until their deployment ends:
//! the client listens to `/v2/events` (opened before the change, so that a quick
//! deployment's end is not missed) and polls `/v2/deployments` and the apps for progress,
//! printing a line whenever something moved. Without the event stream it decides by the
//! apps' versions once the deployment is gone.
//!
//! Readable tables and lines by default; `--json` prints the API's JSON (and, while
//! following, one JSON object per line) for scripts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use agora_sdk::cli::{RestClient, RestError, cell as text, print_table, read_file, row};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a followed deployment is polled for progress.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long, once a deployment left `/v2/deployments`, its end event may take to arrive
/// before the client decides by the apps' versions.
const END_EVENT_GRACE: Duration = Duration::from_secs(3);
/// Largest app or group file read.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Events from `/v2/events` waiting for the follower.
const EVENT_QUEUE_LEN: usize = 256;
/// Most versions `rollback` looks through for the previous configuration.
const MAX_VERSIONS_SEARCHED: usize = 1_000;

/// What the deployment-following commands do besides the change.
#[derive(Clone, Copy, Debug, Default)]
pub struct Follow {
    /// Pass `?force=true`: override a deployment in progress on the same apps.
    pub force: bool,
    /// Print the deployment and return without following it.
    pub detach: bool,
}

/// How a command ended, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: shown, or the deployment finished.
    Done,
    /// The deployment failed, was rolled back or was replaced.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("{path}: unexpected answer: {reason}")]
    Protocol { path: String, reason: String },
}

/// A client of one services REST API.
#[derive(Debug, Clone)]
pub struct Client {
    rest: RestClient,
    /// No timeout: the event stream stays open while a deployment is followed.
    streaming: reqwest::Client,
    json: bool,
}

/// What a change was meant to do, to decide how it ended without its end event.
#[derive(Clone, Debug)]
struct Target {
    /// The apps changed, as `/v2/apps/{path}` paths (no leading `/`).
    apps: Vec<String>,
    /// A group changed instead (its path), whose version tells.
    group: Option<String>,
    /// The apps (or group) are being removed.
    removed: bool,
}

impl Client {
    /// A client of `base` (`http://host:port`); `json` selects machine-readable output.
    pub fn new(base: &str, json: bool) -> Result<Client, CliError> {
        Self::with_tls(base, json, None)
    }

    /// [`new`](Self::new) for an `https://` API verified with `tls` (`--tls-ca`).
    pub fn with_tls(base: &str, json: bool, tls: Option<&agora_proto::tls::ClientTls>) -> Result<Client, CliError> {
        let rest = RestClient::with_tls("services", base, CALL_TIMEOUT, tls).map_err(CliError::Usage)?;
        let streaming = agora_proto::tls::reqwest_builder(reqwest::Client::builder(), tls)
            .map_err(|e| CliError::Usage(e.to_string()))?
            .connect_timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client { rest, streaming, json })
    }

    // ----- Commands -----

    /// `deploy FILE`: POST the app or group, or PUT it when it exists, then follow.
    pub async fn deploy(&self, file: &Path, follow: Follow) -> Result<Outcome, CliError> {
        let text = read_file(file, MAX_FILE_BYTES).map_err(CliError::Usage)?;
        let spec: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: not valid JSON: {e}", file.display())))?;
        let Some(object) = spec.as_object() else {
            return Err(CliError::Usage(format!("{}: expected a JSON object (an app or a group)", file.display())));
        };
        let is_group = object.contains_key("apps") || object.contains_key("groups");
        let id = match object.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(_) => return Err(CliError::Usage(format!("{}: \"id\" must be a string", file.display()))),
            None if is_group => "/".to_owned(),
            None => return Err(CliError::Usage(format!("{}: an app needs an \"id\"", file.display()))),
        };
        let path = id_path(&id);
        let force = force_query(follow.force);
        let events = self.open_events(follow).await;
        let answer = if is_group {
            if self.get_optional(&format!("/v2/groups/{path}")).await?.is_some() {
                self.send(Method::PUT, &format!("/v2/groups/{path}{force}"), Some(&spec)).await?
            } else {
                self.send(Method::POST, &format!("/v2/groups{force}"), Some(&spec)).await?
            }
        } else if self.get_optional(&format!("/v2/apps/{path}")).await?.is_some() {
            self.send(Method::PUT, &format!("/v2/apps/{path}{force}"), Some(&spec)).await?
        } else {
            self.send(Method::POST, &format!("/v2/apps{force}"), Some(&spec)).await?
        };
        let target = if is_group {
            Target { apps: Vec::new(), group: Some(path), removed: false }
        } else {
            Target { apps: vec![path], group: None, removed: false }
        };
        self.follow(&id, answer, target, events, follow).await
    }

    /// `scale ID N`: PUT only `instances` (of an app that exists), then follow.
    pub async fn scale(&self, id: &str, instances: u32, follow: Follow) -> Result<Outcome, CliError> {
        let path = id_path(id);
        // A PUT would create the app from `instances` alone (and be refused for its lack
        // of a command): an unknown id is said so instead.
        if self.get_optional(&format!("/v2/apps/{path}")).await?.is_none() {
            return Err(CliError::Usage(format!("{id}: no such app")));
        }
        let events = self.open_events(follow).await;
        let body = json!({ "instances": instances });
        let answer =
            self.send(Method::PUT, &format!("/v2/apps/{path}{}", force_query(follow.force)), Some(&body)).await?;
        self.follow(id, answer, Target { apps: vec![path], group: None, removed: false }, events, follow).await
    }

    /// `restart ID`.
    pub async fn restart(&self, id: &str, follow: Follow) -> Result<Outcome, CliError> {
        let path = id_path(id);
        let events = self.open_events(follow).await;
        let answer =
            self.send(Method::POST, &format!("/v2/apps/{path}/restart{}", force_query(follow.force)), None).await?;
        self.follow(id, answer, Target { apps: vec![path], group: None, removed: false }, events, follow).await
    }

    /// `rollback ID [--to VERSION]`: deploy the given version again, or the newest version
    /// older than the current configuration (a scale is not a configuration).
    pub async fn rollback(&self, id: &str, to: Option<&str>, follow: Follow) -> Result<Outcome, CliError> {
        let path = id_path(id);
        let app = self.app(&path).await?;
        let version = match to {
            Some(to) => to.to_owned(),
            None => {
                let config_at = app["versionInfo"]["lastConfigChangeAt"]
                    .as_str()
                    .or_else(|| app["version"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                let versions = self.get(&format!("/v2/apps/{path}/versions")).await?;
                let mut older: Vec<String> = versions["versions"]
                    .as_array()
                    .map(|all| {
                        all.iter().take(MAX_VERSIONS_SEARCHED).filter_map(|v| v.as_str().map(str::to_owned)).collect()
                    })
                    .unwrap_or_default();
                // Versions are Marathon timestamps of one width, so text order is time order.
                older.retain(|v| v.as_str() < config_at.as_str());
                older.sort();
                older.pop().ok_or_else(|| {
                    CliError::Usage(format!(
                        "{id}: no configuration older than the current one ({config_at}) to roll back to"
                    ))
                })?
            }
        };
        // A body of only `version` deploys that version's definition again (Marathon's way).
        let spec = json!({ "version": version });
        if !self.json {
            println!("rolling {id} back to version {version}");
        }
        let events = self.open_events(follow).await;
        let answer =
            self.send(Method::PUT, &format!("/v2/apps/{path}{}", force_query(follow.force)), Some(&spec)).await?;
        self.follow(id, answer, Target { apps: vec![path], group: None, removed: false }, events, follow).await
    }

    /// `delete ID`: an app, or else a group.
    pub async fn delete(&self, id: &str, follow: Follow) -> Result<Outcome, CliError> {
        let path = id_path(id);
        let force = force_query(follow.force);
        let events = self.open_events(follow).await;
        let (answer, target) = if self.get_optional(&format!("/v2/apps/{path}")).await?.is_some() {
            let answer = self.send(Method::DELETE, &format!("/v2/apps/{path}{force}"), None).await?;
            (answer, Target { apps: vec![path], group: None, removed: true })
        } else if self.get_optional(&format!("/v2/groups/{path}")).await?.is_some() {
            let answer = self.send(Method::DELETE, &format!("/v2/groups/{path}{force}"), None).await?;
            (answer, Target { apps: Vec::new(), group: Some(path), removed: true })
        } else {
            return Err(CliError::Usage(format!("{id}: no such app or group")));
        };
        self.follow(id, answer, target, events, follow).await
    }

    /// `list`: every app.
    pub async fn list(&self) -> Result<Outcome, CliError> {
        let apps = self.get("/v2/apps?embed=apps.counts&embed=apps.deployments").await?;
        if self.json {
            println!("{apps}");
            return Ok(Outcome::Done);
        }
        let mut rows = vec![row(["ID", "INSTANCES", "RUNNING", "HEALTHY", "CPUS", "MEM", "DEPLOYING", "VERSION"])];
        for app in apps["apps"].as_array().into_iter().flatten() {
            let deploying = app["deployments"].as_array().map_or(0, Vec::len);
            rows.push(vec![
                text(&app["id"]),
                text(&app["instances"]),
                text(&app["tasksRunning"]),
                healthy_count(app),
                text(&app["cpus"]),
                text(&app["mem"]),
                if deploying == 0 { "-".into() } else { "yes".into() },
                text(&app["version"]),
            ]);
        }
        if rows.len() == 1 {
            println!("no apps");
        } else {
            print_table(&rows);
        }
        Ok(Outcome::Done)
    }

    /// `show ID`: one app's definition and state.
    pub async fn show(&self, id: &str) -> Result<Outcome, CliError> {
        let path = id_path(id);
        let app = self.app(&path).await?;
        if self.json {
            println!("{app}");
            return Ok(Outcome::Done);
        }
        let mut lines: Vec<(&str, String)> = Vec::new();
        lines.push(("id", text(&app["id"])));
        let command = match (&app["cmd"], &app["args"]) {
            (Value::String(cmd), _) => cmd.clone(),
            (_, Value::Array(args)) => args.iter().map(text).collect::<Vec<_>>().join(" "),
            _ => "-".into(),
        };
        lines.push(("command", command));
        lines.push((
            "instances",
            format!(
                "{} ({} running, {} healthy, {} unhealthy, {} staged)",
                text(&app["instances"]),
                text(&app["tasksRunning"]),
                healthy_count(&app),
                text(&app["tasksUnhealthy"]),
                text(&app["tasksStaged"])
            ),
        ));
        lines.push((
            "resources",
            format!("cpus {}, mem {} MiB, disk {} MiB", text(&app["cpus"]), text(&app["mem"]), text(&app["disk"])),
        ));
        let ports: Vec<String> = app["portDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let name = p["name"].as_str().map(|n| format!(" ({n})")).unwrap_or_default();
                format!("{}/{}{name}", text(&p["port"]), p["protocol"].as_str().unwrap_or("tcp"))
            })
            .collect();
        lines.push(("ports", if ports.is_empty() { "-".into() } else { ports.join(", ") }));
        for check in app["healthChecks"].as_array().into_iter().flatten() {
            let target = match check["protocol"].as_str() {
                Some(p) if p.contains("HTTP") => format!("{p} {}", check["path"].as_str().unwrap_or("/")),
                Some("COMMAND") => format!("COMMAND {}", text(&check["command"]["value"])),
                Some(p) => p.to_owned(),
                None => "-".into(),
            };
            lines.push((
                "health check",
                format!(
                    "{target} every {}s, grace {}s, timeout {}s, killed after {} failures",
                    text(&check["intervalSeconds"]),
                    text(&check["gracePeriodSeconds"]),
                    text(&check["timeoutSeconds"]),
                    text(&check["maxConsecutiveFailures"])
                ),
            ));
        }
        lines.push((
            "version",
            format!(
                "{} (configuration of {}, scaled {})",
                text(&app["version"]),
                text(&app["versionInfo"]["lastConfigChangeAt"]),
                text(&app["versionInfo"]["lastScalingAt"])
            ),
        ));
        let deployments: Vec<String> =
            app["deployments"].as_array().into_iter().flatten().map(|d| text(&d["id"])).collect();
        lines.push(("deployments", if deployments.is_empty() { "none".into() } else { deployments.join(", ") }));
        let failure = &app["lastTaskFailure"];
        if failure.is_object() {
            lines.push((
                "last failure",
                format!(
                    "{} {} on {} at {}: {}",
                    text(&failure["taskId"]),
                    text(&failure["state"]),
                    text(&failure["host"]),
                    text(&failure["timestamp"]),
                    text(&failure["message"])
                ),
            ));
        }
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        for (key, value) in lines {
            println!("{:<width$} {value}", format!("{key}:"), width = width);
        }
        Ok(Outcome::Done)
    }

    /// `tasks ID`: an app's tasks.
    pub async fn tasks(&self, id: &str) -> Result<Outcome, CliError> {
        let path = id_path(id);
        let tasks = self.get(&format!("/v2/apps/{path}/tasks")).await?;
        if self.json {
            println!("{tasks}");
            return Ok(Outcome::Done);
        }
        let mut rows = vec![row(["TASK", "HOST", "PORTS", "STATE", "HEALTH", "STARTED", "VERSION"])];
        for task in tasks["tasks"].as_array().into_iter().flatten() {
            let ports: Vec<String> = task["ports"].as_array().into_iter().flatten().map(text).collect();
            let results = task["healthCheckResults"].as_array();
            let health = match results {
                Some(results) if !results.is_empty() => {
                    if results.iter().all(|r| r["alive"] == true) {
                        "healthy"
                    } else {
                        "unhealthy"
                    }
                }
                _ => "-",
            };
            rows.push(vec![
                text(&task["id"]),
                text(&task["host"]),
                if ports.is_empty() { "-".into() } else { ports.join(",") },
                task["state"].as_str().unwrap_or("-").trim_start_matches("TASK_").to_owned(),
                health.into(),
                text(&task["startedAt"]),
                text(&task["version"]),
            ]);
        }
        if rows.len() == 1 {
            println!("no tasks");
        } else {
            print_table(&rows);
        }
        Ok(Outcome::Done)
    }

    // ----- Following a deployment -----

    /// Opens `/v2/events` for the deployment events, unless detached; `None` when the
    /// stream is not available (the follower then polls only).
    async fn open_events(&self, follow: Follow) -> Option<mpsc::Receiver<Value>> {
        if follow.detach {
            return None;
        }
        let types = [
            "deployment_info",
            "deployment_success",
            "deployment_failed",
            "deployment_step_success",
            "deployment_step_failure",
        ];
        let query: Vec<String> = types.iter().map(|t| format!("event_type={t}")).collect();
        let url = format!("{}/v2/events?{}", self.rest.base(), query.join("&"));
        let response = self.streaming.get(&url).header("Accept", "text/event-stream").send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE_LEN);
        tokio::spawn(read_events(response, tx));
        Some(rx)
    }

    /// Prints what the change answered, then follows its deployment to its end.
    async fn follow(
        &self,
        id: &str,
        answer: Value,
        target: Target,
        mut events: Option<mpsc::Receiver<Value>>,
        follow: Follow,
    ) -> Result<Outcome, CliError> {
        let deployment =
            answer["deploymentId"].as_str().or_else(|| answer["deployments"][0]["id"].as_str()).map(str::to_owned);
        let version = text(&answer["version"]);
        let Some(deployment) = deployment else {
            // Nothing to deploy (an unchanged app, say).
            self.say(json!({ "event": "done", "id": id, "answer": answer }), || format!("{id}: nothing to deploy"));
            return Ok(Outcome::Done);
        };
        self.say(json!({ "event": "accepted", "id": id, "deploymentId": deployment, "version": version }), || {
            format!("{id}: deployment {deployment} (version {version})")
        });
        if follow.detach {
            return Ok(Outcome::Done);
        }
        let started = Instant::now();
        let mut shown_step = None;
        let mut shown_progress: BTreeMap<String, String> = BTreeMap::new();
        let mut affected: Vec<String> = target.apps.clone();
        let mut gone_since: Option<Instant> = None;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            let event = async {
                match events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = event => match event {
                    None => events = None,
                    Some(event) if deployment_of(&event) == Some(deployment.as_str()) => {
                        if event["eventType"] == "deployment_success" {
                            // The counts as the deployment left them, before the verdict.
                            for app in &affected {
                                self.show_progress(app, &mut shown_progress).await?;
                            }
                        }
                        if let Some(outcome) = self.on_event(&event, started) {
                            return Ok(outcome);
                        }
                    }
                    Some(_) => {}
                },
                _ = poll.tick() => {
                    let deployments = self.get("/v2/deployments").await?;
                    let current = deployments.as_array().into_iter().flatten().find(|d| d["id"] == deployment.as_str());
                    match current {
                        Some(current) => {
                            gone_since = None;
                            if let Some(apps) = current["affectedApps"].as_array() {
                                affected = apps.iter().filter_map(Value::as_str).map(id_path).collect();
                            }
                            self.show_step(current, &mut shown_step);
                            for app in &affected {
                                self.show_progress(app, &mut shown_progress).await?;
                            }
                        }
                        None => {
                            let since = *gone_since.get_or_insert_with(Instant::now);
                            // With the event stream, its end event says how it ended; without
                            // it (or if it never comes), the versions do.
                            if events.is_none() || since.elapsed() >= END_EVENT_GRACE {
                                for app in &affected {
                                    self.show_progress(app, &mut shown_progress).await?;
                                }
                                return self.decide(&target, &version, started).await;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Prints a deployment event; the outcome when it ends the deployment.
    fn on_event(&self, event: &Value, started: Instant) -> Option<Outcome> {
        let kind = event["eventType"].as_str().unwrap_or_default();
        let took = format!("{:.1}s", started.elapsed().as_secs_f64());
        match kind {
            "deployment_success" => {
                self.say(json!({ "event": "finished", "took_s": started.elapsed().as_secs_f64() }), || {
                    format!("finished in {took}")
                });
                Some(Outcome::Done)
            }
            "deployment_failed" => {
                let reason = event["reason"].as_str().unwrap_or("failed, cancelled or replaced by another deployment");
                let rollback =
                    event["rollback"].as_str().map(|r| format!("; rolled back by deployment {r}")).unwrap_or_default();
                self.say(json!({ "event": "failed", "reason": reason, "rollback": event["rollback"] }), || {
                    format!("deployment failed after {took}: {reason}{rollback}")
                });
                Some(Outcome::Failed)
            }
            "deployment_step_failure" => {
                self.say(json!({ "event": "step_failed", "step": event["currentStep"] }), || "a step failed".into());
                None
            }
            _ => None,
        }
    }

    /// Prints the step in progress when it changed.
    fn show_step(&self, deployment: &Value, shown: &mut Option<u64>) {
        let step = deployment["currentStep"].as_u64().unwrap_or(0);
        if *shown == Some(step) {
            return;
        }
        *shown = Some(step);
        let total = deployment["totalSteps"].as_u64().unwrap_or(0);
        let actions: Vec<String> = deployment["currentActions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{} {}", action_word(a["action"].as_str().unwrap_or("?")), text(&a["app"])))
            .collect();
        self.say(
            json!({ "event": "step", "step": step, "total": total, "actions": deployment["currentActions"] }),
            || format!("  step {step}/{total}: {}", actions.join(", ")),
        );
    }

    /// Prints an app's instance counts when they changed.
    async fn show_progress(&self, path: &str, shown: &mut BTreeMap<String, String>) -> Result<(), CliError> {
        let Some(app) = self.get_optional(&format!("/v2/apps/{path}")).await? else {
            if shown.get(path).map(String::as_str) != Some("gone") {
                shown.insert(path.to_owned(), "gone".into());
                self.say(json!({ "event": "progress", "app": format!("/{path}"), "gone": true }), || {
                    format!("  /{path}: stopped and removed")
                });
            }
            return Ok(());
        };
        let app = app.get("app").cloned().unwrap_or(app);
        let has_checks = app["healthChecks"].as_array().is_some_and(|c| !c.is_empty());
        let line = if has_checks {
            format!(
                "{} of {} running, {} healthy",
                text(&app["tasksRunning"]),
                text(&app["instances"]),
                healthy_count(&app)
            )
        } else {
            format!("{} of {} running", text(&app["tasksRunning"]), text(&app["instances"]))
        };
        if shown.get(path) != Some(&line) {
            shown.insert(path.to_owned(), line.clone());
            self.say(
                json!({
                    "event": "progress",
                    "app": app["id"],
                    "instances": app["instances"],
                    "running": app["tasksRunning"],
                    "healthy": app["tasksHealthy"],
                }),
                || format!("  {}: {line}", text(&app["id"])),
            );
        }
        Ok(())
    }

    /// How a deployment that left `/v2/deployments` without an end event ended: it
    /// finished if what it changed is at its version (or gone, for a removal).
    async fn decide(&self, target: &Target, version: &str, started: Instant) -> Result<Outcome, CliError> {
        let mut finished = true;
        for app in &target.apps {
            let current = self.get_optional(&format!("/v2/apps/{app}")).await?;
            let current = current.map(|a| a.get("app").cloned().unwrap_or(a));
            finished &= match (&current, target.removed) {
                (None, removed) => removed,
                (Some(_), true) => false,
                (Some(app), false) => text(&app["version"]) == version,
            };
        }
        if let Some(group) = &target.group {
            let current = self.get_optional(&format!("/v2/groups/{group}")).await?;
            finished &= match (&current, target.removed) {
                (None, removed) => removed,
                (Some(_), true) => false,
                (Some(group), false) => text(&group["version"]) == version,
            };
        }
        let took = started.elapsed().as_secs_f64();
        if finished {
            self.say(json!({ "event": "finished", "took_s": took }), || format!("finished in {took:.1}s"));
            Ok(Outcome::Done)
        } else {
            let reason = "ended without reaching its version: rolled back, cancelled or replaced";
            self.say(json!({ "event": "failed", "reason": reason }), || {
                format!("deployment failed after {took:.1}s: {reason}")
            });
            Ok(Outcome::Failed)
        }
    }

    /// Prints `value` as a JSON line with `--json`, else the human line.
    fn say(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }

    // ----- HTTP -----

    async fn app(&self, path: &str) -> Result<Value, CliError> {
        let app = self.get(&format!("/v2/apps/{path}")).await?;
        Ok(app.get("app").cloned().unwrap_or(app))
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    /// `None` on 404.
    async fn get_optional(&self, path: &str) -> Result<Option<Value>, CliError> {
        match self.send(Method::GET, path, None).await {
            Ok(value) => Ok(Some(value)),
            Err(CliError::Rest(RestError::Api { status: StatusCode::NOT_FOUND, .. })) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        Ok(self.rest.send(method, path, body).await?)
    }
}

/// Reads `/v2/events` (Server-Sent Events) and sends each event's JSON until the stream
/// or the receiver ends.
async fn read_events(mut response: reqwest::Response, events: mpsc::Sender<Value>) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.extend_from_slice(&chunk);
        while let Some((end, skip)) = event_end(&buffer) {
            let block: Vec<u8> = buffer.drain(..end + skip).take(end).collect();
            let block = String::from_utf8_lossy(&block);
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
                .collect();
            if data.is_empty() {
                continue;
            }
            if let Ok(event) = serde_json::from_str::<Value>(&data.join("\n"))
                && events.send(event).await.is_err()
            {
                return;
            }
        }
        // An event larger than this is not one of ours; dropping it keeps memory bounded.
        if buffer.len() > 8 << 20 {
            buffer.clear();
        }
    }
}

/// Where the first event of `buffer` ends: the index of its blank line and that line's
/// length.
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The deployment an event is about (Marathon names it `id`, or `plan.id`).
fn deployment_of(event: &Value) -> Option<&str> {
    event["id"].as_str().or_else(|| event["plan"]["id"].as_str())
}

fn action_word(action: &str) -> &str {
    match action {
        "StartApplication" => "start",
        "ScaleApplication" => "scale",
        "RestartApplication" => "restart",
        "StopApplication" => "stop",
        "ResolveArtifacts" => "resolve",
        other => other,
    }
}

/// An id as a path under `/v2/apps/` or `/v2/groups/`: no leading or trailing `/`.
fn id_path(id: &str) -> String {
    id.trim_matches('/').to_owned()
}

fn force_query(force: bool) -> &'static str {
    if force { "?force=true" } else { "" }
}

/// `tasksHealthy`, or `-` for an app without health checks.
fn healthy_count(app: &Value) -> String {
    if app["healthChecks"].as_array().is_some_and(|c| !c.is_empty()) { text(&app["tasksHealthy"]) } else { "-".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: {}\n\ndata: x"), Some((8, 2)));
        assert_eq!(event_end(b"data: {}\r\n\r\n"), Some((8, 4)));
        assert_eq!(event_end(b"data: {}\n"), None);
    }

    #[test]
    fn ids_become_paths_under_the_api() {
        assert_eq!(id_path("/shop/web"), "shop/web");
        assert_eq!(id_path("shop/web/"), "shop/web");
        assert_eq!(deployment_of(&json!({"id": "d1"})), Some("d1"));
        assert_eq!(deployment_of(&json!({"plan": {"id": "d2"}})), Some("d2"));
    }
}
