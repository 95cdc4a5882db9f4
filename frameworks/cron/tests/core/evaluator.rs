//! The evaluator's exact outcomes: on-time runs, missed runs and the missed-run policies,
//! disabled and finished jobs, bounded work, and a seeded check that every scheduled time
//! gets exactly one outcome however the evaluations are spaced.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_cron::evaluator::{MAX_CATCH_UP, MAX_TIMES_PER_JOB};
use agora_cron::{Evaluation, JobName, JobSchedule, MissReason, MissedRunPolicy, RunKind, evaluate};
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::support::{at, schedule};

fn job(text: &str, since: &str) -> JobSchedule {
    JobSchedule {
        schedule: schedule(text, ""),
        disabled: false,
        epsilon: Duration::from_secs(60),
        missed_runs: MissedRunPolicy::Skip,
        last_scheduled: None,
        active_since: at(since),
    }
}

fn jobs(list: Vec<(&str, JobSchedule)>) -> BTreeMap<JobName, JobSchedule> {
    list.into_iter().map(|(n, j)| (JobName::new(n), j)).collect()
}

/// Each outcome as `job scheduled-time kind`, in the evaluation's order.
fn outcomes(e: &Evaluation) -> (Vec<String>, Vec<String>) {
    let runs = e.runs.iter().map(|r| format!("{} {} {:?}", r.job, r.scheduled, r.kind)).collect();
    let missed = e.missed.iter().map(|m| format!("{} {}", m.job, m.scheduled)).collect();
    (runs, missed)
}

#[test]
fn a_run_within_its_window_is_due_with_its_deadline_and_the_next_wake_up() {
    let e = evaluate(&jobs(vec![("a", job("* * * * *", "2024-01-01T10:00:30Z"))]), at("2024-01-01T10:01:05Z"));
    assert_eq!(e.runs.len(), 1);
    assert_eq!(e.runs[0].scheduled, at("2024-01-01T10:01:00Z"));
    assert_eq!(e.runs[0].kind, RunKind::OnTime);
    assert_eq!(e.runs[0].deadline, at("2024-01-01T10:02:00Z"));
    assert!(e.missed.is_empty());
    assert_eq!(e.last_scheduled[&JobName::new("a")], at("2024-01-01T10:01:00Z"));
    assert_eq!(e.next_wake, Some(at("2024-01-01T10:02:00Z")));
}

#[test]
fn a_run_is_still_due_at_the_last_instant_of_its_window_and_missed_just_after() {
    let j = jobs(vec![("a", job("0 * * * *", "2024-01-01T09:30:00Z"))]);
    let e = evaluate(&j, at("2024-01-01T10:01:00Z"));
    assert_eq!(outcomes(&e).0, ["a 2024-01-01T10:00:00Z OnTime"]);
    let e = evaluate(&j, at("2024-01-01T10:01:00.000000001Z"));
    assert_eq!(outcomes(&e), (vec![], vec!["a 2024-01-01T10:00:00Z".to_string()]));
}

#[test]
fn nothing_is_due_before_a_jobs_first_time() {
    let e = evaluate(&jobs(vec![("a", job("0 12 * * *", "2024-01-01T10:00:00Z"))]), at("2024-01-01T11:59:59Z"));
    assert_eq!(outcomes(&e), (vec![], vec![]));
    assert!(e.last_scheduled.is_empty());
    assert_eq!(e.next_wake, Some(at("2024-01-01T12:00:00Z")));
}

#[test]
fn after_downtime_runs_past_their_window_are_missed_with_the_reason() {
    let mut a = job("* * * * *", "2024-01-01T09:00:00Z");
    a.last_scheduled = Some(at("2024-01-01T10:00:00Z"));
    let e = evaluate(&jobs(vec![("a", a)]), at("2024-01-01T10:05:30Z"));
    assert_eq!(
        outcomes(&e),
        (
            vec!["a 2024-01-01T10:05:00Z OnTime".to_string()],
            vec![
                "a 2024-01-01T10:01:00Z".to_string(),
                "a 2024-01-01T10:02:00Z".to_string(),
                "a 2024-01-01T10:03:00Z".to_string(),
                "a 2024-01-01T10:04:00Z".to_string(),
            ]
        )
    );
    assert_eq!(
        e.missed[0].reason,
        MissReason::WindowPassed { epsilon: Duration::from_secs(60), seen_at: at("2024-01-01T10:05:30Z") }
    );
    assert_eq!(
        e.missed[0].reason.to_string(),
        "not started within its epsilon of 60s: first seen at 2024-01-01T10:05:30Z; the \
         missed-run policy starts none"
    );
    assert_eq!(e.last_scheduled[&JobName::new("a")], at("2024-01-01T10:05:00Z"));
}

