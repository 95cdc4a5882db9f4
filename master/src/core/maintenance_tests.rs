//! Tests of operators taking agents and machines out of service: deactivation, draining,
//! marking gone and maintenance schedules, each with the invariants checked.

use agora_proto::model::{
    AgentId, AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, Offer, Resources, Role, StreamId, TaskId, TaskInfo,
    TaskState, TaskStatus, TaskStatusReason, TaskStatusSource, UpdateId,
};

use super::*;

fn master() -> Master {
    Master::new(Config { master_id: "m".to_owned(), ..Config::default() }, 7)
}

fn resources(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources in a test")
}

fn info(hostname: &str) -> AgentInfo {
    AgentInfo { hostname: hostname.to_owned(), port: 5051, resources: resources("cpus:4;mem:4096"), attributes: vec![] }
}

/// Registers an agent and returns its id, or the refusal.
fn register(m: &mut Master, conn: u64, hostname: &str, previous: Option<&AgentId>) -> Result<AgentId, String> {
    m.register_agent(0, ConnId(conn), info(hostname), previous.cloned(), Vec::new());
    for output in m.drain_outputs() {
        match output {
            Output::AgentRegistered { agent_id, .. } => return Ok(agent_id),
            Output::AgentRefused { reason, .. } => return Err(reason),
            _ => {}
        }
    }
    Err("no answer".to_owned())
}

fn subscribe(m: &mut Master) -> (FrameworkId, StreamId) {
    let info = FrameworkInfo {
        id: None,
        name: "fw".to_owned(),
        user: "root".to_owned(),
        roles: vec![Role::unreserved()],
        failover_timeout_ms: 60_000,
        hostname: "localhost".to_owned(),
        principal: String::new(),
    };
    let ids = m.subscribe(0, info).expect("subscribe");
    m.drain_outputs();
    ids
}

fn offers(m: &mut Master) -> Vec<Offer> {
    assert_eq!(m.check_invariants(), Ok(()));
    m.allocate(0);
    assert_eq!(m.check_invariants(), Ok(()));
    m.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::ToFramework { event: Event::Offers(offers), .. } => Some(offers),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Launches task `id` (with `grace_ms`) on the offer and reports it RUNNING.
fn launch(m: &mut Master, fw: &(FrameworkId, StreamId), offer: &Offer, id: &str, grace_ms: Option<u64>) {
    let task = TaskInfo {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        agent_id: offer.agent_id.clone(),
        resources: resources("cpus:1;mem:128"),
        command: CommandInfo { shell: Some("sleep 100".to_owned()), ..CommandInfo::default() },
        labels: vec![],
        kill_grace_period_ms: grace_ms,
        health_check: None,
        readiness_check: None,
    };
    let call = Call::Accept {
        offer_ids: vec![offer.id.clone()],
        operations: vec![Operation::Launch { tasks: vec![task] }],
        refuse_ms: 0,
    };
    m.call(0, &fw.0, &fw.1, call).expect("accept");
    m.drain_outputs();
    report(m, &offer.agent_id, &fw.0, id, TaskState::TaskRunning);
    m.drain_outputs();
}

fn report(m: &mut Master, agent_id: &AgentId, framework_id: &FrameworkId, task_id: &str, state: TaskState) {
    let status = TaskStatus {
        task_id: TaskId::new(task_id),
        agent_id: Some(agent_id.clone()),
        state,
        reason: TaskStatusReason::Unspecified,
        source: TaskStatusSource::Executor,
        message: String::new(),
        timestamp_ms: 0,
        uuid: Some(UpdateId::new("u")),
        healthy: None,
        ready: None,
        exit_code: None,
        signal: None,
    };
    m.status_update(0, agent_id, framework_id, status);
}

fn kills(outputs: &[Output]) -> Vec<(String, Option<u64>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ToAgent { message: ToAgent::KillTask { task_id, grace_period_ms, .. }, .. } => {
                Some((task_id.to_string(), *grace_period_ms))
            }
            _ => None,
        })
        .collect()
}

