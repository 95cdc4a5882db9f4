//! Deployments: plans, steps in dependency order, rolling upgrades within their bounds and
//! gated on health and readiness, conflicts, force, timeouts and rollbacks.

use super::*;
use crate::model::{ActionKind, DeploymentOrigin, HealthCheckSpec, HealthProtocol, Ppm, ReadinessCheckSpec};

fn actions(planner: &Planner, id: &DeploymentId) -> Vec<Vec<(ActionKind, String)>> {
    planner
        .deployment(id)
        .expect("deployment exists")
        .steps
        .iter()
        .map(|s| s.actions.iter().map(|a| (a.kind, a.app.to_string())).collect())
        .collect()
}

fn http_check() -> HealthCheckSpec {
    HealthCheckSpec {
        protocol: HealthProtocol::Http { path: "/health".into() },
        port: Some(crate::model::CheckPort::Index(0)),
        grace_period_s: 300,
        interval_s: 60,
        timeout_s: 20,
        max_consecutive_failures: 3,
        ignore_http1xx: false,
        delay_s: 15,
    }
}

#[test]
fn a_new_app_is_recorded_before_the_reply_and_deployed_as_a_start_then_a_scale() {
    let mut planner = planner();
    let id = deploy(&mut planner, T0, vec![spec("/web", 2)]);
    assert_eq!(
        actions(&planner, &id),
        vec![
            vec![(ActionKind::StartApplication, "/web".to_owned())],
            vec![(ActionKind::ScaleApplication, "/web".to_owned())],
        ]
    );
    assert_eq!(planner.deployment(&id).map(|d| d.current_step), Some(1), "the start step is done at once");
    let outputs = planner.take_outputs();
    assert_eq!(
        shape(&outputs),
        vec![
            "Persist(PutApp)",
            "Persist(PutVersion)",
            "Persist(PutDeployment)",
            "Event(DeploymentInfo)",
            "Persist(PutDeployment)",
            "Event(DeploymentStepSuccess)",
            "Revive",
        ]
    );
    let record = planner.app(&super::id("/web")).expect("recorded");
    assert_eq!(record.version, Timestamp(T0));
    assert_eq!(record.last_config_change_at, Timestamp(T0));
    assert_eq!(
        planner.queue(T0).iter().map(|q| (q.app.to_string(), q.count)).collect::<Vec<_>>(),
        vec![("/web".to_owned(), 2)]
    );
}

#[test]
fn a_scale_deployment_ends_when_every_instance_runs_and_then_offers_are_suppressed() {
    let mut planner = planner();
    let id = deploy(&mut planner, T0, vec![spec("/web", 2)]);
    planner.take_outputs();
    planner.input(T0 + 1, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let outputs = planner.take_outputs();
    assert_eq!(outputs.last().map(|o| shape(std::slice::from_ref(o))), Some(vec!["Suppress".to_owned()]));
    let tasks = launched(&outputs);
    assert_eq!(tasks.len(), 2);
    planner.input(T0 + 2, Input::Update(status(&tasks[0].task_id, TaskState::TaskRunning)));
    assert!(planner.deployment(&id).is_some(), "one of two is running");
    planner.input(T0 + 3, Input::Update(status(&tasks[1].task_id, TaskState::TaskRunning)));
    let outputs = planner.take_outputs();
    assert!(planner.deployment(&id).is_none());
    let shape = shape(&outputs);
    let tail: Vec<&str> = shape.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(tail, vec!["Event(DeploymentStepSuccess)", "Persist(DeleteDeployment)", "Event(DeploymentSuccess)"]);
}

#[test]
fn versions_strictly_increase_even_when_the_clock_does_not() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/a", 0)]);
    deploy(&mut planner, T0, vec![spec("/b", 0)]);
    deploy(&mut planner, T0 - 5, vec![spec("/c", 0)]);
    let versions: Vec<u64> = planner.apps().map(|a| a.version.ms()).collect();
    assert_eq!(versions, vec![T0, T0 + 1, T0 + 2]);
}

