//! Handler tests of the master core: each drives one scenario and asserts the outputs.

use std::sync::Arc;

use agora_proto::model::{
    AgentDescription, AgentId, AgentInfo, Attribute, CommandInfo, FrameworkId, FrameworkInfo, Offer, OfferId,
    Resources, Role, StreamId, TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource, UpdateId,
};

use super::*;

const FAILOVER_MS: u64 = 60_000;

fn config() -> Config {
    Config { master_id: "m".to_owned(), ..Config::default() }
}

fn master() -> Master {
    Master::new(config(), 7)
}

fn resources(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources in a test")
}

fn agent_info(hostname: &str, text: &str) -> AgentInfo {
    AgentInfo { hostname: hostname.to_owned(), port: 5051, resources: resources(text), attributes: Vec::new() }
}

fn framework_info(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        id: None,
        name: name.to_owned(),
        user: "root".to_owned(),
        roles: vec![Role::unreserved()],
        failover_timeout_ms: FAILOVER_MS,
        hostname: "localhost".to_owned(),
        principal: String::new(),
    }
}

fn task(id: &str, agent_id: &AgentId, text: &str) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        agent_id: agent_id.clone(),
        resources: resources(text),
        command: CommandInfo { shell: Some("sleep 1".to_owned()), ..CommandInfo::default() },
        labels: Vec::new(),
        kill_grace_period_ms: None,
        health_check: None,
        readiness_check: None,
    }
}

fn agent_status(task_id: &str, agent_id: &AgentId, state: TaskState, now_ms: u64) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task_id),
        agent_id: Some(agent_id.clone()),
        state,
        reason: TaskStatusReason::Unspecified,
        source: TaskStatusSource::Agent,
        message: String::new(),
        timestamp_ms: now_ms,
        uuid: Some(UpdateId::new(format!("{task_id}-{}", state.as_str()))),
        exit_code: None,
        signal: None,
        healthy: None,
        ready: None,
    }
}

fn add_agent(m: &mut Master, now_ms: u64, conn: u64, hostname: &str, text: &str) -> AgentId {
    m.register_agent(now_ms, ConnId(conn), agent_info(hostname, text), None, Vec::new());
    match m.visible_outputs().as_slice() {
        [Output::AgentRegistered { agent_id, .. }] => agent_id.clone(),
        other => panic!("expected one AgentRegistered, got {other:?}"),
    }
}

fn subscribe(m: &mut Master, now_ms: u64, name: &str) -> (FrameworkId, StreamId) {
    let ids = m.subscribe(now_ms, framework_info(name)).expect("subscribe");
    m.visible_outputs();
    ids
}

/// Every offer in `outputs`, as (framework, offer).
fn offers(outputs: &[Output]) -> Vec<(FrameworkId, Offer)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ToFramework { framework_id, event: Event::Offers(offers) } => {
                Some(offers.iter().map(move |offer| (framework_id.clone(), offer.clone())))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn allocate(m: &mut Master, now_ms: u64) -> Vec<(FrameworkId, Offer)> {
    assert_eq!(m.check_invariants(), Ok(()));
    m.allocate(now_ms);
    assert_eq!(m.check_invariants(), Ok(()));
    offers(&m.visible_outputs())
}

fn updates(outputs: &[Output]) -> Vec<(TaskId, TaskState, TaskStatusReason)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ToFramework { event: Event::Update(s), .. } => Some((s.task_id.clone(), s.state, s.reason)),
            _ => None,
        })
        .collect()
}

fn accept(offer: &Offer, tasks: Vec<TaskInfo>, refuse_ms: u64) -> Call {
    Call::Accept { offer_ids: vec![offer.id.clone()], operations: vec![Operation::Launch { tasks }], refuse_ms }
}

/// One agent, one framework, the one offer it got, and the launch of task `t1` on it.
fn running_task(m: &mut Master) -> (AgentId, FrameworkId, StreamId) {
    let agent = add_agent(m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(m, 0, "fw");
    let got = allocate(m, 0);
    let offer = &got.first().expect("an offer").1;
    m.call(0, &fw, &stream, accept(offer, vec![task("t1", &agent, "cpus:1;mem:128")], 0)).expect("accept");
    m.visible_outputs();
    m.status_update(1, &agent, &fw, agent_status("t1", &agent, TaskState::TaskRunning, 1));
    m.visible_outputs();
    (agent, fw, stream)
}

/// A master recovered at 1,000 ms from what another persisted after agent `h1` registered
/// and framework `fw` subscribed; neither has come back to it yet.
fn recovered_master() -> (Master, AgentId, FrameworkId) {
    let mut old = master();
    old.register_agent(0, ConnId(1), agent_info("h1", "cpus:4;mem:1024"), None, vec![]);
    let (fw, _) = old.subscribe(0, framework_info("fw")).expect("subscribe");
    let mut registry = super::Registry::default();
    for op in persisted(&old.drain_outputs()) {
        registry.apply(op);
    }
    let agent = old.snapshot().agents[0].id.clone();
    let mut m = master();
    m.recover(1_000, registry);
    (m, agent, fw)
}

fn task_state(m: &Master, fw: &FrameworkId, task_id: &str) -> Option<TaskState> {
    let snapshot = m.snapshot();
    let framework = snapshot.frameworks.iter().find(|f| &f.id == fw)?;
    framework.tasks.iter().find(|t| t.info.task_id.as_str() == task_id).map(|t| t.state)
}

// ----- registration -----

#[test]
fn agents_get_sequential_ids_and_are_told_they_are_registered() {
    let mut m = master();
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:1;mem:64"), None, Vec::new());
    m.register_agent(0, ConnId(2), agent_info("h2", "cpus:1;mem:64"), None, Vec::new());
    assert_eq!(
        m.visible_outputs(),
        vec![
            Output::AgentRegistered { conn: ConnId(1), agent_id: AgentId::new("m-S1") },
            Output::AgentRegistered { conn: ConnId(2), agent_id: AgentId::new("m-S2") },
        ]
    );
    assert!(m.needs_allocation());
}

#[test]
fn an_agent_re_registering_keeps_its_id_and_its_tasks() {
    let mut m = master();
    let (agent, fw, _) = running_task(&mut m);
    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1;mem:128"),
        state: TaskState::TaskRunning,
        healthy: None,
        ready: None,
    };
    m.register_agent(5, ConnId(9), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![report]);
    assert_eq!(m.visible_outputs(), vec![Output::AgentRegistered { conn: ConnId(9), agent_id: agent.clone() }]);
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskRunning));
    assert_eq!(m.snapshot().agents[0].used, resources("cpus:1;mem:128"));
}

#[test]
fn a_task_the_agent_no_longer_reports_is_gone() {
    let mut m = master();
    let (agent, fw, _) = running_task(&mut m);
    m.register_agent(5, ConnId(9), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), Vec::new());
    let out = m.visible_outputs();
    assert_eq!(out.first(), Some(&Output::AgentRegistered { conn: ConnId(9), agent_id: agent.clone() }));
    assert_eq!(updates(&out), vec![(TaskId::new("t1"), TaskState::TaskGone, TaskStatusReason::Reconciliation)]);
    assert_eq!(task_state(&m, &fw, "t1"), None);
    assert!(m.snapshot().agents[0].used.is_empty());
}

#[test]
fn an_agent_unknown_to_a_restarted_master_is_readmitted_with_its_tasks() {
    let mut m = master();
    let agent = AgentId::new("m-S7");
    let fw = FrameworkId::new("m-0003");
    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1"),
        state: TaskState::TaskRunning,
        healthy: None,
        ready: None,
    };
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:2;mem:256"), Some(agent.clone()), vec![report]);
    assert_eq!(m.visible_outputs(), vec![Output::AgentRegistered { conn: ConnId(1), agent_id: agent.clone() }]);
    let snapshot = m.snapshot();
    assert_eq!(snapshot.frameworks.len(), 1);
    assert!(!snapshot.frameworks[0].active, "the placeholder waits for its framework");
    assert_eq!(snapshot.frameworks[0].used, resources("cpus:1"));
    // Ids handed out later never collide with the re-admitted ones.
    assert_eq!(add_agent(&mut m, 0, 2, "h2", "cpus:1;mem:64"), AgentId::new("m-S8"));
    let (new_fw, _) = subscribe(&mut m, 0, "other");
    assert_eq!(new_fw, FrameworkId::new("m-0004"));
    // The framework re-subscribes under its id and finds its task.
    let mut info = framework_info("fw");
    info.id = Some(fw.clone());
    m.subscribe(1, info).expect("re-subscribe");
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskRunning));
}

