//! Property-based fuzzing of cron's parsers: schedules (5-field cron and ISO 8601
//! repeating intervals, with time zones), ISO 8601 durations, and Chronos job bodies.
//! Arbitrary input gives a value or a typed error, never a panic; a schedule that parses
//! gives times strictly after the one asked about, and a job that parses renders as JSON
//! that parses back to the same definition.
//!
//! The budget is fixed for CI (256 cases each, a fixed seed); a longer campaign:
//! `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo nextest run -p agora-cron --test fuzz_parsers`.

use agora_cron::chronos::job::{Endpoint, parse_body, parse_iso_duration, parse_job};
use agora_cron::chronos::render;
use agora_cron::model::JobCounters;
use agora_cron::schedule::Schedule;
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{Map, Value, json};

fn config() -> ProptestConfig {
    let mut config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x0a60_2a16);
    }
    config
}

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a valid instant")
}

/// A cron field: numbers (some out of range), lists, ranges, steps, names, wildcards.
fn cron_field() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        Just("L".to_owned()),
        Just("MON".to_owned()),
        Just("jan".to_owned()),
        (0u32..70).prop_map(|n| n.to_string()),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}/{b}")),
        Just("*/0".to_owned()),
        Just("99999999999999999999".to_owned()),
    ];
    prop::collection::vec(atom, 1..3).prop_map(|atoms| atoms.join(","))
}

fn schedule_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(cron_field(), 1..8).prop_map(|fields| fields.join(" ")),
        (
            prop_oneof![Just(String::new()), Just("9999999999".to_owned()), (0u32..40).prop_map(|n| n.to_string())],
            prop_oneof![
                Just(String::new()),
                Just("2026-03-01T02:00:00Z".to_owned()),
                Just("2026-03-29T01:30:00Europe/London".to_owned()),
                Just("+275760-09-13T00:00:00Z".to_owned()),
                Just("2026-02-30T00:00:00Z".to_owned()),
                "[0-9T:+Z-]{0,24}",
            ],
            prop_oneof![
                Just("P1D".to_owned()),
                Just("PT0S".to_owned()),
                Just("PT1M".to_owned()),
                Just("P1Y2M3DT4H5M6S".to_owned()),
                Just("P99999999999Y".to_owned()),
                "P[0-9YMWDTHS.]{0,14}",
            ],
        )
            .prop_map(|(repeats, start, period)| format!("R{repeats}/{start}/{period}")),
        "\\PC{0,40}",
    ]
}

fn zone() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("UTC".to_owned())),
        Just(Some("Europe/London".to_owned())),
        Just(Some("America/New_York".to_owned())),
        Just(Some("Australia/Lord_Howe".to_owned())),
        Just(Some("Nowhere/Else".to_owned())),
        "\\PC{0,20}".prop_map(Some),
    ]
}

const JOB_KEYS: &[&str] = &[
    "name",
    "command",
    "schedule",
    "scheduleTimeZone",
    "parents",
    "owner",
    "ownerName",
    "description",
    "epsilon",
    "retries",
    "cpus",
    "mem",
    "disk",
    "disabled",
    "async",
    "shell",
    "arguments",
    "environmentVariables",
    "uris",
    "fetch",
    "constraints",
    "runAsUser",
    "concurrent",
    "softError",
    "maxCompletionTime",
    "highPriority",
    "executor",
    "container",
    "dataProcessingJobType",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        schedule_text().prop_map(Value::from),
        Just(json!("PT30M")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(JOB_KEYS), inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A job body: mostly well-formed fields, some of any shape.
fn job_json() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9 _.#-]{0,12}",
        "\\PC{0,20}",
        schedule_text(),
        zone(),
        prop::collection::vec((prop::sample::select(JOB_KEYS), json_value()), 0..5),
    )
        .prop_map(|(name, command, schedule, zone, extra)| {
            let mut job = Map::new();
            job.insert("name".into(), json!(name));
            job.insert("command".into(), json!(command));
            job.insert("schedule".into(), json!(schedule));
            if let Some(zone) = zone {
                job.insert("scheduleTimeZone".into(), json!(zone));
            }
            for (key, value) in extra {
                job.insert(key.to_owned(), value);
            }
            Value::Object(job)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_schedule_parses_or_is_refused_and_its_next_time_is_later(text in schedule_text(), zone in zone()) {
        if let Ok(schedule) = Schedule::parse(&text, zone.as_deref(), now()) {
            if let Some(next) = schedule.next_after(now()) {
                prop_assert!(next > now(), "{:?} in {:?}: {} is not after {}", text, zone, next, now());
            }
            let times = schedule.next_n(now(), 5);
            prop_assert!(times.windows(2).all(|w| w[0] < w[1]), "{:?}: {:?}", text, times);
        }
    }

    #[test]
    fn any_iso_duration_parses_or_is_refused(text in prop_oneof!["P[0-9YMWDTHS.,]{0,16}", "\\PC{0,20}"]) {
        let _ = parse_iso_duration(&text);
    }

    #[test]
    fn any_job_body_parses_or_is_refused_and_what_parses_renders_back_to_itself(
        job in job_json(),
        dependent in any::<bool>(),
    ) {
        let endpoint = if dependent { Endpoint::Dependency } else { Endpoint::Iso8601 };
        if let Ok(spec) = parse_job(&job, endpoint, now()) {
            let rendered = render::job(&spec, &JobCounters::default());
            let back = parse_job(&rendered, endpoint, spec.created_at);
            prop_assert_eq!(back.as_ref().ok(), Some(&spec), "{} rendered as {}", job, rendered);
        }
    }

    #[test]
    fn any_bytes_as_a_job_body_are_refused_or_parse(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_body(&bytes, Endpoint::Iso8601, now());
    }
}
