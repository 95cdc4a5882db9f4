//! Handler tests of health and readiness checks in the core: each feeds check results at
//! given times and asserts the exact outputs.

use agora_proto::model::{HealthCheck, ReadinessCheck};

use super::*;

use super::fixtures::{AGENT, SEED, config, fw, status, task_running};

const GRACE_MS: u64 = 1_000;
const DELAY_MS: u64 = 5;

fn health_check(max_consecutive_failures: u32) -> HealthCheck {
    HealthCheck {
        grace_period_ms: GRACE_MS,
        interval_ms: 100,
        timeout_ms: 50,
        max_consecutive_failures,
        delay_ms: DELAY_MS,
        ..HealthCheck::http(8080, "/health")
    }
}

fn checked_task(health: Option<HealthCheck>, readiness: Option<ReadinessCheck>) -> TaskInfo {
    TaskInfo { health_check: health, readiness_check: readiness, ..task_running("t", "serve") }
}

fn ids() -> Vec<UpdateId> {
    let mut ids = UpdateIds::new(SEED);
    (0..12).map(|_| ids.next_id()).collect()
}

fn send(status: TaskStatus) -> Output {
    Output::SendUpdate { framework_id: fw("f"), status }
}

fn ack(uuid: &UpdateId) -> Input {
    Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: uuid.clone() }
}

fn result(kind: CheckKind, outcome: Result<(), &str>) -> Input {
    Input::CheckResult { run: RunId(1), kind, outcome: outcome.map_err(str::to_owned) }
}

fn health(outcome: Result<(), &str>) -> Input {
    result(CheckKind::Health, outcome)
}

fn stop(kind: CheckKind) -> Output {
    Output::StopCheck { run: RunId(1), kind }
}

/// A RUNNING update about a check, as the core emits it.
fn check_status(
    now_ms: u64,
    uuid: &UpdateId,
    reason: TaskStatusReason,
    message: &str,
    healthy: Option<bool>,
    ready: Option<bool>,
) -> TaskStatus {
    TaskStatus {
        reason,
        message: message.to_owned(),
        healthy,
        ready,
        ..status("t", TaskState::TaskRunning, now_ms, uuid)
    }
}

fn healthy_update(now_ms: u64, uuid: &UpdateId, healthy: bool, message: &str) -> Output {
    send(check_status(now_ms, uuid, TaskStatusReason::TaskHealthCheckStatusUpdated, message, Some(healthy), None))
}

/// A registered core running task `t` of framework `f` (run 1, process group 100) with
/// `task`'s checks, started at 20, its STARTING and RUNNING updates (ids 0 and 1)
/// acknowledged at 40. Returns the outputs of the process start.
fn running(task: TaskInfo) -> (Core, Vec<Output>) {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    core.step(0, Input::Registered { agent_id: AgentId::new(AGENT) });
    core.step(10, Input::RunTask { framework_id: fw("f"), framework: None, task: Box::new(task) });
    let started = core.step(20, Input::ProcessStarted { run: RunId(1), pid: 100, sandbox: "f/t".into() });
    assert_eq!(core.step(30, ack(&ids[0])), vec![send(status("t", TaskState::TaskRunning, 20, &ids[1]))]);
    assert_eq!(core.step(40, ack(&ids[1])), vec![]);
    (core, started)
}