#[test]
fn the_latest_policy_starts_the_last_missed_run_late_and_records_the_rest() {
    let mut a = job("* * * * *", "2024-01-01T09:00:00Z");
    a.last_scheduled = Some(at("2024-01-01T10:00:00Z"));
    a.missed_runs = MissedRunPolicy::Latest;
    let now = at("2024-01-01T10:05:30Z");
    let e = evaluate(&jobs(vec![("a", a)]), now);
    assert_eq!(
        outcomes(&e),
        (
            vec!["a 2024-01-01T10:04:00Z CatchUp".to_string(), "a 2024-01-01T10:05:00Z OnTime".to_string(),],
            vec![
                "a 2024-01-01T10:01:00Z".to_string(),
                "a 2024-01-01T10:02:00Z".to_string(),
                "a 2024-01-01T10:03:00Z".to_string(),
            ]
        )
    );
    assert_eq!(e.runs[0].deadline, at("2024-01-01T10:06:30Z"));
    assert_eq!(
        e.missed[0].reason,
        MissReason::BeyondCatchUp { epsilon: Duration::from_secs(60), seen_at: now, bound: 1 }
    );
}

#[test]
fn the_all_policy_starts_the_latest_missed_runs_up_to_its_bound() {
    let mut a = job("* * * * *", "2024-01-01T09:00:00Z");
    a.last_scheduled = Some(at("2024-01-01T10:00:00Z"));
    a.missed_runs = MissedRunPolicy::All(2);
    let e = evaluate(&jobs(vec![("a", a.clone())]), at("2024-01-01T10:05:30Z"));
    assert_eq!(
        outcomes(&e),
        (
            vec![
                "a 2024-01-01T10:03:00Z CatchUp".to_string(),
                "a 2024-01-01T10:04:00Z CatchUp".to_string(),
                "a 2024-01-01T10:05:00Z OnTime".to_string(),
            ],
            vec!["a 2024-01-01T10:01:00Z".to_string(), "a 2024-01-01T10:02:00Z".to_string(),]
        )
    );
    a.missed_runs = MissedRunPolicy::All(u32::MAX);
    let e = evaluate(&jobs(vec![("a", a)]), at("2024-01-01T14:00:30Z"));
    let caught_up = e.runs.iter().filter(|r| r.kind == RunKind::CatchUp).count();
    assert_eq!(caught_up, MAX_CATCH_UP as usize);
    assert_eq!(e.missed.len() + caught_up + 1, 240);
}

#[test]
fn disabled_jobs_are_never_due_and_never_wake_the_runtime() {
    let mut a = job("* * * * *", "2024-01-01T09:00:00Z");
    a.disabled = true;
    let e = evaluate(&jobs(vec![("a", a)]), at("2024-01-01T10:00:00Z"));
    assert_eq!(e, Evaluation::default());
}

#[test]
fn a_finished_interval_has_no_next_wake_up() {
    let a = job("R2/2024-01-01T10:00:00Z/PT1M", "2024-01-01T09:00:00Z");
    let e = evaluate(&jobs(vec![("a", a)]), at("2024-01-01T10:01:10Z"));
    assert_eq!(
        outcomes(&e),
        (vec!["a 2024-01-01T10:01:00Z OnTime".to_string()], vec!["a 2024-01-01T10:00:00Z".to_string()])
    );
    assert_eq!(e.next_wake, None);
}

#[test]
fn an_interval_starting_when_its_job_is_created_runs_at_once() {
    let a = job("R/2024-01-01T10:00:00Z/PT1H", "2024-01-01T10:00:00Z");
    let e = evaluate(&jobs(vec![("a", a)]), at("2024-01-01T10:00:00.3Z"));
    assert_eq!(outcomes(&e).0, ["a 2024-01-01T10:00:00Z OnTime"]);
}

#[test]
fn a_re_enabled_job_does_not_count_its_disabled_span_as_missed() {
    let mut a = job("* * * * *", "2024-01-01T12:00:30Z");
    a.last_scheduled = Some(at("2024-01-01T10:00:00Z"));
    let e = evaluate(&jobs(vec![("a", a)]), at("2024-01-01T12:01:10Z"));
    assert_eq!(outcomes(&e), (vec!["a 2024-01-01T12:01:00Z OnTime".to_string()], vec![]));
}

