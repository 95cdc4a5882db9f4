//! Handler tests of the agent core: each feeds inputs and asserts the exact outputs.

use super::*;

use super::fixtures::{AGENT, SEED, config, fw, status, task_running};

fn task(id: &str) -> TaskInfo {
    task_running(id, "true")
}

/// A core registered as `agent-1` at time 0.
fn registered_core() -> Core {
    let mut core = Core::new(config(), SEED);
    assert_eq!(core.step(0, Input::Registered { agent_id: AgentId::new(AGENT) }), vec![]);
    core
}

/// The update ids the core will hand out, in order.
fn ids() -> Vec<UpdateId> {
    let mut ids = UpdateIds::new(SEED);
    (0..8).map(|_| ids.next_id()).collect()
}

fn send(framework: &str, status: TaskStatus) -> Output {
    Output::SendUpdate { framework_id: fw(framework), status }
}

fn ack(framework: &str, id: &str, uuid: &UpdateId) -> Input {
    Input::Acknowledge { framework_id: fw(framework), task_id: TaskId::new(id), uuid: uuid.clone() }
}

fn run(framework: &str, id: &str) -> Input {
    Input::RunTask { framework_id: fw(framework), framework: None, task: Box::new(task(id)) }
}

fn started(run: u64, pid: u32) -> Input {
    Input::ProcessStarted { run: RunId(run), pid, sandbox: format!("f/t-{run}") }
}

/// A core with task `t` of framework `f` launched, started and its STARTING and RUNNING
/// updates acknowledged (ids 0 and 1), process group 100.
fn running_core() -> Core {
    let ids = ids();
    let mut core = registered_core();
    core.step(10, run("f", "t"));
    core.step(20, started(1, 100));
    core.step(30, ack("f", "t", &ids[0]));
    core.step(40, ack("f", "t", &ids[1]));
    assert_eq!(core.tasks().map(|t| t.state).collect::<Vec<_>>(), [TaskState::TaskRunning]);
    core
}

#[test]
fn a_new_task_is_launched_and_reports_starting_at_once() {
    let ids = ids();
    let mut core = registered_core();
    assert_eq!(
        core.step(10, run("f", "t")),
        vec![
            Output::Launch { run: RunId(1), framework_id: fw("f"), task: Box::new(task("t")) },
            send("f", status("t", TaskState::TaskStarting, 10, &ids[0])),
        ]
    );
}

#[test]
fn running_is_sent_only_after_starting_is_acknowledged() {
    let ids = ids();
    let mut core = registered_core();
    core.step(10, run("f", "t"));
    assert_eq!(core.step(20, started(1, 100)), vec![], "STARTING is still outstanding");
    assert_eq!(
        core.step(30, ack("f", "t", &ids[0])),
        vec![send("f", status("t", TaskState::TaskRunning, 20, &ids[1]))]
    );
}

#[test]
fn a_clean_exit_finishes_the_task_and_its_acknowledgement_forgets_it() {
    let ids = ids();
    let mut core = running_core();
    let mut finished = status("t", TaskState::TaskFinished, 50, &ids[2]);
    finished.reason = TaskStatusReason::CommandExited;
    finished.message = "Command exited with status 0".into();
    finished.exit_code = Some(0);
    assert_eq!(
        core.step(50, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(0), limitation: None }),
        vec![send("f", finished)]
    );
    assert_eq!(
        core.step(60, ack("f", "t", &ids[2])),
        vec![Output::TaskRemoved { framework_id: fw("f"), task_id: TaskId::new("t"), run: RunId(1) }]
    );
    assert_eq!(core.tasks().count(), 0);
    assert_eq!(core.next_deadline_ms(), None);
}

#[test]
fn a_nonzero_exit_fails_the_task_with_its_exit_code() {
    let ids = ids();
    let mut core = running_core();
    let mut failed = status("t", TaskState::TaskFailed, 50, &ids[2]);
    failed.reason = TaskStatusReason::CommandExited;
    failed.message = "Command exited with status 3".into();
    failed.exit_code = Some(3);
    assert_eq!(
        core.step(50, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(3), limitation: None }),
        vec![send("f", failed)]
    );
}

#[test]
fn a_process_killed_by_a_signal_fails_the_task_naming_the_signal() {
    let ids = ids();
    let mut core = running_core();
    let mut failed = status("t", TaskState::TaskFailed, 50, &ids[2]);
    failed.reason = TaskStatusReason::CommandExited;
    failed.message = "Command terminated by signal 9 (SIGKILL)".into();
    failed.signal = Some(9);
    assert_eq!(
        core.step(50, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(9), limitation: None }),
        vec![send("f", failed)]
    );
}