#[test]
fn only_a_changed_instance_count_is_a_scale_and_anything_else_a_restart() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/web", 0)]);
    let scale = deploy(&mut planner, T0 + 10, vec![spec("/web", 3)]);
    assert_eq!(actions(&planner, &scale), vec![vec![(ActionKind::ScaleApplication, "/web".to_owned())]]);
    let record = planner.app(&id("/web")).expect("exists");
    assert_eq!((record.version.ms(), record.last_config_change_at.ms()), (T0 + 10, T0));
    let mut changed = spec("/web", 3);
    changed.command = AppCommand::Shell("sleep 7200".into());
    let restart = planner
        .command(T0 + 20, Command::PutApps { apps: vec![changed.clone()], force: true, expect: Default::default() });
    let Ok(Reply::Deployment { id: restart, .. }) = restart else { panic!("{restart:?}") };
    assert_eq!(actions(&planner, &restart), vec![vec![(ActionKind::RestartApplication, "/web".to_owned())]]);
    assert_eq!(planner.app(&id("/web")).map(|r| r.last_config_change_at.ms()), Some(T0 + 20));
}

#[test]
fn an_identical_spec_makes_an_empty_deployment_that_ends_at_once_and_keeps_the_version() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/web", 0)]);
    planner.take_outputs();
    let id = deploy(&mut planner, T0 + 5, vec![spec("/web", 0)]);
    assert!(planner.deployment(&id).is_none());
    assert_eq!(planner.app(&super::id("/web")).map(|r| r.version.ms()), Some(T0));
    let outputs = planner.take_outputs();
    assert_eq!(shape(&outputs), vec!["Event(DeploymentInfo)", "Event(DeploymentSuccess)"]);
}

#[test]
fn a_rolling_upgrade_never_drops_below_the_floor_nor_exceeds_the_ceiling() {
    let mut planner = planner();
    let mut web = spec("/web", 4);
    web.upgrade_strategy = UpgradeStrategy { minimum_health_capacity: Ppm(500_000), maximum_over_capacity: Ppm(0) };
    deploy(&mut planner, T0, vec![web.clone()]);
    let old = launch_and_run(&mut planner, T0 + 1, "a", None);
    assert_eq!(old.len(), 4);
    assert_eq!(planner.deployments().count(), 0);

    web.command = AppCommand::Shell("sleep 7200".into());
    deploy(&mut planner, T0 + 10, vec![web]);
    // Floor 2, ceiling 4: two old ones go (youngest first by default), nothing launches
    // until they are gone.
    let outputs = planner.take_outputs();
    let kills = killed(&outputs);
    assert_eq!(kills.len(), 2);
    assert_eq!(planner.queue(T0 + 10), vec![]);
    for task in &kills {
        planner.input(T0 + 11, Input::Update(status(task, TaskState::TaskKilled)));
    }
    assert_eq!(planner.queue(T0 + 11).first().map(|q| q.count), Some(2));
    let new = launch_and_run(&mut planner, T0 + 12, "a", None);
    assert_eq!(new.len(), 2);
    // Both new ones run: the last two old ones may go, and then two more new ones start.
    let outputs = planner.take_outputs();
    let _ = outputs;
    let remaining_old: Vec<_> =
        planner.instances_of(&id("/web")).filter(|i| i.app_version == Timestamp(T0)).cloned().collect();
    assert!(remaining_old.iter().all(|i| i.killing_since.is_some()), "{remaining_old:?}");
    for instance in &remaining_old {
        planner.input(T0 + 13, Input::Update(status(&instance.task_id, TaskState::TaskKilled)));
    }
    let new = launch_and_run(&mut planner, T0 + 14, "a", None);
    assert_eq!(new.len(), 2);
    assert_eq!(planner.deployments().count(), 0, "the upgrade is done");
    assert_eq!(planner.instances_of(&id("/web")).count(), 4);
}

#[test]
fn new_instances_count_only_once_healthy_so_old_ones_stay_until_then() {
    let mut planner = planner();
    let mut web = spec("/web", 2);
    web.port_definitions = vec![port(0, None)];
    web.health_checks = vec![http_check()];
    web.upgrade_strategy = UpgradeStrategy { minimum_health_capacity: Ppm::ONE, maximum_over_capacity: Ppm::ONE };
    deploy(&mut planner, T0, vec![web.clone()]);
    let old = launch_and_run(&mut planner, T0 + 1, "a", Some(true));
    assert_eq!(old.len(), 2);
    web.env.insert("V".into(), "2".into());
    deploy(&mut planner, T0 + 10, vec![web]);
    let new = launch_and_run(&mut planner, T0 + 11, "a", None);
    assert_eq!(new.len(), 2, "the ceiling (4) lets both new ones start at once");
    assert!(killed(&planner.take_outputs()).is_empty());
    planner.input(T0 + 12, Input::Update(healthy(&new[0], false)));
    assert!(killed(&planner.take_outputs()).is_empty(), "unhealthy new instances do not count");
    planner.input(T0 + 13, Input::Update(healthy(&new[0], true)));
    let outputs = planner.take_outputs();
    assert_eq!(killed(&outputs).len(), 1, "one healthy new instance lets one old one go");
    assert!(events(&outputs).iter().any(|e| matches!(e, ServiceEvent::HealthChanged { healthy: true, .. })));
}

