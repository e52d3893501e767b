//! Fuzz the streaming reader (both styles, gzip detection) and entry parsing: no input may
//! panic, and the reader accounts for every byte it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = fleetbus_ulog::open(data) else {
        return;
    };
    let mut reader = reader.with_max_entry(4096);
    let mut n = 0u64;
    let Ok(stats) = reader.for_each_entry(|_, e| {
        let _ = e.to_value();
        let _ = fleetbus_ulog::entry::format_compact(e);
        n += 1;
        true
    }) else {
        return;
    };
    assert_eq!(stats.entries, n);
    let _ = fleetbus_ulog::extract::parse_dictionary(&String::from_utf8_lossy(data));
});
