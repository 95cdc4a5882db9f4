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

use agora_master::scenarios::{DeclineOffers, large_and_small_quota};

/// The allocator the `agora` binary and the criterion bench run the master with, so that
/// a profile counts the allocations the master makes as it runs (glibc's malloc takes
/// slow paths on the heap the declines fragment that mimalloc does not).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn decline(agents: usize, frameworks: usize, rounds: usize) {
    let mut cluster = DeclineOffers::new(agents, frameworks);
    for round in 1..=rounds {
        let started = Instant::now();
        cluster.master.allocate(cluster.now_ms);
        let elapsed = started.elapsed();
        let made = cluster.decline_everything();
        // As in the bench: one millisecond later each round.
        cluster.now_ms += 1;
        println!("round {round}: {made} offers in {:.3} ms", elapsed.as_secs_f64() * 1e3);
    }
}

fn quota(rounds: usize) {
    let mut master = large_and_small_quota();
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