#[test]
fn new_instances_count_only_once_ready_when_the_app_has_readiness_checks() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    web.port_definitions = vec![port(0, Some("http"))];
    deploy(&mut planner, T0, vec![web.clone()]);
    launch_and_run(&mut planner, T0 + 1, "a", None);
    web.readiness_checks = vec![ReadinessCheckSpec {
        name: "ready".into(),
        https: false,
        path: "/ready".into(),
        port_name: "http".into(),
        interval_s: 30,
        timeout_s: 10,
        http_status_codes_for_ready: vec![200],
        preserve_last_response: false,
    }];
    deploy(&mut planner, T0 + 10, vec![web]);
    planner.input(T0 + 11, Input::Offers(vec![offer(1, "b", "cpus:1;mem:1000;ports:[40000-40010]")]));
    let tasks = launched(&planner.take_outputs());
    assert_eq!(tasks.len(), 1);
    let check = tasks[0].readiness_check.clone().expect("a readiness check is sent to the agent");
    assert_eq!((check.port, check.path.as_str()), (40000, "/ready"));
    planner.input(T0 + 12, Input::Update(status(&tasks[0].task_id, TaskState::TaskRunning)));
    assert!(killed(&planner.take_outputs()).is_empty(), "running but not ready");
    let ready = TaskStatus { ready: Some(true), ..status(&tasks[0].task_id, TaskState::TaskRunning) };
    planner.input(T0 + 13, Input::Update(ready));
    assert_eq!(killed(&planner.take_outputs()).len(), 1, "ready: the old instance goes");
}

