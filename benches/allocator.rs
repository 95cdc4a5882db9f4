//! Criterion benches of the master core's allocator, reproducing Mesos' published
//! `HierarchicalAllocator_BENCHMARK_DeclineOffers` and `…_LargeAndSmallQuota` scenarios so
//! figures compare one to one.
//!
//! Each agent has `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, part of it already used
//! by a task; every offer is declined with a filter that outlives the run; the measured
//! time is one allocation round. Sizes: `AGORA_BENCH_SIZES="1000x100,10000x1000"` picks
//! agents×frameworks pairs (default: the pairs below).

use std::time::{Duration, Instant};

use agora_master::core::{Call, Config, ConnId, Event, Master, Operation, Output, Quota};
use agora_proto::model::{
    AgentId, AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, OfferId, Resources, Role, Scalars, StreamId, TaskId,
    TaskInfo,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The allocator the `agora` binary runs the master with, so that the figures are the
/// master's as it runs (glibc's malloc took a slow path on the heap the declines fragment).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AGENT_RESOURCES: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
const USED_RESOURCES: &str = "cpus:1;mem:128;disk:0;ports:[31000-31000]";
/// A filter longer than any bench run: declined agents are never offered again.
const FOREVER_MS: u64 = 365 * 24 * 3600 * 1000;

fn sizes() -> Vec<(usize, usize)> {
    let default = "1000x100,1000x1000,10000x100,10000x1000";
    let spec = std::env::var("AGORA_BENCH_SIZES").unwrap_or_else(|_| default.to_owned());
    spec.split(',')
        .filter_map(|pair| {
            let (a, f) = pair.trim().split_once('x')?;
            Some((a.parse().ok()?, f.parse().ok()?))
        })
        .collect()
}

struct Cluster {
    master: Master,
    frameworks: Vec<(FrameworkId, StreamId)>,
    now_ms: u64,
}

impl Cluster {
    fn new(agents: usize, frameworks: usize) -> Cluster {
        let config = Config { master_id: "bench".into(), ..Config::default() };
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
        let mut ids = Vec::with_capacity(frameworks);
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
            ids.push(master.subscribe(now_ms, info).expect("subscribe"));
        }
        master.drain_outputs();
        let mut cluster = Cluster { master, frameworks: ids, now_ms };
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
                };
                let call = Call::Accept {
                    offer_ids: vec![offer_id],
                    operations: vec![Operation::Launch { tasks: vec![task] }],
                    refuse_ms: 0,
                };
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

    fn decline_everything(&mut self) {
        for (framework_id, offers) in self.offers() {
            let stream_id = self.stream(&framework_id);
            let offer_ids = offers.into_iter().map(|(id, _)| id).collect();
            let call = Call::Decline { offer_ids, refuse_ms: FOREVER_MS };
            self.master.call(self.now_ms, &framework_id, &stream_id, call).expect("decline");
        }
        self.master.drain_outputs();
    }
}

fn decline_offers(c: &mut Criterion) {
    let mut group = c.benchmark_group("DeclineOffers");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    for (agents, frameworks) in sizes() {
        let mut cluster = Cluster::new(agents, frameworks);
        group.throughput(Throughput::Elements(agents as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{agents}x{frameworks}")), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    cluster.master.allocate(cluster.now_ms);
                    total += started.elapsed();
                    cluster.decline_everything();
                    cluster.now_ms += 1;
                }
                total
            });
        });
    }
    group.finish();
}

/// Mesos' LargeAndSmallQuota: 3,000 agents of `cpus:2;mem:2048;disk:2048`, 2,500 roles
/// with quota 1 CPU / 1 GiB and 500 roles with 4 CPUs / 4 GiB (guarantee = limit), one
/// framework per role. Measures the first (full) round and the empty round after it.
fn quota_cluster() -> Master {
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
    settle_freed_memory();
    master
}

/// glibc's malloc merges freed small blocks lazily, at the next large allocation. The
/// quota setup frees millions of them (each of its 3,000 `set_quota` calls persists the
/// whole policy, and the records are dropped with the outputs); without this, merging
/// them would be charged to the first timed round — about three quarters of its
/// instructions under callgrind — although the round itself frees none of them.
fn settle_freed_memory() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64 * 1024)));
}

fn large_and_small_quota(c: &mut Criterion) {
    let mut group = c.benchmark_group("LargeAndSmallQuota");
    group.sample_size(10);
    for (name, rounds_before) in [("full", 0), ("empty", 1)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let mut master = quota_cluster();
                    for _ in 0..rounds_before {
                        master.allocate(1);
                        master.drain_outputs();
                    }
                    let started = Instant::now();
                    master.allocate(1);
                    total += started.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decline_offers, large_and_small_quota);
criterion_main!(benches);
