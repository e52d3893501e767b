//! Property tests: the compiled matcher agrees with a plain tree-walking reference
//! evaluator (`fleetbus_test_support::reference`) for random patterns and events over a small
//! alphabet, in any insertion order; and no input makes anything panic.

use fleetbus_test_support::reference;

use fleetbus_pattern::{explain, Matcher, Pattern};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const KEYS: [&str; 3] = ["a", "b", "c"];
const STRS: [&str; 7] = ["", "a", "ab", "abc", "b", "bA", "AB"];
const NUMS: [f64; 4] = [0.0, 1.0, 2.5, 300.0];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(&STRS[..]).prop_map(|s| json!(s)),
        2 => prop::sample::select(&NUMS[..]).prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
}

fn event_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        6 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            2 => prop::collection::btree_map(prop::sample::select(&KEYS[..]).prop_map(String::from), inner.clone(), 1..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

fn event() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(String::from),
        event_value(),
        1..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn s() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&STRS[..])
}

fn condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => s().prop_map(|p| json!({"prefix": p})),
        1 => s().prop_map(|p| json!({"suffix": p})),
        1 => s().prop_map(|p| json!({"equals-ignore-case": p})),
        1 => s().prop_map(|p| json!({"prefix": {"equals-ignore-case": p}})),
        1 => s().prop_map(|p| json!({"suffix": {"equals-ignore-case": p}})),
        1 => prop::sample::select(&["*", "a*", "*b", "a*c", "*a*", "\\**", "b\\\\*"][..]).prop_map(|p| json!({"wildcard": p})),
        1 => s().prop_map(|p| json!({"anything-but": p})),
        1 => prop::collection::vec(s(), 1..3).prop_map(|p| json!({"anything-but": p})),
        1 => prop::sample::select(&NUMS[..]).prop_map(|n| json!({"anything-but": [n]})),
        1 => s().prop_map(|p| json!({"anything-but": {"prefix": p}})),
        1 => s().prop_map(|p| json!({"anything-but": {"suffix": p}})),
        1 => s().prop_map(|p| json!({"anything-but": {"equals-ignore-case": [p]}})),
        1 => prop::sample::select(&["a*", "*b"][..]).prop_map(|p| json!({"anything-but": {"wildcard": p}})),
        1 => (prop::sample::select(&NUMS[..]), prop::sample::select(&[">", ">=", "<", "<=", "="][..]))
            .prop_map(|(n, op)| json!({"numeric": [op, n]})),
        1 => prop::sample::select(&NUMS[..]).prop_map(|n| json!({"numeric": [">", n, "<=", n + 2.0]})),
        2 => any::<bool>().prop_map(|b| json!({"exists": b})),
    ]
}