#[test]
fn an_app_held_by_a_deployment_is_refused_unless_forced_and_force_supersedes_without_rollback() {
    let mut planner = planner();
    let first = deploy(&mut planner, T0, vec![spec("/web", 2)]);
    planner.take_outputs();
    let refused = planner
        .command(T0 + 1, Command::PutApps { apps: vec![spec("/web", 3)], force: false, expect: Default::default() });
    match refused {
        Err(PlanError::Conflict { deployments, .. }) => assert_eq!(deployments, vec![first.clone()]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(planner.take_outputs().is_empty(), "a refused command appends nothing");
    let forced = planner
        .command(T0 + 2, Command::PutApps { apps: vec![spec("/web", 3)], force: true, expect: Default::default() });
    assert!(matches!(forced, Ok(Reply::Deployment { .. })));
    assert!(planner.deployment(&first).is_none());
    let outputs = planner.take_outputs();
    assert!(events(&outputs).iter().any(|e| matches!(e,
        ServiceEvent::DeploymentFailed { deployment, rollback: None, reason } if deployment.id == first && reason.contains("superseded"))));
}

#[test]
fn dependencies_come_in_earlier_steps_and_unknown_ones_or_cycles_are_refused() {
    let mut planner = planner();
    let db = spec("/stack/db", 1);
    let mut api = spec("/stack/api", 1);
    api.dependencies = vec![id("/stack/db")];
    let mut web = spec("/web", 1);
    web.dependencies = vec![id("/stack")];
    let plan = deploy(&mut planner, T0, vec![web, api, db]);
    let deployment = planner.deployment(&plan).expect("in progress").clone();
    let apps: Vec<Vec<String>> =
        deployment.steps.iter().map(|s| s.actions.iter().map(|a| a.app.to_string()).collect()).collect();
    assert_eq!(
        apps,
        vec![vec!["/stack/api", "/stack/db", "/web"], vec!["/stack/db"], vec!["/stack/api"], vec!["/web"]]
    );
    assert_eq!(deployment.steps[0].actions[0].kind, ActionKind::StartApplication);
    assert!(planner.queue(T0).iter().all(|q| q.app == id("/stack/db")), "only the first step launches");

    let mut orphan = spec("/orphan", 1);
    orphan.dependencies = vec![id("/nowhere")];
    let refused =
        planner.command(T0 + 1, Command::PutApps { apps: vec![orphan], force: true, expect: Default::default() });
    assert!(matches!(&refused, Err(PlanError::Invalid { field, .. }) if field == "dependencies"), "{refused:?}");

    let mut a = spec("/a", 1);
    a.dependencies = vec![id("/b")];
    let mut b = spec("/b", 1);
    b.dependencies = vec![id("/a")];
    let refused =
        planner.command(T0 + 2, Command::PutApps { apps: vec![a, b], force: true, expect: Default::default() });
    assert!(
        matches!(&refused, Err(PlanError::Invalid { field, message }) if field == "dependencies" && message.contains("cycle")),
        "{refused:?}"
    );
}

#[test]
fn an_app_id_that_is_a_group_or_inside_an_app_is_refused() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/shop/web", 0)]);
    let refused = planner
        .command(T0 + 1, Command::PutApps { apps: vec![spec("/shop", 1)], force: false, expect: Default::default() });
    assert!(matches!(&refused, Err(PlanError::Invalid { field, .. }) if field == "id"), "{refused:?}");
    let refused = planner.command(
        T0 + 1,
        Command::PutApps { apps: vec![spec("/shop/web/x", 1)], force: false, expect: Default::default() },
    );
    assert!(matches!(&refused, Err(PlanError::Invalid { field, .. }) if field == "id"), "{refused:?}");
}

#[test]
fn a_deployment_past_its_deadline_is_rolled_back_to_the_version_still_running() {
    let mut planner = planner();
    let mut web = spec("/web", 2);
    web.deployment_timeout_ms = Some(60_000);
    deploy(&mut planner, T0, vec![web.clone()]);
    let old = launch_and_run(&mut planner, T0 + 1, "a", None);
    web.command = AppCommand::Shell("exit 1".into());
    web.upgrade_strategy = UpgradeStrategy { minimum_health_capacity: Ppm::ONE, maximum_over_capacity: Ppm(0) };
    let upgrade = deploy(&mut planner, T0 + 10, vec![web]);
    planner.input(T0 + 11, Input::Offers(vec![offer(1, "a", "cpus:1;mem:1000")]));
    let new = launched(&planner.take_outputs());
    assert_eq!(new.len(), 1, "one extra instance: mhc 1 and moc 0 leave no other room");
    planner.input(T0 + 60_009, Input::Tick);
    assert!(planner.deployment(&upgrade).is_some(), "not yet");
    planner.input(T0 + 60_010, Input::Tick);
    let outputs = planner.take_outputs();
    assert!(planner.deployment(&upgrade).is_none());
    let rollback = planner.deployments().next().expect("a rollback runs").clone();
    assert_eq!(rollback.origin, DeploymentOrigin::Rollback { of: upgrade.clone(), timed_out: true });
    let failed = events(&outputs)
        .into_iter()
        .find_map(|e| match e {
            ServiceEvent::DeploymentFailed { deployment, reason, rollback } if deployment.id == upgrade => {
                Some((reason.clone(), rollback.clone()))
            }
            _ => None,
        })
        .expect("the upgrade failed");
    assert!(failed.0.contains("timeout") && failed.0.contains(&rollback.id.0), "{}", failed.0);
    assert_eq!(failed.1, Some(rollback.id.clone()));
    // The old instances are the restored version: they stay; the new one goes.
    assert_eq!(planner.app(&id("/web")).map(|r| r.last_config_change_at), Some(Timestamp(T0)));
    assert_eq!(killed(&outputs), vec![new[0].task_id.clone()]);
    assert!(old.iter().all(|t| planner.instance(t).is_some_and(|i| i.killing_since.is_none())));
    planner.input(T0 + 60_011, Input::Update(status(&new[0].task_id, TaskState::TaskKilled)));
    assert!(planner.deployment(&rollback.id).is_none(), "the rollback finished");
}

#[test]
fn the_timeout_of_the_version_asked_for_decides_not_that_of_the_version_it_replaces() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    deploy(&mut planner, T0, vec![web.clone()]);
    launch_and_run(&mut planner, T0 + 1, "a", None);
    // The running version has the default timeout (600 s); the new one sets 5 s.
    web.command = AppCommand::Shell("exit 1".into());
    web.deployment_timeout_ms = Some(5_000);
    let upgrade = deploy(&mut planner, T0 + 10, vec![web]);
    assert_eq!(planner.deployment(&upgrade).map(|d| d.deadline), Some(Timestamp(T0 + 5_010)));
    planner.input(T0 + 5_010, Input::Tick);
    assert!(planner.deployment(&upgrade).is_none(), "rolled back after the new version's 5 s");
    let outputs = planner.take_outputs();
    let rolled_back = events(&outputs).iter().any(|e| {
        matches!(e, ServiceEvent::DeploymentFailed { deployment, rollback: Some(_), .. } if deployment.id == upgrade)
    });
    assert!(rolled_back, "{outputs:?}");
    assert_eq!(planner.app(&id("/web")).map(|r| r.last_config_change_at), Some(Timestamp(T0)));
}

