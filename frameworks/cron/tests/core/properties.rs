//! Seeded property checks: random cron expressions and ISO 8601 intervals in zones with
//! DST, at random instants clustered around offset changes. `next_after(t)` must be later
//! than `t`, be a run time itself, and skip none: a minute-by-minute scan between the two
//! (cron) or a walk over the occurrences (ISO 8601) finds no run time in between. The
//! cron oracle here reads the fields itself, independently of the parser.
//! `CRON_SEED=N` reproduces a failure.

use agora_cron::Schedule;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::support::at;

const ZONES: [&str; 5] = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham", "UTC"];

/// How far past `t` the brute-force scan looks.
const SCAN: SignedDuration = SignedDuration::from_hours(48);

fn seed() -> u64 {
    std::env::var("CRON_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7_20261207)
}

/// A random field in the syntax the oracle understands: `*`, `*/n`, `a`, `a-b`,
/// `a-b/n` and lists of those.
fn field(rng: &mut ChaCha8Rng, min: u32, max: u32, star_weight: u32) -> String {
    if rng.random_range(0..10) < star_weight {
        return if rng.random_bool(0.5) {
            "*".to_string()
        } else {
            format!("*/{}", rng.random_range(2..=(max - min + 1).min(20)))
        };
    }
    let items = rng.random_range(1..=3);
    let mut parts = Vec::new();
    for _ in 0..items {
        let a = rng.random_range(min..=max);
        parts.push(match rng.random_range(0..3) {
            0 => a.to_string(),
            1 => format!("{a}-{}", rng.random_range(a..=max)),
            _ => format!("{a}-{}/{}", rng.random_range(a..=max), rng.random_range(1..5)),
        });
    }
    parts.join(",")
}

/// Whether `value` is selected by a field of the oracle's syntax.
fn selects(field: &str, value: u32, min: u32, max: u32) -> bool {
    field.split(',').any(|item| {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().expect("step")),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().expect("lo"), b.parse().expect("hi"))
        } else {
            let a: u32 = range.parse().expect("value");
            (a, if item.contains('/') { max } else { a })
        };
        (lo..=hi).contains(&value) && (value - lo).is_multiple_of(step)
    })
}

/// Whether a wall-clock minute matches a 5-field expression, with cron's rule that a
/// day matches either day field when both are restricted.
fn oracle_matches(fields: &[String], w: DateTime) -> bool {
    let weekday = u32::from(w.date().weekday().to_sunday_zero_offset().unsigned_abs());
    let dom = selects(&fields[2], w.day() as u32, 1, 31);
    let dow = selects(&fields[4], weekday, 0, 7) || (weekday == 0 && selects(&fields[4], 7, 0, 7));
    let day = match (fields[2] == "*", fields[4] == "*") {
        (true, true) => true,
        (true, false) => dow,
        (false, true) => dom,
        (false, false) => dom || dow,
    };
    day && selects(&fields[0], w.minute() as u32, 0, 59)
        && selects(&fields[1], w.hour() as u32, 0, 23)
        && selects(&fields[3], w.month() as u32, 1, 12)
}

/// Whether the DST rule makes instant `i` (a whole minute) a run time.
fn oracle_runs_at(fields: &[String], zone: &TimeZone, i: Timestamp) -> bool {
    let w = zone.to_datetime(i);
    let wildcard = fields[0].contains('*') || fields[1].contains('*');
    if wildcard {
        return oracle_matches(fields, w);
    }
    let first_pass = match zone.to_ambiguous_timestamp(w).offset() {
        AmbiguousOffset::Fold { before, .. } => zone.to_offset(i) == before,
        _ => true,
    };
    if oracle_matches(fields, w) && first_pass {
        return true;
    }
    // The end of a gap runs the gap's matching times.
    let just_before = i - SignedDuration::from_nanos(1);
    let (old, new) = (zone.to_offset(just_before), zone.to_offset(i));
    if new <= old {
        return false;
    }
    let gap_start = i.to_zoned_datetime(TimeZone::fixed(old)).datetime();
    let gap_minutes = (new.seconds() - old.seconds()) / 60;
    (0..gap_minutes).any(|m| oracle_matches(fields, gap_start + SignedDuration::from_mins(i64::from(m))))
}

/// A random instant near one of the zone's offset changes in 2020-2030.
fn instant_near_a_change(rng: &mut ChaCha8Rng, zone: &TimeZone) -> Timestamp {
    let year = rng.random_range(2020..2030);
    let from = at(&format!("{year}-01-01T00:00:00Z"));
    let changes: Vec<Timestamp> = zone.following(from).take(2).map(|c| c.timestamp()).collect();
    let base = if changes.is_empty() || rng.random_range(0..5) == 0 {
        from + SignedDuration::from_hours(24 * rng.random_range(0..365))
    } else {
        changes[rng.random_range(0..changes.len())]
    };
    // Half within hours of the change, where gaps and folds are, half within days.
    let spread = if rng.random_bool(0.5) { 3 * 3_600 } else { 3 * 86_400 };
    base + SignedDuration::from_secs(rng.random_range(-spread..spread))
}