#[test]
fn a_restarted_master_takes_the_health_of_readmitted_tasks_from_their_agent() {
    let mut m = master();
    let agent = AgentId::new("m-S7");
    let fw = FrameworkId::new("m-0003");
    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1"),
        state: TaskState::TaskRunning,
        healthy: Some(true),
        ready: Some(true),
    };
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:2;mem:256"), Some(agent.clone()), vec![report]);
    m.visible_outputs();
    let statuses = m.snapshot().frameworks[0].tasks[0].statuses.clone();
    assert_eq!(statuses.last().map(|s| (s.healthy, s.ready)), Some((Some(true), Some(true))));
    // The framework re-subscribes and reconciles: the answer says the task is healthy, so
    // a framework counting healthy instances does not lose them to a master failover.
    let mut info = framework_info("fw");
    info.id = Some(fw.clone());
    let (_, stream) = m.subscribe(1, info).expect("re-subscribe");
    m.visible_outputs();
    m.call(2, &fw, &stream, Call::Reconcile { tasks: Vec::new() }).expect("reconcile");
    match m.visible_outputs().as_slice() {
        [Output::ToFramework { event: Event::Update(status), .. }] => {
            assert_eq!((status.state, status.healthy, status.ready), (TaskState::TaskRunning, Some(true), Some(true)));
        }
        other => panic!("expected one reconciliation update, got {other:?}"),
    }
}

#[test]
fn registration_is_refused_when_resources_do_not_cover_the_reported_tasks() {
    let mut m = master();
    let agent = AgentId::new("m-S1");
    let report = ReportedTask {
        framework_id: FrameworkId::new("f"),
        task: task("t1", &agent, "cpus:3"),
        state: TaskState::TaskRunning,
        healthy: None,
        ready: None,
    };
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:2;mem:256"), Some(agent), vec![report]);
    match m.visible_outputs().as_slice() {
        [Output::AgentRefused { conn: ConnId(1), reason }] => assert!(reason.contains("do not cover"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(m.snapshot().agents.is_empty());
}

// ----- offers and DRF -----

#[test]
fn failing_over_into_another_principals_framework_is_forbidden_and_changes_nothing() {
    let mut m = master();
    let owned = FrameworkInfo { principal: "web".to_owned(), ..framework_info("web") };
    let (framework_id, stream_id) = m.subscribe(0, owned.clone()).expect("subscribe");
    m.visible_outputs();
    let thief = FrameworkInfo { id: Some(framework_id.clone()), principal: "ops".to_owned(), ..owned.clone() };
    let refused = m.subscribe(1, thief);
    assert_eq!(
        refused,
        Err(CallError::Forbidden(format!(
            "framework {framework_id} belongs to another principal; subscribe as that principal"
        )))
    );
    let anonymous = FrameworkInfo { id: Some(framework_id.clone()), principal: String::new(), ..owned.clone() };
    assert!(matches!(m.subscribe(1, anonymous), Err(CallError::Forbidden(_))));
    assert!(m.visible_outputs().is_empty(), "a refused subscription sends and persists nothing");
    assert_eq!(
        m.call(2, &framework_id, &stream_id, Call::Revive { roles: Vec::new() }),
        Ok(()),
        "the owner's stream is intact"
    );
    let owner = FrameworkInfo { id: Some(framework_id.clone()), ..owned };
    assert!(m.subscribe(3, owner).is_ok(), "the same principal fails over");
}

#[test]
fn a_framework_kills_reconciles_and_acknowledges_only_its_own_tasks() {
    let mut m = master();
    let (agent, owner, _) = running_task(&mut m);
    let (other, other_stream) = subscribe(&mut m, 2, "other");
    let kill = Call::Kill { task_id: TaskId::new("t1"), agent_id: Some(agent.clone()) };
    m.call(3, &other, &other_stream, kill).expect("a kill is answered");
    let ack = Call::Acknowledge { agent_id: agent.clone(), task_id: TaskId::new("t1"), uuid: UpdateId::new("u") };
    m.call(3, &other, &other_stream, ack).expect("an acknowledgement is passed on");
    let reconcile = Call::Reconcile { tasks: vec![(TaskId::new("t1"), Some(agent.clone()))] };
    m.call(3, &other, &other_stream, reconcile).expect("a reconciliation is answered");
    let out = m.visible_outputs();
    for output in &out {
        match output {
            Output::ToAgent { message: ToAgent::KillTask { .. }, .. } => {
                panic!("another framework's kill reached the agent")
            }
            Output::ToAgent { message: ToAgent::Acknowledge { framework_id, .. }, .. } => {
                assert_eq!(framework_id, &other, "an acknowledgement names the caller's framework only");
            }
            Output::ToFramework { framework_id, .. } => assert_eq!(framework_id, &other, "only the caller hears back"),
            _ => {}
        }
    }
    assert_eq!(task_state(&m, &owner, "t1"), Some(TaskState::TaskRunning), "the owner's task runs on");
}

#[test]
fn a_subscribed_framework_is_offered_the_whole_free_agent() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024;ports:[31000-31009]");
    let (fw, _) = m.subscribe(0, framework_info("fw")).expect("subscribe");
    assert_eq!(fw, FrameworkId::new("m-0001"));
    match m.visible_outputs().as_slice() {
        [Output::ToFramework { event: Event::Subscribed { heartbeat_interval_ms: 15_000, .. }, .. }] => {}
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    }
    assert!(m.needs_allocation());
    m.allocate(0);
    assert!(!m.needs_allocation());
    let expected = Offer {
        id: OfferId::new("m-O1"),
        framework_id: fw.clone(),
        agent_id: agent,
        resources: resources("cpus:4;mem:1024;ports:[31000-31009]"),
        agent: Arc::new(AgentDescription {
            unavailability: None,
            hostname: "h1".into(),
            attributes: Vec::new(),
            url: "http://h1:5051".into(),
        }),
        allocation_role: Role::unreserved(),
    };
    assert_eq!(
        m.visible_outputs(),
        vec![Output::ToFramework { framework_id: fw, event: Event::Offers(vec![expected]) }]
    );
    // Nothing is free any more: a second round offers nothing.
    assert!(allocate(&mut m, 0).is_empty());
}

#[test]
fn each_framework_gets_one_offers_event_per_round() {
    let mut m = master();
    for i in 0..4 {
        add_agent(&mut m, 0, i, &format!("h{i}"), "cpus:1;mem:128");
    }
    subscribe(&mut m, 0, "a");
    subscribe(&mut m, 0, "b");
    m.allocate(0);
    let out = m.visible_outputs();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(offers(&out).len(), 4);
}

#[test]
fn the_framework_with_the_lower_dominant_share_gets_the_next_agent() {
    let mut m = master();
    let a1 = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:4096");
    let (big, big_stream) = subscribe(&mut m, 0, "big");
    let got = allocate(&mut m, 0);
    let offer = &got[0].1;
    // `big` runs a task holding half the cluster's memory, then returns the rest.
    m.call(0, &big, &big_stream, accept(offer, vec![task("t", &a1, "cpus:1;mem:2048")], 0)).expect("accept");
    let (small, _) = subscribe(&mut m, 0, "small");
    m.visible_outputs();
    add_agent(&mut m, 0, 2, "h2", "cpus:4;mem:4096");
    let got = allocate(&mut m, 0);
    // Both agents have free resources; `small` (share 0) gets the first agent of the
    // round, which lifts its share above `big`'s (2048/8192 = 25%), so `big` gets the other.
    assert_eq!(got.len(), 2, "{got:?}");
    let mut by_framework: Vec<&FrameworkId> = got.iter().map(|(f, _)| f).collect();
    by_framework.sort();
    assert_eq!(by_framework, vec![&big, &small]);
}

#[test]
fn with_one_agent_the_framework_holding_less_is_offered_it() {
    let mut m = master();
    let a1 = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:4096");
    let a2 = add_agent(&mut m, 0, 2, "h2", "cpus:4;mem:4096");
    let (f1, s1) = subscribe(&mut m, 0, "f1");
    let (f2, s2) = subscribe(&mut m, 0, "f2");
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 2);
    // f1 uses one CPU on its agent, f2 two; both decline the rest for a long time.
    for (fw, stream, cpus) in [(&f1, &s1, "cpus:1"), (&f2, &s2, "cpus:2")] {
        let (_, offer) = got.iter().find(|(f, _)| f == fw).expect("an offer each");
        let t = task(&format!("{fw}-t"), &offer.agent_id, cpus);
        m.call(0, fw, stream, accept(offer, vec![t], 0)).expect("accept");
    }
    m.visible_outputs();
    // Both agents now have free resources; f1 (12.5%) sorts before f2 (25%) and is
    // offered whichever agent comes first; after that f1 holds more than f2 and the other goes to f2.
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 2);
    let first = &got.iter().find(|(_, o)| o.id == OfferId::new("m-O3")).expect("first offer of the round").0;
    assert_eq!(first, &f1);
    let _ = (a1, a2);
}

#[test]
fn agents_below_the_minimum_allocatable_are_not_offered() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "tiny", "cpus:0.005;mem:16;disk:100");
    add_agent(&mut m, 0, 2, "mem-only", "cpus:0.005;mem:64");
    subscribe(&mut m, 0, "fw");
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.hostname(), "mem-only", "enough memory alone is worth offering");
}