fn persisted(outputs: &[Output]) -> Vec<RegistryOp> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

fn agent_view(m: &Master, agent_id: &AgentId) -> Option<AgentView> {
    m.snapshot().agents.into_iter().find(|a| &a.id == agent_id)
}

fn machine(hostname: &str) -> MachineId {
    machine_id("machine", hostname, "").expect("a valid machine")
}

fn window(machines: &[&str]) -> Window {
    Window {
        machines: machines.iter().map(|h| machine(h)).collect(),
        unavailability: Unavailability { start_ns: 1_000, duration_ns: Some(3_600_000_000_000) },
    }
}

#[test]
fn a_deactivated_agent_loses_its_offers_and_is_not_offered_while_its_tasks_run_on() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).pop().expect("an offer");
    launch(&mut m, &fw, &offer, "t1", None);
    let outstanding = offers(&mut m);
    assert_eq!(outstanding.len(), 1, "the rest of the agent is offered");

    m.deactivate_agent(&a).expect("deactivates");
    let out = m.drain_outputs();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::ToFramework { event: Event::Rescind(id), .. } if *id == outstanding[0].id))
    );
    assert!(kills(&out).is_empty(), "tasks are left alone");
    assert!(persisted(&out).iter().any(|op| matches!(op, RegistryOp::PutAgent { agent, .. } if agent.deactivated)));
    assert_eq!(offers(&mut m), vec![], "a deactivated agent is not offered");
    let view = agent_view(&m, &a).expect("listed");
    assert!(view.deactivated);
    assert_eq!(m.live_tasks().count(), 1);

    m.reactivate_agent(&a).expect("reactivates");
    assert_eq!(offers(&mut m).len(), 1, "offered again once reactivated");
    let refused = m.reactivate_agent(&a).expect_err("not deactivated any more");
    assert_eq!(refused.field, "agent_id");
    assert_eq!(refused.kind, OperatorErrorKind::Conflict);
}

#[test]
fn draining_kills_every_task_within_the_bound_and_is_drained_when_the_last_ends() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).pop().expect("an offer");
    launch(&mut m, &fw, &offer, "long", Some(60_000));
    let offer = offers(&mut m).pop().expect("another offer");
    launch(&mut m, &fw, &offer, "short", Some(1_000));
    let offer = offers(&mut m).pop().expect("a third offer");
    launch(&mut m, &fw, &offer, "default", None);

    m.drain_agent(0, &a, Some(5_000), false).expect("drains");
    let out = m.drain_outputs();
    let mut killed = kills(&out);
    killed.sort();
    assert_eq!(
        killed,
        vec![("default".to_owned(), Some(3_000)), ("long".to_owned(), Some(5_000)), ("short".to_owned(), Some(1_000))]
    );
    let view = agent_view(&m, &a).expect("listed");
    assert!(view.deactivated);
    assert_eq!(view.drain.as_ref().map(|d| d.state), Some(DrainState::Draining));
    assert_eq!(offers(&mut m), vec![], "a draining agent is not offered");
    let refused = m.reactivate_agent(&a).expect_err("still draining");
    assert!(refused.reason.contains("still draining"), "{refused}");

    report(&mut m, &a, &fw.0, "long", TaskState::TaskKilled);
    report(&mut m, &a, &fw.0, "short", TaskState::TaskKilled);
    assert_eq!(agent_view(&m, &a).and_then(|v| v.drain).map(|d| d.state), Some(DrainState::Draining));
    m.drain_outputs();
    report(&mut m, &a, &fw.0, "default", TaskState::TaskKilled);
    let out = m.drain_outputs();
    assert_eq!(agent_view(&m, &a).and_then(|v| v.drain).map(|d| d.state), Some(DrainState::Drained));
    assert!(persisted(&out).iter().any(|op| matches!(
        op,
        RegistryOp::PutAgent { agent, .. } if agent.drain.as_ref().is_some_and(|d| d.state == DrainState::Drained)
    )));
    assert_eq!(m.check_invariants(), Ok(()));
    assert_eq!(offers(&mut m), vec![], "a drained agent stays deactivated");

    m.reactivate_agent(&a).expect("a drained agent may be reactivated");
    assert_eq!(agent_view(&m, &a).and_then(|v| v.drain), None);
    assert_eq!(offers(&mut m).len(), 1);
}

