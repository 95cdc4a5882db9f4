//! End to end: `agora local` with real agents, and `agora run` launching real processes.

mod common;

use common::Cluster;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_task_runs_and_finishes() {
    let cluster = Cluster::local(2).await;
    let output = cluster.run(&["--name", "hello", "--", "echo", "hello"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("TASK_RUNNING"), "{}", describe(&output));
    assert!(text.contains("TASK_FINISHED"), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_exit_code_is_propagated() {
    let cluster = Cluster::local(1).await;
    let output = cluster.run(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(stdout(&output).contains("TASK_FAILED"), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_instances_all_finish_and_are_recorded_in_state() {
    let cluster = Cluster::local(2).await;
    let output = cluster.run(&["--name", "many", "--instances", "20", "--cpus", "0.05", "--mem", "16", "--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(stdout(&output).matches("TASK_FINISHED").count(), 20, "{}", describe(&output));

    let state = cluster.state().await;
    let framework = state["completed_frameworks"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == "many"))
        .unwrap_or_else(|| panic!("the torn-down framework is in completed_frameworks: {state}"));
    let finished = framework["completed_tasks"]
        .as_array()
        .map(|tasks| tasks.iter().filter(|t| t["state"] == "TASK_FINISHED").count())
        .unwrap_or(0);
    assert_eq!(finished, 20, "{framework}");
    // Every resource came back: nothing is used once all tasks are done.
    for agent in state["slaves"].as_array().expect("slaves") {
        assert_eq!(agent["used_resources"]["cpus"], 0.0, "{agent}");
        assert_eq!(agent["used_resources"]["mem"], 0.0, "{agent}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_of_several_failing_fails_the_run() {
    let cluster = Cluster::local(1).await;
    let output = cluster.run(&[
        "--instances",
        "3",
        "--cpus",
        "0.1",
        "--",
        "sh",
        "-c",
        "case $AGORA_TASK_ID in *-1) exit 7;; esac",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_endpoints_describe_the_cluster() {
    let cluster = Cluster::local(2).await;
    let health = reqwest::get(cluster.url("/health")).await.expect("health");
    assert!(health.status().is_success());
    let version = common::get_json(&cluster.url("/version")).await.expect("version");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    let state = cluster.state().await;
    let agents = state["slaves"].as_array().expect("slaves");
    assert_eq!(agents.len(), 2);
    for agent in agents {
        assert!(agent["resources"]["cpus"].as_f64().is_some_and(|c| c > 0.0), "{agent}");
        assert!(agent["resources"]["ports"].as_str().is_some_and(|p| p.starts_with("[31")), "{agent}");
    }
    // Agents sharing one machine get disjoint shares of its ports.
    assert_ne!(agents[0]["resources"]["ports"], agents[1]["resources"]["ports"]);

    let metrics = reqwest::get(cluster.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("agora_master_agents 2"), "{metrics}");
    assert!(metrics.contains("agora_master_allocation_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("agora_master_tasks{state=\"TASK_RUNNING\"}"), "{metrics}");

    let missing = reqwest::get(cluster.url("/no/such/thing")).await.expect("404");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json error");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("/no/such/thing")), "{body}");
}