#[test]
fn reserved_resources_are_offered_only_to_their_role() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128;cpus(eng):2;mem(eng):256");
    let (ops, _) = subscribe(&mut m, 0, "ops");
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, ops);
    assert_eq!(got[0].1.resources, resources("cpus:1;mem:128"));
    let mut info = framework_info("eng");
    info.roles = vec![Role::parse("eng").expect("role")];
    let (eng, _) = m.subscribe(0, info).expect("subscribe");
    m.visible_outputs();
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, eng);
    assert_eq!(got[0].1.resources, resources("cpus(eng):2;mem(eng):256"));
}

#[test]
fn update_framework_moves_a_framework_to_new_roles_on_the_same_stream() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128;cpus(eng):2;mem(eng):256");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.resources, resources("cpus:1;mem:128"));
    let mut info = framework_info("fw");
    info.id = Some(fw.clone());
    info.roles = vec![Role::parse("eng").expect("role")];
    assert_eq!(m.call(0, &fw, &stream, Call::UpdateFramework { info: info.clone() }), Ok(()));
    let outputs = m.visible_outputs();
    assert!(
        outputs.iter().any(|o| matches!(o, Output::ToFramework { event: Event::Rescind(_), .. })),
        "the offer made for the old role is rescinded: {outputs:?}"
    );
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 1);
    // As `eng` the framework is offered the role's reservation besides the unreserved.
    assert_eq!((&got[0].0, &got[0].1.resources), (&fw, &resources("cpus:1;mem:128;cpus(eng):2;mem(eng):256")));
    info.user = "someone-else".to_owned();
    let refused = m.call(0, &fw, &stream, Call::UpdateFramework { info });
    assert!(
        matches!(refused, Err(CallError::Invalid { ref field, .. }) if field == "framework_info.user"),
        "{refused:?}"
    );
    assert_eq!(m.check_invariants(), Ok(()));
}

// ----- filters, revive, suppress -----

#[test]
fn declined_resources_are_reoffered_after_the_filter_expires_not_before() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.call(10, &fw, &stream, Call::Decline { offer_ids: vec![offer.id], refuse_ms: 5_000 }).expect("decline");
    assert!(m.needs_allocation());
    assert!(allocate(&mut m, 10).is_empty());
    m.tick(5_009);
    assert!(!m.needs_allocation());
    assert!(allocate(&mut m, 5_009).is_empty(), "the filter still holds 1 ms before it ends");
    m.tick(5_010);
    assert!(m.needs_allocation(), "an expired filter calls for a round");
    assert_eq!(allocate(&mut m, 5_010).len(), 1);
    assert_eq!(m.snapshot().counters.offers_declined, 1);
}

#[test]
fn a_decline_without_refuse_time_sets_no_filter() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.call(0, &fw, &stream, Call::Decline { offer_ids: vec![offer.id], refuse_ms: 0 }).expect("decline");
    assert_eq!(allocate(&mut m, 0).len(), 1);
}

#[test]
fn a_declined_agent_goes_to_the_next_framework() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (f1, s1) = subscribe(&mut m, 0, "f1");
    let (f2, _) = subscribe(&mut m, 0, "f2");
    let (first, offer) = allocate(&mut m, 0).remove(0);
    assert_eq!(first, f1, "equal shares break ties on the id");
    m.call(0, &f1, &s1, Call::Decline { offer_ids: vec![offer.id], refuse_ms: 60_000 }).expect("decline");
    assert_eq!(allocate(&mut m, 0).remove(0).0, f2);
}

#[test]
fn revive_clears_filters() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.call(0, &fw, &stream, Call::Decline { offer_ids: vec![offer.id], refuse_ms: 60_000 }).expect("decline");
    assert!(allocate(&mut m, 0).is_empty());
    m.call(1, &fw, &stream, Call::Revive { roles: Vec::new() }).expect("revive");
    assert!(m.needs_allocation());
    assert_eq!(allocate(&mut m, 1).len(), 1);
}

#[test]
fn a_suppressed_framework_gets_no_offers_until_it_revives() {
    let mut m = master();
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    m.call(0, &fw, &stream, Call::Suppress { roles: Vec::new() }).expect("suppress");
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    assert!(allocate(&mut m, 0).is_empty());
    let bad = Call::Suppress { roles: vec![Role::parse("other").expect("role")] };
    assert!(matches!(m.call(0, &fw, &stream, bad), Err(CallError::Invalid { .. })));
    m.call(1, &fw, &stream, Call::Revive { roles: vec![Role::unreserved()] }).expect("revive");
    assert_eq!(allocate(&mut m, 1).len(), 1);
}

/// A master that lets a framework hold `bound` offers, with `agents` small agents.
fn master_with_offer_bound(bound: usize, agents: u64) -> Master {
    let mut m = Master::new(Config { max_offers_per_framework: Some(bound), ..config() }, 7);
    for i in 0..agents {
        add_agent(&mut m, 0, i, &format!("h{i}"), "cpus:1;mem:128");
    }
    m
}

#[test]
fn a_framework_holds_at_most_the_offer_bound_and_gets_the_rest_as_it_answers() {
    let mut m = master_with_offer_bound(3, 10);
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let first = allocate(&mut m, 0);
    assert_eq!(first.len(), 3, "three offers, not one per free agent");
    // Nothing else can take the other seven agents: the round found them stuck, yet they
    // are offered once the framework gives offers back.
    assert!(allocate(&mut m, 0).is_empty(), "at the bound, nothing more");
    let mut seen: Vec<AgentId> = first.iter().map(|(_, o)| o.agent_id.clone()).collect();
    let mut held: Vec<Offer> = first.into_iter().map(|(_, o)| o).collect();
    for round in 1..=4 {
        let offer_ids = held.drain(..).map(|o| o.id).collect();
        m.call(round, &fw, &stream, Call::Decline { offer_ids, refuse_ms: 60_000 }).expect("decline");
        let next = allocate(&mut m, round);
        assert!(next.len() <= 3, "round {round}: {} offers", next.len());
        seen.extend(next.iter().map(|(_, o)| o.agent_id.clone()));
        held.extend(next.into_iter().map(|(_, o)| o));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10, "every agent offered once, each declined with a filter");
}

#[test]
fn agents_a_framework_at_its_offer_bound_cannot_take_go_to_the_next() {
    let mut m = master_with_offer_bound(2, 5);
    let (f1, _) = subscribe(&mut m, 0, "f1");
    let (f2, _) = subscribe(&mut m, 0, "f2");
    let got = allocate(&mut m, 0);
    let to = |fw: &FrameworkId| got.iter().filter(|(f, _)| f == fw).count();
    assert_eq!((to(&f1), to(&f2), got.len()), (2, 2, 4), "one agent left for nobody");
}

// ----- rescind -----

#[test]
fn offers_are_rescinded_when_their_agent_disconnects() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (fw, _) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.agent_disconnected(1, &agent, ConnId(99));
    assert!(m.visible_outputs().is_empty(), "a stale connection's close is ignored");
    m.agent_disconnected(1, &agent, ConnId(1));
    assert_eq!(m.visible_outputs(), vec![Output::ToFramework { framework_id: fw, event: Event::Rescind(offer.id) }]);
    assert!(allocate(&mut m, 1).is_empty(), "a disconnected agent is not offered");
    let snapshot = m.snapshot();
    assert_eq!(snapshot.outstanding_offers, 0);
    assert!(!snapshot.agents[0].active && snapshot.agents[0].reachable);
    assert_eq!(snapshot.counters.offers_rescinded, 1);
}

#[test]
fn offers_are_rescinded_after_the_offer_timeout() {
    let mut m = Master::new(Config { offer_timeout_ms: Some(1_000), ..config() }, 1);
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (fw, _) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 100).remove(0).1;
    m.tick(1_099);
    assert!(m.visible_outputs().is_empty());
    m.tick(1_100);
    assert_eq!(m.visible_outputs(), vec![Output::ToFramework { framework_id: fw, event: Event::Rescind(offer.id) }]);
    assert!(m.needs_allocation());
    assert_eq!(allocate(&mut m, 1_100).len(), 1, "a timed-out offer sets no filter");
}

// ----- launch -----

