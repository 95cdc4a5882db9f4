//! Exact-output tests of the run state machine, one rule each, and a seeded simulation
//! with faults (`simulation.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::model::{
    AgentDescription, AgentId, Attribute, FrameworkId, Offer, OfferId, Resources, Role, TaskId, TaskInfo, TaskState,
    TaskStatus, TaskStatusReason,
};
use jiff::Timestamp;

use super::{Command, CoreConfig, CoreError, Cron, Input, Output, Reply, StoreOp};
use crate::model::{
    ConcurrencyPolicy, Constraint, ConstraintOp, JobName, JobSpec, MissedRunPolicy, RunKey, RunRecord, RunState,
    RunTrigger, Schedule, Trigger,
};

mod dependencies;
mod simulation;

/// 2026-03-02T10:00:00Z, a Monday.
pub(crate) fn t0() -> Timestamp {
    "2026-03-02T10:00:00Z".parse().expect("a valid time")
}

/// `t0` plus `secs` seconds.
pub(crate) fn at(secs: i64) -> Timestamp {
    t0().checked_add(jiff::SignedDuration::from_secs(secs)).expect("in range")
}

pub(crate) fn name(n: &str) -> JobName {
    JobName::new(n)
}

/// A job every minute from `t0`, 0.1 CPU and 64 MiB, Chronos' defaults otherwise.
pub(crate) fn every_minute(n: &str) -> JobSpec {
    let schedule = Schedule::parse("R/2026-03-02T10:00:00Z/PT1M", None, t0()).expect("a valid schedule");
    spec(n, Trigger::Schedule(schedule))
}

pub(crate) fn child_of(n: &str, parents: &[&str]) -> JobSpec {
    spec(n, Trigger::Parents(parents.iter().map(|p| name(p)).collect()))
}

pub(crate) fn spec(n: &str, trigger: Trigger) -> JobSpec {
    JobSpec {
        name: name(n),
        command: "echo hi".into(),
        shell: true,
        arguments: Vec::new(),
        cpus_milli: 100,
        mem_mib: 64,
        disk_mib: 0,
        owner: "ops@example.com".into(),
        owner_name: String::new(),
        description: String::new(),
        run_as_user: None,
        retries: 0,
        disabled: false,
        concurrent: false,
        concurrency_policy: ConcurrencyPolicy::Forbid,
        constraints: Vec::new(),
        environment: BTreeMap::new(),
        epsilon: Duration::from_secs(30),
        trigger,
        starting_deadline: None,
        missed_runs: MissedRunPolicy::Skip,
        max_completion_time: None,
        fetch: Vec::new(),
        created_at: t0(),
        version: t0(),
    }
}

/// A core subscribed at `t0` as `fw-1`, its outputs so far taken.
pub(crate) fn cron() -> Cron {
    let mut cron = Cron::new(CoreConfig::default());
    cron.input(t0(), Input::Subscribed { framework_id: FrameworkId::new("fw-1") });
    cron.take_outputs();
    cron
}

/// `cron` with `jobs` put at `t0 - 1 s`, outputs taken.
pub(crate) fn with_jobs(jobs: Vec<JobSpec>) -> Cron {
    let mut cron = cron();
    for job in jobs {
        cron.command(at(-1), Command::PutJob(Box::new(job))).expect("a valid job");
    }
    cron.take_outputs();
    cron
}

pub(crate) fn offer(n: u32, host: &str, resources: &str) -> Offer {
    offer_with(n, host, resources, &[])
}

pub(crate) fn offer_with(n: u32, host: &str, resources: &str, attributes: &[(&str, &str)]) -> Offer {
    Offer {
        id: OfferId::new(format!("offer-{n}")),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new(format!("agent-{host}")),
        resources: Resources::parse(resources).expect("test resources parse"),
        agent: Arc::new(AgentDescription {
            unavailability: None,
            hostname: host.into(),
            attributes: attributes
                .iter()
                .map(|(name, value)| Attribute { name: (*name).into(), value: (*value).into() })
                .collect(),
            url: format!("http://{host}:5051"),
        }),
        allocation_role: Role::unreserved(),
    }
}

pub(crate) fn status(task_id: &TaskId, state: TaskState) -> TaskStatus {
    TaskStatus::from_master(task_id.clone(), Some(AgentId::new("agent-a")), state, TaskStatusReason::Unspecified, "", 0)
}

pub(crate) fn key(job: &str, scheduled: Timestamp) -> RunKey {
    RunKey { job: name(job), scheduled }
}

