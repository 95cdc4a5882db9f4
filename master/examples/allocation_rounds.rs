//! Allocation rounds of the criterion bench's scenarios, one by one, for profilers:
//! `valgrind --tool=callgrind --toggle-collect='*Master::allocate*'` counts the
//! instructions of `Master::allocate` alone, which wall-clock figures on a shared
//! machine cannot give.
//!
//! `allocation_rounds decline AGENTS FRAMEWORKS ROUNDS` runs DeclineOffers (every offer
//! declined with a filter that outlives the run) and prints each round's time;
//! `allocation_rounds quota [ROUNDS]` runs LargeAndSmallQuota's full round and, with
//! ROUNDS = 2 (the default), the empty one after it.

use std::time::Instant;

use agora_master::core::{Call, Config, ConnId, Event, Master, Operation, Output, Quota};
use agora_proto::model::{
    AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, OfferId, Resources, Role, Scalars, StreamId, TaskId, TaskInfo,
};

const AGENT_RESOURCES: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
const USED_RESOURCES: &str = "cpus:1;mem:128;disk:0;ports:[31000-31000]";
const FOREVER_MS: u64 = 365 * 24 * 3600 * 1000;

fn offers(master: &mut Master) -> Vec<(FrameworkId, Vec<(OfferId, agora_proto::model::AgentId)>)> {
    master
        .drain_outputs()
        .into_iter()
        .filter_map(|output| match output {
            Output::ToFramework { framework_id, event: Event::Offers(offers) } => {
                Some((framework_id, offers.into_iter().map(|o| (o.id, o.agent_id)).collect()))
            }
            _ => None,
        })
        .collect()
}

fn decline(agents: usize, frameworks: usize, rounds: usize) {
    let config = Config { master_id: "bench".into(), ..Config::default() };
    let mut master = Master::new(config, 7);
    let now_ms = 1_000;
    let resources = Resources::parse(AGENT_RESOURCES).expect("valid resources");
    for i in 0..agents {
        let info =
            AgentInfo { hostname: format!("host-{i}"), port: 5051, resources: resources.clone(), attributes: vec![] };
        master.register_agent(now_ms, ConnId(i as u64), info, None, vec![]);
    }
    let mut streams: Vec<(FrameworkId, StreamId)> = Vec::new();
    for i in 0..frameworks {
        let info = FrameworkInfo {
            id: None,
            name: format!("framework-{i}"),
            user: "bench".into(),
            roles: vec![Role::unreserved()],
            failover_timeout_ms: 0,
            hostname: "bench".into(),
            principal: String::new(),
        };
        streams.push(master.subscribe(now_ms, info).expect("subscribe"));
    }
    master.drain_outputs();
    let stream = |id: &FrameworkId| streams.iter().find(|(f, _)| f == id).map(|(_, s)| s.clone()).expect("known");
    let used = Resources::parse(USED_RESOURCES).expect("valid resources");
    master.allocate(now_ms);
    for (framework_id, offers) in offers(&mut master) {
        let stream_id = stream(&framework_id);
        for (n, (offer_id, agent_id)) in offers.into_iter().enumerate() {
            let task = TaskInfo {
                task_id: TaskId::new(format!("{framework_id}-{n}")),
                name: "used".into(),
                agent_id,
                resources: used.clone(),
                command: CommandInfo { shell: Some("sleep 1000".into()), ..CommandInfo::default() },
                labels: vec![],
                kill_grace_period_ms: None,
            };
            let operations = vec![Operation::Launch { tasks: vec![task] }];
            let call = Call::Accept { offer_ids: vec![offer_id], operations, refuse_ms: 0 };
            master.call(now_ms, &framework_id, &stream_id, call).expect("accept");
        }
    }
    master.drain_outputs();
    for round in 1..=rounds {
        // As in the bench: one millisecond later each round.
        let now_ms = now_ms + round as u64 - 1;
        let started = Instant::now();
        master.allocate(now_ms);
        let elapsed = started.elapsed();
        let mut made = 0;
        for (framework_id, offers) in offers(&mut master) {
            made += offers.len();
            let offer_ids = offers.into_iter().map(|(id, _)| id).collect();
            let call = Call::Decline { offer_ids, refuse_ms: FOREVER_MS };
            master.call(now_ms, &framework_id, &stream(&framework_id), call).expect("decline");
        }
        master.drain_outputs();
        println!("round {round}: {made} offers in {:.3} ms", elapsed.as_secs_f64() * 1e3);
    }
}

fn quota(rounds: usize) {
    let mut master = Master::new(Config { master_id: "bench".into(), ..Config::default() }, 7);
    let resources = Resources::parse("cpus:2;mem:2048;disk:2048").expect("valid resources");
    for i in 0..3_000u64 {
        let info =
            AgentInfo { hostname: format!("host-{i}"), port: 5051, resources: resources.clone(), attributes: vec![] };
        master.register_agent(0, ConnId(i), info, None, vec![]);
    }
    for i in 0..3_000u64 {
        let role = Role::parse(&format!("role-{i}")).expect("valid role");
        let amount = if i < 2_500 { Scalars::new(1_000, 1_024, 0) } else { Scalars::new(4_000, 4_096, 0) };
        let limit = Scalars { disk_mib: u64::MAX, ..amount };
        master.set_quota(role.clone(), Quota { guarantee: amount, limit: Some(limit) }).expect("quota");
        let info = FrameworkInfo {
            id: None,
            name: format!("framework-{i}"),
            user: "bench".into(),
            roles: vec![role],
            failover_timeout_ms: 0,
            hostname: "bench".into(),
            principal: String::new(),
        };
        master.subscribe(0, info).expect("subscribe");
    }
    master.drain_outputs();
    // As the bench does: glibc merges the setup's freed blocks now, not in the timed round.
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64 * 1024)));
    for name in ["full", "empty"].into_iter().take(rounds) {
        let started = Instant::now();
        master.allocate(1);
        let elapsed = started.elapsed();
        master.drain_outputs();
        println!("{name}: {:.3} ms", elapsed.as_secs_f64() * 1e3);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("quota") => quota(number(1, 2)),
        _ => decline(number(1, 10_000), number(2, 1_000), number(3, 10)),
    }
}