#[test]
fn a_launch_uses_the_task_resources_and_a_terminal_update_frees_them_once() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    let t1 = task("t1", &agent, "cpus:1;mem:128");
    m.call(0, &fw, &stream, accept(&offer, vec![t1.clone()], 5_000)).expect("accept");
    let out = m.visible_outputs();
    match out.as_slice() {
        [Output::ToAgent { agent_id, message: ToAgent::RunTask { framework, task } }] => {
            assert_eq!(agent_id, &agent);
            assert_eq!(framework.id.as_ref(), Some(&fw));
            assert_eq!(task, &t1);
        }
        other => panic!("expected exactly one RunTask and no TASK_STAGING, got {other:?}"),
    }
    let snapshot = m.snapshot();
    assert_eq!(snapshot.agents[0].used, resources("cpus:1;mem:128"));
    assert!(snapshot.agents[0].offered.is_empty());
    assert_eq!(snapshot.frameworks[0].used, resources("cpus:1;mem:128"));
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskStaging));
    // The unused rest is filtered for this framework for refuse_ms.
    assert!(allocate(&mut m, 0).is_empty());

    let finished = agent_status("t1", &agent, TaskState::TaskFinished, 10);
    m.status_update(10, &agent, &fw, finished.clone());
    assert_eq!(
        m.visible_outputs(),
        vec![Output::ToFramework { framework_id: fw.clone(), event: Event::Update(finished.clone()) }]
    );
    // The agent retries until acknowledged: the same update again frees nothing twice.
    m.status_update(11, &agent, &fw, finished.clone());
    assert_eq!(updates(&m.visible_outputs()).len(), 1, "a retried update is still forwarded");
    let snapshot = m.snapshot();
    assert!(snapshot.agents[0].used.is_empty());
    assert!(snapshot.frameworks[0].used.is_empty());
    assert_eq!(snapshot.frameworks[0].completed_tasks.len(), 1);
    assert_eq!(snapshot.counters.tasks_launched, 1);
    m.tick(5_000);
    assert_eq!(allocate(&mut m, 5_000)[0].1.resources, resources("cpus:4;mem:1024"));
}

#[test]
fn a_move_backwards_is_ignored_but_still_forwarded() {
    let mut m = master();
    let (agent, fw, _) = running_task(&mut m);
    let starting = agent_status("t1", &agent, TaskState::TaskStarting, 5);
    m.status_update(5, &agent, &fw, starting.clone());
    assert_eq!(
        m.visible_outputs(),
        vec![Output::ToFramework { framework_id: fw.clone(), event: Event::Update(starting) }]
    );
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskRunning));
}

fn dropped(
    m: &mut Master,
    fw: &FrameworkId,
    stream: &StreamId,
    call: Call,
) -> Vec<(TaskId, TaskState, TaskStatusReason)> {
    m.call(0, fw, stream, call).expect("the call itself is valid");
    let out = m.visible_outputs();
    assert!(!out.iter().any(|o| matches!(o, Output::ToAgent { .. })), "nothing launched: {out:?}");
    updates(&out)
}

#[test]
fn a_launch_on_an_unknown_or_used_offer_drops_every_task() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    let call = Call::Accept {
        offer_ids: vec![offer.id.clone(), OfferId::new("nope")],
        operations: vec![Operation::Launch { tasks: vec![task("a", &agent, "cpus:1"), task("b", &agent, "cpus:1")] }],
        refuse_ms: 0,
    };
    let dropped_ab = vec![
        (TaskId::new("a"), TaskState::TaskDropped, TaskStatusReason::InvalidOffers),
        (TaskId::new("b"), TaskState::TaskDropped, TaskStatusReason::InvalidOffers),
    ];
    assert_eq!(dropped(&mut m, &fw, &stream, call), dropped_ab);
    // The valid named offer was used up, as in Mesos.
    assert_eq!(m.snapshot().outstanding_offers, 0);
    assert!(m.snapshot().agents[0].used.is_empty());
    let call = accept(&offer, vec![task("c", &agent, "cpus:1")], 0);
    assert_eq!(
        dropped(&mut m, &fw, &stream, call),
        vec![(TaskId::new("c"), TaskState::TaskDropped, TaskStatusReason::InvalidOffers)]
    );
    assert_eq!(m.snapshot().counters.tasks_dropped, 3);
}

#[test]
fn a_launch_on_another_frameworks_offer_is_dropped_and_leaves_that_offer_alone() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (owner, _) = subscribe(&mut m, 0, "owner");
    let offer = allocate(&mut m, 0).remove(0).1;
    assert_eq!(offer.framework_id, owner);
    let (thief, stream) = subscribe(&mut m, 0, "thief");
    let call = accept(&offer, vec![task("a", &agent, "cpus:1")], 0);
    assert_eq!(
        dropped(&mut m, &thief, &stream, call),
        vec![(TaskId::new("a"), TaskState::TaskDropped, TaskStatusReason::InvalidOffers)]
    );
    assert_eq!(m.snapshot().outstanding_offers, 1);
}

#[test]
fn a_launch_on_offers_of_two_agents_is_dropped() {
    let mut m = master();
    let a1 = add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    add_agent(&mut m, 0, 2, "h2", "cpus:1;mem:128");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let ids: Vec<OfferId> = allocate(&mut m, 0).into_iter().map(|(_, o)| o.id).collect();
    assert_eq!(ids.len(), 2);
    let call = Call::Accept {
        offer_ids: ids,
        operations: vec![Operation::Launch { tasks: vec![task("a", &a1, "cpus:1")] }],
        refuse_ms: 0,
    };
    assert_eq!(
        dropped(&mut m, &fw, &stream, call),
        vec![(TaskId::new("a"), TaskState::TaskDropped, TaskStatusReason::InvalidOffers)]
    );
    assert_eq!(m.snapshot().outstanding_offers, 0);
}

#[test]
fn invalid_tasks_get_task_error_and_valid_ones_still_launch() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:2;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    let tasks = vec![
        task("ok", &agent, "cpus:1;mem:512"),
        task("ok", &agent, "cpus:0.1"),
        task("elsewhere", &AgentId::new("m-S9"), "cpus:0.1"),
        task("too-big", &agent, "cpus:1;mem:600"),
        task("empty", &agent, ""),
        task("rest", &agent, "cpus:1;mem:512"),
    ];
    m.call(0, &fw, &stream, accept(&offer, tasks, 0)).expect("accept");
    let out = m.visible_outputs();
    let launched: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToAgent { message: ToAgent::RunTask { task, .. }, .. } => Some(task.task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(launched, vec!["ok", "rest"]);
    assert_eq!(
        updates(&out),
        vec![
            (TaskId::new("ok"), TaskState::TaskError, TaskStatusReason::DuplicateTaskId),
            (TaskId::new("elsewhere"), TaskState::TaskError, TaskStatusReason::TaskInvalid),
            (TaskId::new("too-big"), TaskState::TaskError, TaskStatusReason::ResourcesExceededOffer),
            (TaskId::new("empty"), TaskState::TaskError, TaskStatusReason::TaskInvalid),
        ]
    );
    assert_eq!(m.snapshot().agents[0].used, resources("cpus:2;mem:1024"));
    assert_eq!(m.snapshot().counters.tasks_errored, 4);
    // A live task's id cannot be reused in a later ACCEPT either.
    m.status_update(1, &agent, &fw, agent_status("rest", &agent, TaskState::TaskFinished, 1));
    m.visible_outputs();
    let offer = allocate(&mut m, 1).remove(0).1;
    m.call(1, &fw, &stream, accept(&offer, vec![task("ok", &agent, "cpus:0.5")], 0)).expect("accept");
    assert_eq!(
        updates(&m.visible_outputs()),
        vec![(TaskId::new("ok"), TaskState::TaskError, TaskStatusReason::DuplicateTaskId)]
    );
}

#[test]
fn a_task_whose_user_the_run_tasks_acl_forbids_gets_task_error_unauthorized() {
    let acls = agora_proto::acl::Acls::parse(
        r#"{"run_tasks": [{"principals": {"type": "NONE"}, "users": {"values": ["root"]}}]}"#,
    )
    .expect("valid ACLs");
    let mut m = Master::new(Config { acls: Some(Arc::new(acls)), ..config() }, 1);
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:2;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    let mut as_nobody = task("as-nobody", &agent, "cpus:0.5");
    as_nobody.command.user = Some("nobody".to_owned());
    // The framework's user (root) is the task's when the task names none.
    let tasks = vec![task("as-root", &agent, "cpus:0.5"), as_nobody];
    m.call(0, &fw, &stream, accept(&offer, tasks, 0)).expect("accept");
    let out = m.visible_outputs();
    let launched: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToAgent { message: ToAgent::RunTask { task, .. }, .. } => Some(task.task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(launched, vec!["as-nobody"]);
    assert_eq!(updates(&out), vec![(TaskId::new("as-root"), TaskState::TaskError, TaskStatusReason::TaskUnauthorized)]);
    let message = out.iter().find_map(|o| match o {
        Output::ToFramework { event: Event::Update(status), .. } if status.task_id.as_str() == "as-root" => {
            Some(status.message.clone())
        }
        _ => None,
    });
    assert_eq!(
        message.as_deref(),
        Some("an anonymous caller may not run_tasks for users \"root\": refused by ACL run_tasks[0]")
    );
}

#[test]
fn too_many_tasks_in_one_accept_is_refused_as_a_whole() {
    let mut m = Master::new(Config { max_tasks_per_accept: 2, ..config() }, 1);
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    let tasks = (0..3).map(|i| task(&format!("t{i}"), &agent, "cpus:0.1")).collect();
    let err = m.call(0, &fw, &stream, accept(&offer, tasks, 0)).expect_err("too many");
    assert!(matches!(err, CallError::Invalid { ref field, .. } if field == "accept.operations"), "{err}");
    assert_eq!(m.snapshot().outstanding_offers, 1, "a refused call changes nothing");
}

// ----- unreachable agents -----

#[test]
fn a_silent_agent_becomes_unreachable_and_its_return_brings_its_tasks_back() {
    let mut m = master();
    let (agent, fw, _) = running_task(&mut m);
    let spare = add_agent(&mut m, 0, 2, "h2", "cpus:1;mem:128");
    let got = allocate(&mut m, 0);
    assert!(got.iter().all(|(_, o)| o.agent_id == spare || o.agent_id == agent));
    m.agent_heartbeat(60_000, &spare);
    m.tick(74_999);
    assert!(m.visible_outputs().is_empty());
    m.tick(75_001);
    let out = m.visible_outputs();
    let rescinds = out.iter().filter(|o| matches!(o, Output::ToFramework { event: Event::Rescind(_), .. })).count();
    assert_eq!(rescinds, got.iter().filter(|(_, o)| o.agent_id == agent).count());
    assert_eq!(updates(&out), vec![(TaskId::new("t1"), TaskState::TaskUnreachable, TaskStatusReason::AgentRemoved)]);
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskUnreachable));
    assert_eq!(m.snapshot().counters.agents_unreachable, 1);
    assert!(!m.snapshot().agents[0].reachable);

    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1;mem:128"),
        state: TaskState::TaskRunning,
        healthy: None,
        ready: None,
    };
    m.register_agent(80_000, ConnId(3), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![report]);
    let out = m.visible_outputs();
    assert_eq!(out.first(), Some(&Output::AgentRegistered { conn: ConnId(3), agent_id: agent.clone() }));
    assert_eq!(updates(&out), vec![(TaskId::new("t1"), TaskState::TaskRunning, TaskStatusReason::Reconciliation)]);
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskRunning));
    assert!(m.snapshot().agents[0].reachable);
}

