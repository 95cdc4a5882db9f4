//! Self-healing: failed, lost, unhealthy and unreachable instances replaced with backoff,
//! extras killed by kill selection, unknown tasks killed, reconciliation.

use super::*;

fn running_app(planner: &mut Planner, n: u32) -> Vec<TaskId> {
    deploy(planner, T0, vec![spec("/web", n)]);
    let tasks = launch_and_run(planner, T0 + 1, "a", None);
    assert_eq!(planner.deployments().count(), 0);
    tasks
}

#[test]
fn a_failed_instance_is_recorded_and_replaced_after_the_apps_backoff() {
    let mut planner = planner();
    let tasks = running_app(&mut planner, 2);
    let failed = TaskStatus { message: "exit 1".into(), ..status(&tasks[0], TaskState::TaskFailed) };
    planner.input(T0 + 100, Input::Update(failed));
    let outputs = planner.take_outputs();
    assert!(shape(&outputs).contains(&"Persist(PutTaskFailure)".to_owned()));
    assert!(shape(&outputs).contains(&"Persist(DeleteInstance)".to_owned()));
    assert!(events(&outputs).iter().any(|e| matches!(e,
        ServiceEvent::LaunchDelayed { until, .. } if until.ms() == T0 + 1_100)));
    assert_eq!(planner.last_task_failure(&id("/web")).map(|f| f.message.as_str()), Some("exit 1"));
    let queue = planner.queue(T0 + 100);
    assert_eq!(queue.first().map(|q| (q.count, q.delayed_until)), Some((1, Some(Timestamp(T0 + 1_100)))));
    planner.input(T0 + 200, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let outputs = planner.take_outputs();
    assert!(launched(&outputs).is_empty(), "still delayed");
    assert!(matches!(outputs.first(), Some(Output::Decline { .. })));
    planner.input(T0 + 1_100, Input::Tick);
    assert!(planner.take_outputs().iter().any(|o| matches!(o, Output::Revive)));
    planner.input(T0 + 1_101, Input::Offers(vec![offer(2, "a", "cpus:1;mem:1000")]));
    assert_eq!(launched(&planner.take_outputs()).len(), 1);
}

#[test]
fn consecutive_failures_back_off_longer_until_the_delay_is_reset() {
    let mut planner = planner();
    let tasks = running_app(&mut planner, 2);
    planner.input(T0 + 10, Input::Update(status(&tasks[0], TaskState::TaskFailed)));
    planner.input(T0 + 10, Input::Update(status(&tasks[1], TaskState::TaskError)));
    assert_eq!(planner.queue(T0 + 10).first().and_then(|q| q.delayed_until), Some(Timestamp(T0 + 10 + 1_150)));
    planner.command(T0 + 20, Command::ResetDelay { id: id("/web") }).expect("reset");
    assert_eq!(planner.queue(T0 + 20).first().and_then(|q| q.delayed_until), None);
    let missing = planner.command(T0 + 20, Command::ResetDelay { id: id("/nope") });
    assert!(matches!(missing, Err(PlanError::NotFound(_))));
}

#[test]
fn a_task_killed_by_its_health_check_is_announced_and_replaced() {
    let mut planner = planner();
    let tasks = running_app(&mut planner, 1);
    let killed = TaskStatus { healthy: Some(false), ..status(&tasks[0], TaskState::TaskKilled) };
    planner.input(T0 + 10, Input::Update(killed));
    let outputs = planner.take_outputs();
    assert!(events(&outputs).iter().any(|e| matches!(e, ServiceEvent::UnhealthyKilled { .. })));
    assert_eq!(planner.queue(T0 + 10).first().map(|q| q.count), Some(1));
}

#[test]
fn tasks_we_do_not_know_are_killed() {
    let mut planner = planner();
    let stranger = TaskId::new("other.1");
    planner.input(
        T0,
        Input::Update(TaskStatus {
            agent_id: Some(AgentId::new("agent-x")),
            ..status(&stranger, TaskState::TaskRunning)
        }),
    );
    let outputs = planner.take_outputs();
    assert!(matches!(&outputs[..], [Output::Kill { task_id, agent_id: Some(agent) }]
        if task_id == &stranger && agent.as_str() == "agent-x"));
    planner.input(T0, Input::Update(status(&stranger, TaskState::TaskFinished)));
    assert!(planner.take_outputs().is_empty(), "a finished stranger needs nothing");
}

#[test]
fn scaling_down_kills_the_youngest_first_or_the_oldest_when_asked() {
    for (selection, expected) in [(KillSelection::YoungestFirst, 2), (KillSelection::OldestFirst, 0)] {
        let mut planner = planner();
        let mut web = spec("/web", 0);
        web.kill_selection = selection;
        let mut tasks = Vec::new();
        for i in 1..=3u64 {
            web.instances = i as u32;
            deploy(&mut planner, T0 + 10 * i, vec![web.clone()]);
            tasks.extend(launch_and_run(&mut planner, T0 + 10 * i + 1, "a", None));
        }
        assert_eq!(tasks.len(), 3);
        web.instances = 2;
        planner
            .command(T0 + 100, Command::PutApps { apps: vec![web], force: false, expect: Default::default() })
            .expect("scale");
        assert_eq!(killed(&planner.take_outputs()), vec![tasks[expected].clone()], "{selection:?}");
    }
}

#[test]
fn killing_tasks_without_scale_replaces_them_and_with_scale_shrinks_the_app() {
    let mut planner = planner();
    let tasks = running_app(&mut planner, 3);
    let reply = planner.command(
        T0 + 10,
        Command::KillTasks { tasks: vec![tasks[0].clone()], scale: false, wipe: false, force: false },
    );
    assert!(matches!(reply, Ok(Reply::Done { .. })));
    assert_eq!(killed(&planner.take_outputs()), vec![tasks[0].clone()]);
    assert_eq!(planner.queue(T0 + 10).first().map(|q| q.count), Some(1), "replaced at once: we killed it");
    planner.input(T0 + 11, Input::Update(status(&tasks[0], TaskState::TaskKilled)));
    assert!(planner.last_task_failure(&id("/web")).is_none(), "our kill is not a failure");

    let reply = planner
        .command(T0 + 20, Command::KillTasks { tasks: vec![tasks[1].clone()], scale: true, wipe: false, force: true });
    assert!(matches!(reply, Ok(Reply::Deployment { .. })));
    assert_eq!(planner.app(&id("/web")).map(|r| r.spec.instances), Some(2));
    assert_eq!(killed(&planner.take_outputs()), vec![tasks[1].clone()]);
    let unknown = planner.command(
        T0 + 30,
        Command::KillTasks { tasks: vec![TaskId::new("nope")], scale: false, wipe: false, force: false },
    );
    assert!(matches!(unknown, Err(PlanError::NotFound(_))));
}

#[test]
fn an_unreachable_instance_is_replaced_after_inactive_after_and_killed_if_it_comes_back() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    web.unreachable_strategy = UnreachableStrategy::Enabled { inactive_after_ms: 60_000, expunge_after_ms: 600_000 };
    deploy(&mut planner, T0, vec![web]);
    let tasks = launch_and_run(&mut planner, T0 + 1, "a", None);
    planner.input(T0 + 10, Input::Update(status(&tasks[0], TaskState::TaskUnreachable)));
    assert_eq!(planner.instance(&tasks[0]).and_then(|i| i.unreachable_since), Some(Timestamp(T0 + 10)));
    assert!(planner.queue(T0 + 10).is_empty(), "not yet inactive");
    planner.input(T0 + 60_010, Input::Tick);
    assert_eq!(planner.queue(T0 + 60_010).first().map(|q| q.count), Some(1));
    let replacement = launch_and_run(&mut planner, T0 + 60_011, "b", None);
    assert_eq!(replacement.len(), 1);
    planner.input(T0 + 70_000, Input::Update(status(&tasks[0], TaskState::TaskRunning)));
    assert_eq!(killed(&planner.take_outputs()), vec![tasks[0].clone()], "one too many: the returner goes");
}

