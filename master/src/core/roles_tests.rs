//! Tests of sharing across roles: hierarchical weighted DRF, quota guarantees and limits,
//! static and dynamic reservations, filters and suppression per role, and starvation.

use agora_proto::model::{
    AgentId, AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, Offer, Resources, Role, Scalars, StreamId, TaskId,
    TaskInfo,
};

use super::*;

fn role(name: &str) -> Role {
    Role::parse(name).expect("valid role in a test")
}

fn resources(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources in a test")
}

fn master() -> Master {
    Master::new(Config { master_id: "m".to_owned(), ..Config::default() }, 7)
}

fn add_agent(m: &mut Master, conn: u64, text: &str) -> AgentId {
    let info = AgentInfo { hostname: format!("h{conn}"), port: 5051, resources: resources(text), attributes: vec![] };
    m.register_agent(0, ConnId(conn), info, None, Vec::new());
    m.drain_outputs()
        .into_iter()
        .find_map(|o| match o {
            Output::AgentRegistered { agent_id, .. } => Some(agent_id),
            _ => None,
        })
        .expect("the agent registers")
}

fn subscribe(m: &mut Master, name: &str, roles: &[&str]) -> (FrameworkId, StreamId) {
    let info = FrameworkInfo {
        id: None,
        name: name.to_owned(),
        user: "root".to_owned(),
        roles: roles.iter().map(|r| role(r)).collect(),
        failover_timeout_ms: 60_000,
        hostname: "localhost".to_owned(),
        principal: String::new(),
    };
    let ids = m.subscribe(0, info).expect("subscribe");
    m.drain_outputs();
    ids
}