#[test]
fn an_agent_that_becomes_unreachable_is_disconnected_so_that_it_reregisters() {
    let mut m = master();
    let (agent, fw, _) = running_task(&mut m);
    m.tick(80_000);
    let out = m.visible_outputs();
    assert_eq!(out.iter().filter(|o| **o == Output::ReconnectAgent { agent_id: agent.clone() }).count(), 1, "{out:?}");
    // What it says before re-registering is not trusted, and it is asked only once.
    m.agent_heartbeat(80_001, &agent);
    m.status_update(80_002, &agent, &fw, agent_status("t1", &agent, TaskState::TaskFinished, 1));
    m.agent_heartbeat(80_003, &agent);
    assert!(m.visible_outputs().is_empty());
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskUnreachable));
}

#[test]
fn a_disconnected_agent_that_stays_away_becomes_unreachable_with_reason_disconnected() {
    let mut m = master();
    let (agent, _, _) = running_task(&mut m);
    m.agent_disconnected(10, &agent, ConnId(1));
    m.tick(80_000);
    assert_eq!(
        updates(&m.visible_outputs()),
        vec![(TaskId::new("t1"), TaskState::TaskUnreachable, TaskStatusReason::AgentDisconnected)]
    );
}

#[test]
fn a_staging_task_on_an_unreachable_agent_is_killed_when_the_agent_returns() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.call(0, &fw, &stream, accept(&offer, vec![task("t1", &agent, "cpus:1")], 0)).expect("accept");
    m.tick(100_000);
    m.visible_outputs();
    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1"),
        state: TaskState::TaskStaging,
        healthy: None,
        ready: None,
    };
    m.register_agent(100_001, ConnId(2), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![report]);
    assert_eq!(
        m.visible_outputs(),
        vec![
            Output::AgentRegistered { conn: ConnId(2), agent_id: agent.clone() },
            Output::ToAgent {
                agent_id: agent.clone(),
                message: ToAgent::KillTask {
                    framework_id: fw.clone(),
                    task_id: TaskId::new("t1"),
                    grace_period_ms: None
                },
            },
        ]
    );
    m.status_update(100_002, &agent, &fw, agent_status("t1", &agent, TaskState::TaskKilled, 100_002));
    assert_eq!(task_state(&m, &fw, "t1"), None);
    assert!(m.snapshot().agents[0].used.is_empty());
}

// ----- kill, acknowledge, message -----

#[test]
fn kill_of_a_live_task_goes_to_its_agent_and_of_an_unknown_task_answers_lost() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.call(1, &fw, &stream, Call::Kill { task_id: TaskId::new("t1"), agent_id: None }).expect("kill");
    assert_eq!(
        m.visible_outputs(),
        vec![Output::ToAgent {
            agent_id: agent.clone(),
            message: ToAgent::KillTask { framework_id: fw.clone(), task_id: TaskId::new("t1"), grace_period_ms: None },
        }]
    );
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskRunning), "KILLING comes from the agent");
    m.call(1, &fw, &stream, Call::Kill { task_id: TaskId::new("nope"), agent_id: Some(agent) }).expect("kill");
    assert_eq!(
        updates(&m.visible_outputs()),
        vec![(TaskId::new("nope"), TaskState::TaskLost, TaskStatusReason::TaskUnknown)]
    );
}

#[test]
fn a_kill_while_the_agent_is_disconnected_is_sent_when_it_returns() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.agent_disconnected(1, &agent, ConnId(1));
    m.call(2, &fw, &stream, Call::Kill { task_id: TaskId::new("t1"), agent_id: None }).expect("kill");
    assert!(m.visible_outputs().is_empty());
    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1;mem:128"),
        state: TaskState::TaskRunning,
        healthy: None,
        ready: None,
    };
    m.register_agent(3, ConnId(2), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![report]);
    let out = m.visible_outputs();
    assert!(out.contains(&Output::ToAgent {
        agent_id: agent,
        message: ToAgent::KillTask { framework_id: fw, task_id: TaskId::new("t1"), grace_period_ms: None },
    }));
}

#[test]
fn acknowledgements_go_to_connected_agents_and_messages_are_refused() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    let uuid = UpdateId::new("u1");
    let ack = Call::Acknowledge { agent_id: agent.clone(), task_id: TaskId::new("t1"), uuid: uuid.clone() };
    m.call(1, &fw, &stream, ack.clone()).expect("ack");
    assert_eq!(
        m.visible_outputs(),
        vec![Output::ToAgent {
            agent_id: agent.clone(),
            message: ToAgent::Acknowledge { framework_id: fw.clone(), task_id: TaskId::new("t1"), uuid },
        }]
    );
    m.agent_disconnected(2, &agent, ConnId(1));
    m.call(2, &fw, &stream, ack).expect("ack");
    assert!(m.visible_outputs().is_empty());
    let message = Call::Message { agent_id: agent, data: b"hi".to_vec() };
    assert!(
        matches!(m.call(2, &fw, &stream, message), Err(CallError::Invalid { ref field, .. }) if field == "message")
    );
}

// ----- frameworks -----

#[test]
fn calls_need_a_known_framework_and_its_current_stream() {
    let mut m = master();
    let (fw, old) = subscribe(&mut m, 0, "fw");
    let stranger = FrameworkId::new("nobody");
    assert_eq!(m.call(0, &stranger, &old, Call::Teardown), Err(CallError::UnknownFramework(stranger)));
    let mut info = framework_info("fw");
    info.id = Some(fw.clone());
    let (same, new) = m.subscribe(1, info).expect("re-subscribe");
    assert_eq!(same, fw);
    assert_ne!(new, old);
    assert_eq!(m.call(1, &fw, &old, Call::Revive { roles: Vec::new() }), Err(CallError::StaleStream(old.clone())));
    // The old stream closing does not disconnect the new one.
    m.framework_disconnected(2, &fw, &old);
    assert!(m.snapshot().frameworks[0].active);
    m.call(2, &fw, &new, Call::Revive { roles: Vec::new() }).expect("current stream");
}

#[test]
fn a_resubscribing_framework_loses_the_offers_of_its_old_stream() {
    let mut m = master();
    add_agent(&mut m, 0, 1, "h1", "cpus:1;mem:128");
    let (fw, _) = subscribe(&mut m, 0, "fw");
    assert_eq!(allocate(&mut m, 0).len(), 1);
    let mut info = framework_info("fw");
    info.id = Some(fw.clone());
    m.subscribe(1, info).expect("re-subscribe");
    match m.visible_outputs().as_slice() {
        [Output::ToFramework { event: Event::Subscribed { .. }, .. }] => {}
        other => panic!("expected only SUBSCRIBED, got {other:?}"),
    }
    assert_eq!(m.snapshot().outstanding_offers, 0);
    assert_eq!(allocate(&mut m, 1).len(), 1, "the new stream is offered afresh");
}

