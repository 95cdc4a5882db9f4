//! Property-based fuzzing of the scheduler HTTP API's parsers: RecordIO framing, and a
//! Mesos call (JSON or protobuf) through its translation into the core's calls. Arbitrary
//! input gives a value or a typed error, never a panic; framed records read back whole
//! however the stream is cut.
//!
//! The budget is fixed for CI (256 cases, a fixed seed); a longer campaign:
//! `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo nextest run -p agora-master -E 'test(fuzz)'`.

use agora_proto::pb;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use prost::Message as _;
use serde_json::{Map, Value};

use super::convert::{self, Action};
use super::recordio::{Reader, frame};
use super::types;
use crate::runtime::wire;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x0a60_2a16);
    }
    config
}

/// Keys a Mesos call has, so that generated objects reach past the first missing field.
const KEYS: &[&str] = &[
    "type",
    "value",
    "framework_id",
    "subscribe",
    "framework_info",
    "user",
    "name",
    "id",
    "roles",
    "role",
    "failover_timeout",
    "accept",
    "offer_ids",
    "operations",
    "launch",
    "task_infos",
    "task_id",
    "agent_id",
    "resources",
    "scalar",
    "ranges",
    "range",
    "begin",
    "end",
    "command",
    "shell",
    "arguments",
    "environment",
    "variables",
    "uris",
    "health_check",
    "http",
    "port",
    "path",
    "filters",
    "refuse_seconds",
    "decline",
    "kill",
    "acknowledge",
    "uuid",
    "reconcile",
    "tasks",
    "message",
    "data",
    "reservations",
    "reservation",
    "principal",
    "hostname",
    "capabilities",
    "labels",
    "key",
    "kill_policy",
    "grace_period",
    "nanoseconds",
];

const TYPES: &[&str] = &[
    "SUBSCRIBE",
    "TEARDOWN",
    "ACCEPT",
    "DECLINE",
    "REVIVE",
    "SUPPRESS",
    "KILL",
    "SHUTDOWN",
    "ACKNOWLEDGE",
    "RECONCILE",
    "MESSAGE",
    "REQUEST",
    "UPDATE_FRAMEWORK",
    "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS",
    "UNKNOWN",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(TYPES).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::from("cpus")),
        Just(Value::from("SCALAR")),
        Just(Value::from("RANGES")),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A call object: a type, a framework id and a few fields of any shape.
fn call_json() -> impl Strategy<Value = Value> {
    (prop::sample::select(TYPES), "\\PC{0,8}", prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..4))
        .prop_map(|(kind, id, fields)| {
            let mut call = Map::new();
            call.insert("type".into(), Value::from(kind));
            call.insert("framework_id".into(), serde_json::json!({ "value": id }));
            for (key, value) in fields {
                call.insert(key.to_owned(), value);
            }
            Value::Object(call)
        })
}

/// Runs a decoded call the whole way to the core's calls, as the handler does.
fn translate(call: types::Call) {
    let framework_id = call.framework_id.as_ref().map(|id| id.value.clone()).unwrap_or_default();
    match convert::action(call) {
        Ok(Action::Call(body)) => {
            let call = pb::Call { framework_id, stream_id: "s".to_owned(), call: Some(body) };
            let _ = wire::calls_from_pb(call);
        }
        Ok(Action::Subscribe(info) | Action::UpdateFramework(info)) => {
            let _ = agora_proto::model::FrameworkInfo::try_from(info);
        }
        Ok(_) | Err(_) => {}
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_fed_in_any_pieces_read_as_records_or_a_framing_error(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(0usize..256, 0..8),
    ) {
        let mut reader = Reader::new(1024);
        let mut start = 0;
        let mut cuts = cuts;
        cuts.sort_unstable();
        for cut in cuts.into_iter().chain([bytes.len()]) {
            let end = cut.min(bytes.len()).max(start);
            if reader.feed(&bytes[start..end]).is_err() {
                break;
            }
            start = end;
        }
    }

    #[test]
    fn framed_records_read_back_whole_however_the_stream_is_cut(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
        piece in 1usize..17,
    ) {
        let stream: Vec<u8> = records.iter().flat_map(|r| frame(r).to_vec()).collect();
        let mut reader = Reader::new(64);
        let mut read = Vec::new();
        for chunk in stream.chunks(piece) {
            read.extend(reader.feed(chunk).expect("well framed"));
        }
        prop_assert_eq!(read, records);
    }

    #[test]
    fn any_json_call_is_translated_or_refused_naming_a_field(call in call_json()) {
        let text = serde_json::to_vec(&call).expect("a JSON value serializes");
        let deserializer = &mut serde_json::Deserializer::from_slice(&text);
        if let Ok(call) = serde_path_to_error::deserialize::<_, types::Call>(deserializer) {
            translate(call);
        }
    }

    #[test]
    fn any_text_or_protobuf_bytes_as_a_call_are_translated_or_refused(
        text in "\\PC{0,200}",
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(call) = serde_json::from_str::<types::Call>(&text) {
            translate(call);
        }
        if let Ok(call) = types::Call::decode(bytes.as_slice()) {
            translate(call);
        }
    }
}