#[test]
fn a_rollback_that_times_out_fails_without_another_rollback() {
    let mut planner = planner();
    let mut web = spec("/web", 1);
    web.deployment_timeout_ms = Some(1_000);
    let first = deploy(&mut planner, T0, vec![web]);
    planner.input(T0 + 1_000, Input::Tick);
    // The rollback stops the new app; its instance never launched, so it is done at once.
    assert!(planner.deployment(&first).is_none());
    assert_eq!(planner.deployments().count(), 0);
    assert!(planner.app(&id("/web")).is_none());
    let outputs = planner.take_outputs();
    assert!(events(&outputs).iter().any(|e| matches!(e, ServiceEvent::DeploymentSuccess { deployment }
        if deployment.origin == DeploymentOrigin::Rollback { of: first.clone(), timed_out: true })));

    let mut stuck = spec("/stuck", 1);
    stuck.deployment_timeout_ms = Some(1_000);
    deploy(&mut planner, T0 + 2_000, vec![stuck.clone()]);
    launch_and_run(&mut planner, T0 + 2_001, "a", None);
    stuck.command = AppCommand::Shell("false".into());
    let upgrade = deploy(&mut planner, T0 + 3_000, vec![stuck]);
    planner.input(T0 + 3_001, Input::Offers(vec![offer(9, "b", "cpus:1;mem:1000")]));
    planner.input(T0 + 4_000, Input::Tick);
    let rollback = planner.deployments().next().expect("rollback").id.clone();
    assert_ne!(rollback, upgrade);
    planner.take_outputs();
    // The extra instance is never killed (the agent is gone): the rollback times out too.
    planner.input(T0 + 5_000, Input::Tick);
    let outputs = planner.take_outputs();
    assert_eq!(planner.deployments().count(), 0, "nothing loops");
    assert!(events(&outputs).iter().any(|e| matches!(e,
        ServiceEvent::DeploymentFailed { deployment, rollback: None, .. } if deployment.id == rollback)));
}

#[test]
fn cancelling_rolls_back_and_cancelling_with_force_just_stops() {
    let mut planner = planner();
    let first = deploy(&mut planner, T0, vec![spec("/web", 2)]);
    let reply = planner.command(T0 + 1, Command::CancelDeployment { id: first.clone(), force: false });
    let Ok(Reply::Deployment { id: rollback, .. }) = reply else { panic!("{reply:?}") };
    assert!(planner.deployment(&first).is_none());
    // Rolling back a new app stops it; nothing ran, so it is already gone.
    assert!(planner.deployment(&rollback).is_none());
    assert!(planner.app(&id("/web")).is_none());

    let second = deploy(&mut planner, T0 + 2, vec![spec("/api", 2)]);
    let reply = planner.command(T0 + 3, Command::CancelDeployment { id: second.clone(), force: true });
    assert!(matches!(reply, Ok(Reply::Done { .. })));
    assert!(planner.deployment(&second).is_none());
    assert!(planner.app(&id("/api")).is_some(), "force leaves the app as it is");
    assert_eq!(planner.deployments().count(), 0);
    let missing = planner.command(T0 + 4, Command::CancelDeployment { id: second, force: true });
    assert!(matches!(missing, Err(PlanError::NotFound(_))));
}