#[test]
fn teardown_kills_the_tasks_and_closes_the_framework() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.call(5, &fw, &stream, Call::Teardown).expect("teardown");
    assert_eq!(
        m.visible_outputs(),
        vec![
            Output::ToAgent {
                agent_id: agent.clone(),
                message: ToAgent::ShutdownFramework { framework_id: fw.clone() }
            },
            Output::CloseFramework { framework_id: fw.clone() },
        ]
    );
    let snapshot = m.snapshot();
    assert!(snapshot.frameworks.is_empty());
    assert_eq!(snapshot.completed_frameworks.len(), 1);
    assert_eq!(snapshot.completed_frameworks[0].completed_tasks[0].state, TaskState::TaskKilled);
    assert!(snapshot.agents[0].used.is_empty());
    assert_eq!(m.call(5, &fw, &stream, Call::Teardown), Err(CallError::UnknownFramework(fw.clone())));
    // A removed framework may not come back under its id.
    let mut info = framework_info("fw");
    info.id = Some(fw);
    assert!(matches!(m.subscribe(6, info), Err(CallError::Invalid { .. })));
}

#[test]
fn a_disconnected_framework_is_removed_after_its_failover_timeout() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.framework_disconnected(10, &fw, &stream);
    assert!(!m.snapshot().frameworks[0].active);
    m.tick(10 + FAILOVER_MS - 1);
    assert!(m.visible_outputs().is_empty());
    m.agent_heartbeat(10 + FAILOVER_MS, &agent);
    m.tick(10 + FAILOVER_MS);
    assert_eq!(
        m.visible_outputs(),
        vec![
            Output::ToAgent { agent_id: agent, message: ToAgent::ShutdownFramework { framework_id: fw.clone() } },
            Output::CloseFramework { framework_id: fw },
        ]
    );
}

#[test]
fn a_framework_that_resubscribes_in_time_keeps_its_tasks() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.framework_disconnected(10, &fw, &stream);
    let mut info = framework_info("fw");
    info.id = Some(fw.clone());
    m.subscribe(20, info).expect("re-subscribe");
    m.agent_heartbeat(10 + FAILOVER_MS, &agent);
    m.tick(10 + FAILOVER_MS);
    assert!(!m.visible_outputs().iter().any(|o| matches!(o, Output::CloseFramework { .. })));
    assert_eq!(task_state(&m, &fw, "t1"), Some(TaskState::TaskRunning));
}

#[test]
fn updates_for_a_disconnected_framework_are_not_sent_but_still_applied() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.framework_disconnected(10, &fw, &stream);
    m.status_update(11, &agent, &fw, agent_status("t1", &agent, TaskState::TaskFinished, 11));
    assert!(m.visible_outputs().is_empty());
    assert_eq!(task_state(&m, &fw, "t1"), None);
}

#[test]
fn an_update_of_a_removed_framework_is_answered_with_its_shutdown() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    // The task finishes; the framework tears down in the callback of TASK_FINISHED without
    // acknowledging it, and no live task is left for the removal's SHUTDOWN to reach.
    m.status_update(10, &agent, &fw, agent_status("t1", &agent, TaskState::TaskFinished, 10));
    assert_eq!(
        updates(&m.visible_outputs()),
        vec![(TaskId::new("t1"), TaskState::TaskFinished, TaskStatusReason::Unspecified)]
    );
    m.call(11, &fw, &stream, Call::Teardown).expect("teardown");
    assert_eq!(m.visible_outputs(), vec![Output::CloseFramework { framework_id: fw.clone() }]);

    // The agent resends the unacknowledged update: it is told to drop the framework.
    m.status_update(12, &agent, &fw, agent_status("t1", &agent, TaskState::TaskFinished, 10));
    assert_eq!(
        m.visible_outputs(),
        vec![Output::ToAgent { agent_id: agent.clone(), message: ToAgent::ShutdownFramework { framework_id: fw } }]
    );
    // An update of a framework the master never heard of gets no answer: nothing says it
    // is gone for good.
    m.status_update(13, &agent, &FrameworkId::new("stranger"), agent_status("x", &agent, TaskState::TaskRunning, 13));
    assert!(m.visible_outputs().is_empty());
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn gauges_count_what_the_snapshot_shows() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    add_agent(&mut m, 0, 2, "h2", "cpus:1;mem:128");
    let offer = allocate(&mut m, 1).into_iter().find(|(_, o)| o.agent_id == agent).expect("an offer of h1").1;
    m.call(1, &fw, &stream, accept(&offer, vec![task("t2", &agent, "cpus:1")], 0)).expect("accept");
    m.status_update(2, &agent, &fw, agent_status("t2", &agent, TaskState::TaskFailed, 2));
    m.visible_outputs();
    let g = m.gauges();
    let s = m.snapshot();
    assert_eq!((g.agents, g.agents_active, g.frameworks, g.frameworks_active), (2, 2, 1, 1));
    assert_eq!(g.outstanding_offers, s.outstanding_offers);
    for (state, count) in &g.tasks {
        let live = s.frameworks.iter().flat_map(|f| &f.tasks).filter(|t| t.state == *state).count();
        let done = s.frameworks.iter().flat_map(|f| &f.completed_tasks).filter(|t| t.state == *state).count();
        assert_eq!(*count, live + done, "{state:?}");
    }
    let count = |state| g.tasks.iter().find(|(s, _)| *s == state).map(|(_, n)| *n);
    assert_eq!(count(TaskState::TaskRunning), Some(1));
    assert_eq!(count(TaskState::TaskFailed), Some(1));
    assert_eq!(g.tasks.len(), TaskState::ALL.len());
}

// ----- reconciliation -----

#[test]
fn explicit_reconciliation_answers_each_named_task() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    let gone_agent = add_agent(&mut m, 0, 2, "h2", "cpus:1;mem:128");
    m.agent_heartbeat(70_000, &agent);
    m.tick(75_000);
    m.visible_outputs();
    let call = Call::Reconcile {
        tasks: vec![
            (TaskId::new("t1"), Some(agent.clone())),
            (TaskId::new("x"), Some(agent.clone())),
            (TaskId::new("y"), Some(gone_agent)),
            (TaskId::new("z"), None),
            (TaskId::new("w"), Some(AgentId::new("m-S99"))),
        ],
    };
    m.call(75_001, &fw, &stream, call).expect("reconcile");
    let r = TaskStatusReason::Reconciliation;
    assert_eq!(
        updates(&m.visible_outputs()),
        vec![
            (TaskId::new("t1"), TaskState::TaskRunning, r),
            (TaskId::new("x"), TaskState::TaskGone, r),
            (TaskId::new("y"), TaskState::TaskUnreachable, r),
            (TaskId::new("z"), TaskState::TaskUnknown, r),
            (TaskId::new("w"), TaskState::TaskUnknown, r),
        ]
    );
}

#[test]
fn implicit_reconciliation_answers_every_live_task() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    let offer = allocate(&mut m, 1).remove(0).1;
    m.call(1, &fw, &stream, accept(&offer, vec![task("t2", &agent, "cpus:1"), task("t3", &agent, "cpus:1")], 0))
        .expect("accept");
    m.status_update(2, &agent, &fw, agent_status("t3", &agent, TaskState::TaskFailed, 2));
    m.visible_outputs();
    m.call(3, &fw, &stream, Call::Reconcile { tasks: Vec::new() }).expect("reconcile");
    let r = TaskStatusReason::Reconciliation;
    assert_eq!(
        updates(&m.visible_outputs()),
        vec![(TaskId::new("t1"), TaskState::TaskRunning, r), (TaskId::new("t2"), TaskState::TaskStaging, r)]
    );
    // A task that ended is answered with its final state when named.
    m.call(3, &fw, &stream, Call::Reconcile { tasks: vec![(TaskId::new("t3"), None)] }).expect("reconcile");
    assert_eq!(updates(&m.visible_outputs()), vec![(TaskId::new("t3"), TaskState::TaskFailed, r)]);
}

#[test]
fn a_tasks_statuses_are_every_update_it_went_through_and_outlive_it_among_the_completed() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.call(0, &fw, &stream, accept(&offer, vec![task("t1", &agent, "cpus:1;mem:128")], 0)).expect("accept");
    let staging = TaskStatus::from_master(
        TaskId::new("t1"),
        Some(agent.clone()),
        TaskState::TaskStaging,
        TaskStatusReason::Unspecified,
        "launched",
        0,
    );
    let mut running = agent_status("t1", &agent, TaskState::TaskRunning, 5);
    running.message = "up".to_owned();
    m.status_update(5, &agent, &fw, running.clone());
    // A move backwards is forwarded but not recorded.
    m.status_update(6, &agent, &fw, agent_status("t1", &agent, TaskState::TaskStarting, 6));
    let live = m.snapshot().frameworks[0].tasks[0].statuses.clone();
    assert_eq!(live, vec![StatusEntry::from(&staging), StatusEntry::from(&running)]);

    // Reconciliation restates the latest message (and exit code and signal).
    m.visible_outputs();
    m.call(7, &fw, &stream, Call::Reconcile { tasks: Vec::new() }).expect("reconcile");
    match m.visible_outputs().as_slice() {
        [Output::ToFramework { event: Event::Update(status), .. }] => {
            assert_eq!((status.state, status.reason), (TaskState::TaskRunning, TaskStatusReason::Reconciliation));
            assert_eq!((status.message.as_str(), status.timestamp_ms), ("up", 7));
            assert_eq!(status.agent_id.as_ref(), Some(&agent));
        }
        other => panic!("expected one reconciliation update, got {other:?}"),
    }

    let mut failed = agent_status("t1", &agent, TaskState::TaskFailed, 9);
    failed.reason = TaskStatusReason::CommandExited;
    failed.source = TaskStatusSource::Executor;
    failed.message = "exited with status 3".to_owned();
    failed.exit_code = Some(3);
    failed.signal = Some(9);
    m.status_update(9, &agent, &fw, failed.clone());
    let snapshot = m.snapshot();
    assert!(snapshot.frameworks[0].tasks.is_empty());
    let done = &snapshot.frameworks[0].completed_tasks[0];
    assert_eq!(done.state, TaskState::TaskFailed);
    assert_eq!(done.statuses, [&staging, &running, &failed].map(StatusEntry::from).to_vec());
}