#[test]
fn checks_start_when_the_task_runs_the_health_check_after_its_delay_and_stop_when_the_process_exits() {
    let task = checked_task(Some(health_check(3)), Some(ReadinessCheck::http(8080, "/ready")));
    let (mut core, started) = running(task.clone());
    assert_eq!(
        started,
        vec![
            Output::StartCheck {
                run: RunId(1),
                kind: CheckKind::Health,
                task: Box::new(task.clone()),
                sandbox: "f/t".into(),
                first_at_ms: 20 + DELAY_MS,
            },
            Output::StartCheck {
                run: RunId(1),
                kind: CheckKind::Readiness,
                task: Box::new(task),
                sandbox: "f/t".into(),
                first_at_ms: 20,
            },
        ],
        "RUNNING itself waits behind STARTING"
    );
    let ids = ids();
    let mut finished = status("t", TaskState::TaskFinished, 50, &ids[2]);
    finished.reason = TaskStatusReason::CommandExited;
    finished.message = "Command exited with status 0".into();
    finished.exit_code = Some(0);
    assert_eq!(
        core.step(50, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(0), limitation: None }),
        vec![stop(CheckKind::Health), stop(CheckKind::Readiness), send(finished)]
    );
    assert_eq!(core.step(60, health(Ok(()))), vec![], "a late result of a stopped check changes nothing");
}

#[test]
fn a_task_without_checks_starts_none() {
    let (_, started) = running(checked_task(None, None));
    assert_eq!(started, vec![]);
}

#[test]
fn failures_in_the_grace_period_are_ignored_until_a_check_passes() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(1)), None));
    // max_consecutive_failures is 1: any failure that counted would kill the task.
    assert_eq!(core.step(100, health(Err("connection refused"))), vec![]);
    // The grace period started with the process, at 20, and ends at 20 + GRACE_MS.
    assert_eq!(core.step(19 + GRACE_MS, health(Err("connection refused"))), vec![]);
    assert_eq!(core.tasks().map(|t| t.healthy).collect::<Vec<_>>(), [None]);
    assert_eq!(
        core.step(GRACE_MS + 1, health(Ok(()))),
        vec![healthy_update(GRACE_MS + 1, &ids[2], true, "Health check passed")]
    );
}

#[test]
fn once_a_check_passed_the_grace_period_no_longer_forgives() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(0)), None));
    assert_eq!(core.step(100, health(Ok(()))), vec![healthy_update(100, &ids[2], true, "Health check passed")]);
    core.step(110, ack(&ids[2]));
    assert_eq!(
        core.step(200, health(Err("HTTP status 503"))),
        vec![healthy_update(200, &ids[3], false, "Health check failed: HTTP status 503")]
    );
}

#[test]
fn only_changes_of_health_are_reported() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(0)), None));
    let t = GRACE_MS + 20;
    assert_eq!(core.step(t, health(Ok(()))), vec![healthy_update(t, &ids[2], true, "Health check passed")]);
    core.step(t + 1, ack(&ids[2]));
    assert_eq!(core.step(t + 100, health(Ok(()))), vec![], "still healthy");
    assert_eq!(
        core.step(t + 200, health(Err("HTTP status 500"))),
        vec![healthy_update(t + 200, &ids[3], false, "Health check failed: HTTP status 500")]
    );
    core.step(t + 201, ack(&ids[3]));
    assert_eq!(core.step(t + 300, health(Err("HTTP status 500"))), vec![], "still unhealthy");
    assert_eq!(core.step(t + 400, health(Ok(()))), vec![healthy_update(t + 400, &ids[4], true, "Health check passed")]);
}

#[test]
fn the_task_is_killed_after_its_maximum_of_consecutive_failures_and_ends_killed_and_unhealthy() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(3)), None));
    // The grace period started with the process, at 20.
    let t = 20 + GRACE_MS;
    assert_eq!(
        core.step(t, health(Err("connection refused"))),
        vec![healthy_update(t, &ids[2], false, "Health check failed: connection refused")]
    );
    core.step(t + 1, ack(&ids[2]));
    assert_eq!(core.step(t + 100, health(Err("connection refused"))), vec![]);
    assert_eq!(
        core.step(t + 200, health(Err("no answer within 50 ms"))),
        vec![stop(CheckKind::Health), Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Term }],
        "the third failure in a row kills the task with its grace period"
    );
    assert_eq!(
        core.step(t + 3_200, Input::Tick),
        vec![Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Kill }],
        "SIGKILL after the default grace period of 3 s"
    );
    let mut killed = status("t", TaskState::TaskKilled, t + 3_300, &ids[3]);
    killed.reason = TaskStatusReason::TaskKilled;
    killed.message = "Task killed: 3 consecutive health checks failed, the last with: no answer within 50 ms: \
                      command terminated by signal 9 (SIGKILL)"
        .into();
    killed.signal = Some(9);
    killed.healthy = Some(false);
    assert_eq!(
        core.step(t + 3_300, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(9), limitation: None }),
        vec![send(killed)]
    );
}

