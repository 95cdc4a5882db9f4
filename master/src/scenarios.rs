//! Mesos' published allocator benchmark scenarios, built on the master core, so that the
//! criterion benches (`benches/benches/allocator.rs`) and the round-by-round profiling example
//! (`master/examples/allocation_rounds.rs`) measure the same clusters.

use agora_proto::model::{
    AgentId, AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, OfferId, Resources, Role, Scalars, StreamId, TaskId,
    TaskInfo,
};

use crate::core::{Call, Config, ConnId, Event, Master, Operation, Output, Quota};

/// What every DeclineOffers agent has.
pub const AGENT_RESOURCES: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
/// What a task already uses on every DeclineOffers agent.
pub const USED_RESOURCES: &str = "cpus:1;mem:128;disk:0;ports:[31000-31000]";
/// A filter longer than any bench run: declined agents are never offered again.
pub const FOREVER_MS: u64 = 365 * 24 * 3600 * 1000;

/// Mesos' `HierarchicalAllocator_BENCHMARK_DeclineOffers`: `agents` agents of
/// `AGENT_RESOURCES` with part of each in use, `frameworks` frameworks in one role, every
/// offer declined with a filter that outlives the run.
#[derive(Debug)]
pub struct DeclineOffers {
    pub master: Master,
    frameworks: Vec<(FrameworkId, StreamId)>,
    pub now_ms: u64,
}

impl DeclineOffers {
    pub fn new(agents: usize, frameworks: usize) -> DeclineOffers {
        DeclineOffers::with_max_offers(agents, frameworks, Config::default().max_offers_per_framework)
    }

    /// The same, with `max_offers` as the bound on offers a framework holds.
    pub fn with_max_offers(agents: usize, frameworks: usize, max_offers: Option<usize>) -> DeclineOffers {
        let config = Config { master_id: "bench".into(), max_offers_per_framework: max_offers, ..Config::default() };
        let mut master = Master::new(config, 7);
        let now_ms = 1_000;
        let resources = Resources::parse(AGENT_RESOURCES).expect("valid resources");
        for i in 0..agents {
            let info = AgentInfo {
                hostname: format!("host-{i}"),
                port: 5051,
                resources: resources.clone(),
                attributes: vec![],
            };
            master.register_agent(now_ms, ConnId(i as u64), info, None, vec![]);
        }
        let ids = (0..frameworks)
            .map(|i| master.subscribe(now_ms, framework(i, Role::unreserved())).expect("subscribe"))
            .collect();
        master.drain_outputs();
        let mut cluster = DeclineOffers { master, frameworks: ids, now_ms };
        cluster.use_part_of_every_agent();
        cluster
    }

    /// One round in which every offer is accepted with one small task, so that every agent
    /// starts with part of it in use, as in Mesos' bench.
    fn use_part_of_every_agent(&mut self) {
        let used = Resources::parse(USED_RESOURCES).expect("valid resources");
        self.master.allocate(self.now_ms);
        for (framework_id, offers) in self.offers() {
            let stream_id = self.stream(&framework_id);
            for (n, (offer_id, agent_id)) in offers.into_iter().enumerate() {
                let task = TaskInfo {
                    task_id: TaskId::new(format!("{framework_id}-{n}")),
                    name: "used".into(),
                    agent_id,
                    resources: used.clone(),
                    command: CommandInfo { shell: Some("sleep 1000".into()), ..CommandInfo::default() },
                    labels: vec![],
                    kill_grace_period_ms: None,
                    health_check: None,
                    readiness_check: None,
                };
                let operations = vec![Operation::Launch { tasks: vec![task] }];
                let call = Call::Accept { offer_ids: vec![offer_id], operations, refuse_ms: 0 };
                self.master.call(self.now_ms, &framework_id, &stream_id, call).expect("accept");
            }
        }
        self.master.drain_outputs();
    }

    fn stream(&self, framework_id: &FrameworkId) -> StreamId {
        self.frameworks.iter().find(|(id, _)| id == framework_id).map(|(_, s)| s.clone()).expect("known framework")
    }

    fn offers(&mut self) -> Vec<(FrameworkId, Vec<(OfferId, AgentId)>)> {
        self.master
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

    /// Declines every offer of the last round with a filter that never expires; returns
    /// how many there were.
    pub fn decline_everything(&mut self) -> usize {
        self.decline_and_list().len()
    }

    /// `decline_everything`, returning which framework was offered which agent, in the
    /// order the offers were made.
    pub fn decline_and_list(&mut self) -> Vec<(FrameworkId, AgentId)> {
        let mut declined = Vec::new();
        for (framework_id, offers) in self.offers() {
            let stream_id = self.stream(&framework_id);
            declined.extend(offers.iter().map(|(_, agent_id)| (framework_id.clone(), agent_id.clone())));
            let offer_ids = offers.into_iter().map(|(id, _)| id).collect();
            let call = Call::Decline { offer_ids, refuse_ms: FOREVER_MS };
            self.master.call(self.now_ms, &framework_id, &stream_id, call).expect("decline");
        }
        self.master.drain_outputs();
        declined
    }
}

/// Mesos' LargeAndSmallQuota: 3,000 agents of `cpus:2;mem:2048;disk:2048`, 2,500 roles
/// with quota 1 CPU / 1 GiB and 500 roles with 4 CPUs / 4 GiB (guarantee = limit), one
/// framework per role; the next round is the full one, the round after it the empty one.
pub fn large_and_small_quota() -> Master {
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
        // As in Mesos' bench, quota names CPUs and memory only: disk is not limited.
        let limit = Scalars { disk_mib: u64::MAX, ..amount };
        master.set_quota(role.clone(), Quota { guarantee: amount, limit: Some(limit) }).expect("quota");
        master.subscribe(0, framework(i as usize, role)).expect("subscribe");
    }
    master.drain_outputs();
    settle_freed_memory();
    master
}

fn framework(i: usize, role: Role) -> FrameworkInfo {
    FrameworkInfo {
        id: None,
        name: format!("framework-{i}"),
        user: "bench".into(),
        roles: vec![role],
        failover_timeout_ms: 0,
        hostname: "bench".into(),
        principal: String::new(),
    }
}

/// glibc's malloc merges freed small blocks lazily, at the next large allocation. The
/// quota setup frees millions of them (each of its 3,000 `set_quota` calls persists the
/// whole policy, and the records are dropped with the outputs); without this, merging
/// them would be charged to the first timed round — about three quarters of its
/// instructions under callgrind — although the round itself frees none of them.
fn settle_freed_memory() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64 * 1024)));
}