/// The tasks the outputs launch.
pub(crate) fn launched(outputs: &[Output]) -> Vec<TaskInfo> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Launch { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The outputs in short: `put-run job@time state attempt`, `put-job job`, `launch task`,
/// `kill task`, `decline`, `revive`, `suppress`, `reconcile n`, `delete-run`, …
pub(crate) fn shape(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| match o {
            Output::Persist(StoreOp::PutRun(run)) => format!(
                "put-run {} {} {}{}",
                run.key,
                run.state.name(),
                run.attempt,
                run.killing.map(|k| format!(" killing={k:?}")).unwrap_or_default()
            ),
            Output::Persist(StoreOp::PutJob(job)) => format!("put-job {}", job.spec.name),
            Output::Persist(StoreOp::DeleteJob(job)) => format!("delete-job {job}"),
            Output::Persist(StoreOp::DeleteRun(key)) => format!("delete-run {key}"),
            Output::Persist(StoreOp::FrameworkId(id)) => format!("framework-id {id}"),
            Output::Launch { tasks, .. } => {
                format!("launch {}", tasks.iter().map(|t| t.task_id.to_string()).collect::<Vec<_>>().join(","))
            }
            Output::Decline { refuse_seconds, .. } => format!("decline {refuse_seconds}"),
            Output::Kill { task_id, .. } => format!("kill {task_id}"),
            Output::Reconcile(tasks) => format!("reconcile {}", tasks.len()),
            Output::Revive => "revive".into(),
            Output::Suppress => "suppress".into(),
        })
        .collect()
}

/// The job's final runs, as (scheduled, state name).
pub(crate) fn history(cron: &Cron, job: &str) -> Vec<(Timestamp, String)> {
    cron.history(&name(job)).map(|r| (r.scheduled, r.state.to_owned())).collect()
}

pub(crate) fn active(cron: &Cron, job: &str) -> Vec<RunRecord> {
    let n = name(job);
    cron.active_runs(&n).cloned().collect()
}

/// Makes the run due at `at(secs)` pending, launches it on agent `a`, and answers
/// RUNNING; its task id.
pub(crate) fn launch_and_run(cron: &mut Cron, secs: i64) -> TaskId {
    cron.input(at(secs), Input::Tick);
    cron.input(at(secs), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let tasks = launched(&cron.take_outputs());
    let task = tasks.first().expect("a launch").task_id.clone();
    cron.input(at(secs), Input::Update(status(&task, TaskState::TaskRunning)));
    cron.take_outputs();
    task
}

#[test]
fn a_due_run_is_recorded_pending_and_offers_are_asked_for_before_it_is_due() {
    let mut cron = cron();
    cron.command(at(-10), Command::PutJob(Box::new(every_minute("etl")))).expect("valid");
    // Due within the offer lead: offers are wanted at once.
    assert_eq!(shape(&cron.take_outputs()), ["put-job etl", "revive"]);
    cron.input(at(-1), Input::Tick);
    assert_eq!(shape(&cron.take_outputs()), Vec::<String>::new());
    cron.input(at(0), Input::Tick);
    assert_eq!(shape(&cron.take_outputs()), ["put-run etl@2026-03-02T10:00:00Z pending 1", "put-job etl"]);
    assert_eq!(cron.job(&name("etl")).and_then(|j| j.last_scheduled), Some(at(0)));
    assert_eq!(cron.next_wake(), Some(at(30)), "the pending run's deadline comes before the next minute");
}

#[test]
fn an_offer_launches_the_pending_run_as_its_derived_task_id_recorded_launched_first() {
    let fetch = vec![agora_proto::model::FetchUri::plain("http://repo/etl.tgz")];
    let mut cron = with_jobs(vec![JobSpec { fetch: fetch.clone(), ..every_minute("etl") }]);
    cron.input(at(0), Input::Tick);
    cron.take_outputs();
    cron.input(at(0), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let outputs = cron.take_outputs();
    // Nothing else is due within the offer lead: offers are suppressed after the launch.
    assert_eq!(
        shape(&outputs),
        ["put-run etl@2026-03-02T10:00:00Z launched 1", "launch cron.etl.1772445600000.1", "suppress"]
    );
    let task = &launched(&outputs)[0];
    assert_eq!(task.command.shell.as_deref(), Some("echo hi"));
    assert_eq!(task.command.environment["AGORA_CRON_SCHEDULED_MS"], "1772445600000");
    assert_eq!(task.command.environment["CHRONOS_JOB_NAME"], "etl");
    assert_eq!(task.command.uris, fetch, "the job's files are fetched for the run");
    assert_eq!(task.resources, Resources::parse("cpus:0.1;mem:64").expect("parse"));
}

#[test]
fn an_offer_too_small_or_with_nothing_pending_is_declined() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    cron.input(at(0), Input::Tick);
    cron.take_outputs();
    cron.input(at(0), Input::Offers(vec![offer(1, "a", "cpus:0.05;mem:1000")]));
    assert_eq!(shape(&cron.take_outputs()), ["decline 1"]);
}

#[test]
fn a_finished_task_succeeds_the_run_and_counts_it() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    let task = launch_and_run(&mut cron, 0);
    cron.input(at(5), Input::Update(status(&task, TaskState::TaskFinished)));
    assert_eq!(shape(&cron.take_outputs()), ["put-job etl", "put-run etl@2026-03-02T10:00:00Z succeeded 1"]);
    let counters = &cron.job(&name("etl")).expect("kept").counters;
    assert_eq!((counters.success_count, counters.error_count, counters.last_success), (1, 0, Some(at(5))));
    assert_eq!(history(&cron, "etl"), [(at(0), "succeeded".to_owned())]);
}