#[test]
fn deleting_an_app_kills_its_instances_then_forgets_it_and_its_versions() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/web", 2)]);
    let tasks = launch_and_run(&mut planner, T0 + 1, "a", None);
    let reply = planner.command(T0 + 2, Command::DeleteApp { id: id("/web"), force: false });
    assert!(matches!(reply, Ok(Reply::Deployment { .. })));
    let outputs = planner.take_outputs();
    let mut kills = killed(&outputs);
    kills.sort();
    let mut expected = tasks.clone();
    expected.sort();
    assert_eq!(kills, expected);
    for task in &tasks {
        planner.input(T0 + 3, Input::Update(status(task, TaskState::TaskKilled)));
    }
    let outputs = planner.take_outputs();
    assert!(planner.app(&id("/web")).is_none());
    assert_eq!(planner.versions(&id("/web")).count(), 0);
    assert!(events(&outputs).iter().any(|e| matches!(e, ServiceEvent::AppTerminated { app } if app == &id("/web"))));
    assert!(shape(&outputs).contains(&"Persist(DeleteApp)".to_owned()));
    assert!(shape(&outputs).contains(&"Persist(DeleteVersion)".to_owned()));
    assert_eq!(planner.deployments().count(), 0);
}

#[test]
fn versions_are_bounded_and_the_oldest_is_deleted() {
    let mut planner = Planner::new(PlannerConfig { max_versions: 2, ..PlannerConfig::default() });
    for n in 0..3 {
        planner
            .command(
                T0 + n,
                Command::PutApps { apps: vec![spec("/web", n as u32)], force: true, expect: Default::default() },
            )
            .expect("ok");
    }
    let versions: Vec<u64> = planner.versions(&id("/web")).map(|(v, _)| v.ms()).collect();
    assert_eq!(versions, vec![T0 + 1, T0 + 2]);
    let outputs = planner.take_outputs();
    assert!(outputs.iter().any(|o| matches!(o,
        Output::Persist(StoreOp::DeleteVersion { version, .. }) if version.ms() == T0)));
}

#[test]
fn a_group_is_deployed_in_dependency_order_and_apps_left_out_are_stopped() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/shop/old", 0)]);
    let group = GroupRecord {
        id: id("/shop/front"),
        dependencies: vec![id("/shop/db")],
        version: Timestamp(0),
        enforce_role: false,
    };
    let reply = planner.command(
        T0 + 1,
        Command::PutGroup {
            id: id("/shop"),
            groups: vec![group],
            apps: vec![spec("/shop/db", 1), spec("/shop/front/web", 1)],
            force: false,
            read: None,
        },
    );
    let Ok(Reply::Deployment { id: plan, .. }) = reply else { panic!("{reply:?}") };
    let deployment = planner.deployment(&plan).expect("in progress").clone();
    let apps: Vec<Vec<(ActionKind, String)>> =
        deployment.steps.iter().map(|s| s.actions.iter().map(|a| (a.kind, a.app.to_string())).collect()).collect();
    // The stop and the starts were done at once; the rest waits in order.
    assert_eq!(deployment.current_step, 2);
    assert_eq!(
        apps[2..],
        [
            vec![(ActionKind::ScaleApplication, "/shop/db".to_owned())],
            vec![(ActionKind::ScaleApplication, "/shop/front/web".to_owned())],
        ]
    );
    assert!(planner.app(&id("/shop/old")).is_none());
    assert_eq!(planner.groups().map(|g| g.version.ms()).collect::<Vec<_>>(), vec![T0 + 1]);
}

#[test]
fn deleting_a_group_stops_every_app_in_it_and_forgets_its_groups() {
    let mut planner = planner();
    let group = GroupRecord { id: id("/shop"), dependencies: vec![], version: Timestamp(0), enforce_role: false };
    planner
        .command(
            T0,
            Command::PutGroup {
                id: id("/shop"),
                groups: vec![group],
                apps: vec![spec("/shop/a", 0), spec("/shop/b/c", 0)],
                force: false,
                read: None,
            },
        )
        .expect("group created");
    deploy(&mut planner, T0 + 1, vec![spec("/other", 0)]);
    assert_eq!(planner.groups().count(), 1);
    let reply = planner.command(T0 + 2, Command::DeleteGroup { id: id("/shop"), force: false });
    assert!(matches!(reply, Ok(Reply::Deployment { .. })), "{reply:?}");
    let apps: Vec<String> = planner.apps().map(|a| a.spec.id.to_string()).collect();
    assert_eq!(apps, vec!["/other"]);
    assert_eq!(planner.groups().count(), 0);
    let missing = planner.command(T0 + 3, Command::DeleteGroup { id: id("/shop"), force: false });
    assert!(matches!(missing, Err(PlanError::NotFound(_))));
}

