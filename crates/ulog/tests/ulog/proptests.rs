//! Property tests: the parsers never panic, the reader is independent of how input is
//! split, and the prefilter never rejects a matching entry.

use std::io::BufReader;

use fleetbus_ulog::extract::parse_dictionary;
use fleetbus_ulog::{LogEntry, LogReader, Predicate};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "subsystem",
        "category",
        "process",
        "sender",
        "eventMessage",
        "composedMessage",
        "processImagePath",
        "messageType",
        "logType",
        "eventType",
        "processID",
        "threadID",
        "traceID",
        "custom",
    ])
}

fn op() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "==",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "CONTAINS",
        "BEGINSWITH",
        "ENDSWITH",
        "LIKE",
        "contains[c]",
        "BEGINSWITH[cd]",
        "ENDSWITH[d]",
        "LIKE[c]",
        "==[c]",
    ])
}

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "ota",
        "OTA",
        "com.apple.SoftwareUpdateMacController",
        "softwareupdated",
        "Café",
        "café",
        "mdmclient",
        "/usr/libexec/mdmclient",
        "Sending event",
        "a\"b",
        "x",
        "",
        "*ota*",
        "soft?are*",
        "K",
        "\u{212a}",
        "İ",
        "i",
        "12",
        "error",
    ])
    .prop_map(str::to_owned)
}

fn value_for(key: &'static str) -> BoxedStrategy<String> {
    match key {
        "messageType" | "logType" => {
            prop::sample::select(vec!["error", "default", "16", "\"fault\"", "info"])
                .prop_map(str::to_owned)
                .boxed()
        }
        "eventType" => prop::sample::select(vec!["logEvent", "1024", "signpostEvent"])
            .prop_map(str::to_owned)
            .boxed(),
        "processID" | "threadID" | "traceID" => (0u32..2000).prop_map(|n| n.to_string()).boxed(),
        _ => word()
            .prop_map(|w| format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\"")))
            .boxed(),
    }
}

fn comparison() -> impl Strategy<Value = String> {
    key().prop_flat_map(|k| {
        let numeric = matches!(
            k,
            "messageType" | "logType" | "eventType" | "processID" | "threadID" | "traceID"
        );
        let ops = if numeric {
            prop::sample::select(vec!["==", "!=", "<", ">="]).boxed()
        } else {
            op().boxed()
        };
        (Just(k), ops, value_for(k)).prop_map(|(k, o, v)| format!("{k} {o} {v}"))
    })
}

fn predicate() -> impl Strategy<Value = String> {
    comparison().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            prop::collection::vec(word(), 1..4).prop_map(|ws| {
                let items: Vec<String> = ws.iter().map(|w| format!("{w:?}")).collect();
                format!("subsystem IN[c] {{{}}}", items.join(", "))
            }),
        ]
    })
}

fn entry_json() -> impl Strategy<Value = String> {
    (
        word(),
        word(),
        word(),
        prop::sample::select(vec!["Default", "Error", "Fault", "Info"]),
        0u32..2000,
        any::<bool>(),
    )
        .prop_map(|(sub, msg, proc_, mt, pid, escape)| {
            let mut v = serde_json::json!({
                "subsystem": sub,
                "eventMessage": format!("prefix {msg} suffix"),
                "processImagePath": format!("/usr/libexec/{proc_}"),
                "messageType": mt,
                "eventType": "logEvent",
                "processID": pid,
                "threadID": pid * 3,
                "custom": msg,
            });
            let mut s = v.take().to_string().replace('/', "\\/");
            if escape {
                // Producers may escape any character as \uXXXX.
                s = s.replace('o', "\\u006f");
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics(s in "\\PC{0,60}") {
        if let Err(e) = Predicate::parse(&s) {
            prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{e}");
        }
    }

    #[test]
    fn parser_never_panics_on_near_predicates(p in predicate(), cut in 0usize..200, junk in "[(){}\\[\\]\"'!=<>&|, a-z]{0,4}") {
        let chars: Vec<char> = p.chars().collect();
        let cut = cut.min(chars.len());
        let mangled: String = chars[..cut].iter().collect::<String>() + &junk + &chars[cut..].iter().collect::<String>();
        let _ = Predicate::parse(&mangled);
    }

    #[test]
    fn generated_predicates_parse_and_prefilter_is_sound(p in predicate(), entries in prop::collection::vec(entry_json(), 1..8)) {
        let pred = Predicate::parse(&p).map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
        let negated = Predicate::parse(&format!("NOT ({p})")).unwrap();
        for raw in &entries {
            let e = LogEntry::parse(raw.as_bytes()).unwrap();
            let m = pred.matches(&e);
            if m {
                prop_assert!(pred.may_match(raw.as_bytes()), "prefilter rejected a match: {p} on {raw}");
            }
            prop_assert_eq!(negated.matches(&e), !m);
        }
    }

    #[test]
    fn reader_is_split_independent(entries in prop::collection::vec(entry_json(), 0..12), pretty in any::<bool>(), cap in 1usize..64, junk in prop::collection::vec("[a-zA-Z][a-zA-Z ]{0,19}", 0..3)) {
        let values: Vec<serde_json::Value> = entries.iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        let mut input = String::new();
        for j in &junk {
            input.push_str(j);
            input.push('\n');
        }
        if pretty {
            let parts: Vec<String> = values.iter().map(|v| serde_json::to_string_pretty(v).unwrap()).collect();
            input.push('[');
            input.push_str(&parts.join(","));
            input.push_str("]\n");
        } else {
            for e in &entries {
                input.push_str(e);
                input.push('\n');
            }
        }
        let mut r = LogReader::new(BufReader::with_capacity(cap, input.as_bytes()));
        let mut got = Vec::new();
        let stats = r.for_each_entry(|_, e| { got.push(e.to_value()); true }).unwrap();
        let expected: Vec<serde_json::Value> = values
            .iter()
            .map(|v| LogEntry::parse(v.to_string().as_bytes()).unwrap().to_value())
            .collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(stats.junk_lines, junk.len() as u64);
        prop_assert_eq!(stats.bytes, input.len() as u64);
    }

    #[test]
    fn reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400), cap in 1usize..32) {
        let mut r = LogReader::new(BufReader::with_capacity(cap, bytes.as_slice())).with_max_entry(64);
        let _ = r.for_each_entry(|_, _| true).unwrap();
    }

    #[test]
    fn dictionary_parser_never_panics(s in "\\PC{0,80}") {
        let _ = parse_dictionary(&s);
    }

    #[test]
    fn dictionary_roundtrip(pairs in prop::collection::btree_map("[A-Za-z][A-Za-z0-9]{0,8}", prop_oneof![
        (0i64..100000).prop_map(serde_json::Value::from),
        "[A-Za-z .\"]{0,12}".prop_map(serde_json::Value::from),
    ], 0..6)) {
        let mut text = String::from("{\n");
        for (k, v) in &pairs {
            match v {
                serde_json::Value::String(s) => text.push_str(&format!("    {k} = \"{}\";\n", s.replace('"', "\\\""))),
                other => text.push_str(&format!("    {k} = {other};\n")),
            }
        }
        text.push('}');
        let parsed = parse_dictionary(&text);
        prop_assert_eq!(parsed.len(), pairs.len());
        for (k, v) in &pairs {
            prop_assert_eq!(&parsed[k], v);
        }
    }
}