#[test]
fn cron_next_after_is_later_is_a_run_time_and_skips_none_by_minute_scan() {
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..300 {
        let fields = vec![
            field(&mut rng, 0, 59, 3),
            field(&mut rng, 0, 23, 5),
            if rng.random_range(0..4) == 0 { field(&mut rng, 1, 31, 0) } else { "*".into() },
            if rng.random_range(0..5) == 0 { field(&mut rng, 1, 12, 0) } else { "*".into() },
            if rng.random_range(0..4) == 0 { field(&mut rng, 0, 7, 0) } else { "*".into() },
        ];
        let text = fields.join(" ");
        let zone_name = ZONES[rng.random_range(0..ZONES.len())];
        let s = match Schedule::parse(&text, Some(zone_name), at("2020-01-01T00:00:00Z")) {
            Ok(s) => s,
            // Only impossible dates are refused, such as `30 2 *`-style day and month.
            Err(e) => {
                assert!(e.to_string().contains("matches no date"), "seed {seed} case {case}: {e}");
                continue;
            }
        };
        let zone = TimeZone::get(zone_name).expect("bundled zone");
        let t = instant_near_a_change(&mut rng, &zone);
        let context = format!("seed {seed} case {case}: `{text}` in {zone_name} after {t}");
        let next = s.next_after(t).unwrap_or_else(|| panic!("{context}: no next time"));
        assert!(next > t, "{context}: {next} is not later");
        assert!(oracle_runs_at(&fields, &zone, next), "{context}: {next} is not a run time");
        // Every whole minute strictly between the two, up to the scan's end.
        let mut i = t
            .round(jiff::TimestampRound::new().smallest(jiff::Unit::Minute).mode(jiff::RoundMode::Floor))
            .expect("in range");
        let end = next.min(t + SCAN);
        loop {
            i += SignedDuration::from_mins(1);
            if i >= end {
                break;
            }
            assert!(!oracle_runs_at(&fields, &zone, i), "{context}: skipped {i}, answered {next}");
        }
    }
}

#[test]
fn iso_next_after_is_the_first_occurrence_later_than_the_instant() {
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x150);
    // Each period with its rough length in seconds, to keep the instant within a few
    // thousand occurrences of the start, which the walk below reaches.
    let periods = [
        ("P1D", 86_400),
        ("PT90M", 5_400),
        ("P1M", 2_629_746),
        ("P1W", 604_800),
        ("P1DT1H", 90_000),
        ("PT7S", 7),
        ("P1Y", 31_556_952),
        ("P2M3D", 5_518_692),
    ];
    for case in 0..300 {
        let zone_name = ZONES[rng.random_range(0..ZONES.len())];
        let zone = TimeZone::get(zone_name).expect("bundled zone");
        let start = instant_near_a_change(&mut rng, &zone).to_zoned_datetime(zone.clone());
        let start_text = start.datetime().round(jiff::Unit::Second).expect("in range");
        let (period, approx_secs) = periods[rng.random_range(0..periods.len())];
        let count: u64 = rng.random_range(0..4);
        let repeat = if count == 0 { String::new() } else { (count * 10).to_string() };
        let text = format!("R{repeat}/{start_text}/{period}");
        let s = Schedule::parse(&text, Some(zone_name), at("2020-01-01T00:00:00Z"))
            .unwrap_or_else(|e| panic!("seed {seed} case {case}: {e}"));
        let first = s.next_after(Timestamp::MIN).expect("a first time");
        let reach: i64 = (3_000 * approx_secs).min(40 * 86_400);
        let t = first + SignedDuration::from_secs(rng.random_range(-86_400..reach));
        let context = format!("seed {seed} case {case}: `{text}` in {zone_name} after {t}");
        // Walk the occurrences one at a time from the start, as a person would.
        let start_zoned = start_text.to_zoned_datetime(zone.clone()).expect("start");
        let step: Span = period.parse().expect("period");
        let limit = if count == 0 { 10_000 } else { count * 10 };
        let expected = (0..limit)
            .map(|k| {
                let k = i64::try_from(k).expect("small");
                let span = step.checked_mul(k).expect("span");
                start_zoned.checked_add(span).expect("in range").timestamp()
            })
            .find(|&occurrence| occurrence > t);
        assert_eq!(s.next_after(t), expected, "{context}");
    }
}
