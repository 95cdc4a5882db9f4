//! Criterion benches of the master core's allocator, reproducing Mesos' published
//! `HierarchicalAllocator_BENCHMARK_DeclineOffers` and `…_LargeAndSmallQuota` scenarios so
//! figures compare one to one.
//!
//! Each agent has `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, part of it already used
//! by a task; every offer is declined with a filter that outlives the run; the measured
//! time is one allocation round. Sizes: `AGORA_BENCH_SIZES="1000x100,10000x1000"` picks
//! agents×frameworks pairs (default: the pairs below).

use std::time::{Duration, Instant};

use agora_master::scenarios::{self, DeclineOffers};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The allocator the `agora` binary runs the master with, so that the figures are the
/// master's as it runs (glibc's malloc took a slow path on the heap the declines fragment).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn decline_offers(c: &mut Criterion) {
    let mut group = c.benchmark_group("DeclineOffers");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    for (agents, frameworks) in sizes() {
        let mut cluster = DeclineOffers::new(agents, frameworks);
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

fn large_and_small_quota(c: &mut Criterion) {
    let mut group = c.benchmark_group("LargeAndSmallQuota");
    group.sample_size(10);
    for (name, rounds_before) in [("full", 0), ("empty", 1)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let mut master = scenarios::large_and_small_quota();
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