#[test]
fn a_failed_task_is_retried_under_the_next_attempt_until_retries_are_spent() {
    let mut cron = with_jobs(vec![JobSpec { retries: 1, ..every_minute("etl") }]);
    let task = launch_and_run(&mut cron, 0);
    cron.input(at(2), Input::Update(status(&task, TaskState::TaskFailed)));
    // Offers were suppressed once the first attempt launched; the retry wants them again.
    assert_eq!(shape(&cron.take_outputs()), ["put-run etl@2026-03-02T10:00:00Z pending 2", "revive"]);
    cron.input(at(3), Input::Offers(vec![offer(2, "a", "cpus:1;mem:1000")]));
    let outputs = cron.take_outputs();
    assert_eq!(
        shape(&outputs),
        ["put-run etl@2026-03-02T10:00:00Z launched 2", "launch cron.etl.1772445600000.2", "suppress"]
    );
    let second = launched(&outputs)[0].task_id.clone();
    cron.input(at(4), Input::Update(status(&second, TaskState::TaskFailed)));
    assert_eq!(shape(&cron.take_outputs()), ["put-job etl", "put-run etl@2026-03-02T10:00:00Z failed 2"]);
    let counters = &cron.job(&name("etl")).expect("kept").counters;
    assert_eq!((counters.error_count, counters.errors_since_last_success, counters.last_error), (1, 1, Some(at(4))));
}

#[test]
fn a_run_past_its_max_completion_time_is_killed_and_recorded_timed_out() {
    let mut cron =
        with_jobs(vec![JobSpec { max_completion_time: Some(Duration::from_secs(10)), ..every_minute("etl") }]);
    let task = launch_and_run(&mut cron, 0);
    assert_eq!(cron.next_wake(), Some(at(10)));
    cron.input(at(10), Input::Tick);
    assert_eq!(
        shape(&cron.take_outputs()),
        ["put-run etl@2026-03-02T10:00:00Z running 1 killing=Timeout", "kill cron.etl.1772445600000.1"]
    );
    cron.input(at(20), Input::Tick);
    assert_eq!(shape(&cron.take_outputs()), ["kill cron.etl.1772445600000.1"], "an unconfirmed kill is sent again");
    cron.input(at(21), Input::Update(status(&task, TaskState::TaskKilled)));
    assert_eq!(
        shape(&cron.take_outputs()),
        ["put-job etl", "put-run etl@2026-03-02T10:00:00Z timed_out 1 killing=Timeout"]
    );
}

#[test]
fn forbid_records_a_due_run_missed_while_the_previous_one_is_in_flight() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    launch_and_run(&mut cron, 0);
    cron.input(at(60), Input::Tick);
    let outputs = cron.take_outputs();
    assert_eq!(shape(&outputs), ["put-run etl@2026-03-02T10:01:00Z missed 1", "put-job etl"]);
    let Output::Persist(StoreOp::PutRun(run)) = &outputs[0] else { panic!("a run") };
    assert_eq!(
        run.state,
        RunState::Missed {
            reason: "the run scheduled at 2026-03-02T10:00:00Z was still in flight, and the concurrency policy \
                     is Forbid"
                .into()
        }
    );
}