#[test]
fn an_agent_without_tasks_is_drained_at_once_and_with_mark_gone_may_never_return() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    m.drain_agent(0, &a, None, true).expect("drains");
    let out = m.drain_outputs();
    assert!(persisted(&out).contains(&RegistryOp::RemoveAgent { agent_id: a.clone() }));
    assert!(out.contains(&Output::ReconnectAgent { agent_id: a.clone() }));
    assert_eq!(agent_view(&m, &a), None);
    let refused = register(&mut m, 2, "a", Some(&a)).expect_err("gone");
    assert!(refused.contains("is gone"), "{refused}");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn a_draining_agent_that_comes_back_has_its_tasks_killed_again() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).pop().expect("an offer");
    launch(&mut m, &fw, &offer, "t1", None);
    m.agent_disconnected(0, &a, ConnId(1));
    m.drain_agent(0, &a, Some(0), false).expect("drains while disconnected");
    assert_eq!(kills(&m.drain_outputs()), vec![], "no kill reaches a disconnected agent");

    let task = m.live_tasks().map(|(f, t, state)| (f.clone(), t.clone(), state)).next().expect("a task");
    let reported = ReportedTask { framework_id: task.0, task: task.1, state: task.2, healthy: None, ready: None };
    m.register_agent(0, ConnId(2), info("a"), Some(a.clone()), vec![reported]);
    let out = m.drain_outputs();
    assert!(kills(&out).contains(&("t1".to_owned(), Some(0))), "{out:?}");
    assert_eq!(agent_view(&m, &a).and_then(|v| v.drain).map(|d| d.state), Some(DrainState::Draining));
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn drains_and_deactivations_survive_a_restart_of_the_master() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let b = register(&mut m, 2, "b", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).into_iter().find(|o| o.agent_id == a).expect("an offer of a");
    launch(&mut m, &fw, &offer, "t1", None);
    m.drain_agent(0, &a, Some(10_000), true).expect("drains");
    m.deactivate_agent(&b).expect("deactivates");
    m.update_maintenance_schedule(0, vec![window(&["c"])]).expect("schedules");
    let mut registry = Registry::default();
    for op in persisted(&m.drain_outputs()) {
        registry.apply(op);
    }

    let task = m.live_tasks().map(|(f, t, state)| (f.clone(), t.clone(), state)).next().expect("a task");
    let reported = ReportedTask { framework_id: task.0, task: task.1, state: task.2, healthy: None, ready: None };

    let mut restarted = master();
    restarted.recover(0, registry);
    restarted.register_agent(0, ConnId(3), info("a"), Some(a.clone()), vec![reported]);
    let out = restarted.drain_outputs();
    assert!(kills(&out).contains(&("t1".to_owned(), Some(3_000))), "the drain goes on: {out:?}");
    assert_eq!(register(&mut restarted, 4, "b", Some(&b)), Ok(b.clone()));
    let drain = agent_view(&restarted, &a).and_then(|v| v.drain).expect("still draining");
    assert_eq!(drain, DrainInfo { state: DrainState::Draining, max_grace_period_ms: Some(10_000), mark_gone: true });
    assert!(agent_view(&restarted, &b).is_some_and(|v| v.deactivated));
    assert_eq!(restarted.maintenance().draining(), vec![machine("c")]);
    restarted.subscribe(0, FrameworkInfo { id: Some(fw.0.clone()), ..framework_info() }).expect("resubscribes");
    assert_eq!(offers(&mut restarted), vec![], "neither agent is offered after the restart");
}

fn framework_info() -> FrameworkInfo {
    FrameworkInfo {
        id: None,
        name: "fw".to_owned(),
        user: "root".to_owned(),
        roles: vec![Role::unreserved()],
        failover_timeout_ms: 60_000,
        hostname: "localhost".to_owned(),
        principal: String::new(),
    }
}