#[test]
fn runs_of_several_jobs_come_in_time_order_and_the_earliest_next_time_wakes() {
    let mut a = job("*/5 * * * *", "2024-01-01T09:00:00Z");
    a.last_scheduled = Some(at("2024-01-01T09:55:00Z"));
    a.missed_runs = MissedRunPolicy::All(10);
    a.epsilon = Duration::from_secs(0);
    let mut b = job("* * * * *", "2024-01-01T09:00:00Z");
    b.last_scheduled = Some(at("2024-01-01T10:03:00Z"));
    b.epsilon = Duration::from_secs(600);
    let e = evaluate(&jobs(vec![("b", b), ("a", a)]), at("2024-01-01T10:05:00Z"));
    assert_eq!(
        outcomes(&e).0,
        [
            "a 2024-01-01T10:00:00Z CatchUp",
            "b 2024-01-01T10:04:00Z OnTime",
            "a 2024-01-01T10:05:00Z OnTime",
            "b 2024-01-01T10:05:00Z OnTime",
        ]
    );
    assert_eq!(e.next_wake, Some(at("2024-01-01T10:06:00Z")));
}

#[test]
fn a_long_downtime_is_settled_in_bounded_steps_with_the_catch_up_at_the_end() {
    let mut a = job("* * * * *", "2024-01-01T00:00:00Z");
    a.last_scheduled = Some(at("2024-01-01T00:00:00Z"));
    a.missed_runs = MissedRunPolicy::All(3);
    let now = at("2024-01-02T09:20:30Z"); // 2000 minutes later
    let map = jobs(vec![("a", a.clone())]);
    let first = evaluate(&map, now);
    assert_eq!(first.missed.len(), MAX_TIMES_PER_JOB);
    assert!(first.runs.is_empty());
    assert_eq!(first.next_wake, Some(now));

    a.last_scheduled = Some(first.last_scheduled[&JobName::new("a")]);
    let second = evaluate(&jobs(vec![("a", a)]), now);
    assert_eq!(second.missed.len(), 1000 - 4);
    assert_eq!(
        outcomes(&second).0,
        [
            "a 2024-01-02T09:17:00Z CatchUp",
            "a 2024-01-02T09:18:00Z CatchUp",
            "a 2024-01-02T09:19:00Z CatchUp",
            "a 2024-01-02T09:20:00Z OnTime",
        ]
    );
    assert_eq!(second.next_wake, Some(at("2024-01-02T09:21:00Z")));
}

#[test]
fn every_scheduled_time_gets_exactly_one_outcome_however_evaluations_are_spaced() {
    let seed: u64 = std::env::var("CRON_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261207);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for round in 0..20 {
        let texts = ["*/7 * * * *", "0,30 * * * *", "R/2024-03-09T23:00:00/PT13M", "30 2 * * *"];
        let text = texts[rng.random_range(0..texts.len())];
        let mut a = JobSchedule {
            schedule: super::support::schedule(text, "America/New_York"),
            disabled: false,
            epsilon: Duration::from_secs(rng.random_range(0..900)),
            missed_runs: match rng.random_range(0..3) {
                0 => MissedRunPolicy::Skip,
                1 => MissedRunPolicy::Latest,
                _ => MissedRunPolicy::All(rng.random_range(1..5)),
            },
            last_scheduled: None,
            active_since: at("2024-03-09T22:00:00Z"),
        };
        let start = a.active_since;
        let mut now = start;
        let mut seen: Vec<Timestamp> = Vec::new();
        for _ in 0..200 {
            now = now.checked_add(SignedDuration::from_secs(rng.random_range(1..3600))).expect("in range");
            let e = evaluate(&jobs(vec![("a", a.clone())]), now);
            for r in &e.runs {
                assert!(r.scheduled <= now, "seed {seed} round {round}: run from the future");
                if r.kind == RunKind::OnTime {
                    assert!(r.deadline >= now, "seed {seed} round {round}: late on-time run");
                }
                seen.push(r.scheduled);
            }
            seen.extend(e.missed.iter().map(|m| m.scheduled));
            if let Some(&last) = e.last_scheduled.get(&JobName::new("a")) {
                a.last_scheduled = Some(last);
            }
            if let Some(wake) = e.next_wake {
                assert!(wake >= now, "seed {seed} round {round}: wake-up in the past");
            }
        }
        let settled = a.last_scheduled.expect("some time settled");
        let expected: Vec<Timestamp> = {
            let mut times = Vec::new();
            // Times at the activation instant itself count.
            let mut t = start - SignedDuration::from_nanos(1);
            while let Some(next) = a.schedule.next_after(t).filter(|&n| n <= settled) {
                times.push(next);
                t = next;
            }
            times
        };
        seen.sort();
        assert_eq!(seen, expected, "seed {seed} round {round} ({text}): every time once");
    }
}