#[test]
fn an_unreachable_instance_is_expunged_after_expunge_after() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    web.unreachable_strategy = UnreachableStrategy::Enabled { inactive_after_ms: 0, expunge_after_ms: 1_000 };
    deploy(&mut planner, T0, vec![web]);
    let tasks = launch_and_run(&mut planner, T0 + 1, "a", None);
    planner.input(T0 + 10, Input::Update(status(&tasks[0], TaskState::TaskUnreachable)));
    assert_eq!(planner.queue(T0 + 10).first().map(|q| q.count), Some(1), "inactive at once");
    planner.take_outputs();
    planner.input(T0 + 1_010, Input::Tick);
    let outputs = planner.take_outputs();
    assert_eq!(killed(&outputs), vec![tasks[0].clone()]);
    assert!(planner.instance(&tasks[0]).is_none());
    assert!(outputs.iter().any(|o| matches!(o, Output::Persist(StoreOp::DeleteInstance(t)) if t == &tasks[0])));
}

#[test]
fn subscribing_reconciles_every_known_task_then_all_tasks() {
    let mut planner = planner();
    let tasks = running_app(&mut planner, 2);
    planner.input(T0 + 5, Input::Disconnected);
    planner.input(T0 + 6, Input::Subscribed { framework_id: FrameworkId::new("fw-1"), reconnected: true });
    let outputs = planner.take_outputs();
    let reconciles: Vec<&Vec<(TaskId, Option<AgentId>)>> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Reconcile(list) => Some(list),
            _ => None,
        })
        .collect();
    assert_eq!(reconciles.len(), 2);
    let mut explicit: Vec<TaskId> = reconciles[0].iter().map(|(t, _)| t.clone()).collect();
    explicit.sort();
    let mut expected = tasks.clone();
    expected.sort();
    assert_eq!(explicit, expected);
    assert!(reconciles[1].is_empty(), "then implicit");
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Persist(StoreOp::FrameworkId(_)))),
        "same id: nothing to store"
    );
    // The master no longer knows one of them: it is replaced.
    let lost = TaskStatus { reason: TaskStatusReason::Reconciliation, ..status(&tasks[0], TaskState::TaskLost) };
    planner.input(T0 + 7, Input::Update(lost));
    assert_eq!(planner.queue(T0 + 7).first().map(|q| q.count), Some(1));
    planner.take_outputs();
    planner.input(T0 + 7 + PlannerConfig::default().reconcile_interval_ms, Input::Tick);
    assert!(planner.take_outputs().iter().any(|o| matches!(o, Output::Reconcile(l) if !l.is_empty())));
}

