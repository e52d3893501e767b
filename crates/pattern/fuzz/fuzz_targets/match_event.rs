//! Matching arbitrary event bytes never panics, agrees with explain for every pattern,
//! and accepts every JSON object serde_json accepts.
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

fuzz_target!(|data: &[u8]| {
    let (m, ps) = set();
    let got = m.matches_for_event(data);
    if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(data) {
        assert!(got.is_ok(), "valid JSON object rejected: {got:?}");
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
