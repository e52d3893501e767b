//! The shipped software-update workflow (`examples/software-update.yaml`) end to
//! end through the real binary: a fixture SOFA feed publishes a release -> the Mac
//! below it gets ScheduleOSUpdateScan from a fake NanoMDM -> its AvailableOSUpdates
//! answer names the ProductKey -> ScheduleOSUpdate with that key -> OSUpdateStatus
//! -> the Mac's own unified-log lines -> its Authenticate with the new version ->
//! compliant in `fleetbus su status`; a Mac that answers NotNow is reported so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::mdm_workflows::{
    acknowledge, authenticate, plist_b64, webhook, with_type, FakeNanoMdm, MDM_KEY,
};
use super::os_feed::{feed, feed_server};
use super::support::*;

const MAC: &str = "C02SUBEHIND1";
const MAC_UDID: &str = "5U000001-0000-4000-8000-00000000BE01";
const LATE: &str = "C02SUNOTNOW1";
const LATE_UDID: &str = "5U000002-0000-4000-8000-00000000BE02";
const CURRENT: &str = "C02SUCURRENT";
const GAVE_UP: &str = "C02SUABANDON";
const GAVE_UP_UDID: &str = "5U000004-0000-4000-8000-00000000BE04";

fn setup(dir: &Path, mdm: &FakeNanoMdm, feed_url: &str) {
    std::fs::write(dir.join("api-token"), TOKEN).unwrap();
    std::fs::write(dir.join("source-token"), SOURCE_TOKEN).unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/nanomdm-api-key"), MDM_KEY).unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/software-update.yaml"),
    )
    .unwrap()
    .replace("http://127.0.0.1:9000", &mdm.url)
    .replace(
        "https://sofafeed.macadmins.io/v1/macos_data_feed.json",
        feed_url,
    )
    .replace("interval: 1h", "interval: 1s")
    .replacen(
        "sources:\n",
        "sources:\n  - name: nanomdm\n    kind: nanomdm\n    tokens: [\"${file:source-token}\"]\n  - name: devlogs\n    kind: unified-log\n    tokens: [\"${file:source-token}\"]\n",
        1,
    );
    let config =
        format!("server:\n  data_dir: data\n  api_tokens: [\"${{file:api-token}}\"]\n{example}");
    std::fs::write(dir.join("fleetbus.yaml"), config).unwrap();
}

fn put_mac(server: &Server, serial: &str, udid: &str, os: &str) {
    put_device(
        server,
        serial,
        json!({"udid": udid, "os_version": os, "enrollment_state": "enrolled"}),
    );
}

/// The one command of `request_type` sent to `udid`, once it is.
fn sent(mdm: &FakeNanoMdm, request_type: &str, udid: &str) -> fleetbus_mdm::Command {
    wait_for(
        &format!("{request_type} to {udid}"),
        Duration::from_secs(30),
        || {
            mdm.calls_of(request_type)
                .iter()
                .any(|c| c.ids.iter().any(|i| i == udid))
        },
    );
    let calls = mdm.calls_of(request_type);
    let to_it: Vec<_> = calls
        .iter()
        .filter(|c| c.ids.iter().any(|i| i == udid))
        .collect();
    assert_eq!(to_it.len(), 1, "one {request_type} to {udid}");
    to_it[0].command.clone()
}

fn su_status(dir: &Path, server: &Server) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args([
            "su",
            "status",
            "--output",
            "json",
            "--url",
            &server.base,
            "--token",
            TOKEN,
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr))),
    )
}