#[test]
fn a_recovered_planner_resumes_its_deployments_and_keeps_its_instances() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/web", 2)]);
    let tasks = launch_and_run(&mut planner, T0 + 1, "a", None);
    deploy(&mut planner, T0 + 2, vec![spec("/web", 3)]);
    let recovered = Recovered {
        framework_id: planner.framework_id().cloned(),
        apps: planner.apps().cloned().collect(),
        versions: planner.versions(&id("/web")).map(|(v, s)| (id("/web"), *v, Arc::clone(s))).collect(),
        groups: Vec::new(),
        instances: planner.instances().cloned().collect(),
        deployments: planner.deployments().cloned().collect(),
        task_failures: Vec::new(),
        next_service_port: None,
        subscribers: Vec::new(),
    };
    let mut again = Planner::recover(PlannerConfig { seed: 8, ..PlannerConfig::default() }, recovered);
    again.input(T0 + 3, Input::Subscribed { framework_id: FrameworkId::new("fw-1"), reconnected: false });
    let outputs = again.take_outputs();
    assert!(killed(&outputs).is_empty());
    assert_eq!(again.instances().count(), 2);
    assert_eq!(again.queue(T0 + 3).first().map(|q| q.count), Some(1));
    let new = launch_and_run(&mut again, T0 + 4, "a", None);
    assert_eq!(new.len(), 1);
    assert!(!tasks.contains(&new[0]));
    assert_eq!(again.deployments().count(), 0, "the scale finished after the restart");
}
