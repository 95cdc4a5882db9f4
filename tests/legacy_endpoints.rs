//! Mesos' older read endpoints on a real cluster: `/state-summary`, `/frameworks`,
//! `/slaves`, `/tasks` (paged and filtered, bad parameters refused naming them),
//! `/metrics/snapshot`, `/flags`, `/redirect` and `/version`, each also under `/master/`.

mod common;

use common::{Cluster, Proc, eventually, get_json};
use serde_json::Value;

async fn get(cluster: &Cluster, path: &str) -> (u16, Value) {
    let response = reqwest::get(cluster.url(path)).await.expect("the master answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_read_endpoints_show_a_running_framework_in_mesos_shapes() {
    let mut cluster = Cluster::local(1).await;
    // Three tasks that keep running while the endpoints are read.
    let master = cluster.master.clone();
    let args = ["run", "--master", &master, "--name", "sleepers", "--instances", "3", "--cpus", "0.1", "--mem", "16"];
    let args: Vec<&str> = args.into_iter().chain(["--", "sleep", "60"]).collect();
    cluster.procs.push(Proc::spawn("run", cluster.dir.path(), &args));
    let url = cluster.url("/state-summary");
    let summary = eventually("three running tasks in /state-summary", async || {
        let summary = get_json(&url).await?;
        (summary["frameworks"][0]["TASK_RUNNING"] == 3).then_some(summary)
    })
    .await;
    let framework = &summary["frameworks"][0];
    assert_eq!(framework["name"], "sleepers");
    let agent = &summary["slaves"][0];
    assert_eq!(agent["TASK_RUNNING"], 3, "{agent}");
    assert_eq!(agent["framework_ids"][0], framework["id"]);
    assert_eq!(framework["slave_ids"][0], agent["id"]);
    assert!((framework["used_resources"]["cpus"].as_f64().unwrap_or(0.0) - 0.3).abs() < 1e-9, "{framework}");

    for prefix in ["", "/master"] {
        let (status, frameworks) = get(&cluster, &format!("{prefix}/frameworks")).await;
        assert_eq!(status, 200);
        assert_eq!(frameworks["frameworks"][0]["name"], "sleepers");
        assert_eq!(frameworks["frameworks"][0]["tasks"].as_array().map(Vec::len), Some(3));
        let (_, slaves) = get(&cluster, &format!("{prefix}/slaves")).await;
        assert_eq!(slaves["slaves"][0]["id"], agent["id"]);
        let (_, one) = get(&cluster, &format!("{prefix}/slaves?slave_id=no-such-agent")).await;
        assert_eq!(one["slaves"].as_array().map(Vec::len), Some(0));
    }

    // /tasks: newest first by default, paged, filtered.
    let (_, all) = get(&cluster, "/tasks").await;
    let ids = |page: &Value| -> Vec<String> {
        page["tasks"].as_array().into_iter().flatten().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect()
    };
    let newest_first = ids(&all);
    assert_eq!(newest_first.len(), 3, "{all}");
    let (_, ascending) = get(&cluster, "/master/tasks?order=asc").await;
    let mut oldest_first = ids(&ascending);
    oldest_first.reverse();
    assert_eq!(oldest_first, newest_first);
    let (_, page) = get(&cluster, "/tasks?limit=1&offset=1").await;
    assert_eq!(ids(&page), [newest_first[1].clone()]);
    let framework_id = framework["id"].as_str().expect("an id");
    let (_, one) = get(&cluster, &format!("/tasks?framework_id={framework_id}&task_id={}", newest_first[2])).await;
    assert_eq!(ids(&one), [newest_first[2].clone()]);
    assert_eq!(one["tasks"][0]["state"], "TASK_RUNNING");
    let (_, none) = get(&cluster, "/tasks?framework_id=someone-else").await;
    assert_eq!(ids(&none).len(), 0);
    // Ours: by agent and by state.
    let agent_id = agent["id"].as_str().expect("an id");
    let (_, on_agent) = get(&cluster, &format!("/tasks?agent_id={agent_id}&state=TASK_RUNNING,TASK_KILLING")).await;
    assert_eq!(ids(&on_agent), newest_first);
    let (_, elsewhere) = get(&cluster, "/tasks?agent_id=no-such-agent").await;
    assert_eq!(ids(&elsewhere).len(), 0);
    let (_, finished) = get(&cluster, "/tasks?state=TASK_FINISHED").await;
    assert_eq!(ids(&finished).len(), 0);
    for (query, param) in [
        ("limit=lots", "limit"),
        ("limit=5000", "limit"),
        ("offset=-2", "offset"),
        ("order=sideways", "order"),
        ("state=running", "state"),
    ] {
        let (status, body) = get(&cluster, &format!("/tasks?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["details"][0]["field"], param, "{body}");
    }

    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(cluster.url("/master/redirect"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(redirect.status().as_u16(), 307);
    assert_eq!(redirect.headers()["location"], format!("//{}", cluster.master).as_str());
    let (_, metrics) = get(&cluster, "/metrics/snapshot").await;
    assert_eq!(metrics["master/elected"], 1.0, "{metrics}");
    assert_eq!(metrics["master/tasks_running"], 3.0, "{metrics}");
    assert_eq!(metrics["master/slaves_active"], 1.0, "{metrics}");
    assert_eq!(metrics["master/frameworks_active"], 1.0, "{metrics}");
    let cpus_used = metrics["master/cpus_used"].as_f64().unwrap_or(0.0);
    let cpus_total = metrics["master/cpus_total"].as_f64().unwrap_or(0.0);
    assert!(cpus_used >= 0.3 - 1e-9 && cpus_total >= cpus_used, "{metrics}");
    let percent = metrics["master/cpus_percent"].as_f64().unwrap_or(-1.0);
    assert!((percent - cpus_used / cpus_total).abs() < 1e-9, "{metrics}");
    let (_, flags) = get(&cluster, "/master/flags").await;
    assert_eq!(flags["flags"]["agent_timeout"], "75s", "{flags}");
    let (_, version) = get(&cluster, "/master/version").await;
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["agora_version"], version["version"]);
}
