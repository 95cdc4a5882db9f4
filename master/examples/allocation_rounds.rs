//! Allocation rounds of the criterion bench's scenarios, one by one, for profilers:
//! `valgrind --tool=callgrind --toggle-collect='*Master::allocate*'` counts the
//! instructions of `Master::allocate` alone, which wall-clock figures on a shared
//! machine cannot give.
//!
//! `allocation_rounds decline AGENTS FRAMEWORKS ROUNDS` runs DeclineOffers (every offer
//! declined with a filter that outlives the run) and prints each round's time;
//! `allocation_rounds quota [ROUNDS]` runs LargeAndSmallQuota's full round and, with
//! ROUNDS = 2 (the default), the empty one after it. See `Profiler` for profiling some
//! rounds of a long run with perf.

use std::time::Instant;

use agora_master::scenarios::{DeclineOffers, large_and_small_quota};

/// The allocator the `agora` binary and the criterion bench run the master with, so that
/// a profile counts the allocations the master makes as it runs (glibc's malloc takes
/// slow paths on the heap the declines fragment that mimalloc does not).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn decline(agents: usize, frameworks: usize, rounds: usize) {
    let mut cluster = DeclineOffers::new(agents, frameworks);
    let mut profiler = Profiler::from_env();
    for round in 1..=rounds {
        profiler.round_starts(round);
        let started = Instant::now();
        cluster.master.allocate(cluster.now_ms);
        let elapsed = started.elapsed();
        profiler.round_ends();
        let made = cluster.decline_everything();
        // As in the bench: one millisecond later each round.
        cluster.now_ms += 1;
        println!("round {round}: {made} offers in {:.3} ms", elapsed.as_secs_f64() * 1e3);
    }
}

/// Turns `perf record --control fifo:CTL -D -1` on for the allocation of the rounds
/// named by `AGORA_PROFILE_ROUNDS=FIRST-LAST` and off for the rest of the time, when
/// `AGORA_PROFILE_CTL=CTL` names perf's control fifo: a profile of the rounds far into a
/// run, without the declines between them or the rounds before.
struct Profiler {
    control: Option<std::fs::File>,
    rounds: std::ops::RangeInclusive<usize>,
    on: bool,
}

impl Profiler {
    fn from_env() -> Profiler {
        let rounds = std::env::var("AGORA_PROFILE_ROUNDS").ok().and_then(|r| {
            let (first, last) = r.split_once('-')?;
            Some(first.parse().ok()?..=last.parse().ok()?)
        });
        let control = std::env::var("AGORA_PROFILE_CTL")
            .ok()
            .map(|path| std::fs::OpenOptions::new().write(true).open(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
        Profiler { control, rounds: rounds.unwrap_or(1..=usize::MAX), on: false }
    }

    fn round_starts(&mut self, round: usize) {
        self.on = self.rounds.contains(&round);
        if self.on {
            self.tell("enable");
        }
    }

    fn round_ends(&mut self) {
        if self.on {
            self.tell("disable");
        }
    }

    fn tell(&mut self, command: &str) {
        use std::io::Write;
        if let Some(control) = &mut self.control {
            control.write_all(format!("{command}\n").as_bytes()).expect("perf's control fifo takes commands");
        }
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