/// Runs a round and returns (framework name index, offer) pairs, invariants checked.
fn allocate(m: &mut Master, now_ms: u64) -> Vec<(FrameworkId, Offer)> {
    assert_eq!(m.check_invariants(), Ok(()));
    m.allocate(now_ms);
    assert_eq!(m.check_invariants(), Ok(()));
    m.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::ToFramework { framework_id, event: Event::Offers(offers) } => {
                Some(offers.into_iter().map(move |offer| (framework_id.clone(), offer)))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn launch(m: &mut Master, fw: &(FrameworkId, StreamId), offer: &Offer, id: &str, text: &str) {
    let task = TaskInfo {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        agent_id: offer.agent_id.clone(),
        resources: resources(text),
        command: CommandInfo { shell: Some("sleep 1".to_owned()), ..CommandInfo::default() },
        labels: vec![],
        kill_grace_period_ms: None,
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
}

fn decline(m: &mut Master, fw: &(FrameworkId, StreamId), offers: &[(FrameworkId, Offer)], refuse_ms: u64) {
    let offer_ids = offers.iter().filter(|(f, _)| f == &fw.0).map(|(_, o)| o.id.clone()).collect();
    m.call(0, &fw.0, &fw.1, Call::Decline { offer_ids, refuse_ms }).expect("decline");
    m.drain_outputs();
}

fn cpus(offers: &[(FrameworkId, Offer)], fw: &FrameworkId) -> u64 {
    offers.iter().filter(|(f, _)| f == fw).map(|(_, o)| o.resources.scalars().cpus_milli).sum()
}

#[test]
fn a_heavier_role_wins_the_agent_when_shares_are_equal_after_weighting() {
    let mut m = master();
    let eng = subscribe(&mut m, "eng-fw", &["eng"]);
    let ops = subscribe(&mut m, "ops-fw", &["ops"]);
    // Both hold one CPU of eight; eng weighs 2, so its weighted share is half of ops'.
    let a = add_agent(&mut m, 1, "cpus:1;mem:1024");
    let b = add_agent(&mut m, 2, "cpus:1;mem:1024");
    let first = allocate(&mut m, 0);
    for (fw_id, offer) in &first {
        let fw = if fw_id == &eng.0 { &eng } else { &ops };
        launch(&mut m, fw, offer, &format!("t-{}", offer.agent_id), "cpus:1;mem:1024");
    }
    let _ = (a, b);
    m.set_weights(vec![(role("eng"), 2_000)]).expect("weights");
    add_agent(&mut m, 3, "cpus:6;mem:6144");
    let next = allocate(&mut m, 0);
    assert_eq!(next.len(), 1);
    assert_eq!(next.first().map(|(f, _)| f), Some(&eng.0), "eng's weighted share is lower");
}

#[test]
fn a_sub_role_shares_its_parents_allocation_against_other_top_level_roles() {
    let mut m = master();
    let web = subscribe(&mut m, "web", &["eng/web"]);
    let batch = subscribe(&mut m, "batch", &["eng/batch"]);
    let ops = subscribe(&mut m, "ops", &["ops"]);
    add_agent(&mut m, 1, "cpus:2;mem:2048");
    let first = allocate(&mut m, 0);
    let (taker, offer) = first.into_iter().next().expect("one offer");
    let fw = [&web, &batch, &ops].into_iter().find(|f| f.0 == taker).expect("known");
    launch(&mut m, fw, &offer, "t1", "cpus:2;mem:2048");
    // Whoever took it, its top-level role now holds everything: the next agent goes to
    // the other top-level role (for eng: ops; for ops: one of eng's sub-roles).
    add_agent(&mut m, 2, "cpus:2;mem:2048");
    let next = allocate(&mut m, 0);
    let next_taker = next.first().map(|(f, _)| f.clone()).expect("an offer");
    let top = |f: &FrameworkId| if f == &ops.0 { "ops" } else { "eng" };
    assert_ne!(top(&taker), top(&next_taker));
    let roles = m.roles();
    let eng = roles.iter().find(|r| r.role == role("eng")).expect("eng is listed as the parent");
    // Either eng's task or eng's offer of the second agent: one agent's worth.
    assert_eq!(eng.allocated.cpus_milli, 2_000);
}

#[test]
fn a_framework_with_two_roles_is_offered_for_each_role_separately() {
    let mut m = master();
    let fw = subscribe(&mut m, "both", &["eng", "ops"]);
    add_agent(&mut m, 1, "cpus(eng):2;mem(eng):1024;cpus:1;mem:512");
    add_agent(&mut m, 2, "cpus(ops):2;mem(ops):1024");
    let got = allocate(&mut m, 0);
    assert!(got.iter().all(|(f, _)| f == &fw.0));
    let mut by_role: Vec<String> = Vec::new();
    for (_, offer) in &got {
        for (r, _) in offer.resources.pools() {
            by_role.push(r.to_string());
        }
    }
    by_role.sort();
    by_role.dedup();
    assert!(by_role.contains(&"eng".to_owned()) && by_role.contains(&"ops".to_owned()), "{by_role:?}");
    let mut made_for: Vec<String> = got.iter().map(|(_, o)| o.allocation_role.to_string()).collect();
    made_for.sort();
    assert_eq!(made_for, vec!["eng", "ops"], "each offer names the role it is made for");
    let roles = m.roles();
    let ops = roles.iter().find(|r| r.role == role("ops")).expect("ops");
    assert_eq!(ops.offered.cpus_milli, 2_000);
}

#[test]
fn statically_reserved_resources_are_offered_only_to_their_role_and_its_sub_roles() {
    let mut m = master();
    let ops = subscribe(&mut m, "ops", &["ops"]);
    add_agent(&mut m, 1, "cpus(eng):2;mem(eng):1024");
    assert!(allocate(&mut m, 0).is_empty(), "ops may not be offered eng's reservation");
    let web = subscribe(&mut m, "web", &["eng/web"]);
    let got = allocate(&mut m, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got.first().map(|(f, o)| (f.clone(), o.resources.to_string())),
        Some((web.0, "cpus(eng):2;mem(eng):1024".to_owned()))
    );
    let _ = ops;
}

#[test]
fn a_quota_limit_caps_what_a_role_is_offered() {
    let mut m = master();
    let eng = subscribe(&mut m, "eng", &["eng"]);
    m.set_quota(role("eng"), Quota { guarantee: Scalars::ZERO, limit: Some(Scalars::new(3_000, 3_072, 0)) })
        .expect("quota");
    add_agent(&mut m, 1, "cpus:2;mem:2048");
    add_agent(&mut m, 2, "cpus:2;mem:2048");
    let got = allocate(&mut m, 0);
    assert_eq!(cpus(&got, &eng.0), 3_000, "{got:?}");
    let mem: u64 = got.iter().map(|(_, o)| o.resources.scalars().mem_mib).sum();
    assert_eq!(mem, 3_072);
    assert!(allocate(&mut m, 1).is_empty(), "nothing more while at the limit");
}

#[test]
fn a_quota_guarantee_is_held_for_its_role_against_others() {
    let mut m = master();
    let greedy = subscribe(&mut m, "greedy", &["batch"]);
    m.set_quota(role("eng"), Quota { guarantee: Scalars::new(2_000, 2_048, 0), limit: None }).expect("quota");
    add_agent(&mut m, 1, "cpus:2;mem:2048");
    add_agent(&mut m, 2, "cpus:2;mem:2048");
    // No eng framework yet: batch gets only what eng's guarantee does not need.
    let got = allocate(&mut m, 0);
    assert_eq!(cpus(&got, &greedy.0), 2_000, "{got:?}");
    let eng = subscribe(&mut m, "eng", &["eng"]);
    let got = allocate(&mut m, 0);
    assert_eq!(cpus(&got, &eng.0), 2_000, "the held agent goes to eng: {got:?}");
}

#[test]
fn unmet_guarantees_are_met_first_and_only_up_to_the_guarantee() {
    let mut m = master();
    let small = subscribe(&mut m, "small", &["small"]);
    let big = subscribe(&mut m, "big", &["big"]);
    m.set_quota(role("small"), Quota { guarantee: Scalars::new(1_000, 1_024, 0), limit: None }).expect("quota");
    add_agent(&mut m, 1, "cpus:2;mem:2048");
    let got = allocate(&mut m, 0);
    // The guarantee pass gives small exactly its guarantee; the rest goes to big (lowest
    // share in the second pass).
    assert_eq!(cpus(&got, &small.0), 1_000, "{got:?}");
    assert_eq!(cpus(&got, &big.0), 1_000, "{got:?}");
}

#[test]
fn bad_weights_and_quota_are_refused_with_the_field_named() {
    let mut m = master();
    let err = m.set_weights(vec![(role("eng"), 0)]).expect_err("zero weight");
    assert_eq!(err.to_string(), "[0].weight: must be more than 0 and at most 1000000");
    let err = m.set_weights(vec![(Role::unreserved(), 1_000)]).expect_err("star");
    assert_eq!(err.field, "[0].role");
    let quota = Quota { guarantee: Scalars::new(2_000, 0, 0), limit: Some(Scalars::new(1_000, 0, 0)) };
    let err = m.set_quota(role("eng"), quota).expect_err("limit under guarantee");
    assert_eq!(err.to_string(), "limit: must be at least the guarantee in every resource");
    let err = m.remove_quota(&role("eng")).expect_err("no quota");
    assert_eq!((err.kind, err.field.as_str()), (OperatorErrorKind::NotFound, "role"));
}

#[test]
fn dynamic_reservations_move_free_resources_to_a_role_and_back() {
    let mut m = master();
    let agent = add_agent(&mut m, 1, "cpus:4;mem:4096");
    let ops = subscribe(&mut m, "ops", &["ops"]);
    m.reserve(&agent, &resources("cpus(eng):1;mem(eng):512")).expect("reserve");
    let got = allocate(&mut m, 0);
    assert_eq!(got.first().map(|(_, o)| o.resources.to_string()), Some("cpus:3;mem:3584".to_owned()));
    // Unreserving needs the resources free of offers: the master rescinds them first.
    m.unreserve(&agent, &resources("cpus(eng):1;mem(eng):512")).expect("unreserve");
    m.drain_outputs();
    let got = allocate(&mut m, 0);
    assert_eq!(got.first().map(|(_, o)| o.resources.to_string()), Some("cpus:4;mem:4096".to_owned()));
    assert!(m.role_policy().reservations.is_empty());
    let _ = ops;
}

#[test]
fn reservations_are_refused_when_the_agent_lacks_the_resources_or_they_are_unreserved() {
    let mut m = master();
    let agent = add_agent(&mut m, 1, "cpus:1;mem:512");
    let err = m.reserve(&agent, &resources("cpus(eng):2")).expect_err("too much");
    assert_eq!((err.kind, err.field.as_str()), (OperatorErrorKind::Conflict, "resources"));
    let err = m.reserve(&agent, &resources("cpus:1")).expect_err("unreserved");
    assert_eq!(err.to_string(), "resources: every resource must name its role, as in `cpus(eng):1`");
    let err = m.reserve(&AgentId::new("nope"), &resources("cpus(eng):1")).expect_err("unknown");
    assert_eq!((err.kind, err.field.as_str()), (OperatorErrorKind::NotFound, "agent_id"));
    let err = m.unreserve(&agent, &resources("cpus(eng):1")).expect_err("not reserved");
    assert_eq!(err.kind, OperatorErrorKind::Conflict);
    // The refusal speaks the resource syntax, never Rust's debug output.
    assert_eq!(err.reason, format!("agent {agent} holds no such dynamic reservation (it holds none)"));
}

#[test]
fn a_re_registering_agent_keeps_its_dynamic_reservations() {
    let mut m = master();
    let agent = add_agent(&mut m, 1, "cpus:4;mem:4096");
    m.reserve(&agent, &resources("cpus(eng):1")).expect("reserve");
    let info = AgentInfo {
        hostname: "h1".to_owned(),
        port: 5051,
        resources: resources("cpus:4;mem:4096"),
        attributes: vec![],
    };
    m.register_agent(5, ConnId(9), info, Some(agent.clone()), Vec::new());
    m.drain_outputs();
    let eng = subscribe(&mut m, "eng", &["eng"]);
    let got = allocate(&mut m, 5);
    // Resources print the unreserved pool first, then each role's.
    let expected = (eng.0, "cpus:3;mem:4096;cpus(eng):1".to_owned());
    assert_eq!(got.first().map(|(f, o)| (f.clone(), o.resources.to_string())), Some(expected));
}

#[test]
fn a_suppressed_role_is_not_offered_while_the_frameworks_other_role_is() {
    let mut m = master();
    let fw = subscribe(&mut m, "both", &["eng", "ops"]);
    m.call(0, &fw.0, &fw.1, Call::Suppress { roles: vec![role("eng")] }).expect("suppress");
    add_agent(&mut m, 1, "cpus(eng):1;mem(eng):512;cpus(ops):1;mem(ops):512");
    let got = allocate(&mut m, 0);
    assert_eq!(got.iter().map(|(_, o)| o.resources.to_string()).collect::<Vec<_>>(), vec!["cpus(ops):1;mem(ops):512"]);
    m.call(0, &fw.0, &fw.1, Call::Revive { roles: vec![role("eng")] }).expect("revive");
    let got = allocate(&mut m, 0);
    assert_eq!(got.iter().map(|(_, o)| o.resources.to_string()).collect::<Vec<_>>(), vec!["cpus(eng):1;mem(eng):512"]);
}

#[test]
fn a_filter_keeps_a_framework_off_an_agent_until_it_expires_and_others_get_it_meanwhile() {
    let mut m = master();
    let a = subscribe(&mut m, "a", &["eng"]);
    let b = subscribe(&mut m, "b", &["eng"]);
    add_agent(&mut m, 1, "cpus:2;mem:2048");
    let got = allocate(&mut m, 0);
    let first = got.first().map(|(f, _)| f.clone()).expect("offer");
    let (declining, other) = if first == a.0 { (&a, &b) } else { (&b, &a) };
    decline(&mut m, declining, &got, 1_000);
    let got = allocate(&mut m, 10);
    assert_eq!(got.first().map(|(f, _)| f), Some(&other.0));
    decline(&mut m, other, &got, 1_000);
    assert!(allocate(&mut m, 20).is_empty(), "both filtered");
    let got = allocate(&mut m, 1_000);
    assert_eq!(got.len(), 1, "the filters expired");
}

#[test]
fn freed_resources_are_offered_in_the_next_round_without_a_tick() {
    let mut m = master();
    let fw = subscribe(&mut m, "fw", &["eng"]);
    add_agent(&mut m, 1, "cpus:2;mem:2048");
    let got = allocate(&mut m, 0);
    let (_, offer) = got.first().cloned().expect("offer");
    launch(&mut m, &fw, &offer, "t1", "cpus:2;mem:2048");
    assert!(allocate(&mut m, 0).is_empty());
    let status = agora_proto::model::TaskStatus::from_master(
        TaskId::new("t1"),
        Some(offer.agent_id.clone()),
        agora_proto::model::TaskState::TaskFinished,
        agora_proto::model::TaskStatusReason::Unspecified,
        "done",
        1,
    );
    m.status_update(1, &offer.agent_id, &fw.0, status);
    m.drain_outputs();
    assert!(m.needs_allocation());
    assert_eq!(allocate(&mut m, 1).len(), 1);
}

/// Mesos-style starvation: a framework with many small tasks keeps declining leftover
/// slivers; a framework that needs a whole agent must still get one once tasks finish.
#[test]
fn a_framework_declining_small_offers_does_not_starve_one_waiting_for_a_whole_agent() {
    let mut m = master();
    let small = subscribe(&mut m, "small", &["eng"]);
    let large = subscribe(&mut m, "large", &["eng"]);
    let agents: Vec<AgentId> = (1..=4).map(|i| add_agent(&mut m, i, "cpus:4;mem:4096")).collect();
    // Small holds three of four CPUs on every agent.
    for (i, agent) in agents.iter().enumerate() {
        let got = allocate(&mut m, 0);
        let _ = agent;
        for (fw_id, offer) in &got {
            if fw_id == &small.0 {
                launch(&mut m, &small, offer, &format!("s{i}-{}", offer.agent_id), "cpus:3;mem:3072");
            } else {
                decline(&mut m, &large, &[(fw_id.clone(), offer.clone())], 0);
            }
        }
    }
    let mut large_got_whole_agent = false;
    let mut now_ms = 1;
    for step in 0..20u64 {
        let got = allocate(&mut m, now_ms);
        for (fw_id, offer) in &got {
            let whole = offer.resources.scalars().cpus_milli >= 4_000;
            if fw_id == &large.0 && whole {
                large_got_whole_agent = true;
            } else if fw_id == &large.0 {
                // Large refuses slivers for a long time: the filter keeps it off.
                decline(&mut m, &large, &[(fw_id.clone(), offer.clone())], 60_000);
            } else {
                // Small never launches more, and refuses slivers for a while too.
                decline(&mut m, &small, &[(fw_id.clone(), offer.clone())], 60_000);
            }
        }
        if large_got_whole_agent {
            break;
        }
        // One of small's tasks finishes each step: the agent it ran on becomes whole.
        let finished: Option<(TaskId, AgentId)> =
            m.live_tasks().find(|(f, _, _)| *f == &small.0).map(|(_, t, _)| (t.task_id.clone(), t.agent_id.clone()));
        if let Some((task_id, agent_id)) = finished {
            let status = agora_proto::model::TaskStatus::from_master(
                task_id,
                Some(agent_id.clone()),
                agora_proto::model::TaskState::TaskFinished,
                agora_proto::model::TaskStatusReason::Unspecified,
                "done",
                now_ms,
            );
            m.status_update(now_ms, &agent_id, &small.0, status);
            m.drain_outputs();
        }
        now_ms += 10;
        let _ = step;
    }
    assert!(large_got_whole_agent, "the large framework was starved");
}

#[test]
fn a_framework_reserves_part_of_an_offer_and_launches_on_the_reservation_in_one_accept() {
    let mut m = master();
    let agent = add_agent(&mut m, 1, "cpus:4;mem:4096");
    let eng = subscribe(&mut m, "eng", &["eng"]);
    let got = allocate(&mut m, 0);
    let (_, offer) = got.first().cloned().expect("an offer");
    let task = TaskInfo {
        task_id: TaskId::new("t1"),
        name: "t1".to_owned(),
        agent_id: agent.clone(),
        resources: resources("cpus(eng):1;mem(eng):512"),
        command: CommandInfo { shell: Some("sleep 1".to_owned()), ..CommandInfo::default() },
        labels: vec![],
        kill_grace_period_ms: None,
        health_check: None,
        readiness_check: None,
    };
    let operations = vec![
        Operation::Reserve { resources: resources("cpus(eng):2;mem(eng):1024") },
        Operation::Launch { tasks: vec![task] },
    ];
    let call = Call::Accept { offer_ids: vec![offer.id.clone()], operations, refuse_ms: 0 };
    m.call(0, &eng.0, &eng.1, call).expect("accept");
    let launched =
        m.drain_outputs().iter().any(|o| matches!(o, Output::ToAgent { message: ToAgent::RunTask { .. }, .. }));
    assert!(launched, "the task runs on the new reservation");
    assert_eq!(
        m.role_policy().reservations.get(&agent).map(ToString::to_string),
        Some("cpus(eng):2;mem(eng):1024".to_owned())
    );
    // The rest of the reservation and the unreserved rest come back in the next offer.
    let got = allocate(&mut m, 0);
    assert_eq!(
        got.first().map(|(_, o)| o.resources.to_string()),
        Some("cpus:2;mem:3072;cpus(eng):1;mem(eng):512".to_owned())
    );
}

#[test]
fn a_reserve_operation_for_another_role_refuses_the_accept_and_keeps_the_offer() {
    let mut m = master();
    add_agent(&mut m, 1, "cpus:4;mem:4096");
    let eng = subscribe(&mut m, "eng", &["eng"]);
    let got = allocate(&mut m, 0);
    let (_, offer) = got.first().cloned().expect("an offer");
    let operations = vec![Operation::Reserve { resources: resources("cpus(ops):1") }];
    let call = Call::Accept { offer_ids: vec![offer.id.clone()], operations, refuse_ms: 0 };
    let err = m.call(0, &eng.0, &eng.1, call).expect_err("wrong role");
    assert_eq!(err.to_string(), "accept.operations[0].reserve.resources: the offers are for role eng, not ops");
    assert_eq!(m.outstanding_offers().count(), 1, "the offer stays outstanding");
    let operations = vec![Operation::Unreserve { resources: resources("cpus(eng):1") }];
    let call = Call::Accept { offer_ids: vec![offer.id.clone()], operations, refuse_ms: 0 };
    let err = m.call(0, &eng.0, &eng.1, call).expect_err("nothing reserved");
    assert_eq!(
        err.to_string(),
        "accept.operations[0].unreserve.resources: only dynamically reserved resources can be unreserved"
    );
}

#[test]
fn a_reserve_operation_the_reserve_resources_acl_forbids_refuses_the_accept_and_keeps_the_offer() {
    let acls = agora_proto::acl::Acls::parse(
        r#"{"reserve_resources": [{"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]}"#,
    )
    .expect("valid ACLs");
    let config = Config { master_id: "m".to_owned(), acls: Some(std::sync::Arc::new(acls)), ..Config::default() };
    let mut m = Master::new(config, 7);
    let agent = add_agent(&mut m, 1, "cpus:4;mem:4096");
    let eng = subscribe(&mut m, "eng", &["eng"]);
    let (_, offer) = allocate(&mut m, 0).first().cloned().expect("an offer");
    let operations = vec![Operation::Reserve { resources: resources("cpus(eng):1") }];
    let call = Call::Accept { offer_ids: vec![offer.id.clone()], operations, refuse_ms: 0 };
    let err = m.call(0, &eng.0, &eng.1, call).expect_err("forbidden");
    assert_eq!(
        err,
        CallError::Forbidden(
            "an anonymous caller may not reserve_resources for roles \"eng\": refused by ACL reserve_resources[0]"
                .to_owned()
        )
    );
    assert_eq!(m.outstanding_offers().count(), 1, "the offer stays outstanding");
    assert_eq!(m.role_policy().reservations.get(&agent), None, "nothing reserved");
}

/// LargeAndSmallQuota scaled down: every role gets exactly its quota in one round, and the
/// round after it offers nothing.
#[test]
fn every_quota_role_gets_exactly_its_quota_and_the_next_round_is_empty() {
    let mut m = master();
    for i in 0..30 {
        add_agent(&mut m, i, "cpus:2;mem:2048;disk:2048");
    }
    let mut frameworks = Vec::new();
    for i in 0..30 {
        let name = format!("role-{i}");
        let amount = if i < 25 { Scalars::new(1_000, 1_024, 0) } else { Scalars::new(4_000, 4_096, 0) };
        m.set_quota(role(&name), Quota { guarantee: amount, limit: Some(amount) }).expect("quota");
        frameworks.push((subscribe(&mut m, &name, &[&name]).0, amount));
    }
    let got = allocate(&mut m, 0);
    for (framework_id, amount) in &frameworks {
        let held = got
            .iter()
            .filter(|(f, _)| f == framework_id)
            .fold(Scalars::ZERO, |sum, (_, o)| sum.saturating_add(&o.resources.scalars()));
        assert_eq!((held.cpus_milli, held.mem_mib), (amount.cpus_milli, amount.mem_mib), "{framework_id}");
    }
    assert!(allocate(&mut m, 1).is_empty());
}

#[test]
fn roles_beyond_the_bound_are_refused_through_weights_and_quota() {
    let mut m = Master::new(Config { master_id: "m".to_owned(), max_roles: 2, ..Config::default() }, 7);
    m.set_weights(vec![(role("a"), 2_000), (role("b"), 2_000)]).expect("two roles");
    let err = m.set_weights(vec![(role("c"), 2_000)]).expect_err("a third role");
    assert_eq!(err.field, "weights");
    assert_eq!(m.role_policy().weights.len(), 2);
    // Changing a weighed role's weight takes no new room.
    m.set_weights(vec![(role("a"), 3_000)]).expect("same role");
    let none = Quota { guarantee: Scalars::ZERO, limit: None };
    m.set_quota(role("a"), none.clone()).expect("quota one");
    m.set_quota(role("b"), none.clone()).expect("quota two");
    assert_eq!(m.set_quota(role("c"), none).expect_err("a third").field, "role");
}

#[test]
fn a_quota_guarantee_beyond_the_active_agents_is_refused_unless_forced() {
    let mut m = master();
    add_agent(&mut m, 1, "cpus:4;mem:4096");
    let huge = Quota { guarantee: Scalars::new(100_000_000, 1 << 30, 0), limit: None };
    let err = m.check_quota_capacity("guarantee", &[(role("big"), Some(huge.clone()))]).expect_err("beyond");
    assert_eq!((err.kind, err.field.as_str()), (OperatorErrorKind::Conflict, "guarantee"));
    assert!(err.reason.contains("cpus 4, mem 4096 MiB"), "{}", err.reason);
    let fits = Quota { guarantee: Scalars::new(3_000, 2_048, 0), limit: None };
    m.check_quota_capacity("guarantee", &[(role("eng"), Some(fits.clone()))]).expect("fits");
    m.set_quota(role("eng"), fits).expect("set");
    // Another role's guarantee counts with the ones already set; a nested one within its parent's.
    let more = Quota { guarantee: Scalars::new(2_000, 0, 0), limit: None };
    assert!(m.check_quota_capacity("guarantee", &[(role("ops"), Some(more.clone()))]).is_err());
    m.check_quota_capacity("guarantee", &[(role("eng/web"), Some(more.clone()))]).expect("nested");
    // Removing a quota in the same change makes room.
    m.check_quota_capacity("quota_configs", &[(role("eng"), None), (role("ops"), Some(more))]).expect("swap");
    // Forced (the runtime skips the check), it is set.
    m.set_quota(role("big"), huge).expect("forced");
}
