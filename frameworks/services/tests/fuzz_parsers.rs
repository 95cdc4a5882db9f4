//! Property-based fuzzing of the services framework's parsers: Marathon app and group
//! definitions, label selectors, app paths and timestamps. Arbitrary input gives a value
//! or problems naming the fields, never a panic; an app that parses renders as a
//! definition that parses back to the same app.
//!
//! The budget is fixed for CI (256 cases each, a fixed seed); a longer campaign:
//! `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo nextest run -p agora-services --test fuzz_parsers`.

use agora_services::marathon::Problems;
use agora_services::marathon::app::{AppContext, parse_app};
use agora_services::marathon::group::parse_group;
use agora_services::marathon::render::definition_json;
use agora_services::marathon::selector::LabelSelector;
use agora_services::model::{PathId, Timestamp};
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

/// Keys of a Marathon app, so that generated objects reach the checks past the shape.
const APP_KEYS: &[&str] = &[
    "id",
    "cmd",
    "args",
    "instances",
    "cpus",
    "mem",
    "disk",
    "ports",
    "portDefinitions",
    "port",
    "protocol",
    "name",
    "labels",
    "env",
    "constraints",
    "healthChecks",
    "readinessChecks",
    "path",
    "portIndex",
    "gracePeriodSeconds",
    "intervalSeconds",
    "timeoutSeconds",
    "maxConsecutiveFailures",
    "upgradeStrategy",
    "minimumHealthCapacity",
    "maximumOverCapacity",
    "backoffSeconds",
    "backoffFactor",
    "maxLaunchDelaySeconds",
    "user",
    "uris",
    "fetch",
    "uri",
    "executable",
    "extract",
    "cache",
    "acceptedResourceRoles",
    "role",
    "killSelection",
    "requirePorts",
    "dependencies",
    "container",
    "unreachableStrategy",
    "apps",
    "groups",
    "version",
    "tasksRunning",
    "secrets",
    "networks",
    "command",
    "value",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0u32..100).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        "/[a-z]{1,4}(/[a-z.]{1,4}){0,2}".prop_map(Value::from),
        Just(json!("UNIQUE")),
        Just(json!("HTTP")),
        Just(json!("tcp")),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(APP_KEYS), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// An app definition: an id, a command and a few fields of any shape.
fn app_json() -> impl Strategy<Value = Value> {
    (
        "/?[a-z][a-z0-9-]{0,8}(/[a-z0-9.-]{1,6}){0,2}",
        "\\PC{0,16}",
        prop::collection::vec((prop::sample::select(APP_KEYS), json_value()), 0..6),
    )
        .prop_map(|(id, cmd, extra)| {
            let mut app = Map::new();
            app.insert("id".into(), json!(id));
            app.insert("cmd".into(), json!(cmd));
            for (key, value) in extra {
                app.insert(key.to_owned(), value);
            }
            Value::Object(app)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_app_definition_parses_or_is_refused_and_what_parses_reads_back_the_same(app in app_json()) {
        let mut problems = Problems::new();
        if let Some(spec) = parse_app(&app, &AppContext::top(None), &mut problems) {
            prop_assert!(problems.is_empty());
            let rendered = Value::Object(definition_json(&spec));
            let mut again = Problems::new();
            let back = parse_app(&rendered, &AppContext::top(None), &mut again);
            prop_assert_eq!(back.as_ref(), Some(&spec), "{} rendered as {}: {:?}", app, rendered, again);
        } else {
            prop_assert!(!problems.is_empty(), "{} refused without a reason", app);
        }
    }

    #[test]
    fn any_json_as_an_app_or_a_group_is_parsed_or_refused(value in json_value()) {
        let mut problems = Problems::new();
        let _ = parse_app(&value, &AppContext::top(None), &mut problems);
        let mut problems = Problems::new();
        let _ = parse_group(&value, None, &mut problems);
    }

    #[test]
    fn any_selector_path_and_timestamp_text_parses_or_is_refused(
        text in prop_oneof![
            "[a-z=!,() ]{0,30}",
            "/?[a-z./]{0,20}",
            "[0-9T:.Z-]{0,26}",
            "\\PC{0,40}",
        ],
    ) {
        let _ = LabelSelector::parse(&text);
        if let Ok(path) = PathId::parse(&text) {
            prop_assert_eq!(PathId::parse(&path.to_string()).ok(), Some(path));
        }
        let _ = Timestamp::parse(&text);
    }
}