#[test]
fn a_pass_resets_the_count_of_consecutive_failures() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(2)), None));
    let t = 20 + GRACE_MS;
    assert_eq!(core.step(t, health(Err("down"))), vec![healthy_update(t, &ids[2], false, "Health check failed: down")]);
    core.step(t + 1, ack(&ids[2]));
    assert_eq!(core.step(t + 100, health(Ok(()))), vec![healthy_update(t + 100, &ids[3], true, "Health check passed")]);
    core.step(t + 101, ack(&ids[3]));
    assert_eq!(
        core.step(t + 200, health(Err("down"))),
        vec![healthy_update(t + 200, &ids[4], false, "Health check failed: down")]
    );
    core.step(t + 201, ack(&ids[4]));
    assert_eq!(
        core.step(t + 300, health(Err("down"))),
        vec![stop(CheckKind::Health), Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Term }]
    );
}

#[test]
fn with_no_maximum_a_failing_task_is_never_killed() {
    let (mut core, _) = running(checked_task(Some(health_check(0)), None));
    for i in 0..50 {
        let out = core.step(GRACE_MS + i * 100, health(Err("down")));
        assert!(out.iter().all(|o| matches!(o, Output::SendUpdate { .. })), "{out:?}");
    }
    assert_eq!(core.tasks().map(|t| (t.state, t.healthy)).collect::<Vec<_>>(), [(TaskState::TaskRunning, Some(false))]);
}

#[test]
fn readiness_is_reported_once_when_the_check_first_passes_and_then_carried_by_every_update() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(0)), Some(ReadinessCheck::http(8080, "/ready"))));
    assert_eq!(core.step(100, result(CheckKind::Readiness, Err("HTTP status 503"))), vec![]);
    assert_eq!(
        core.step(200, result(CheckKind::Readiness, Ok(()))),
        vec![
            stop(CheckKind::Readiness),
            send(check_status(
                200,
                &ids[2],
                TaskStatusReason::TaskCheckStatusUpdated,
                "Readiness check passed",
                None,
                Some(true)
            )),
        ]
    );
    core.step(210, ack(&ids[2]));
    assert_eq!(core.step(300, result(CheckKind::Readiness, Ok(()))), vec![], "the check has stopped");
    assert_eq!(
        core.step(400, health(Ok(()))),
        vec![send(check_status(
            400,
            &ids[3],
            TaskStatusReason::TaskHealthCheckStatusUpdated,
            "Health check passed",
            Some(true),
            Some(true)
        ))]
    );
    core.step(410, ack(&ids[3]));
    let mut killed = status("t", TaskState::TaskKilled, 500, &ids[4]);
    killed.reason = TaskStatusReason::TaskKilled;
    killed.message = "Task killed: command terminated by signal 15 (SIGTERM)".into();
    killed.signal = Some(15);
    (killed.healthy, killed.ready) = (Some(true), Some(true));
    core.step(450, Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms: None });
    assert_eq!(
        core.step(500, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(15), limitation: None }),
        vec![send(killed)]
    );
}

