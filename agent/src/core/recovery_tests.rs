//! Handler tests of checkpoints and recovery: what the core asks to persist, and what it
//! does with the records read back after a restart. Each asserts the exact outputs.

use super::*;

use super::fixtures::{AGENT, SEED, config, fw, status, task_running};

fn task(id: &str) -> TaskInfo {
    task_running(id, "sleep 1000")
}

/// The update ids a core seeded with [`SEED`] hands out, in order.
fn ids() -> Vec<UpdateId> {
    let mut ids = UpdateIds::new(SEED);
    (0..8).map(|_| ids.next_id()).collect()
}

/// An id no core of these tests hands out: one from before the restart.
fn old_id(n: u64) -> UpdateId {
    UpdateIds::new(1_000 + n).next_id()
}

fn send(status: TaskStatus) -> Output {
    Output::SendUpdate { framework_id: fw("f"), status }
}

/// The record of task `t` of framework `f`, run 7, RUNNING in process group 100 with every
/// update acknowledged.
fn running_record() -> TaskRecord {
    TaskRecord {
        framework_id: fw("f"),
        framework: None,
        info: task("t"),
        run: RunId(7),
        state: TaskState::TaskRunning,
        pid: Some(100),
        sandbox: Some("f/t".into()),
        exited: false,
        kill_grace_period_ms: None,
        pending: vec![],
        healthy: None,
        ready: None,
        running_since_ms: None,
        kill_message: None,
        limitation: None,
    }
}

fn recover(core: &mut Core, now_ms: u64, record: TaskRecord, process: RecoveredProcess) -> Vec<Output> {
    core.step(
        now_ms,
        Input::Recover { agent_id: Some(AgentId::new(AGENT)), tasks: vec![RecoveredTask { record, process }] },
    )
}

fn registered(core: &mut Core, now_ms: u64) -> Vec<Output> {
    core.step(now_ms, Input::Registered { agent_id: AgentId::new(AGENT) })
}

#[test]
fn a_new_task_is_checkpointed_with_its_starting_update_then_with_its_pid_and_queued_running_update() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    registered(&mut core, 0);
    core.step(10, Input::RunTask { framework_id: fw("f"), framework: None, task: Box::new(task("t")) });
    let mut record = TaskRecord {
        framework_id: fw("f"),
        framework: None,
        info: task("t"),
        run: RunId(1),
        state: TaskState::TaskStarting,
        pid: None,
        sandbox: None,
        exited: false,
        kill_grace_period_ms: None,
        pending: vec![status("t", TaskState::TaskStarting, 10, &ids[0])],
        healthy: None,
        ready: None,
        running_since_ms: None,
        kill_message: None,
        limitation: None,
    };
    assert_eq!(core.take_checkpoints(), vec![Checkpoint::Save(Box::new(record.clone()))]);
    assert_eq!(core.take_checkpoints(), vec![], "nothing changed since");

    core.step(20, Input::ProcessStarted { run: RunId(1), pid: 100, sandbox: "f/t".into() });
    record.pid = Some(100);
    record.sandbox = Some("f/t".into());
    record.state = TaskState::TaskRunning;
    record.pending.push(status("t", TaskState::TaskRunning, 20, &ids[1]));
    assert_eq!(core.take_checkpoints(), vec![Checkpoint::Save(Box::new(record))], "RUNNING is queued behind STARTING");
}

#[test]
fn the_last_acknowledgement_of_a_finished_task_deletes_its_record() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    registered(&mut core, 0);
    core.step(10, Input::RunTask { framework_id: fw("f"), framework: None, task: Box::new(task("t")) });
    core.step(20, Input::ProcessStarted { run: RunId(1), pid: 100, sandbox: "f/t".into() });
    core.step(30, Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: ids[0].clone() });
    core.step(40, Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: ids[1].clone() });
    core.step(50, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(0), limitation: None });
    let _ = core.take_checkpoints();
    core.step(60, Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: ids[2].clone() });
    assert_eq!(core.take_checkpoints(), vec![Checkpoint::Remove { run: RunId(1) }]);
}

