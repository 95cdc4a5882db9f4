//! Dependencies: a child runs once all its parents succeeded since its own last run; the
//! graph is checked on every change; a parent with children is deleted only by force.

use super::*;

/// `a` and `b` every minute, `c` a child of both, `d` a child of `c`.
fn pipeline() -> Cron {
    with_jobs(vec![every_minute("a"), every_minute("b"), child_of("c", &["a", "b"]), child_of("d", &["c"])])
}

fn succeed(cron: &mut Cron, job: &str, secs: i64) {
    cron.command(at(secs), Command::MarkSuccess { name: name(job) }).expect("known job");
}

#[test]
fn a_child_runs_once_all_its_parents_succeeded_since_its_last_run() {
    let mut cron = pipeline();
    succeed(&mut cron, "a", 1);
    assert!(active(&cron, "c").is_empty(), "b has not succeeded yet");
    succeed(&mut cron, "b", 2);
    let runs = active(&cron, "c");
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].key.scheduled, &runs[0].trigger), (at(2), &RunTrigger::Dependency));
    // a alone again is not enough: b must succeed again after c's run.
    succeed(&mut cron, "a", 3);
    assert_eq!(active(&cron, "c").len(), 1);
}

#[test]
fn a_child_run_that_succeeds_starts_its_own_children() {
    let mut cron = pipeline();
    succeed(&mut cron, "a", 1);
    succeed(&mut cron, "b", 2);
    cron.input(at(2), Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let task = launched(&cron.take_outputs())[0].task_id.clone();
    assert_eq!(task.as_str(), "cron.c.1772445602000.1");
    cron.input(at(4), Input::Update(status(&task, TaskState::TaskFinished)));
    let shape = shape(&cron.take_outputs());
    assert_eq!(
        shape,
        [
            "put-job c",
            "put-run c@2026-03-02T10:00:02Z succeeded 1",
            "put-job d",
            "put-run d@2026-03-02T10:00:04Z pending 1",
        ],
        "offers are still wanted: a and b are due at 10:00"
    );
}

#[test]
fn a_disabled_child_is_not_started_by_its_parents() {
    let mut cron = with_jobs(vec![every_minute("a"), JobSpec { disabled: true, ..child_of("c", &["a"]) }]);
    succeed(&mut cron, "a", 1);
    assert!(active(&cron, "c").is_empty());
}

#[test]
fn parents_successes_committed_before_a_restart_still_start_the_child() {
    let mut cron = with_jobs(vec![every_minute("a"), child_of("c", &["a"])]);
    let mut jobs: Vec<_> = cron.jobs().cloned().collect();
    // As if the parent's success was committed and the process died before the child's run.
    jobs[0].counters.last_success = Some(at(5));
    let mut again = Cron::recover(
        CoreConfig::default(),
        super::super::Recovered { framework_id: None, jobs, runs: vec![], finished: Default::default() },
    );
    again.input(at(6), Input::Tick);
    assert_eq!(active(&again, "c").len(), 1);
    assert_eq!(again.job(&name("c")).map(|j| j.dependency_since), Some(at(6)));
    drop(cron.take_outputs());
}

#[test]
fn a_missing_parent_is_refused_naming_it_and_nothing_is_stored() {
    let mut cron = with_jobs(vec![every_minute("a")]);
    let refused = cron.command(at(1), Command::PutJob(Box::new(child_of("c", &["a", "x", "y"]))));
    assert_eq!(refused, Err(CoreError::Invalid { field: "parents", message: "unknown parent jobs 'x', 'y'".into() }));
    assert_eq!(cron.take_outputs(), Vec::new());
    assert!(cron.job(&name("c")).is_none());
}

#[test]
fn a_change_that_closes_a_cycle_is_refused_naming_the_cycle() {
    let mut cron = with_jobs(vec![every_minute("a"), child_of("b", &["a"]), child_of("c", &["b"])]);
    let refused = cron.command(at(1), Command::PutJob(Box::new(child_of("a", &["c"]))));
    assert_eq!(
        refused,
        Err(CoreError::Invalid {
            field: "parents",
            message: "the dependencies would form a cycle: 'a' -> 'b' -> 'c' -> 'a'".into()
        })
    );
    let own = cron.command(at(1), Command::PutJob(Box::new(child_of("b", &["b"]))));
    assert_eq!(own, Err(CoreError::Invalid { field: "parents", message: "job 'b' cannot be its own parent".into() }));
    assert_eq!(cron.take_outputs(), Vec::new());
    assert_eq!(cron.edges(), [(name("a"), name("b")), (name("b"), name("c"))]);
}

#[test]
fn a_parent_is_deleted_only_by_force_while_it_has_children() {
    let mut cron = pipeline();
    let refused = cron.command(at(1), Command::DeleteJob { name: name("c"), force: false });
    assert_eq!(
        refused,
        Err(CoreError::Conflict("job 'c' is a parent of 'd'; delete them first, or delete with force".into()))
    );
    assert_eq!(cron.take_outputs(), Vec::new());
    let forced = cron.command(at(2), Command::DeleteJob { name: name("c"), force: true });
    assert_eq!(forced, Ok(Reply::Deleted { disabled_children: vec![name("d")] }));
    assert_eq!(shape(&cron.take_outputs()), ["put-job d", "delete-job c"]);
    let d = cron.job(&name("d")).expect("kept");
    assert!(d.spec.disabled && d.spec.parents().is_empty());
    assert_eq!(cron.edges(), Vec::new(), "c's edges went with it");
}

#[test]
fn deleting_a_job_kills_its_running_task_and_forgets_the_run_when_it_ends() {
    let mut cron = with_jobs(vec![every_minute("etl")]);
    let task = launch_and_run(&mut cron, 0);
    cron.command(at(5), Command::DeleteJob { name: name("etl"), force: false }).expect("no children");
    assert_eq!(
        shape(&cron.take_outputs()),
        ["put-run etl@2026-03-02T10:00:00Z running 1 killing=User", "kill cron.etl.1772445600000.1", "delete-job etl",]
    );
    cron.input(at(6), Input::Update(status(&task, TaskState::TaskKilled)));
    assert_eq!(shape(&cron.take_outputs()), ["delete-run etl@2026-03-02T10:00:00Z"]);
    assert_eq!(cron.all_active_runs().count(), 0);
}