#[test]
fn an_agent_marked_gone_ends_its_tasks_gone_by_operator_and_is_refused_under_its_id() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).pop().expect("an offer");
    launch(&mut m, &fw, &offer, "t1", None);
    m.mark_agent_gone(5, &a).expect("marked gone");
    let out = m.drain_outputs();
    let update = out.iter().find_map(|o| match o {
        Output::ToFramework { event: Event::Update(status), .. } => Some(status.clone()),
        _ => None,
    });
    assert_eq!(update.map(|s| s.state), Some(TaskState::TaskGoneByOperator));
    assert_eq!(m.live_tasks().count(), 0);
    assert_eq!(m.mark_agent_gone(6, &a), Ok(()), "idempotent");
    assert!(register(&mut m, 2, "a", Some(&a)).is_err());
    let unknown = m.mark_agent_gone(6, &AgentId::new("nope")).expect_err("unknown");
    assert_eq!((unknown.kind, unknown.field.as_str()), (OperatorErrorKind::NotFound, "agent_id"));
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn calls_on_unknown_agents_are_refused_naming_the_agent_id_and_change_nothing() {
    let mut m = master();
    let nope = AgentId::new("nope");
    for refused in [m.deactivate_agent(&nope), m.reactivate_agent(&nope), m.drain_agent(0, &nope, None, false)] {
        let e = refused.expect_err("unknown");
        assert_eq!((e.kind, e.field.as_str()), (OperatorErrorKind::NotFound, "agent_id"));
    }
    assert_eq!(m.drain_outputs(), vec![]);
}

#[test]
fn machines_go_down_refusing_their_agents_until_they_are_up_again() {
    let mut m = master();
    let a = register(&mut m, 1, "Node-A", None).expect("registers");
    let b = register(&mut m, 2, "node-b", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).into_iter().find(|o| o.agent_id == a).expect("an offer of a");
    launch(&mut m, &fw, &offer, "t1", None);

    m.update_maintenance_schedule(0, vec![window(&["node-a"])]).expect("schedules");
    assert_eq!(m.maintenance().mode(&machine("node-a")), MachineMode::Draining);
    let refused = m.drain_agent(0, &a, None, false).expect_err("scheduled agents drain by the schedule");
    assert_eq!(refused.field, "agent_id");
    let refused = m.stop_maintenance(vec![machine("node-a")]).expect_err("not down");
    assert_eq!(refused.field, "machines[0]");
    m.drain_outputs();

    m.start_maintenance(7, vec![machine("node-a")]).expect("goes down");
    let out = m.drain_outputs();
    assert!(persisted(&out).contains(&RegistryOp::RemoveAgent { agent_id: a.clone() }));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::ToFramework { event: Event::Update(s), .. } if s.state == TaskState::TaskGoneByOperator
    )));
    assert_eq!(m.maintenance().mode(&machine("node-a")), MachineMode::Down);
    assert!(agent_view(&m, &b).is_some(), "other machines are untouched");
    let refused = register(&mut m, 3, "node-a", None).expect_err("down");
    assert!(refused.contains("down for maintenance"), "{refused}");
    let refused = m.update_maintenance_schedule(0, vec![]).expect_err("a down machine must stay scheduled");
    assert_eq!(refused.field, "schedule");
    let refused = m.start_maintenance(8, vec![machine("node-a")]).expect_err("down already");
    assert_eq!(refused.field, "machines[0]");

    m.stop_maintenance(vec![machine("node-a")]).expect("up again");
    assert_eq!(m.maintenance(), &Maintenance::default(), "the machine left the schedule");
    assert!(register(&mut m, 4, "NODE-A", None).is_ok(), "hostnames match in any case");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn bad_schedules_are_refused_naming_the_field_and_store_nothing() {
    let mut m = master();
    m.update_maintenance_schedule(0, vec![window(&["a"])]).expect("schedules");
    m.drain_outputs();
    let cases = [
        (vec![window(&["x"]), window(&["y", "x"])], "schedule.windows[1].machine_ids[1]"),
        (vec![window(&[])], "schedule.windows[0].machine_ids"),
        (
            vec![Window { unavailability: Unavailability { start_ns: 0, duration_ns: Some(-1) }, ..window(&["x"]) }],
            "schedule.windows[0].unavailability.duration",
        ),
    ];
    for (windows, field) in cases {
        let refused = m.update_maintenance_schedule(0, windows).expect_err("refused");
        assert_eq!(refused.field, field);
    }
    assert_eq!(m.drain_outputs(), vec![], "nothing persisted");
    assert_eq!(m.maintenance().draining(), vec![machine("a")]);
    assert_eq!(machine_id("machines[0]", "", "").map_err(|e| e.field), Err("machines[0]".to_owned()));
    assert_eq!(machine_id("m", "h", "1.2.3").map_err(|e| e.field), Err("m.ip".to_owned()));
    assert_eq!(m.start_maintenance(0, vec![]).map_err(|e| e.field), Err("machines".to_owned()));
    assert_eq!(m.start_maintenance(0, vec![machine("zz")]).map_err(|e| e.field), Err("machines[0]".to_owned()));
}

