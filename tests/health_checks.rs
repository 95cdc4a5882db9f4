//! End to end: health and readiness checks run by a real agent reach a framework on the
//! SDK through a real master. A task serving HTTP on its offered port becomes healthy and
//! ready, as the framework's updates and the master's `/state` say; a task whose check
//! keeps failing is killed after its maximum of consecutive failures and ends TASK_KILLED
//! and unhealthy; the checks of a task whose agent was SIGKILLed resume under the agent
//! that recovers it.

mod common;

use agora_proto::model::{
    FrameworkInfo, HealthCheck, Offer, ReadinessCheck, Resources, Role, TaskInfo, TaskState, TaskStatus,
    TaskStatusReason,
};
use agora_sdk::{Driver, DriverConfig, DriverHandle, Scheduler, TaskBuilder, TaskRequirements, carve};
use common::agent::Agent;
use common::{Cluster, WAIT, eventually, free_port};
use tokio::sync::mpsc;

/// Builds the one task to launch from the agent and the piece of an offer it gets.
type BuildTask = Box<dyn Fn(&Offer, Resources, u16) -> TaskInfo + Send>;

/// Launches one task, with one port, on the first offer big enough; reports every update.
struct OneTask {
    build: BuildTask,
    launched: bool,
    updates: mpsc::UnboundedSender<TaskStatus>,
}

impl Scheduler for OneTask {
    async fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) {
        for offer in offers {
            let requirements = TaskRequirements { ports: 1, ..TaskRequirements::new(100, 32) };
            match carve(&offer.resources, &requirements, 1).tasks.into_iter().next() {
                Some(resources) if !self.launched => {
                    let port = resources.ports().iter().next().expect("a port was asked for");
                    let port = u16::try_from(port).expect("a port number");
                    let task = (self.build)(&offer, resources, port);
                    driver.accept(vec![offer.id], vec![task], Some(60.0)).await.expect("accept");
                    self.launched = true;
                }
                _ => {
                    let _ = driver.decline(vec![offer.id], Some(60.0)).await;
                }
            }
        }
    }

    async fn update(&mut self, _driver: &DriverHandle, status: TaskStatus) {
        let _ = self.updates.send(status);
    }
}

