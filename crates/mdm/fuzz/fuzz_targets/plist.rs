//! Any bytes given to the plist parsers: an error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleetbus_mdm::parse_message(data);
    let _ = fleetbus_mdm::parse_response(data);
    let _ = fleetbus_mdm::parse_checkin(data);
    // A command that parses must write and parse back to the same command.
    if let Ok(cmd) = fleetbus_mdm::parse_command(data) {
        let xml = cmd.to_xml().expect("a parsed command writes as XML");
        assert_eq!(fleetbus_mdm::parse_command(&xml).ok(), Some(cmd));
    }
});