#[test]
fn a_stale_heartbeat_or_update_from_an_unknown_agent_changes_nothing() {
    let mut m = master();
    let before = m.snapshot();
    let ghost = AgentId::new("ghost");
    m.agent_heartbeat(1, &ghost);
    m.agent_disconnected(1, &ghost, ConnId(1));
    m.status_update(1, &ghost, &FrameworkId::new("f"), agent_status("t", &ghost, TaskState::TaskRunning, 1));
    m.framework_disconnected(1, &FrameworkId::new("f"), &StreamId::new("s"));
    m.tick(1);
    assert!(m.visible_outputs().is_empty());
    assert_eq!(m.snapshot(), before);
}

#[test]
fn a_framework_unknown_to_a_restarted_master_keeps_its_id() {
    let mut m = master();
    let mut info = framework_info("fw");
    info.id = Some(FrameworkId::new("m-0042"));
    let (fw, _) = m.subscribe(0, info).expect("re-admitted");
    assert_eq!(fw, FrameworkId::new("m-0042"));
    let (next, _) = subscribe(&mut m, 0, "new");
    assert_eq!(next, FrameworkId::new("m-0043"), "ids handed out later never collide");
}

#[test]
fn tasks_of_a_removed_framework_reported_later_are_shut_down_and_not_counted() {
    let mut m = master();
    let (agent, fw, stream) = running_task(&mut m);
    m.agent_disconnected(1, &agent, ConnId(1));
    m.call(2, &fw, &stream, Call::Teardown).expect("teardown");
    assert_eq!(m.visible_outputs(), vec![Output::CloseFramework { framework_id: fw.clone() }]);
    // The agent still runs the task; the master already gave its resources away, so a
    // report that would over-commit the agent must not get it refused.
    let report = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:4"),
        state: TaskState::TaskRunning,
        healthy: None,
        ready: None,
    };
    m.register_agent(3, ConnId(2), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![report]);
    assert_eq!(
        m.visible_outputs(),
        vec![
            Output::AgentRegistered { conn: ConnId(2), agent_id: agent.clone() },
            Output::ToAgent { agent_id: agent, message: ToAgent::ShutdownFramework { framework_id: fw } },
        ]
    );
    assert!(m.snapshot().agents[0].used.is_empty());
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn an_agent_silent_after_a_disconnect_of_its_framework_keeps_the_master_consistent() {
    let mut m = Master::new(Config { offer_timeout_ms: Some(500), ..config() }, 3);
    let (agent, fw, stream) = running_task(&mut m);
    add_agent(&mut m, 0, 2, "h2", "cpus:1;mem:128");
    allocate(&mut m, 0);
    m.framework_disconnected(10, &fw, &stream);
    m.tick(600);
    m.tick(100_000);
    assert_eq!(m.check_invariants(), Ok(()));
    let snapshot = m.snapshot();
    assert_eq!(snapshot.outstanding_offers, 0);
    assert!(snapshot.frameworks.is_empty(), "the failover timeout removed the framework");
    assert!(snapshot.agents.iter().all(|a| !a.reachable && a.used.is_empty()));
    let _ = agent;
}

#[test]
fn an_empty_previous_id_counts_as_none() {
    let mut m = master();
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:1;mem:64"), Some(AgentId::new("")), Vec::new());
    assert_eq!(m.visible_outputs(), vec![Output::AgentRegistered { conn: ConnId(1), agent_id: AgentId::new("m-S1") }]);
    let mut info = framework_info("fw");
    info.id = Some(FrameworkId::new(""));
    assert_eq!(m.subscribe(0, info).expect("subscribe").0, FrameworkId::new("m-0001"));
}

/// The outputs of a round without its registry writes, which the durability tests below
/// look at on their own.
trait VisibleOutputs {
    fn visible_outputs(&mut self) -> Vec<Output>;
}

impl VisibleOutputs for Master {
    fn visible_outputs(&mut self) -> Vec<Output> {
        self.drain_outputs().into_iter().filter(|o| !matches!(o, Output::Persist(_))).collect()
    }
}

// ----- durability -----

fn persisted(outputs: &[Output]) -> Vec<super::RegistryOp> {
    outputs.iter().filter_map(|o| if let Output::Persist(op) = o { Some(op.clone()) } else { None }).collect()
}

#[test]
fn registrations_subscriptions_and_removals_are_persisted_before_they_are_acknowledged() {
    let mut m = master();
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:4;mem:1024"), None, vec![]);
    let out = m.drain_outputs();
    let persist_at = out.iter().position(|o| matches!(o, Output::Persist(super::RegistryOp::PutAgent { .. })));
    let registered_at = out.iter().position(|o| matches!(o, Output::AgentRegistered { .. }));
    assert!(persist_at < registered_at && persist_at.is_some(), "{out:?}");

    let info = framework_info("fw");
    let (fw, stream) = m.subscribe(0, info).expect("subscribe");
    let out = m.drain_outputs();
    assert!(
        matches!(persisted(&out).as_slice(), [super::RegistryOp::PutFramework { framework_id, .. }] if *framework_id == fw)
    );

    m.call(0, &fw, &stream, Call::Teardown).expect("teardown");
    let out = m.drain_outputs();
    assert_eq!(persisted(&out), vec![super::RegistryOp::RemoveFramework { framework_id: fw.clone() }]);
}

#[test]
fn a_recovered_master_waits_for_its_agents_and_frameworks_then_times_them_out() {
    let (mut m, agent, fw) = recovered_master();
    let snapshot = m.snapshot();
    assert_eq!(snapshot.agents.iter().map(|a| (&a.id, a.active)).collect::<Vec<_>>(), vec![(&agent, false)]);
    assert_eq!(snapshot.frameworks.iter().map(|f| (&f.id, f.active)).collect::<Vec<_>>(), vec![(&fw, false)]);
    // The agent does not come back in time: it is unreachable, and that is persisted.
    m.tick(1_000 + config().agent_timeout_ms + 1);
    let unreachable = persisted(&m.drain_outputs()).into_iter().any(
        |op| matches!(op, super::RegistryOp::PutAgent { agent_id, agent: a } if agent_id == agent && !a.reachable),
    );
    assert!(unreachable);
}

#[test]
fn a_recovered_master_does_not_call_tasks_gone_before_their_agent_re_registers() {
    let (mut m, agent, fw) = recovered_master();
    let stream =
        m.subscribe(1_001, FrameworkInfo { id: Some(fw.clone()), ..framework_info("fw") }).expect("subscribe").1;
    m.visible_outputs();
    let call = Call::Reconcile { tasks: vec![(TaskId::new("t1"), Some(agent.clone()))] };
    m.call(1_002, &fw, &stream, call.clone()).expect("reconcile");
    let answered = updates(&m.visible_outputs());
    assert!(answered.is_empty(), "the agent may still come back with the task: {answered:?}");

    // Once the agent is back without it, the task is gone.
    m.register_agent(1_003, ConnId(7), agent_info("h1", "cpus:4;mem:1024"), Some(agent), vec![]);
    m.visible_outputs();
    m.call(1_004, &fw, &stream, call).expect("reconcile");
    let r = TaskStatusReason::Reconciliation;
    assert_eq!(updates(&m.visible_outputs()), vec![(TaskId::new("t1"), TaskState::TaskGone, r)]);
}

#[test]
fn an_agent_re_registering_as_it_was_is_not_written_again() {
    let mut m = master();
    m.register_agent(0, ConnId(1), agent_info("h1", "cpus:4;mem:1024"), None, vec![]);
    let agent = m.snapshot().agents[0].id.clone();
    assert_eq!(persisted(&m.drain_outputs()).len(), 1);
    m.register_agent(1, ConnId(2), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![]);
    assert!(persisted(&m.drain_outputs()).is_empty(), "nothing durable changed");
    m.register_agent(2, ConnId(3), agent_info("h1", "cpus:8;mem:1024"), Some(agent.clone()), vec![]);
    assert_eq!(persisted(&m.drain_outputs()).len(), 1, "its resources changed");
    // Back from unreachable: that is durable.
    m.tick(2 + config().agent_timeout_ms + 1);
    m.drain_outputs();
    m.register_agent(
        3 + config().agent_timeout_ms,
        ConnId(4),
        agent_info("h1", "cpus:8;mem:1024"),
        Some(agent),
        vec![],
    );
    assert_eq!(persisted(&m.drain_outputs()).len(), 1, "reachable again");
}

