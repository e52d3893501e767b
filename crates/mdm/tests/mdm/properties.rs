//! Property tests: no plist, command payload or webhook body makes a parser panic, and
//! built commands always parse back.

use base64::Engine as _;
use fleetbus_mdm::webhook::{micromdm, nanomdm};
use fleetbus_mdm::{catalog, parse_checkin, parse_command, parse_message, parse_response};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_plist() -> impl Strategy<Value = plist::Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(plist::Value::Boolean),
        any::<i64>().prop_map(|i| plist::Value::Integer(i.into())),
        any::<f64>().prop_map(plist::Value::Real),
        ".{0,12}".prop_map(plist::Value::String),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(plist::Value::Data),
        (0i64..4_000_000_000).prop_map(|s| plist::Value::Date(
            std::time::SystemTime::UNIX_EPOCH
                .checked_add(std::time::Duration::from_secs(s as u64))
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
                .into()
        )),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(plist::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("Status".to_string()),
                    Just("MessageType".to_string()),
                    Just("Command".to_string()),
                    Just("CommandUUID".to_string()),
                    Just("RequestType".to_string()),
                    Just("ErrorChain".to_string()),
                    Just("QueryResponses".to_string()),
                    Just("UDID".to_string()),
                    Just("Data".to_string()),
                    "[A-Za-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| plist::Value::Dictionary(m.into_iter().collect())),
        ]
    })
}

fn xml(v: &plist::Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.to_writer_xml(&mut out).unwrap();
    out
}

fn binary(v: &plist::Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.to_writer_binary(&mut out).unwrap();
    out
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("Item".to_string()),
                    Just("Queries".to_string()),
                    Just("Updates".to_string()),
                    Just("InstallAction".to_string()),
                    Just("Settings".to_string()),
                    Just("PIN".to_string()),
                    "[A-Za-z]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_message(&bytes);
        let _ = parse_response(&bytes);
        let _ = parse_checkin(&bytes);
        let _ = parse_command(&bytes);
        let _ = nanomdm::parse(&bytes);
        let _ = micromdm::parse(&bytes);
    }

    #[test]
    fn binary_plist_prefix_with_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"bplist00".to_vec();
        bytes.extend(tail);
        let _ = parse_message(&bytes);
    }

    #[test]
    fn arbitrary_plists_never_panic(v in arb_plist()) {
        for bytes in [xml(&v), binary(&v)] {
            let _ = parse_message(&bytes);
            let _ = parse_response(&bytes);
            let _ = parse_checkin(&bytes);
            let _ = parse_command(&bytes);
        }
    }

    #[test]
    fn truncated_plists_never_panic(v in arb_plist(), cut in 0usize..4096) {
        for bytes in [xml(&v), binary(&v)] {
            let n = cut.min(bytes.len());
            let _ = parse_message(&bytes[..n]);
        }
    }

    #[test]
    fn arbitrary_payloads_validate_without_panicking(idx in 0usize..66, payload in arb_json()) {
        let spec = &catalog().commands[idx % catalog().commands.len()];
        if let Ok(cmd) = fleetbus_mdm::build_command(&spec.request_type, payload) {
            // Whatever validates must write and parse back identically.
            prop_assert_eq!(parse_command(&cmd.to_xml().unwrap()).unwrap(), cmd.clone());
            prop_assert_eq!(parse_command(&cmd.to_binary().unwrap()).unwrap(), cmd);
        }
    }

    #[test]
    fn webhook_bodies_with_arbitrary_fields_never_panic(
        topic in prop_oneof![Just("mdm.Connect".to_string()), Just("mdm.TokenUpdate".to_string()), Just("mdm.Authenticate".to_string()), "[a-z.]{0,12}"],
        inner in arb_json(),
        payload in arb_plist(),
        ack in any::<bool>(),
        raw_kind in 0u8..3,
    ) {
        let mut inner = match inner { Value::Object(m) => m, _ => serde_json::Map::new() };
        let raw = match raw_kind {
            0 => Value::String(base64::engine::general_purpose::STANDARD.encode(xml(&payload))),
            1 => Value::String(base64::engine::general_purpose::STANDARD.encode(binary(&payload))),
            _ => inner.get("raw_payload").cloned().unwrap_or(Value::Null),
        };
        inner.insert("raw_payload".into(), raw);
        let key = if ack { "acknowledge_event" } else { "checkin_event" };
        let body = json!({"topic": topic, key: inner});
        let bytes = body.to_string().into_bytes();
        let _ = nanomdm::parse(&bytes);
        let _ = micromdm::parse(&bytes);
    }
}

#[test]
fn deeply_nested_plists_are_errors_or_values_not_crashes() {
    let depth = 20_000;
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\">");
    s.push_str(&"<array>".repeat(depth));
    s.push_str(&"</array>".repeat(depth));
    s.push_str("</plist>");
    let _ = parse_message(s.as_bytes());
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(nanomdm::parse(body.as_bytes()).is_err());
}