#[test]
fn check_news_updates_a_running_update_not_yet_sent_instead_of_queueing_another() {
    let ids = ids();
    let (mut core, _) = running(checked_task(Some(health_check(0)), Some(ReadinessCheck::http(8080, "/ready"))));
    // Sent and not acknowledged: the next news queues behind it.
    assert_eq!(core.step(100, health(Ok(()))), vec![healthy_update(100, &ids[2], true, "Health check passed")]);
    assert_eq!(core.step(200, health(Err("down"))), vec![]);
    assert_eq!(core.step(300, health(Ok(()))), vec![]);
    assert_eq!(core.step(400, result(CheckKind::Readiness, Ok(()))), vec![stop(CheckKind::Readiness)]);
    assert_eq!(core.tasks().map(|t| t.pending_updates).collect::<Vec<_>>(), [2]);
    assert_eq!(
        core.step(500, ack(&ids[2])),
        vec![send(check_status(
            400,
            &ids[3],
            TaskStatusReason::TaskCheckStatusUpdated,
            "Readiness check passed",
            Some(true),
            Some(true)
        ))],
        "one update with the latest news"
    );
}

#[test]
fn results_after_a_kill_started_change_nothing() {
    let (mut core, _) = running(checked_task(Some(health_check(1)), None));
    assert_eq!(
        core.step(100, Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms: None }),
        vec![stop(CheckKind::Health), Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Term }]
    );
    assert_eq!(core.step(GRACE_MS * 2, health(Err("down"))), vec![]);
}

#[test]
fn a_recovered_running_task_resumes_its_health_check_with_its_health_but_not_a_passed_readiness_check() {
    let task = checked_task(Some(health_check(3)), Some(ReadinessCheck::http(8080, "/ready")));
    let record = TaskRecord {
        framework_id: fw("f"),
        framework: None,
        info: task.clone(),
        run: RunId(1),
        state: TaskState::TaskRunning,
        pid: Some(100),
        sandbox: Some("f/t".into()),
        exited: false,
        kill_grace_period_ms: None,
        pending: vec![],
        healthy: Some(true),
        ready: Some(true),
        running_since_ms: Some(20),
        kill_message: None,
        limitation: None,
    };
    let mut core = Core::new(config(), SEED);
    let recovered = RecoveredTask { record, process: RecoveredProcess::Running };
    let out = core.step(5_000, Input::Recover { agent_id: Some(AgentId::new(AGENT)), tasks: vec![recovered] });
    assert_eq!(
        out,
        vec![Output::StartCheck {
            run: RunId(1),
            kind: CheckKind::Health,
            task: Box::new(task),
            sandbox: "f/t".into(),
            first_at_ms: 5_000,
        }]
    );
    // Healthy before the restart: a failure now counts, and is news.
    core.step(5_001, Input::Registered { agent_id: AgentId::new(AGENT) });
    let out = core.step(5_100, health(Err("down")));
    assert!(
        matches!(&out[..], [Output::SendUpdate { status, .. }] if status.healthy == Some(false) && status.ready == Some(true)),
        "{out:?}"
    );
}

#[test]
fn a_record_written_before_checks_existed_still_loads() {
    let record = TaskRecord {
        framework_id: fw("f"),
        framework: None,
        info: task_running("t", "sleep 100"),
        run: RunId(1),
        state: TaskState::TaskRunning,
        pid: Some(100),
        sandbox: Some("f/t".into()),
        exited: false,
        kill_grace_period_ms: None,
        pending: vec![status("t", TaskState::TaskRunning, 20, &ids()[0])],
        healthy: None,
        ready: None,
        running_since_ms: None,
        kill_message: None,
        limitation: None,
    };
    let mut json = serde_json::to_value(&record).expect("serializes");
    let object = json.as_object_mut().expect("an object");
    for key in ["healthy", "ready", "running_since_ms", "kill_message"] {
        object.remove(key);
    }
    for key in ["health_check", "readiness_check"] {
        object["info"].as_object_mut().expect("an object").remove(key);
    }
    for key in ["healthy", "ready"] {
        object["pending"][0].as_object_mut().expect("an object").remove(key);
    }
    let old: TaskRecord = serde_json::from_value(json).expect("an old record loads");
    assert_eq!(old, record);
}
