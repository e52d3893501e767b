//! Fuzz the predicate parser and evaluator: no input may panic, every error's column lies
//! within the input, and the prefilter never rejects an entry the predicate matches.
#![no_main]

use fleetbus_ulog::{LogEntry, Predicate};
use libfuzzer_sys::fuzz_target;

const ENTRY: &[u8] = br#"{"timestamp":"2024-10-03 09:12:44.123456-0700","messageType":"Error","eventType":"logEvent","subsystem":"com.apple.SoftwareUpdateMacController","category":"SU","processImagePath":"\/usr\/libexec\/softwareupdated","processID":512,"threadID":6699,"eventMessage":"Sending event: otaDownloaded Caf\u00e9 K","custom":1.5}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Predicate::parse(text) {
        Ok(p) => {
            if let Ok(e) = LogEntry::parse(ENTRY) {
                if p.matches(&e) {
                    assert!(p.may_match(ENTRY), "prefilter rejected a match: {text}");
                }
            }
        }
        Err(e) => assert!(e.column >= 1 && e.column <= text.chars().count() + 1),
    }
});