fn pattern_object(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop::collection::vec(condition(), 1..3).prop_map(Value::Array);
    let field = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![3 => leaf, 1 => pattern_object(depth - 1)].boxed()
    };
    let fields = prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(String::from),
        field,
        1..3,
    );
    if depth == 0 {
        fields
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed()
    } else {
        (
            fields,
            prop::option::weighted(0.2, prop::collection::vec(pattern_object(depth - 1), 1..3)),
        )
            .prop_map(|(m, or)| {
                let mut o: Map<String, Value> = m.into_iter().collect();
                if let Some(alts) = or {
                    o.insert("$or".into(), Value::Array(alts));
                }
                Value::Object(o)
            })
            .boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// A compiled set, built in a random order, gives for each event exactly the patterns
    /// the reference evaluator accepts one by one; explain agrees too.
    #[test]
    fn compiled_set_equals_reference(
        patterns in prop::collection::vec(pattern_object(2), 1..8),
        order in Just(()).prop_perturb(|_, mut rng| {
            let mut idx: Vec<usize> = (0..8).collect();
            for i in (1..idx.len()).rev() {
                let j = (rng.next_u32() as usize) % (i + 1);
                idx.swap(i, j);
            }
            idx
        }),
        events in prop::collection::vec(event(), 1..6),
    ) {
        let parsed: Vec<Option<Pattern>> = patterns.iter().map(|p| Pattern::from_value(p).ok()).collect();
        let mut m = Matcher::new();
        for &i in order.iter().filter(|i| **i < patterns.len()) {
            if let Some(p) = &parsed[i] {
                m.add_pattern(i, p).unwrap();
            }
        }
        for ev in &events {
            let bytes = serde_json::to_vec(ev).unwrap();
            let mut got = m.matches_for_event(&bytes).unwrap();
            got.sort_unstable();
            let mut want = Vec::new();
            for (i, p) in parsed.iter().enumerate() {
                if let Some(p) = p {
                    let r = reference::matches(&patterns[i], ev);
                    prop_assert_eq!(explain(p, &bytes).unwrap().matched, r, "explain vs reference: {} on {}", patterns[i], ev);
                    if r {
                        want.push(i);
                    }
                }
            }
            prop_assert_eq!(&got, &want, "event {}", ev);
        }
        // Removing half the names leaves exactly the others.
        for i in (0..patterns.len()).step_by(2) {
            m.remove_pattern(&i);
        }
        for ev in &events {
            let bytes = serde_json::to_vec(ev).unwrap();
            let mut got = m.matches_for_event(&bytes).unwrap();
            got.sort_unstable();
            let want: Vec<usize> = (0..patterns.len())
                .filter(|i| i % 2 == 1 && parsed[*i].is_some() && reference::matches(&patterns[*i], ev))
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    /// Arbitrary JSON never panics the parser; arbitrary bytes never panic the matcher or
    /// explain, and every JSON object serde_json accepts is accepted.
    #[test]
    fn no_panics(pat in event_value(), ev in event(), noise in prop::collection::vec(any::<u8>(), 0..64), cut in 0usize..200) {
        let _ = Pattern::from_value(&pat);
        let _ = Pattern::parse(&pat.to_string());
        let mut m = Matcher::new();
        m.add_pattern(0, &Pattern::parse(r#"{"a": [{"exists": true}], "b": {"c": [{"prefix": "a"}]}}"#).unwrap()).unwrap();
        let bytes = serde_json::to_vec(&ev).unwrap();
        prop_assert!(m.matches_for_event(&bytes).is_ok());
        let mut mangled = bytes.clone();
        mangled.truncate(cut.min(mangled.len()));
        mangled.extend_from_slice(&noise);
        let _ = m.matches_for_event(&mangled);
        let p = Pattern::parse(r#"{"a": ["x"]}"#).unwrap();
        let _ = explain(&p, &mangled);
        let _ = Pattern::parse(&String::from_utf8_lossy(&mangled));
    }
}

#[test]
fn reference_sanity() {
    // The reference itself on a few documented cases, so a broken reference cannot hide.
    let ev = json!({"a": [{"b": "x", "c": "z"}, {"b": "z", "c": "y"}], "n": 3.0e2, "o": {"p": 1}});
    assert!(!reference::matches(
        &json!({"a": {"b": ["x"], "c": ["y"]}}),
        &ev
    ));
    assert!(reference::matches(
        &json!({"a": {"b": ["x"], "c": ["z"]}}),
        &ev
    ));
    assert!(reference::matches(&json!({"n": [300]}), &ev));
    assert!(reference::matches(&json!({"o": [{"exists": false}]}), &ev));
    assert!(!reference::matches(&json!({"o": [{"exists": true}]}), &ev));
    assert!(reference::matches(
        &json!({"$or": [{"n": [1]}, {"o": {"p": [{"numeric": [">", 0]}]}}]}),
        &ev
    ));
}

/// JSON values whose strings are full of quotes, backslashes, brackets and non-ASCII text,
/// long enough to cross the skipper's 64-byte blocks.
fn nasty_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => "[\"\\\\{}\\[\\]a-z\u{e9}\u{1F600} ,:]{0,90}".prop_map(Value::String),
        1 => any::<i32>().prop_map(|n| json!(n)),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"\\\\{]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// Skipping a field no pattern names finds its exact end at every block alignment,
    /// and cutting the event short anywhere is an error.
    #[test]
    fn skipped_values_end_where_they_should(v in nasty_value(), pad in 0usize..64, cut in any::<prop::sample::Index>()) {
        let mut m = Matcher::new();
        m.add_pattern(0, &Pattern::parse(r#"{"a": ["{"]}"#).unwrap()).unwrap();
        let event = format!("{{{}\"x\": {}, \"a\": \"{{\"}}", " ".repeat(pad), v);
        prop_assert_eq!(m.matches_for_event(event.as_bytes()).unwrap(), vec![0]);
        let short = &event.as_bytes()[..cut.index(event.len())];
        prop_assert!(m.matches_for_event(short).is_err());
    }
}
