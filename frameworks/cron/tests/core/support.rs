//! Helpers shared by the core tests: instants from text and times shown in their zone.

use agora_cron::Schedule;
use jiff::Timestamp;

/// An instant from RFC 3339 text.
pub fn at(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text} is not an instant: {e}"))
}

/// A schedule that must parse.
pub fn schedule(text: &str, zone: &str) -> Schedule {
    let zone = (!zone.is_empty()).then_some(zone);
    Schedule::parse(text, zone, at("2000-01-01T00:00:00Z")).unwrap_or_else(|e| panic!("{text} must parse: {e}"))
}

/// The next `n` times after `from`, shown as wall-clock time with the zone's offset.
pub fn next(text: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let s = schedule(text, zone);
    s.next_n(at(from), n).into_iter().map(|t| show(&s, t)).collect()
}

/// An instant as wall-clock time in the schedule's zone with its offset.
pub fn show(s: &Schedule, t: Timestamp) -> String {
    t.to_zoned_datetime(s.time_zone().clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// The error text for a schedule that must be refused.
pub fn refusal(text: &str, zone: &str) -> String {
    let zone = (!zone.is_empty()).then_some(zone);
    match Schedule::parse(text, zone, at("2000-01-01T00:00:00Z")) {
        Ok(s) => panic!("{text} must be refused, parsed as {s}"),
        Err(e) => e.to_string(),
    }
}