#[test]
fn the_number_of_deployments_in_progress_is_bounded() {
    let mut planner = planner();
    for i in 0..MAX_DEPLOYMENTS {
        deploy(&mut planner, T0, vec![spec(&format!("/app{i}"), 1)]);
    }
    assert_eq!(planner.deployments().count(), MAX_DEPLOYMENTS);
    let refused = planner
        .command(T0, Command::PutApps { apps: vec![spec("/one-more", 1)], force: true, expect: Default::default() });
    assert!(
        matches!(&refused, Err(PlanError::Conflict { message, .. }) if message.contains("deployments")),
        "{refused:?}"
    );
    // Superseding one with force is still possible: it replaces a deployment.
    let forced =
        planner.command(T0, Command::PutApps { apps: vec![spec("/app0", 2)], force: true, expect: Default::default() });
    assert!(matches!(forced, Ok(Reply::Deployment { .. })), "{forced:?}");
}

#[test]
fn a_change_expecting_what_it_read_is_refused_whole_when_an_app_moved_on_or_already_exists() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/web", 2)]);
    let read_at = planner.app(&AppId::parse("/web").expect("id")).expect("web").version;
    planner.take_outputs();

    // A POST of an id in use is refused, and so is one that is a group's.
    let absent = |id: &str| BTreeMap::from([(AppId::parse(id).expect("id"), Expected::Absent)]);
    let taken =
        planner.command(T0 + 1, Command::PutApps { apps: vec![spec("/web", 5)], force: true, expect: absent("/web") });
    assert!(
        matches!(&taken, Err(PlanError::Conflict { message, .. }) if message.contains("already exists")),
        "{taken:?}"
    );

    // Another change lands between a PATCH's read and its write: the PATCH is stale, and
    // nothing of it is applied, not even its other apps.
    planner
        .command(T0 + 2, Command::PutApps { apps: vec![spec("/web", 3)], force: true, expect: Default::default() })
        .expect("scale");
    planner.take_outputs();
    let expect = BTreeMap::from([(AppId::parse("/web").expect("id"), Expected::Version(read_at))]);
    let stale =
        planner.command(T0 + 3, Command::PutApps { apps: vec![spec("/web", 7), spec("/api", 1)], force: true, expect });
    assert_eq!(stale, Err(PlanError::Stale(AppId::parse("/web").expect("id"))));
    assert!(planner.take_outputs().is_empty(), "a refused command appends nothing");
    assert!(planner.app(&AppId::parse("/api").expect("id")).is_none());
    assert_eq!(planner.app(&AppId::parse("/web").expect("id")).expect("web").spec.instances, 3);

    // Prepared again from the current version, it applies.
    let now_at = planner.app(&AppId::parse("/web").expect("id")).expect("web").version;
    let expect = BTreeMap::from([(AppId::parse("/web").expect("id"), Expected::Version(now_at))]);
    let fresh = planner.command(T0 + 4, Command::PutApps { apps: vec![spec("/web", 7)], force: true, expect });
    assert!(matches!(fresh, Ok(Reply::Deployment { .. })), "{fresh:?}");
}

#[test]
fn a_group_change_prepared_before_an_app_appeared_in_the_group_is_refused_whole() {
    let mut planner = planner();
    deploy(&mut planner, T0, vec![spec("/shop/a", 1)]);
    let read = BTreeMap::from([(id("/shop/a"), planner.app(&id("/shop/a")).expect("a").version)]);
    // Another client creates /shop/b after the group was read.
    deploy(&mut planner, T0 + 1, vec![spec("/shop/b", 1)]);
    planner.take_outputs();
    let put = |read| Command::PutGroup {
        id: id("/shop"),
        groups: Vec::new(),
        apps: vec![spec("/shop/a", 2)],
        force: true,
        read: Some(read),
    };
    let stale = planner.command(T0 + 2, put(read.clone()));
    assert_eq!(stale, Err(PlanError::Stale(id("/shop/b"))));
    assert!(planner.take_outputs().is_empty(), "a refused command appends nothing");
    assert!(planner.app(&id("/shop/b")).is_some(), "the app the change never saw is kept");
    // Prepared again from what is there now, it applies (and removes /shop/b, as asked).
    let mut now = read;
    now.insert(id("/shop/b"), planner.app(&id("/shop/b")).expect("b").version);
    assert!(matches!(planner.command(T0 + 3, put(now)), Ok(Reply::Deployment { .. })));
}
