//! Any bytes as a NanoMDM or MicroMDM webhook body: events or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleetbus_mdm::webhook::nanomdm::parse(data);
    let _ = fleetbus_mdm::webhook::micromdm::parse(data);
});