fn inverse_offers(outputs: &[Output]) -> Vec<(FrameworkId, InverseOffer)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ToFramework { framework_id, event: Event::InverseOffers(offers) } => {
                Some(offers.iter().map(move |offer| (framework_id.clone(), offer.clone())))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn frameworks_with_tasks_on_a_scheduled_machine_get_one_inverse_offer_and_their_answer_is_its_status() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    register(&mut m, 2, "b", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).into_iter().find(|o| o.agent_id == a).expect("an offer of a");
    launch(&mut m, &fw, &offer, "t1", None);

    m.update_maintenance_schedule(5, vec![window(&["a", "c"])]).expect("schedules");
    let sent = inverse_offers(&m.drain_outputs());
    assert_eq!(sent.len(), 1, "one framework with tasks on one scheduled agent: {sent:?}");
    let (to, inverse) = &sent[0];
    assert_eq!((to, &inverse.agent_id), (&fw.0, &a));
    assert_eq!(inverse.unavailability, window(&["a"]).unavailability);
    assert_eq!(inverse.agent_url, "http://a:5051");
    let unknown = InverseOfferStatus { framework_id: fw.0.clone(), answer: None, timestamp_ms: 5 };
    assert_eq!(m.inverse_offer_statuses().get(&machine("a")), Some(&vec![unknown]));

    m.update_maintenance_schedule(6, vec![window(&["a"])]).expect("schedules again");
    assert_eq!(inverse_offers(&m.drain_outputs()), vec![], "one is outstanding already");
    let stranger = AgentId::new("x");
    let ids = vec![inverse.id.clone(), agora_proto::model::OfferId::new(stranger.to_string())];
    m.call(7, &fw.0, &fw.1, Call::AnswerInverseOffers { ids, accept: true }).expect("answered");
    let accepted =
        InverseOfferStatus { framework_id: fw.0.clone(), answer: Some(InverseOfferAnswer::Accept), timestamp_ms: 7 };
    assert_eq!(m.inverse_offer_statuses().get(&machine("a")), Some(&vec![accepted]));
    m.update_maintenance_schedule(8, vec![window(&["a"])]).expect("schedules again");
    assert_eq!(inverse_offers(&m.drain_outputs()), vec![], "the framework answered for the machine");

    m.update_maintenance_schedule(9, vec![window(&["b"])]).expect("a leaves the schedule");
    assert_eq!(m.inverse_offer_statuses().get(&machine("a")), None, "its statuses go with it");
    m.drain_outputs();
    m.update_maintenance_schedule(10, vec![window(&["a"])]).expect("a is back");
    assert_eq!(inverse_offers(&m.drain_outputs()).len(), 1, "asked again");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn offers_of_a_scheduled_machine_carry_its_unavailability_and_earlier_ones_are_rescinded() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let b = register(&mut m, 2, "b", None).expect("registers");
    subscribe(&mut m);
    let before = offers(&mut m);
    assert!(before.iter().all(|o| o.agent.unavailability.is_none()));
    let of_a = before.iter().find(|o| o.agent_id == a).expect("an offer of a").id.clone();

    m.update_maintenance_schedule(0, vec![window(&["a"])]).expect("schedules");
    let out = m.drain_outputs();
    let rescinded: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToFramework { event: Event::Rescind(id), .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rescinded, vec![of_a], "only the scheduled agent's offer goes");
    let after = offers(&mut m);
    assert_eq!(after.len(), 1);
    assert_eq!((&after[0].agent_id, after[0].agent.unavailability), (&a, Some(window(&["a"]).unavailability)));

    // An agent registering on a scheduled machine is offered with it too.
    m.agent_disconnected(0, &b, ConnId(2));
    m.update_maintenance_schedule(0, vec![window(&["a", "b"])]).expect("schedules");
    m.drain_outputs();
    assert_eq!(register(&mut m, 3, "b", Some(&b)), Ok(b.clone()));
    let of_b = offers(&mut m).into_iter().find(|o| o.agent_id == b).expect("an offer of b");
    assert_eq!(of_b.agent.unavailability, Some(window(&["b"]).unavailability));
}