struct Framework {
    handle: DriverHandle,
    updates: mpsc::UnboundedReceiver<TaskStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Framework {
    fn start(master: &str, build: BuildTask) -> Framework {
        let info = FrameworkInfo {
            id: None,
            name: "checked".into(),
            user: "root".into(),
            roles: vec![Role::unreserved()],
            failover_timeout_ms: 60_000,
            hostname: String::new(),
            principal: String::new(),
        };
        let driver = Driver::new(DriverConfig::new(vec![master.to_owned()], info)).expect("driver");
        let handle = driver.handle();
        let (tx, updates) = mpsc::unbounded_channel();
        let mut scheduler = OneTask { build, launched: false, updates: tx };
        let task = tokio::spawn(async move {
            let _ = driver.run(&mut scheduler).await;
        });
        Framework { handle, updates, task }
    }

    /// Every update until one `until` accepts, which is returned last; fails after `WAIT`.
    async fn updates_until(&mut self, what: &str, until: impl Fn(&TaskStatus) -> bool) -> Vec<TaskStatus> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let status = tokio::time::timeout_at(deadline, self.updates.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {seen:#?}"))
                .expect("the driver is running");
            let done = until(&status);
            seen.push(status);
            if done {
                return seen;
            }
            assert!(!seen[seen.len() - 1].state.is_terminal(), "{what}: the task ended first: {seen:#?}");
        }
    }
}

impl Drop for Framework {
    fn drop(&mut self) {
        self.handle.stop();
        self.task.abort();
    }
}

/// A master and one agent whose only port is a free one, so that concurrent tests never
/// serve on the same port.
async fn cluster() -> Cluster {
    let mut cluster = Cluster::master_only(&[]).await;
    let port = free_port();
    cluster.add_agent("agent", &format!("cpus:1;mem:256;disk:100;ports:[{port}-{port}]"));
    cluster.wait_for_agents(1).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_serving_http_becomes_healthy_and_ready_at_the_framework_and_in_the_masters_state() {
    let cluster = cluster().await;
    let build: BuildTask = Box::new(|offer, resources, port| {
        TaskBuilder::shell("web", "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1")
            .health_check(HealthCheck {
                grace_period_ms: 30_000,
                interval_ms: 200,
                timeout_ms: 2_000,
                ..HealthCheck::http(port, "/")
            })
            .readiness_check(ReadinessCheck { interval_ms: 200, timeout_ms: 2_000, ..ReadinessCheck::http(port, "/") })
            .build(&offer.agent_id, resources)
            .expect("a valid task")
    });
    let mut framework = Framework::start(&cluster.master, build);
    let seen = framework.updates_until("healthy and ready", |s| s.healthy == Some(true) && s.ready == Some(true)).await;
    let last = seen.last().expect("at least one update");
    assert_eq!(last.state, TaskState::TaskRunning);
    assert!(
        matches!(
            last.reason,
            TaskStatusReason::TaskHealthCheckStatusUpdated | TaskStatusReason::TaskCheckStatusUpdated
        ),
        "{last:?}"
    );
    assert!(seen.iter().all(|s| s.healthy != Some(false)), "never unhealthy: {seen:#?}");

    // The master's `/state` shows `healthy` on the task's statuses, as Mesos does.
    eventually("/state to show the task healthy", async || {
        let state = common::get_json(&cluster.url("/state")).await?;
        let task = state["frameworks"][0]["tasks"].as_array()?.iter().find(|t| t["id"] == "web")?.clone();
        let last = task["statuses"].as_array()?.last()?.clone();
        (last["healthy"] == true && last["ready"] == true && task["state"] == "TASK_RUNNING").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_failing_its_health_check_is_killed_after_its_maximum_of_failures_and_ends_unhealthy() {
    let cluster = cluster().await;
    let build: BuildTask = Box::new(|offer, resources, _port| {
        TaskBuilder::shell("sick", "sleep 1000")
            .kill_grace_period_ms(1_000)
            .health_check(HealthCheck {
                grace_period_ms: 0,
                interval_ms: 200,
                timeout_ms: 2_000,
                max_consecutive_failures: 3,
                ..HealthCheck::command("test -f healthy")
            })
            .build(&offer.agent_id, resources)
            .expect("a valid task")
    });
    let mut framework = Framework::start(&cluster.master, build);
    let seen = framework.updates_until("unhealthy", |s| s.healthy == Some(false)).await;
    let unhealthy = seen.last().expect("at least one update");
    assert_eq!(
        (unhealthy.state, unhealthy.reason),
        (TaskState::TaskRunning, TaskStatusReason::TaskHealthCheckStatusUpdated)
    );
    assert!(unhealthy.message.contains("exited with status 1"), "{unhealthy:?}");

    let deadline = tokio::time::Instant::now() + WAIT;
    let killed = loop {
        let status = tokio::time::timeout_at(deadline, framework.updates.recv())
            .await
            .expect("the task is killed in time")
            .expect("the driver is running");
        if status.state.is_terminal() {
            break status;
        }
        assert_eq!(status.healthy, Some(false), "{status:?}");
    };
    assert_eq!((killed.state, killed.healthy), (TaskState::TaskKilled, Some(false)), "{killed:?}");
    assert!(killed.message.contains("3 consecutive health checks failed"), "{killed:?}");
    assert!(killed.message.contains("exited with status 1"), "{killed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_of_a_recovered_task_resume_under_the_restarted_agent() {
    let cluster = Cluster::master_only(&[]).await;
    let port = free_port();
    let mut agent =
        Agent::start(cluster.dir.path(), "agent", &cluster.master, &format!("cpus:1;mem:256;ports:[{port}-{port}]"));
    cluster.wait_for_agents(1).await;
    let markers = tempfile::tempdir().expect("temp dir");
    let marker = markers.path().join("healthy");
    std::fs::write(&marker, "").expect("write the marker");
    let marker_text = marker.to_str().expect("utf-8 path").to_owned();
    let build: BuildTask = Box::new(move |offer, resources, _port| {
        TaskBuilder::shell("watched", "sleep 1000")
            .env("MARKER", marker_text.as_str())
            .health_check(HealthCheck {
                grace_period_ms: 0,
                interval_ms: 200,
                timeout_ms: 2_000,
                max_consecutive_failures: 0,
                ..HealthCheck::command("test -f \"$MARKER\"")
            })
            .build(&offer.agent_id, resources)
            .expect("a valid task")
    });
    let mut framework = Framework::start(&cluster.master, build);
    framework.updates_until("healthy", |s| s.healthy == Some(true)).await;

    // The agent dies; the task does not. Its successor must run the check again: the
    // marker goes, and only a running check can notice.
    agent.kill();
    agent.spawn();
    std::fs::remove_file(&marker).expect("remove the marker");
    let seen = framework.updates_until("unhealthy after the restart", |s| s.healthy == Some(false)).await;
    let unhealthy = seen.last().expect("at least one update");
    assert_eq!(unhealthy.state, TaskState::TaskRunning, "{unhealthy:?}");
    assert!(unhealthy.message.contains("exited with status 1"), "{unhealthy:?}");
}
