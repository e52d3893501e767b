//! Pattern parsing never panics; a parsed pattern can always be compiled, matched and
//! explained.
#![no_main]

use fleetbus_pattern::{explain, Matcher, Pattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Pattern::parse(text) {
        let mut m = Matcher::new();
        if m.add_pattern(0u8, &p).is_ok() {
            let ev = br#"{"a": "x", "b": [1, {"c": "y"}], "source": "aws.ec2"}"#;
            let hit = !m.matches_for_event(ev).unwrap_or_default().is_empty();
            let ex = explain(&p, ev).map(|e| e.matched).unwrap_or(hit);
            assert_eq!(hit, ex, "matcher and explain disagree");
            assert!(m.remove_pattern(&0));
        }
    }
});