#[test]
fn updates_queue_in_order_behind_the_outstanding_one() {
    let ids = ids();
    let mut core = registered_core();
    core.step(10, run("f", "t"));
    core.step(20, started(1, 100));
    assert_eq!(
        core.step(30, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(0), limitation: None }),
        vec![]
    );
    assert_eq!(core.tasks().map(|t| (t.state, t.pending_updates)).collect::<Vec<_>>(), [(TaskState::TaskFinished, 3)]);
    assert_eq!(
        core.step(40, ack("f", "t", &ids[0])),
        vec![send("f", status("t", TaskState::TaskRunning, 20, &ids[1]))]
    );
    let out = core.step(50, ack("f", "t", &ids[1]));
    assert!(
        matches!(&out[..], [Output::SendUpdate { status, .. }] if status.state == TaskState::TaskFinished && status.timestamp_ms == 30)
    );
}

#[test]
fn an_unacknowledged_update_is_resent_with_doubling_jittered_delays_up_to_the_cap() {
    let ids = ids();
    let mut core = registered_core();
    core.step(0, run("f", "t"));
    let starting = send("f", status("t", TaskState::TaskStarting, 0, &ids[0]));
    let mut sent_at = 0;
    let mut nominal = 1_000;
    for _ in 0..10 {
        let due = core.next_deadline_ms().expect("a resend is scheduled");
        let delay = due - sent_at;
        assert!(delay >= nominal / 2 && delay <= nominal, "delay {delay} outside [{}, {nominal}]", nominal / 2);
        assert_eq!(core.step(due - 1, Input::Tick), vec![], "nothing is resent early");
        assert_eq!(core.step(due, Input::Tick), vec![starting.clone()]);
        sent_at = due;
        nominal = (nominal * 2).min(60_000);
    }
    assert_eq!(nominal, 60_000);
    assert_eq!(core.step(sent_at, ack("f", "t", &ids[0])), vec![]);
    assert_eq!(core.next_deadline_ms(), None, "an acknowledged update is not resent");
}

#[test]
fn a_duplicate_or_unknown_acknowledgement_changes_nothing() {
    let ids = ids();
    let mut core = running_core();
    let deadline = core.next_deadline_ms();
    assert_eq!(core.step(50, ack("f", "t", &ids[0])), vec![]);
    assert_eq!(core.step(50, ack("f", "t", &ids[5])), vec![]);
    assert_eq!(core.step(50, ack("f", "nope", &ids[0])), vec![]);
    assert_eq!(core.next_deadline_ms(), deadline);
    assert_eq!(core.tasks().map(|t| t.pending_updates).collect::<Vec<_>>(), [0]);
}

#[test]
fn updates_wait_while_disconnected_and_go_out_when_the_agent_registers_again() {
    let ids = ids();
    let mut core = running_core();
    assert_eq!(core.step(50, Input::Disconnected), vec![]);
    assert_eq!(
        core.step(60, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(3), limitation: None }),
        vec![]
    );
    assert_eq!(core.next_deadline_ms(), None, "nothing is resent while disconnected");
    assert_eq!(core.step(100_000, Input::Tick), vec![]);
    let out = core.step(100_010, Input::Registered { agent_id: AgentId::new(AGENT) });
    assert!(matches!(&out[..], [Output::SendUpdate { status, .. }]
        if status.state == TaskState::TaskFailed && status.uuid.as_ref() == Some(&ids[2]) && status.timestamp_ms == 60));
    let due = core.next_deadline_ms().expect("resend scheduled");
    assert!((100_510..=101_010).contains(&due), "backoff starts afresh: {due}");
}

#[test]
fn a_kill_sends_term_then_kill_to_the_group_after_the_grace_period() {
    let ids = ids();
    let mut core = running_core();
    let kill = Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms: None };
    assert_eq!(core.step(1_000, kill), vec![Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Term }]);
    assert_eq!(core.next_deadline_ms(), Some(4_000));
    assert_eq!(core.step(3_999, Input::Tick), vec![]);
    assert_eq!(
        core.step(4_000, Input::Tick),
        vec![Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Kill }]
    );
    assert_eq!(core.step(4_001, Input::Tick), vec![], "SIGKILL is sent once");
    let mut killed = status("t", TaskState::TaskKilled, 4_010, &ids[2]);
    killed.reason = TaskStatusReason::TaskKilled;
    killed.message = "Task killed: command terminated by signal 9 (SIGKILL)".into();
    killed.signal = Some(9);
    assert_eq!(
        core.step(4_010, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(9), limitation: None }),
        vec![send("f", killed)]
    );
}

