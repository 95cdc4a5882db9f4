//! End to end: `agora services` on a real master and agents, with real HTTP apps
//! (`python3 -m http.server $PORT0`) whose health the agents check. Deploys, scaling,
//! self-healing, rolling upgrades without downtime, automatic rollback of a version that
//! never gets healthy, and groups started in dependency order; through the REST API and
//! the `agora services` command line.

mod common;

use std::time::{Duration, Instant};

use common::services::{Stack, cli, describe, fetch, http_app, is_healthy, is_running, write_json};
use serde_json::{Value, json};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_app_deploys_scales_heals_and_rolls_out_without_downtime() {
    let stack = Stack::start(2, &[]).await;
    let api = stack.api();
    let url = stack.services.url.clone();

    // Deploy with the CLI: it follows the deployment and exits 0 once it finished.
    let file = write_json(stack.dir(), "web", &http_app("/web", 2, "v1", 0));
    let output = cli(&url, &["deploy", file.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("/web: deployment "), "{}", describe(&output));
    assert!(text.contains("finished in"), "{}", describe(&output));
    let tasks = api.wait_settled("/web", 2).await;
    for task in &tasks {
        assert_eq!(fetch(task, "version").await.as_deref(), Some("v1"), "each task answers on its port: {task}");
    }
    let app = api.app("/web").await.expect("the app");
    assert_eq!(app["tasksHealthy"], 2, "{app}");
    assert!(app["portDefinitions"][0]["port"].as_u64().is_some_and(|p| (10_000..=20_000).contains(&p)), "{app}");

    // Scale up with the CLI, down through the API.
    let output = cli(&url, &["scale", "/web", "4"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    api.wait_settled("/web", 4).await;
    let (status, answer) =
        api.call(reqwest::Method::PUT, "/v2/apps/web", Some(&json!({ "instances": 1 }))).await.expect("PUT");
    assert!(status.is_success(), "{status}: {answer}");
    assert!(answer["deploymentId"].is_string(), "{answer}");
    let tasks = api.wait_settled("/web", 1).await;

    // A killed process is replaced.
    let pid = fetch(&tasks[0], "pid").await.expect("the task says its pid");
    let killed = tasks[0]["id"].as_str().expect("task id").to_owned();
    let status = std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("kill");
    assert!(status.success());
    let replaced = common::eventually_with("the killed task to be replaced", async || {
        let tasks = api.tasks("/web").await?;
        match &tasks[..] {
            [task] if task["id"] != killed.as_str() && is_running(task) && is_healthy(task) => Ok(task.clone()),
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await;
    let app = api.app("/web").await.expect("the app");
    assert_eq!(app["lastTaskFailure"]["taskId"], killed.as_str(), "the failure is remembered: {app}");
    assert_eq!(fetch(&replaced, "version").await.as_deref(), Some("v1"));

    // A new version rolls out; the old one serves until the new is healthy, so at every
    // moment at least `instances` tasks are healthy (minimumHealthCapacity 1) and one of
    // them answers.
    api.call(reqwest::Method::PUT, "/v2/apps/web", Some(&json!({ "instances": 2 }))).await.expect("PUT");
    let tasks = api.wait_settled("/web", 2).await;
    let old: Vec<Value> = tasks.iter().map(|t| t["id"].clone()).collect();
    let file = write_json(stack.dir(), "web-v2", &http_app("/web", 2, "v2", 2));
    let rollout = tokio::spawn({
        let url = url.clone();
        async move { tokio::task::spawn_blocking(move || cli(&url, &["deploy", file.to_str().expect("utf-8 path")])).await }
    });
    let started = Instant::now();
    let mut served_versions = std::collections::BTreeSet::new();
    loop {
        // A listing can name tasks killed just after it (the old ones, once the new are
        // healthy): a fresh listing is read before concluding that nothing answers.
        let mut answered = false;
        let mut listings = Vec::new();
        for _ in 0..3 {
            let tasks = api.tasks("/web").await.expect("tasks during the rollout");
            let healthy: Vec<Value> = tasks.iter().filter(|t| is_running(t) && is_healthy(t)).cloned().collect();
            assert!(healthy.len() >= 2, "never fewer healthy than instances during a rolling upgrade: {tasks:?}");
            for task in &healthy {
                if let Some(version) = fetch(task, "version").await {
                    served_versions.insert(version);
                    answered = true;
                    break;
                }
            }
            if answered {
                break;
            }
            listings.push(healthy);
        }
        assert!(answered, "some healthy task answers, in three listings in a row: {listings:?}");
        if rollout.is_finished() {
            break;
        }
        assert!(started.elapsed() < common::WAIT, "the rollout takes too long");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = rollout.await.expect("join").expect("join");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(served_versions.contains("v1"), "the old version served during the rollout");
    let tasks = api.wait_settled("/web", 2).await;
    for task in &tasks {
        assert!(!old.contains(&task["id"]), "every old task was replaced: {task}");
        assert_eq!(fetch(task, "version").await.as_deref(), Some("v2"));
    }

    // `rollback` goes back to the previous configuration (v1, at the instances it last had).
    let output = cli(&url, &["rollback", "/web"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(stdout(&output).contains("rolling /web back to version"), "{}", describe(&output));
    let tasks = api.wait_settled("/web", 2).await;
    for task in &tasks {
        assert_eq!(fetch(task, "version").await.as_deref(), Some("v1"), "{task}");
    }

    // The CLI shows it.
    let list = cli(&url, &["list"]);
    assert!(stdout(&list).contains("/web"), "{}", describe(&list));
    let shown = cli(&url, &["show", "/web"]);
    assert!(stdout(&shown).contains("2 running, 2 healthy"), "{}", describe(&shown));
    let listed = cli(&url, &["tasks", "/web"]);
    assert_eq!(stdout(&listed).matches("healthy").count(), 2, "{}", describe(&listed));

    // Delete: the tasks go, the app is forgotten.
    let output = cli(&url, &["delete", "/web"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(api.app("/web").await.is_none());
    let state = stack.cluster.state().await;
    let running = state["frameworks"][0]["tasks"].as_array().map_or(0, |t| t.len());
    assert_eq!(running, 0, "no task of the app left on the master: {state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_never_gets_healthy_is_rolled_back_after_its_timeout() {
    let stack = Stack::start(1, &[]).await;
    let api = stack.api();
    let url = stack.services.url.clone();
    let file = write_json(stack.dir(), "web", &http_app("/web", 2, "v1", 0));
    let output = cli(&url, &["deploy", file.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let good = api.wait_settled("/web", 2).await;

    // v2's health check asks for a path its server does not have: it never passes.
    let mut bad = http_app("/web", 2, "v2", 0);
    bad["healthChecks"][0]["path"] = json!("/no-such-page");
    bad["healthChecks"][0]["gracePeriodSeconds"] = json!(60);
    bad["deploymentTimeoutSeconds"] = json!(6);
    let file = write_json(stack.dir(), "web-bad", &bad);
    let started = Instant::now();
    let output = cli(&url, &["deploy", file.to_str().expect("utf-8 path")]);
    assert_ne!(output.status.code(), Some(0), "a rolled back deployment fails the command: {}", describe(&output));
    assert!(stdout(&output).contains("failed"), "{}", describe(&output));
    assert!(started.elapsed() >= Duration::from_secs(6), "not before the timeout");

    // The rollback deployment brings back v1; the healthy v1 tasks were never killed.
    let tasks = api.wait_settled("/web", 2).await;
    let good_ids: Vec<&Value> = good.iter().map(|t| &t["id"]).collect();
    let app = api.app("/web").await.expect("the app");
    for task in &tasks {
        let failure = &app["lastTaskFailure"];
        assert!(good_ids.contains(&&task["id"]), "the old healthy tasks kept running: {task}; last failure {failure}");
        assert_eq!(fetch(task, "version").await.as_deref(), Some("v1"));
    }
    assert_eq!(app["env"]["VERSION"], "v1", "the definition is v1 again: {app}");
    assert_eq!(app["healthChecks"][0]["path"], "/", "{app}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_with_dependencies_starts_in_order() {
    let stack = Stack::start(1, &[]).await;
    let api = stack.api();
    let url = stack.services.url.clone();
    // The database takes a few seconds to get healthy; the web app depends on it.
    let db = http_app("db", 1, "db", 3);
    let mut web = http_app("web", 2, "web", 0);
    web["dependencies"] = json!(["/stack/db"]);
    let group = json!({ "id": "/stack", "apps": [db, web] });
    let file = write_json(stack.dir(), "stack", &group);
    let deploy = tokio::task::spawn_blocking({
        let url = url.clone();
        move || cli(&url, &["deploy", file.to_str().expect("utf-8 path")])
    });
    // Until the database is healthy, the web app has no task.
    let started = Instant::now();
    while !deploy.is_finished() {
        let db_healthy =
            api.tasks("/stack/db").await.unwrap_or_default().iter().any(|t| is_running(t) && is_healthy(t));
        let web_tasks = api.tasks("/stack/web").await.unwrap_or_default();
        assert!(db_healthy || web_tasks.is_empty(), "web started before db was healthy: {web_tasks:?}");
        assert!(started.elapsed() < common::WAIT, "the group takes too long");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = deploy.await.expect("join");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    api.wait_settled("/stack/db", 1).await;
    api.wait_settled("/stack/web", 2).await;
    let groups = api.get("/v2/groups/stack").await.expect("the group");
    assert_eq!(groups["apps"].as_array().map(Vec::len), Some(2), "{groups}");
}

/// An app whose program and content come from `fetch`: a script made executable and an
/// archive unpacked into each sandbox before the command starts; a URI that cannot be
/// fetched fails the task with a message that names it.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_fetches_its_program_and_an_archive_into_each_sandbox() {
    let stack = Stack::start(1, &[]).await;
    let api = stack.api();
    let dir = stack.dir().join("artifacts");
    std::fs::create_dir_all(dir.join("site")).expect("mkdir");
    std::fs::write(dir.join("serve.sh"), "#!/bin/sh\nexec python3 -m http.server \"$PORT0\" --bind 127.0.0.1\n")
        .expect("write");
    std::fs::write(dir.join("site/greeting.txt"), "fetched and unpacked").expect("write");
    let packed = std::process::Command::new("tar")
        .args(["-czf", "site.tgz", "-C", "site", "greeting.txt"])
        .current_dir(&dir)
        .status()
        .expect("tar");
    assert!(packed.success());

    let mut app = http_app("/fetched", 2, "v1", 0);
    app["cmd"] = json!("./serve.sh");
    app["fetch"] = json!([
        { "uri": dir.join("serve.sh").display().to_string(), "executable": true, "extract": false },
        { "uri": format!("file://{}", dir.join("site.tgz").display()) },
    ]);
    let (status, answer) = api.call(reqwest::Method::POST, "/v2/apps", Some(&app)).await.expect("POST");
    assert!(status.is_success(), "{status}: {answer}");
    assert_eq!(answer["fetch"][0]["executable"], true, "{answer}");
    let tasks = api.wait_settled("/fetched", 2).await;
    for task in &tasks {
        assert_eq!(fetch(task, "greeting.txt").await.as_deref(), Some("fetched and unpacked"), "{task}");
    }

    let mut broken = http_app("/unfetchable", 1, "v1", 0);
    let missing = dir.join("missing.tgz").display().to_string();
    broken["fetch"] = json!([{ "uri": missing }]);
    let (status, answer) = api.call(reqwest::Method::POST, "/v2/apps", Some(&broken)).await.expect("POST");
    assert!(status.is_success(), "{status}: {answer}");
    let failure = common::eventually_with("the fetch failure to be reported", async || {
        let app = api.app("/unfetchable").await.ok_or("no app")?;
        let failure = app["lastTaskFailure"].clone();
        if failure.is_object() { Ok(failure) } else { Err(format!("{app}")) }
    })
    .await;
    assert_eq!(failure["state"], "TASK_FAILED", "{failure}");
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(message.contains("missing.tgz") && message.contains("fetching"), "{failure}");
}