#[test]
fn tasks_ended_by_a_drain_that_marks_the_agent_gone_end_gone_by_operator() {
    let mut m = master();
    let a = register(&mut m, 1, "a", None).expect("registers");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).pop().expect("an offer");
    launch(&mut m, &fw, &offer, "t1", None);
    m.drain_agent(0, &a, None, true).expect("drains");
    m.drain_outputs();
    report(&mut m, &a, &fw.0, "t1", TaskState::TaskKilled);
    let out = m.drain_outputs();
    let update = out.iter().find_map(|o| match o {
        Output::ToFramework { event: Event::Update(status), .. } => Some(status.state),
        _ => None,
    });
    assert_eq!(update, Some(TaskState::TaskGoneByOperator));
    assert!(persisted(&out).contains(&RegistryOp::RemoveAgent { agent_id: a.clone() }), "gone once drained");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn an_operator_kill_reaches_the_agent_of_a_live_task_and_names_what_it_cannot_find() {
    let mut m = master();
    let agent = register(&mut m, 1, "h1", None).expect("registered");
    let fw = subscribe(&mut m);
    let offer = offers(&mut m).pop().expect("an offer");
    launch(&mut m, &fw, &offer, "web-1", Some(2_000));

    assert_eq!(m.kill_task_by_operator(None, &TaskId::new("web-1")), Ok(fw.0.clone()));
    assert_eq!(kills(&m.drain_outputs()), [("web-1".to_owned(), Some(2_000))]);
    assert_eq!(m.kill_task_by_operator(Some(&fw.0), &TaskId::new("web-1")), Ok(fw.0.clone()));
    assert_eq!(kills(&m.drain_outputs()).len(), 1);

    let missing = m.kill_task_by_operator(None, &TaskId::new("nope")).expect_err("no such task");
    assert_eq!((missing.kind, missing.field.as_str()), (OperatorErrorKind::NotFound, "task_id"));
    let other = FrameworkId::new("other");
    let missing = m.kill_task_by_operator(Some(&other), &TaskId::new("web-1")).expect_err("no such framework");
    assert_eq!((missing.kind, missing.field.as_str()), (OperatorErrorKind::NotFound, "framework_id"));

    // Once ended, the task is no longer live: nothing to kill.
    report(&mut m, &agent, &fw.0, "web-1", TaskState::TaskKilled);
    m.drain_outputs();
    let ended = m.kill_task_by_operator(None, &TaskId::new("web-1")).expect_err("ended");
    assert_eq!(ended.kind, OperatorErrorKind::NotFound);
    assert_eq!(m.check_invariants(), Ok(()));
}