#[test]
fn the_grace_period_comes_from_the_kill_then_the_task_then_the_agent() {
    let kill = |grace_period_ms| Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms };
    let mut core = running_core();
    core.step(1_000, kill(Some(500)));
    assert_eq!(core.next_deadline_ms(), Some(1_500), "the kill's own grace period");

    let mut core = Core::new(config(), SEED);
    core.step(0, Input::Registered { agent_id: AgentId::new(AGENT) });
    let mut info = task("t");
    info.kill_grace_period_ms = Some(7_000);
    core.step(0, Input::RunTask { framework_id: fw("f"), framework: None, task: Box::new(info) });
    core.step(0, started(1, 100));
    core.step(0, ack("f", "t", &ids()[0]));
    core.step(0, ack("f", "t", &ids()[1]));
    core.step(1_000, kill(None));
    assert_eq!(core.next_deadline_ms(), Some(8_000), "the task's grace period");

    let mut core = running_core();
    core.step(1_000, kill(None));
    assert_eq!(core.next_deadline_ms(), Some(4_000), "the agent's default");
    core.step(2_000, kill(Some(0)));
    assert_eq!(core.next_deadline_ms(), None, "a second, shorter kill escalates at once");
}

#[test]
fn a_zero_grace_period_sends_term_and_kill_together() {
    let mut core = running_core();
    let kill = Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms: Some(0) };
    assert_eq!(
        core.step(1_000, kill),
        vec![
            Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Term },
            Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Kill },
        ]
    );
}

#[test]
fn a_task_killed_before_its_process_started_is_signalled_as_it_starts_and_never_reports_running() {
    let ids = ids();
    let mut core = registered_core();
    core.step(10, run("f", "t"));
    let kill = Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms: Some(200) };
    assert_eq!(core.step(11, kill), vec![]);
    assert_eq!(
        core.step(12, started(1, 100)),
        vec![Output::Signal { run: RunId(1), pid: 100, signal: KillSignal::Term }]
    );
    assert_eq!(core.next_deadline_ms(), Some(212));
    core.step(13, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(15), limitation: None });
    let out = core.step(14, ack("f", "t", &ids[0]));
    let mut killed = status("t", TaskState::TaskKilled, 13, &ids[1]);
    killed.reason = TaskStatusReason::TaskKilled;
    killed.message = "Task killed: command terminated by signal 15 (SIGTERM)".into();
    killed.signal = Some(15);
    assert_eq!(out, vec![send("f", killed)]);
}

#[test]
fn a_task_killed_while_its_launch_fails_is_reported_killed_during_launch() {
    let mut core = registered_core();
    core.step(10, run("f", "t"));
    core.step(11, Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("t"), grace_period_ms: None });
    core.step(12, Input::LaunchFailed { run: RunId(1), error: "no such file".into() });
    let states: Vec<_> = core.tasks().map(|t| t.state).collect();
    assert_eq!(states, [TaskState::TaskKilled]);
}

#[test]
fn killing_an_unknown_task_reports_it_lost_without_asking_for_an_acknowledgement() {
    let mut core = registered_core();
    let out =
        core.step(5, Input::KillTask { framework_id: fw("f"), task_id: TaskId::new("ghost"), grace_period_ms: None });
    let mut lost = status("ghost", TaskState::TaskLost, 5, &ids()[0]);
    lost.uuid = None;
    lost.reason = TaskStatusReason::TaskUnknown;
    lost.message = "the agent does not know this task".into();
    assert_eq!(out, vec![send("f", lost)]);
    assert_eq!(core.next_deadline_ms(), None);
}

#[test]
fn a_launch_failure_fails_the_task_with_command_launch_failed() {
    let ids = ids();
    let mut core = registered_core();
    core.step(10, run("f", "t"));
    assert_eq!(core.step(11, Input::LaunchFailed { run: RunId(1), error: "No such file or directory".into() }), vec![]);
    let mut failed = status("t", TaskState::TaskFailed, 11, &ids[1]);
    failed.reason = TaskStatusReason::CommandLaunchFailed;
    failed.message = "Failed to launch the command: No such file or directory".into();
    assert_eq!(core.step(12, ack("f", "t", &ids[0])), vec![send("f", failed)]);
    assert_eq!(
        core.step(13, ack("f", "t", &ids[1])),
        vec![Output::TaskRemoved { framework_id: fw("f"), task_id: TaskId::new("t"), run: RunId(1) }]
    );
}