#[test]
fn a_release_brings_the_mac_below_it_to_the_new_version_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    // The feed's newest macOS is 15.1 (build 24B83). It answers only once the
    // inventory is in: the release must find every Mac in the asset store.
    let feed = feed_server(feed(false));
    feed.down.store(true, std::sync::atomic::Ordering::SeqCst);
    setup(dir.path(), &mdm, &feed.url);
    let server = Server::start(dir.path());
    put_mac(&server, MAC, MAC_UDID, "14.6");
    put_mac(&server, LATE, LATE_UDID, "15.0.1");
    put_mac(&server, GAVE_UP, GAVE_UP_UDID, "14.6");
    put_mac(
        &server,
        CURRENT,
        "5U000003-0000-4000-8000-00000000BE03",
        "15.1",
    );
    feed.down.store(false, std::sync::atomic::Ordering::SeqCst);

    // 1. The release: the two Macs below it scan; the current one is left alone.
    let scan = sent(&mdm, "ScheduleOSUpdateScan", MAC_UDID);
    sent(&mdm, "ScheduleOSUpdateScan", LATE_UDID);
    let scans: Vec<Vec<String>> = mdm
        .calls_of("ScheduleOSUpdateScan")
        .into_iter()
        .map(|c| c.ids)
        .collect();
    assert_eq!(scans.len(), 3, "{scans:?}");
    let (code, status) = su_status(dir.path(), &server);
    assert_eq!(code, 1, "Macs are behind: {status}");
    assert_eq!(status["required_version"], "15.1");
    assert_eq!(status["compliant"], 1);
    let behind = status["behind"].as_array().unwrap();
    assert!(
        behind
            .iter()
            .all(|d| d["state"] == "ScheduleOSUpdateScan sent"),
        "{status}"
    );

    // 2. The scan is acknowledged: the Mac is asked what it found.
    webhook(
        &server,
        &acknowledge(MAC_UDID, &scan.command_uuid, "Acknowledged", ""),
    );
    let available = sent(&mdm, "AvailableOSUpdates", MAC_UDID);

    // 3. It names the OS update (and a non-OS one): exactly that ProductKey is scheduled.
    let answer = "<key>AvailableOSUpdates</key><array>\
        <dict><key>HumanReadableName</key><string>Safari</string><key>IsOSUpdate</key><false/>\
        <key>ProductKey</key><string>052-12345</string><key>Version</key><string>18.1</string></dict>\
        <dict><key>HumanReadableName</key><string>macOS Sequoia 15.1</string><key>IsOSUpdate</key><true/>\
        <key>ProductKey</key><string>MSU_UPDATE_24B83_patch_15.1</string><key>Version</key><string>15.1</string>\
        <key>Build</key><string>24B83</string><key>RestartRequired</key><true/></dict></array>";
    webhook(
        &server,
        &acknowledge(MAC_UDID, &available.command_uuid, "Acknowledged", answer),
    );
    let schedule = sent(&mdm, "ScheduleOSUpdate", MAC_UDID);
    let updates = &schedule.payload_json()["Updates"];
    assert_eq!(
        updates,
        &json!([{"ProductKey": "MSU_UPDATE_24B83_patch_15.1", "InstallAction": "InstallASAP"}])
    );

    // 4. Scheduled: OSUpdateStatus follows it.
    webhook(
        &server,
        &acknowledge(MAC_UDID, &schedule.command_uuid, "Acknowledged", ""),
    );
    let follow = sent(&mdm, "OSUpdateStatus", MAC_UDID);
    let status_answer = "<key>OSUpdateStatus</key><array><dict><key>DownloadPercentComplete</key><real>0.42</real>\
        <key>IsDownloaded</key><false/><key>ProductKey</key><string>MSU_UPDATE_24B83_patch_15.1</string>\
        <key>Status</key><string>Downloading</string></dict></array>";
    webhook(
        &server,
        &acknowledge(
            MAC_UDID,
            &follow.command_uuid,
            "Acknowledged",
            status_answer,
        ),
    );

    // The other Mac refuses the scan: NotNow, reported with what happens next.
    let late_scan = sent(&mdm, "ScheduleOSUpdateScan", LATE_UDID);
    webhook(
        &server,
        &acknowledge(LATE_UDID, &late_scan.command_uuid, "NotNow", ""),
    );

    // 5. The Mac's own log tells the download and install.
    let ulog = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ulog/fixtures/softwareupdate.ndjson"),
    )
    .unwrap();
    let (code, body) = server.post(
        &format!("/v1/sources/devlogs?serial={MAC}"),
        Some(SOURCE_TOKEN),
        "application/x-ndjson",
        &ulog,
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let (_, status) = su_status(dir.path(), &server);
    let states: Vec<(&str, &str)> = status["behind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["serial"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&(LATE, "refused")), "{status}");

    // A third Mac gives the update up, as its own log says (the seed's line).
    let abandoned = json!({
        "timestamp": "2026-12-03 13:54:10.356000-0800",
        "messageType": "Default",
        "eventType": "logEvent",
        "subsystem": "com.apple.SoftwareUpdateMacController",
        "category": "SU",
        "processImagePath": "/usr/libexec/softwareupdated",
        "processID": 512,
        "eventMessage": "Sending event (otaAbandoned): {\n\nevent = otaAbandoned;\n\nfailureReason = \"[SUMacControllerError:7749]\";\n\nresult = \"SUMacControllerError - 7749 (SUMacControllerErrorCommitStashInvalidState)\";\n\n}",
    });
    let (code, body) = server.post(
        &format!("/v1/sources/devlogs?serial={GAVE_UP}"),
        Some(SOURCE_TOKEN),
        "application/x-ndjson",
        format!("{abandoned}\n").as_bytes(),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let (_, status) = su_status(dir.path(), &server);
    let gave_up = status["behind"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["serial"] == GAVE_UP)
        .unwrap();
    assert_eq!(gave_up["state"], "abandoned", "{status}");
    assert_eq!(gave_up["why"], "[SUMacControllerError:7749]", "{status}");
    // The workflow's trouble rule hears of it, and of the NotNow.
    let trouble = dir.path().join("software-update-trouble.log");
    wait_for("the trouble log", Duration::from_secs(20), || {
        std::fs::read_to_string(&trouble)
            .is_ok_and(|t| t.contains("otaAbandoned") && t.contains("NotNow"))
    });
    assert!(
        !states
            .iter()
            .any(|(s, st)| *s == MAC && *st == "not started"),
        "{status}"
    );

    // 6. After the restart the Mac authenticates on 15.1: compliant.
    let mut back = authenticate(MAC_UDID, MAC);
    back["event_id"] = json!("auth-after-update");
    let payload = format!(
        "<key>BuildVersion</key><string>24B83</string><key>DeviceName</key><string>MacBook Pro</string>\
         <key>MessageType</key><string>Authenticate</string><key>Model</key><string>Mac14,7</string>\
         <key>OSVersion</key><string>15.1</string><key>SerialNumber</key><string>{MAC}</string>\
         <key>Topic</key><string>com.apple.mgmt.External.e0bd1eac</string><key>UDID</key><string>{MAC_UDID}</string>"
    );
    back["checkin_event"]["raw_payload"] = json!(plist_b64(&payload));
    webhook(&server, &back);
    wait_for("the new version on record", Duration::from_secs(20), || {
        server.get(&format!("/v1/assets/devices/{MAC}")).1["os_version"] == "15.1"
    });
    let (code, status) = su_status(dir.path(), &server);
    assert_eq!(code, 1, "the NotNow Mac is still behind: {status}");
    assert_eq!(status["compliant"], 2, "{status}");
    let behind: Vec<&str> = status["behind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(behind, [GAVE_UP, LATE], "{status}");

    // The Mac's timeline tells the story in order (oldest first here).
    let mut story: Vec<String> = timeline(&server, &format!("device/{MAC}"))
        .iter()
        .rev()
        .filter_map(|e| {
            let dt = e["event"]["detail-type"].as_str()?;
            let rt = e["event"]["detail"]["command"]["request_type"].as_str();
            match (dt, rt) {
                ("MDM Command Enqueued" | "MDM Command Result", Some(rt)) => {
                    Some(format!("{dt}: {rt}"))
                }
                ("MDM Check-in", _) => Some(dt.to_owned()),
                _ => None,
            }
        })
        .collect();
    story.dedup();
    assert_eq!(
        story,
        [
            "MDM Command Enqueued: ScheduleOSUpdateScan",
            "MDM Command Result: ScheduleOSUpdateScan",
            "MDM Command Enqueued: AvailableOSUpdates",
            "MDM Command Result: AvailableOSUpdates",
            "MDM Command Enqueued: ScheduleOSUpdate",
            "MDM Command Result: ScheduleOSUpdate",
            "MDM Command Enqueued: OSUpdateStatus",
            "MDM Command Result: OSUpdateStatus",
            "MDM Check-in",
        ],
        "{story:#?}"
    );
    // Each step is linked to the one before it: the schedule's result traces back
    // to the release.
    let events = timeline(&server, &format!("device/{MAC}"));
    let result = with_type(&events, "MDM Command Result")
        .into_iter()
        .find(|e| e["event"]["detail"]["command"]["request_type"] == "ScheduleOSUpdate")
        .unwrap();
    let id = result["event"]["id"].as_str().unwrap();
    let (_, trace) = server.get(&format!("/v1/events/{id}/trace"));
    let root = &trace["causes"][0]["event"];
    assert_eq!(root["detail-type"], "OS Release Published", "{trace}");
    assert_eq!(root["detail"]["product_version"], "15.1");
    server.stop();
}
