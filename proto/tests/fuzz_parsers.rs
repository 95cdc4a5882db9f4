//! Property-based fuzzing of the shared parsers: resource strings, roles, attributes,
//! credentials, `Authorization` values, ACL files, protobuf messages into domain types, and
//! the cross-site guard's header reading. Arbitrary input gives a value or a typed error,
//! never a panic; what has a rendering parses back from it to the same value.
//!
//! The budget is fixed for CI (256 cases each, a fixed seed); a longer campaign:
//! `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo nextest run -p agora-proto --test fuzz_parsers`
//! (see docs/security.md).

use agora_proto::model::{Attribute, FrameworkInfo, Resources, Role, TaskInfo};
use agora_proto::pb;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use prost::Message as _;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x0a60_2a16);
    }
    config
}

/// Text near the resource syntax: its punctuation, names and numbers, so that the fuzzer
/// reaches past the first check.
fn resource_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("cpus".to_owned()),
        Just("mem".to_owned()),
        Just("disk".to_owned()),
        Just("ports".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(":".to_owned()),
        Just(";".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("-".to_owned()),
        Just(",".to_owned()),
        Just("*".to_owned()),
        Just("eng/web".to_owned()),
        "[0-9]{1,25}",
        "[0-9]{0,8}\\.[0-9]{0,12}",
        Just("1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("-1".to_owned()),
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

/// Valid resource strings, built from their parts (at most 8 entries, each small enough
/// that repeated ones add up within the bounds).
fn valid_resources() -> impl Strategy<Value = String> {
    let role = prop_oneof![Just(String::new()), Just("(eng)".to_owned()), Just("(eng/web)".to_owned())];
    let entry = prop_oneof![
        (role.clone(), 0u64..=100_000_000).prop_map(|(r, milli)| format!("cpus{r}:{}", milli as f64 / 1000.0)),
        (role.clone(), 0u64..=(1 << 36)).prop_map(|(r, mib)| format!("mem{r}:{mib}")),
        (role.clone(), 0u64..=(1 << 36)).prop_map(|(r, mib)| format!("disk{r}:{mib}")),
        (role, prop::collection::vec((0u64..=65_535, 0u64..=200), 0..6)).prop_map(|(r, ranges)| {
            let ranges: Vec<String> = ranges.iter().map(|(b, len)| format!("{b}-{}", (b + len).min(65_535))).collect();
            format!("ports{r}:[{}]", ranges.join(","))
        }),
    ];
    prop::collection::vec(entry, 0..8).prop_map(|entries| entries.join(";"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_parses_as_resources_or_is_refused_and_what_parses_prints_back(text in prop_oneof![resource_like(), "\\PC{0,64}"]) {
        if let Ok(resources) = Resources::parse(&text) {
            let printed = resources.to_string();
            let again = Resources::parse(&printed);
            prop_assert_eq!(again.as_ref().ok(), Some(&resources), "{:?} printed as {:?}", text, printed);
        }
    }

    #[test]
    fn valid_resource_strings_parse_and_print_back_to_the_same_resources(text in valid_resources()) {
        let resources = Resources::parse(&text);
        prop_assert!(resources.is_ok(), "{:?}: {:?}", text, resources.err());
        let resources = resources.expect("checked");
        prop_assert_eq!(Resources::parse(&resources.to_string()).ok(), Some(resources));
    }

    #[test]
    fn any_role_name_parses_to_itself_or_is_refused(name in prop_oneof!["[a-z/._*-]{0,12}", "\\PC{0,300}"]) {
        if let Ok(role) = Role::parse(&name) {
            prop_assert_eq!(role.as_str(), name.as_str());
        }
    }

    #[test]
    fn any_attribute_list_parses_or_is_refused(text in prop_oneof!["[a-z:; ]{0,40}", "\\PC{0,80}"]) {
        if let Ok(attributes) = Attribute::parse_list(&text) {
            prop_assert!(attributes.iter().all(|a| !a.name.is_empty()));
        }
    }

    #[test]
    fn any_authorization_value_and_credentials_file_parse_or_are_refused(
        value in prop_oneof!["(Basic|Bearer|token=) ?[A-Za-z0-9+/=:]{0,40}", "\\PC{0,80}"],
        file in prop_oneof![
            "\\{\"credentials\": \\[\\{\"principal\": \"[a-z]{0,5}\", \"secret\": \"[a-z]{0,5}\"\\}\\]\\}",
            "([a-z]{0,6} [a-z]{0,6}\n){0,4}",
            "\\PC{0,120}",
        ],
    ) {
        let _ = agora_proto::auth::parse_authorization(&value);
        let _ = agora_proto::auth::Credentials::parse(&file);
        let _ = agora_proto::acl::Acls::parse(&file);
    }

    #[test]
    fn any_bytes_decode_as_wire_messages_or_are_refused_never_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(info) = pb::FrameworkInfo::decode(bytes.as_slice()) {
            let _ = FrameworkInfo::try_from(info);
        }
        if let Ok(task) = pb::TaskInfo::decode(bytes.as_slice()) {
            let _ = TaskInfo::try_from(task);
        }
        if let Ok(resources) = pb::Resources::decode(bytes.as_slice()) {
            let _ = agora_proto::convert::resources("resources", Some(resources));
        }
    }

    #[test]
    fn any_headers_are_judged_by_the_cross_site_guard_without_panicking(
        origin in "\\PC{0,40}",
        host in "\\PC{0,30}",
        content_type in "\\PC{0,40}",
        has_body in any::<bool>(),
    ) {
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in [("origin", &origin), ("host", &host), ("content-type", &content_type)] {
            if let Ok(value) = axum::http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        let _ = agora_proto::edge::cross_site::check(&axum::http::Method::POST, &headers, has_body, false);
    }
}