#[test]
fn shutting_down_a_framework_kills_only_its_tasks() {
    let mut core = registered_core();
    core.step(0, run("a", "t1"));
    core.step(0, run("b", "t2"));
    core.step(0, run("a", "t3"));
    core.step(0, started(1, 101));
    core.step(0, started(2, 102));
    core.step(0, started(3, 103));
    assert_eq!(
        core.step(10, Input::ShutdownFramework { framework_id: fw("a") }),
        vec![
            Output::Signal { run: RunId(1), pid: 101, signal: KillSignal::Term },
            Output::Signal { run: RunId(3), pid: 103, signal: KillSignal::Term },
        ]
    );
}

#[test]
fn shutting_down_a_framework_drops_its_pending_updates_and_forgets_its_tasks_but_not_others() {
    let mut core = registered_core();
    core.step(0, run("a", "done"));
    core.step(0, run("b", "other"));
    core.step(0, run("a", "live"));
    core.step(0, started(1, 101));
    core.step(0, started(2, 102));
    core.step(0, started(3, 103));
    // a/done ended and its updates were never acknowledged (the framework tore down in the
    // callback of the last one); a/live and b/other still run with updates outstanding.
    core.step(5, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(0), limitation: None });
    core.take_checkpoints();
    let pending = |core: &Core| -> Vec<(String, usize)> {
        core.tasks().map(|t| (format!("{}/{}", t.framework_id, t.info.task_id), t.pending_updates)).collect()
    };
    assert_eq!(pending(&core), [("a/done".to_owned(), 3), ("a/live".to_owned(), 2), ("b/other".to_owned(), 2)]);

    assert_eq!(
        core.step(10, Input::ShutdownFramework { framework_id: fw("a") }),
        vec![
            Output::TaskRemoved { framework_id: fw("a"), task_id: TaskId::new("done"), run: RunId(1) },
            Output::Signal { run: RunId(3), pid: 103, signal: KillSignal::Term },
        ]
    );
    assert_eq!(pending(&core), [("a/live".to_owned(), 0), ("b/other".to_owned(), 2)]);
    let checkpoints = core.take_checkpoints();
    assert!(
        matches!(&checkpoints[..], [Checkpoint::Remove { run: RunId(1) }, Checkpoint::Save(record)]
            if record.run == RunId(3) && record.pending.is_empty()),
        "the ended task's record is deleted, the live one's saved without its updates: {checkpoints:?}"
    );

    // Only the other framework's update is ever resent.
    let later = core.step(1_000_000, Input::Tick);
    assert!(
        later.iter().all(|o| !matches!(o, Output::SendUpdate { framework_id, .. } if *framework_id == fw("a"))),
        "{later:?}"
    );
    assert!(later.iter().any(|o| matches!(o, Output::SendUpdate { framework_id, .. } if *framework_id == fw("b"))));

    // The killed task ends without an update and is forgotten.
    assert_eq!(
        core.step(1_000_001, Input::ProcessExited { run: RunId(3), exit: ProcessExit::Signal(15), limitation: None }),
        vec![Output::TaskRemoved { framework_id: fw("a"), task_id: TaskId::new("live"), run: RunId(3) }]
    );
    assert_eq!(core.take_checkpoints(), vec![Checkpoint::Remove { run: RunId(3) }]);
    assert_eq!(pending(&core), [("b/other".to_owned(), 2)]);
}

#[test]
fn a_task_launching_when_its_framework_is_shut_down_is_killed_as_it_starts_and_forgotten_without_an_update() {
    let mut core = registered_core();
    core.step(0, run("a", "t1"));
    core.step(0, run("a", "t2"));
    assert_eq!(core.step(10, Input::ShutdownFramework { framework_id: fw("a") }), vec![]);
    assert_eq!(
        core.step(20, started(1, 101)),
        vec![Output::Signal { run: RunId(1), pid: 101, signal: KillSignal::Term }]
    );
    assert_eq!(
        core.step(30, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(15), limitation: None }),
        vec![Output::TaskRemoved { framework_id: fw("a"), task_id: TaskId::new("t1"), run: RunId(1) }]
    );
    assert_eq!(
        core.step(40, Input::LaunchFailed { run: RunId(2), error: "No such file or directory".into() }),
        vec![Output::TaskRemoved { framework_id: fw("a"), task_id: TaskId::new("t2"), run: RunId(2) }]
    );
    assert_eq!(core.tasks().count(), 0);
    assert_eq!(core.next_deadline_ms(), None);
}