#[test]
fn replace_kills_the_run_in_flight_and_starts_the_new_one() {
    let mut cron = with_jobs(vec![JobSpec { concurrency_policy: ConcurrencyPolicy::Replace, ..every_minute("etl") }]);
    let task = launch_and_run(&mut cron, 0);
    cron.input(at(60), Input::Tick);
    assert_eq!(
        shape(&cron.take_outputs()),
        [
            "put-run etl@2026-03-02T10:00:00Z running 1 killing=Replaced",
            "kill cron.etl.1772445600000.1",
            "put-run etl@2026-03-02T10:01:00Z pending 1",
            "put-job etl",
            "revive"
        ]
    );
    cron.input(at(61), Input::Update(status(&task, TaskState::TaskKilled)));
    assert_eq!(
        shape(&cron.take_outputs()),
        ["put-job etl", "put-run etl@2026-03-02T10:00:00Z killed 1 killing=Replaced"]
    );
}

#[test]
fn allow_starts_a_due_run_beside_the_one_in_flight() {
    let mut cron = with_jobs(vec![JobSpec { concurrency_policy: ConcurrencyPolicy::Allow, ..every_minute("etl") }]);
    launch_and_run(&mut cron, 0);
    cron.input(at(60), Input::Tick);
    assert_eq!(shape(&cron.take_outputs()), ["put-run etl@2026-03-02T10:01:00Z pending 1", "put-job etl", "revive"]);
    assert_eq!(active(&cron, "etl").len(), 2);
}

#[test]
fn a_pending_run_that_no_offer_fits_within_its_window_is_recorded_missed_with_the_reason() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    cron.input(at(0), Input::Tick);
    cron.take_outputs();
    cron.input(at(30), Input::Tick);
    assert_eq!(shape(&cron.take_outputs()), Vec::<String>::new(), "the window includes its end");
    cron.input(at(31), Input::Tick);
    let outputs = cron.take_outputs();
    assert_eq!(shape(&outputs), ["put-run etl@2026-03-02T10:00:00Z missed 1", "suppress"]);
    let Output::Persist(StoreOp::PutRun(run)) = &outputs[0] else { panic!("a run") };
    assert_eq!(
        run.state,
        RunState::Missed { reason: "no offer could launch it before its deadline 2026-03-02T10:00:30Z".into() }
    );
}

#[test]
fn runs_missed_while_down_are_recorded_missed_or_caught_up_by_the_policy() {
    let mut cron = with_jobs(vec![
        every_minute("skip"),
        JobSpec { missed_runs: MissedRunPolicy::Latest, ..every_minute("latest") },
    ]);
    // Down from before 10:00 until 10:02:45: three times passed their window.
    cron.input(at(165), Input::Tick);
    assert_eq!(history(&cron, "skip").len(), 3);
    assert!(history(&cron, "skip").iter().all(|(_, state)| state == "missed"));
    assert_eq!(history(&cron, "latest").iter().map(|(t, _)| *t).collect::<Vec<_>>(), [at(0), at(60)]);
    let caught_up = active(&cron, "latest");
    assert_eq!(caught_up.len(), 1);
    assert_eq!((caught_up[0].key.scheduled, caught_up[0].deadline), (at(120), Some(at(195))));
}

#[test]
fn a_disabled_job_never_runs_by_its_schedule_but_runs_when_asked() {
    let mut cron = with_jobs(vec![JobSpec { disabled: true, ..every_minute("etl") }]);
    cron.input(at(600), Input::Tick);
    assert_eq!(shape(&cron.take_outputs()), Vec::<String>::new());
    assert_eq!(cron.next_wake(), None);
    let reply = cron.command(at(601), Command::RunNow { name: name("etl"), arguments: vec!["--full".into()] });
    assert_eq!(reply, Ok(Reply::Started(key("etl", at(601)))));
    assert_eq!(shape(&cron.take_outputs()), ["put-run etl@2026-03-02T10:10:01Z pending 1", "revive"]);
    cron.input(at(601), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let tasks = launched(&cron.take_outputs());
    assert_eq!(tasks[0].command.shell.as_deref(), Some("echo hi --full"));
}

#[test]
fn two_manual_runs_in_one_instant_are_two_runs() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    let first = cron.command(at(5), Command::RunNow { name: name("etl"), arguments: vec![] });
    let second = cron.command(at(5), Command::RunNow { name: name("etl"), arguments: vec![] });
    assert_ne!(first, second);
    assert_eq!(active(&cron, "etl").len(), 2);
    assert!(active(&cron, "etl").iter().all(|r| matches!(r.trigger, RunTrigger::Manual { .. })));
}

