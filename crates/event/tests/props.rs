//! Property tests: no input, however malformed, panics the event parsers.

use fleetbus_event::{from_cloudevent, from_cloudevent_binary, Defaults, Event};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z \\-0-9:T.Z+]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "source",
            "detail-type",
            "detail",
            "time",
            "2026-11-23T10:00:00Z",
            "1.0",
            "id",
            "resources"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "version",
                    "id",
                    "detail-type",
                    "source",
                    "account",
                    "time",
                    "region",
                    "resources",
                    "detail",
                    "specversion",
                    "type",
                    "data",
                    "subject",
                    "x"
                ])
                .prop_map(String::from),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Event::parse(&bytes, &Defaults::default());
        let _ = from_cloudevent_binary([("ce-specversion", "1.0"), ("ce-id", "x"), ("ce-source", "s"), ("ce-type", "t")], &bytes, &Defaults::default());
    }

    #[test]
    fn arbitrary_json_never_panics_and_valid_events_round_trip(v in json_value()) {
        if let Ok(event) = Event::from_value(v.clone(), &Defaults::default()) {
            let back = Event::parse(&event.to_json(), &Defaults::default()).unwrap();
            prop_assert_eq!(&back, &event);
            let ce = fleetbus_event::to_cloudevent(&event);
            prop_assert_eq!(from_cloudevent(ce, &Defaults::default()).unwrap(), event);
        }
        let _ = from_cloudevent(v, &Defaults::default());
    }

    #[test]
    fn arbitrary_headers_never_panic(name in "(ce-)?[a-z]{1,8}", value in "\\PC{0,16}") {
        let _ = from_cloudevent_binary([(name.as_str(), value.as_str())], b"{}", &Defaults::default());
    }
}
