//! A JSON payload for a command picked by the first byte: validation never panics, and
//! what validates round-trips through both plist forms.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let commands = &fleetbus_mdm::catalog().commands;
    let spec = &commands[pick as usize % commands.len()];
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let _ = fleetbus_mdm::validate_command_payload(&spec.request_type, &payload);
    if let Ok(cmd) = fleetbus_mdm::build_command(&spec.request_type, payload) {
        let xml = cmd.to_xml().expect("xml");
        let bin = cmd.to_binary().expect("binary");
        assert_eq!(fleetbus_mdm::parse_command(&xml).ok().as_ref(), Some(&cmd));
        assert_eq!(fleetbus_mdm::parse_command(&bin).ok().as_ref(), Some(&cmd));
    }
});