#[test]
fn commands_on_unknown_jobs_are_refused_naming_the_job() {
    let mut cron = cron();
    for command in [
        Command::RunNow { name: name("nope"), arguments: vec![] },
        Command::MarkSuccess { name: name("nope") },
        Command::KillRuns { name: name("nope") },
        Command::DeleteJob { name: name("nope"), force: true },
    ] {
        assert_eq!(cron.command(t0(), command), Err(CoreError::NotFound(name("nope"))));
        assert_eq!(cron.take_outputs(), Vec::new());
    }
}

#[test]
fn kill_ends_a_pending_run_at_once_and_kills_a_launched_one() {
    let mut cron = with_jobs(vec![JobSpec { concurrency_policy: ConcurrencyPolicy::Allow, ..every_minute("etl") }]);
    let task = launch_and_run(&mut cron, 0);
    cron.input(at(60), Input::Tick);
    cron.take_outputs();
    assert_eq!(cron.command(at(61), Command::KillRuns { name: name("etl") }), Ok(Reply::Killed(2)));
    assert_eq!(
        shape(&cron.take_outputs()),
        [
            "put-run etl@2026-03-02T10:00:00Z running 1 killing=User",
            "kill cron.etl.1772445600000.1",
            "put-job etl",
            "put-run etl@2026-03-02T10:01:00Z killed 1 killing=User",
            "suppress",
        ]
    );
    cron.input(at(62), Input::Update(status(&task, TaskState::TaskKilled)));
    assert_eq!(history(&cron, "etl"), [(at(0), "killed".to_owned()), (at(60), "killed".to_owned())]);
    assert_eq!(cron.job(&name("etl")).expect("kept").counters.error_count, 2);
}

#[test]
fn the_history_keeps_the_latest_runs_of_each_job_and_deletes_the_rest() {
    let mut cron = Cron::new(CoreConfig { history_per_job: 2, ..CoreConfig::default() });
    cron.command(at(-1), Command::PutJob(Box::new(every_minute("etl")))).expect("valid");
    for minute in 0..3 {
        cron.input(at(minute * 60 + 31), Input::Tick);
    }
    let outputs = shape(&cron.take_outputs());
    assert!(outputs.contains(&"delete-run etl@2026-03-02T10:00:00Z".to_owned()), "{outputs:?}");
    assert_eq!(history(&cron, "etl").iter().map(|(t, _)| *t).collect::<Vec<_>>(), [at(60), at(120)]);
}

#[test]
fn a_dropped_launch_is_launched_again_under_the_next_attempt_within_its_window() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    cron.input(at(0), Input::Tick);
    cron.input(at(0), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let task = launched(&cron.take_outputs())[0].task_id.clone();
    cron.input(at(1), Input::Update(status(&task, TaskState::TaskDropped)));
    assert_eq!(shape(&cron.take_outputs()), ["put-run etl@2026-03-02T10:00:00Z pending 2", "revive"]);
    let run = &active(&cron, "etl")[0];
    assert_eq!((run.failures, run.deadline), (0, Some(at(30))), "a drop is no failure and keeps the window");
}

#[test]
fn a_task_the_master_cannot_account_for_counts_as_failed_never_as_not_started() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    let task = launch_and_run(&mut cron, 0);
    cron.input(at(3), Input::Update(status(&task, TaskState::TaskUnknown)));
    assert_eq!(shape(&cron.take_outputs()), ["put-job etl", "put-run etl@2026-03-02T10:00:00Z failed 1"]);
}

#[test]
fn a_task_no_run_holds_is_killed_unless_it_ended() {
    let mut cron = cron();
    let stray = TaskId::new("cron.old.1.1");
    cron.input(t0(), Input::Update(status(&stray, TaskState::TaskRunning)));
    assert_eq!(shape(&cron.take_outputs()), ["kill cron.old.1.1"]);
    cron.input(t0(), Input::Update(status(&stray, TaskState::TaskFinished)));
    assert_eq!(shape(&cron.take_outputs()), Vec::<String>::new());
}