#[test]
fn a_reset_kills_every_process_at_once_and_forgets_every_task_and_the_agent_id() {
    let mut core = registered_core();
    core.step(0, run("a", "t1"));
    core.step(0, run("b", "t2"));
    core.step(0, started(1, 101));
    assert_eq!(
        core.step(10, Input::Reset),
        vec![
            Output::Signal { run: RunId(1), pid: 101, signal: KillSignal::Kill },
            Output::TaskRemoved { framework_id: fw("a"), task_id: TaskId::new("t1"), run: RunId(1) },
            Output::TaskRemoved { framework_id: fw("b"), task_id: TaskId::new("t2"), run: RunId(2) },
        ]
    );
    assert_eq!(core.agent_id(), None);
    assert_eq!(core.tasks().count(), 0);
    assert_eq!(
        core.step(20, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Signal(9), limitation: None }),
        vec![]
    );
    assert_eq!(core.step(20, Input::ProcessStarted { run: RunId(2), pid: 102, sandbox: "x".into() }), vec![]);
}

#[test]
fn a_second_launch_of_a_task_the_agent_still_holds_is_ignored() {
    let mut core = running_core();
    assert_eq!(core.step(50, run("f", "t")), vec![]);
    assert_eq!(core.tasks().count(), 1);
}

#[test]
fn a_task_id_may_be_reused_once_the_task_is_gone() {
    let ids = ids();
    let mut core = running_core();
    core.step(50, Input::ProcessExited { run: RunId(1), exit: ProcessExit::Code(0), limitation: None });
    core.step(60, ack("f", "t", &ids[2]));
    assert_eq!(
        core.step(70, run("f", "t")),
        vec![
            Output::Launch { run: RunId(2), framework_id: fw("f"), task: Box::new(task("t")) },
            send("f", status("t", TaskState::TaskStarting, 70, &ids[3])),
        ]
    );
}

#[test]
fn a_task_beyond_the_limit_is_dropped_without_an_acknowledgement() {
    let mut core = registered_core();
    for i in 0..10 {
        core.step(0, run("f", &format!("t{i}")));
    }
    let out = core.step(1, run("f", "one-too-many"));
    assert!(matches!(&out[..], [Output::SendUpdate { status, .. }]
        if status.state == TaskState::TaskDropped && status.uuid.is_none()));
    assert_eq!(core.tasks().count(), 10);
}

#[test]
fn a_drain_kills_every_task_and_drops_tasks_launched_after_it_without_an_acknowledgement() {
    let mut core = registered_core();
    core.step(0, run("a", "t1"));
    core.step(0, run("b", "t2"));
    core.step(0, started(1, 101));
    core.step(0, started(2, 102));
    assert_eq!(
        core.step(10, Input::KillAll),
        vec![
            Output::Signal { run: RunId(1), pid: 101, signal: KillSignal::Term },
            Output::Signal { run: RunId(2), pid: 102, signal: KillSignal::Term },
        ]
    );
    let out = core.step(20, run("a", "late"));
    assert!(
        matches!(&out[..], [Output::SendUpdate { status, .. }]
        if status.state == TaskState::TaskDropped && status.uuid.is_none() && status.message.contains("draining")),
        "{out:?}"
    );
    assert_eq!(core.tasks().count(), 2);
}

#[test]
fn the_same_seed_and_inputs_give_the_same_outputs() {
    let script = |core: &mut Core| {
        let mut all = Vec::new();
        all.extend(core.step(0, Input::Registered { agent_id: AgentId::new(AGENT) }));
        all.extend(core.step(1, run("f", "t")));
        for now in (0..100_000).step_by(700) {
            all.extend(core.step(now, Input::Tick));
        }
        (all, core.next_deadline_ms())
    };
    let (a, b) = (script(&mut Core::new(config(), 9)), script(&mut Core::new(config(), 9)));
    assert_eq!(a, b);
    assert!(a.0.len() > 5, "updates were resent");
}