#[test]
fn a_task_that_ended_during_a_failover_is_answered_with_its_end_not_gone() {
    let (mut m, agent, fw) = recovered_master();
    let ended = ReportedTask {
        framework_id: fw.clone(),
        task: task("t1", &agent, "cpus:1;mem:128"),
        state: TaskState::TaskFinished,
        healthy: None,
        ready: None,
    };
    m.register_agent(1_001, ConnId(7), agent_info("h1", "cpus:4;mem:1024"), Some(agent.clone()), vec![ended]);
    let stream =
        m.subscribe(1_002, FrameworkInfo { id: Some(fw.clone()), ..framework_info("fw") }).expect("subscribe").1;
    m.visible_outputs();
    m.call(1_003, &fw, &stream, Call::Reconcile { tasks: vec![(TaskId::new("t1"), Some(agent.clone()))] })
        .expect("reconcile");
    let r = TaskStatusReason::Reconciliation;
    assert_eq!(updates(&m.visible_outputs()), vec![(TaskId::new("t1"), TaskState::TaskFinished, r)]);
    // It holds nothing on the agent.
    assert_eq!(m.snapshot().agents[0].used, Resources::new());
}

// ----- partitions -----

#[test]
fn an_agent_away_past_the_reregister_timeout_is_gone_and_must_register_afresh() {
    let mut m = Master::new(Config { agent_reregister_timeout_ms: 10_000, ..config() }, 1);
    let (agent, fw, _) = running_task(&mut m);
    let unreachable_at = config().agent_timeout_ms + 1;
    m.tick(unreachable_at);
    m.drain_outputs();
    m.tick(unreachable_at + 9_999);
    assert!(m.visible_outputs().is_empty(), "still within the re-register timeout");
    m.tick(unreachable_at + 10_000);
    let out = m.drain_outputs();
    assert_eq!(updates(&out), vec![(TaskId::new("t1"), TaskState::TaskGone, TaskStatusReason::AgentRemoved)]);
    assert!(persisted(&out).contains(&super::RegistryOp::RemoveAgent { agent_id: agent.clone() }));
    assert!(m.snapshot().agents.is_empty());
    assert_eq!(task_state(&m, &fw, "t1"), None, "a gone task is no longer live");

    m.register_agent(unreachable_at + 20_000, ConnId(9), agent_info("h1", "cpus:4;mem:1024"), Some(agent), vec![]);
    match m.visible_outputs().as_slice() {
        [Output::AgentRefused { conn: ConnId(9), reason }] => assert!(reason.contains("register afresh"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn agent_removals_are_rate_limited_so_a_blip_cannot_empty_the_cluster() {
    let config = Config { agent_reregister_timeout_ms: 1_000, agent_removals_per_minute: 2, ..config() };
    let mut m = Master::new(config.clone(), 1);
    for i in 0..5 {
        add_agent(&mut m, 0, i, &format!("h{i}"), "cpus:1;mem:128");
    }
    let unreachable_at = config.agent_timeout_ms + 1;
    m.tick(unreachable_at);
    m.tick(unreachable_at + 1_000);
    assert_eq!(m.snapshot().agents.len(), 3, "two removals in the first minute");
    m.tick(unreachable_at + 30_000);
    assert_eq!(m.snapshot().agents.len(), 3, "no more in the same minute");
    m.tick(unreachable_at + 61_000);
    assert_eq!(m.snapshot().agents.len(), 1, "two more in the next minute");
    assert_eq!(m.snapshot().counters.agents_removed, 4);
}

#[test]
fn offers_after_a_reregistration_carry_the_agents_new_hostname_attributes_and_url() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "old-host", "cpus:2;mem:256");
    subscribe(&mut m, 0, "fw");
    let first = allocate(&mut m, 0);
    assert_eq!((first[0].1.hostname(), first[0].1.agent_url()), ("old-host", "http://old-host:5051"));
    // The offer outlives the agent's old description: it shares, and keeps, the old one.
    let info = AgentInfo {
        hostname: "new-host".to_owned(),
        port: 6061,
        resources: resources("cpus:2;mem:256"),
        attributes: vec![Attribute { name: "rack".to_owned(), value: "r2".to_owned() }],
    };
    m.register_agent(1, ConnId(2), info, Some(agent.clone()), Vec::new());
    m.visible_outputs();
    m.check_invariants().expect("the shared description is the agent's info");
    let second = allocate(&mut m, 1);
    let offer = &second[0].1;
    assert_eq!((offer.hostname(), offer.agent_url()), ("new-host", "http://new-host:6061"));
    assert_eq!(offer.attributes(), &[Attribute { name: "rack".to_owned(), value: "r2".to_owned() }]);
    assert_eq!(first[0].1.hostname(), "old-host");
}

#[test]
fn health_updates_of_a_running_task_are_each_forwarded_kept_in_its_history_and_restated_by_reconciliation() {
    let mut m = master();
    let agent = add_agent(&mut m, 0, 1, "h1", "cpus:4;mem:1024");
    let (fw, stream) = subscribe(&mut m, 0, "fw");
    let offer = allocate(&mut m, 0).remove(0).1;
    m.call(0, &fw, &stream, accept(&offer, vec![task("t1", &agent, "cpus:1;mem:128")], 0)).expect("accept");
    m.visible_outputs();
    m.status_update(1, &agent, &fw, agent_status("t1", &agent, TaskState::TaskRunning, 1));
    let mut healthy = agent_status("t1", &agent, TaskState::TaskRunning, 2);
    healthy.reason = TaskStatusReason::TaskHealthCheckStatusUpdated;
    healthy.healthy = Some(true);
    healthy.uuid = Some(UpdateId::new("u-healthy"));
    m.status_update(2, &agent, &fw, healthy.clone());
    let mut ready = healthy.clone();
    ready.reason = TaskStatusReason::TaskCheckStatusUpdated;
    ready.ready = Some(true);
    ready.timestamp_ms = 3;
    ready.uuid = Some(UpdateId::new("u-ready"));
    m.status_update(3, &agent, &fw, ready.clone());
    // Each RUNNING update reaches the framework unchanged, none deduplicated.
    let forwarded: Vec<TaskStatus> = m
        .visible_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::ToFramework { event: Event::Update(status), .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded.len(), 3, "{forwarded:?}");
    assert_eq!(forwarded[1], healthy);
    assert_eq!(forwarded[2], ready);
    let statuses = m.snapshot().frameworks[0].tasks[0].statuses.clone();
    assert_eq!(statuses.last(), Some(&StatusEntry::from(&ready)));
    assert_eq!((statuses[2].healthy, statuses[2].ready), (Some(true), None));

    m.call(4, &fw, &stream, Call::Reconcile { tasks: Vec::new() }).expect("reconcile");
    match m.visible_outputs().as_slice() {
        [Output::ToFramework { event: Event::Update(status), .. }] => {
            assert_eq!((status.healthy, status.ready), (Some(true), Some(true)));
        }
        other => panic!("expected one reconciliation update, got {other:?}"),
    }
}

#[test]
fn a_status_entry_stays_48_bytes_with_health_and_readiness() {
    // A task keeps up to 16 entries; health must not make every task's history larger.
    assert_eq!(std::mem::size_of::<StatusEntry>(), 48);
}

#[test]
fn a_framework_over_the_registrys_bounds_is_refused_naming_the_field() {
    let mut m = Master::new(
        Config { max_frameworks: 2, max_framework_field_bytes: 16, max_failover_timeout_ms: 3_600_000, ..config() },
        7,
    );
    let long = FrameworkInfo { name: "n".repeat(17), ..framework_info("x") };
    let refused = m.subscribe(0, long).expect_err("name too long");
    assert!(matches!(refused, CallError::Invalid { ref field, .. } if field == "framework_info.name"), "{refused}");
    let forever = FrameworkInfo { failover_timeout_ms: u64::MAX / 2, ..framework_info("x") };
    let refused = m.subscribe(0, forever).expect_err("failover too long");
    assert!(
        matches!(refused, CallError::Invalid { ref field, .. } if field == "framework_info.failover_timeout"),
        "{refused}"
    );
    let (first, _) = m.subscribe(0, framework_info("a")).expect("first");
    m.subscribe(0, framework_info("b")).expect("second");
    assert!(matches!(m.subscribe(0, framework_info("c")), Err(CallError::Exhausted(_))));
    // A framework already registered may still fail over: it takes no new room.
    let again = FrameworkInfo { id: Some(first.clone()), ..framework_info("a") };
    assert_eq!(m.subscribe(1, again).map(|(id, _)| id), Ok(first));
    let _ = m.drain_outputs();
}