#[test]
fn a_recovered_running_task_waits_for_registration_then_resends_its_unacknowledged_update_with_the_same_uuid() {
    let mut core = Core::new(config(), SEED);
    let mut record = running_record();
    let running = status("t", TaskState::TaskRunning, 5, &old_id(1));
    record.pending = vec![running.clone()];
    assert_eq!(recover(&mut core, 100, record, RecoveredProcess::Running), vec![], "not registered yet");
    assert_eq!(core.agent_id(), Some(&AgentId::new(AGENT)));
    assert_eq!(core.live_processes(), vec![(RunId(7), 100)]);
    assert_eq!(registered(&mut core, 200), vec![send(running)]);
}

#[test]
fn a_recovered_task_is_reported_to_the_master_with_its_state_on_registration() {
    let mut core = Core::new(config(), SEED);
    recover(&mut core, 100, running_record(), RecoveredProcess::Running);
    let views: Vec<(TaskState, Option<u32>, RunId)> = core.tasks().map(|t| (t.state, t.pid, t.run)).collect();
    assert_eq!(views, [(TaskState::TaskRunning, Some(100), RunId(7))]);
}

#[test]
fn a_task_that_exited_with_status_3_while_the_agent_was_down_fails_with_exit_code_3() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    assert_eq!(recover(&mut core, 100, running_record(), RecoveredProcess::Exited(ProcessExit::Code(3))), vec![]);
    let mut failed = status("t", TaskState::TaskFailed, 100, &ids[0]);
    failed.reason = TaskStatusReason::CommandExited;
    failed.message = "Command exited with status 3".into();
    failed.exit_code = Some(3);
    assert_eq!(registered(&mut core, 200), vec![send(failed)]);
    assert!(!core.has_live_processes());
}

#[test]
fn a_task_whose_process_is_gone_without_an_exit_status_fails_with_reason_agent_restarted() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    recover(&mut core, 100, running_record(), RecoveredProcess::Gone);
    let mut failed = status("t", TaskState::TaskFailed, 100, &ids[0]);
    failed.reason = TaskStatusReason::AgentRestarted;
    failed.message = "The agent restarted and the task's process is gone without a recorded exit status".into();
    assert_eq!(registered(&mut core, 200), vec![send(failed)]);
}

#[test]
fn a_task_recovered_before_its_process_was_recorded_fails_with_reason_agent_restarted() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    let mut record = running_record();
    record.state = TaskState::TaskStarting;
    record.pid = None;
    let starting = status("t", TaskState::TaskStarting, 5, &old_id(1));
    record.pending = vec![starting.clone()];
    recover(&mut core, 100, record, RecoveredProcess::Gone);
    let mut failed = status("t", TaskState::TaskFailed, 100, &ids[0]);
    failed.reason = TaskStatusReason::AgentRestarted;
    failed.message = "The agent restarted while launching the task; its process is not running".into();
    assert_eq!(registered(&mut core, 200), vec![send(starting.clone())], "the older update goes first");
    assert_eq!(
        core.step(300, Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: old_id(1) }),
        vec![send(failed)]
    );
}

#[test]
fn a_recovered_task_exiting_later_is_reported_as_any_other() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    recover(&mut core, 100, running_record(), RecoveredProcess::Running);
    registered(&mut core, 200);
    let mut finished = status("t", TaskState::TaskFinished, 300, &ids[0]);
    finished.reason = TaskStatusReason::CommandExited;
    finished.message = "Command exited with status 0".into();
    finished.exit_code = Some(0);
    assert_eq!(
        core.step(300, Input::ProcessExited { run: RunId(7), exit: ProcessExit::Code(0), limitation: None }),
        vec![send(finished)]
    );
}

#[test]
fn a_kill_under_way_when_the_agent_died_starts_again_with_sigterm() {
    let mut core = Core::new(config(), SEED);
    let mut record = running_record();
    record.kill_grace_period_ms = Some(500);
    assert_eq!(
        recover(&mut core, 100, record, RecoveredProcess::Running),
        vec![Output::Signal { run: RunId(7), pid: 100, signal: KillSignal::Term }]
    );
    assert_eq!(core.next_deadline_ms(), Some(600));
    assert_eq!(core.step(600, Input::Tick), vec![Output::Signal { run: RunId(7), pid: 100, signal: KillSignal::Kill }]);
}

