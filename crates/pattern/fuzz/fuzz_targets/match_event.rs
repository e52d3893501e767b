//! Matching arbitrary event bytes never panics, agrees with explain for every pattern
//! (on events without repeated field names), and accepts every JSON object serde_json
//! accepts.
#![no_main]

use std::sync::OnceLock;

use fleetbus_pattern::{explain, Matcher, Pattern};
use libfuzzer_sys::fuzz_target;

const PATTERNS: &[&str] = &[
    r#"{"a": ["x", {"prefix": "ab"}, {"suffix": "z"}, 1, true, null]}"#,
    r#"{"a": [{"equals-ignore-case": "X"}], "b": {"c": [{"exists": true}]}}"#,
    r#"{"b": {"c": ["y"], "d": [{"numeric": [">", 0, "<=", 5]}]}}"#,
    r#"{"a": [{"anything-but": {"prefix": "q"}}], "$or": [{"b": [{"exists": false}]}, {"c": [{"wildcard": "*a*b"}]}]}"#,
    r#"{"ip": [{"cidr": "10.0.0.0/8"}, {"cidr": "2001:db8::/32"}]}"#,
];

fn set() -> &'static (Matcher<usize>, Vec<Pattern>) {
    static SET: OnceLock<(Matcher<usize>, Vec<Pattern>)> = OnceLock::new();
    SET.get_or_init(|| {
        let ps: Vec<Pattern> = PATTERNS
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .collect();
        let mut m = Matcher::new();
        for (i, p) in ps.iter().enumerate() {
            let _ = m.add_pattern(i, p);
        }
        (m, ps)
    })
}

/// Deserializes any JSON value, failing when an object repeats a field name. For such
/// events the two sides legitimately differ: matching counts every occurrence of a
/// repeated name, while explain (through serde_json) keeps only the last one.
struct Unique;

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Unique, A::Error> {
        while a.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k) {
                return Err(serde::de::Error::custom("repeated field name"));
            }
            a.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

fuzz_target!(|data: &[u8]| {
    let (m, ps) = set();
    let got = m.matches_for_event(data);
    if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(data) {
        assert!(got.is_ok(), "valid JSON object rejected: {got:?}");
    }
    if serde_json::from_slice::<Unique>(data).is_err() {
        return;
    }
    if let Ok(mut names) = got {
        names.sort_unstable();
        for (i, p) in ps.iter().enumerate() {
            if let Ok(ex) = explain(p, data) {
                assert_eq!(ex.matched, names.contains(&i), "pattern {i} disagrees");
            }
        }
    }
});