#[test]
fn constraints_choose_agents_by_hostname_and_attributes() {
    let constrained = |op, attribute: &str, value: &str| JobSpec {
        constraints: vec![Constraint { attribute: attribute.into(), op, value: value.into() }],
        ..every_minute("etl")
    };
    let cases = [
        (constrained(ConstraintOp::Equals, "hostname", "b"), "b"),
        (constrained(ConstraintOp::Like, "rack", "r[2-3]"), "b"),
        (constrained(ConstraintOp::Unlike, "rack", "r1"), "b"),
    ];
    for (job, host) in cases {
        let mut cron = with_jobs(vec![job]);
        cron.input(at(0), Input::Tick);
        cron.take_outputs();
        let offers = vec![
            offer_with(1, "a", "cpus:1;mem:1000", &[("rack", "r1")]),
            offer_with(2, "b", "cpus:1;mem:1000", &[("rack", "r2")]),
        ];
        cron.input(at(0), Input::Offers(offers));
        let outputs = cron.take_outputs();
        let launch_agents: Vec<String> = launched(&outputs).iter().map(|t| t.agent_id.to_string()).collect();
        assert_eq!(launch_agents, [format!("agent-{host}")]);
    }
}

#[test]
fn a_run_launches_only_on_offers_of_the_framework_role() {
    let mut cron = Cron::new(CoreConfig { role: "batch".into(), ..CoreConfig::default() });
    cron.input(t0(), Input::Subscribed { framework_id: FrameworkId::new("fw-1") });
    cron.command(at(-1), Command::PutJob(Box::new(every_minute("etl")))).expect("valid");
    cron.input(at(0), Input::Tick);
    cron.take_outputs();
    cron.input(at(0), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    assert!(launched(&cron.take_outputs()).is_empty(), "an offer for `*` is not the role's");
    let mut ours = offer(2, "a", "cpus:1;mem:1000");
    ours.allocation_role = Role::parse("batch").expect("a role");
    cron.input(at(0), Input::Offers(vec![ours]));
    assert_eq!(launched(&cron.take_outputs()).len(), 1);
}

#[test]
fn after_a_restart_every_launched_run_is_reconciled_and_settled_by_its_answer() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    let task = launch_and_run(&mut cron, 0);
    let recovered = super::Recovered {
        framework_id: Some(FrameworkId::new("fw-1")),
        jobs: cron.jobs().cloned().collect(),
        runs: active(&cron, "etl"),
        finished: BTreeMap::new(),
    };
    let mut again = Cron::recover(CoreConfig::default(), recovered);
    again.input(at(10), Input::Subscribed { framework_id: FrameworkId::new("fw-1") });
    let outputs = again.take_outputs();
    assert_eq!(outputs[0], Output::Reconcile(vec![(task.clone(), Some(AgentId::new("agent-a")))]));
    assert_eq!(outputs[1], Output::Reconcile(vec![]));
    again.input(at(11), Input::Update(status(&task, TaskState::TaskFinished)));
    assert_eq!(history(&again, "etl"), [(at(0), "succeeded".to_owned())]);
}

#[test]
fn an_offer_that_arrives_just_before_a_run_is_due_is_held_and_launches_it_at_its_time() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    cron.input(at(-3), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    assert_eq!(shape(&cron.take_outputs()), Vec::<String>::new(), "held, not declined");
    assert_eq!(cron.held_offers(), 1);
    cron.input(at(0), Input::Tick);
    assert_eq!(
        shape(&cron.take_outputs()),
        [
            "put-run etl@2026-03-02T10:00:00Z pending 1",
            "put-job etl",
            "put-run etl@2026-03-02T10:00:00Z launched 1",
            "launch cron.etl.1772445600000.1",
            "suppress"
        ]
    );
    assert_eq!(cron.held_offers(), 0);
}

#[test]
fn a_held_offer_is_declined_once_held_too_long_or_rescinded_by_the_master() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    cron.input(at(-3), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000"), offer(2, "b", "cpus:1;mem:1000")]));
    cron.input(at(-3), Input::Rescinded(OfferId::new("offer-2")));
    assert_eq!(cron.held_offers(), 1);
    assert_eq!(cron.next_wake(), Some(at(0)));
    cron.input(at(0), Input::Tick);
    assert_eq!(launched(&cron.take_outputs())[0].agent_id.as_str(), "agent-a", "the run took the held offer");
    // An offer that fits nothing, held while the next run is due soon, is declined once
    // held for HOLD_MAX.
    cron.input(at(56), Input::Offers(vec![offer(4, "d", "cpus:0.01;mem:1")]));
    assert_eq!((cron.held_offers(), cron.next_wake()), (1, Some(at(60))));
    cron.input(at(66), Input::Tick);
    // (The 10:01 run was missed: the first still runs. Nothing is due for a while, so the
    // offer is refused for long.)
    assert!(shape(&cron.take_outputs()).contains(&"decline 60".to_owned()));
    assert_eq!(cron.held_offers(), 0);
}