#[test]
fn a_recovered_task_over_and_acknowledged_is_deleted_from_the_checkpoint() {
    let mut core = Core::new(config(), SEED);
    let mut record = running_record();
    record.state = TaskState::TaskFinished;
    record.exited = true;
    record.pid = None;
    assert_eq!(recover(&mut core, 100, record, RecoveredProcess::Gone), vec![]);
    assert_eq!(core.tasks().count(), 0);
    assert_eq!(core.take_checkpoints(), vec![Checkpoint::Remove { run: RunId(7) }]);
}

#[test]
fn a_finished_task_whose_last_update_was_not_acknowledged_resends_it_after_recovery() {
    let mut core = Core::new(config(), SEED);
    let mut record = running_record();
    record.state = TaskState::TaskFinished;
    record.exited = true;
    record.pid = None;
    let finished = status("t", TaskState::TaskFinished, 5, &old_id(2));
    record.pending = vec![finished.clone()];
    recover(&mut core, 100, record, RecoveredProcess::Gone);
    assert_eq!(registered(&mut core, 200), vec![send(finished)]);
    assert_eq!(
        core.step(300, Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: old_id(2) }),
        vec![Output::TaskRemoved { framework_id: fw("f"), task_id: TaskId::new("t"), run: RunId(7) }]
    );
}

#[test]
fn runs_launched_after_recovery_are_numbered_after_the_recovered_ones() {
    let mut core = Core::new(config(), SEED);
    recover(&mut core, 100, running_record(), RecoveredProcess::Running);
    registered(&mut core, 200);
    let outputs = core.step(300, Input::RunTask { framework_id: fw("f"), framework: None, task: Box::new(task("u")) });
    assert_eq!(outputs[0], Output::Launch { run: RunId(8), framework_id: fw("f"), task: Box::new(task("u")) });
}

#[test]
fn recovery_is_ignored_once_the_core_has_registered() {
    let mut core = Core::new(config(), SEED);
    registered(&mut core, 0);
    assert_eq!(recover(&mut core, 100, running_record(), RecoveredProcess::Running), vec![]);
    assert_eq!(core.tasks().count(), 0);
}

#[test]
fn a_second_record_of_the_same_task_is_dropped_and_deleted() {
    let mut core = Core::new(config(), SEED);
    let mut twin = running_record();
    twin.run = RunId(9);
    let tasks = vec![
        RecoveredTask { record: running_record(), process: RecoveredProcess::Running },
        RecoveredTask { record: twin, process: RecoveredProcess::Running },
    ];
    core.step(100, Input::Recover { agent_id: Some(AgentId::new(AGENT)), tasks });
    assert_eq!(core.live_processes(), vec![(RunId(7), 100)]);
    assert_eq!(core.take_checkpoints(), vec![Checkpoint::Remove { run: RunId(9) }]);
}

#[test]
fn a_task_record_survives_a_round_trip_through_json() {
    let mut record = running_record();
    record.pending = vec![status("t", TaskState::TaskRunning, 5, &old_id(1))];
    let text = serde_json::to_string(&record).expect("serialisable");
    assert_eq!(serde_json::from_str::<TaskRecord>(&text).expect("readable"), record);
}

#[test]
fn a_task_started_just_before_the_agent_died_reports_running_after_its_starting_update() {
    let ids = ids();
    let mut core = Core::new(config(), SEED);
    let mut record = running_record();
    record.state = TaskState::TaskStarting;
    let starting = status("t", TaskState::TaskStarting, 5, &old_id(1));
    record.pending = vec![starting.clone()];
    recover(&mut core, 100, record, RecoveredProcess::Running);
    assert_eq!(core.tasks().map(|t| t.state).collect::<Vec<_>>(), [TaskState::TaskRunning]);
    assert_eq!(registered(&mut core, 200), vec![send(starting)]);
    assert_eq!(
        core.step(300, Input::Acknowledge { framework_id: fw("f"), task_id: TaskId::new("t"), uuid: old_id(1) }),
        vec![send(status("t", TaskState::TaskRunning, 100, &ids[0]))]
    );
}
