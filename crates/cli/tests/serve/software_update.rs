//! The shipped software-update policy (`examples/software-update.yaml`) end to end
//! through the real binary: a fixture SOFA feed publishes a release -> the Macs
//! below the requirement get ScheduleOSUpdateScan from a fake NanoMDM -> a Mac's
//! AvailableOSUpdates answer names the ProductKey -> ScheduleOSUpdate with the
//! InstallAction the deadline calls for (DownloadOnly a month out), escalated as
//! the deadline is moved nearer (InstallLater with MaxUserDeferrals, InstallASAP,
//! InstallForceRestart) -> OSUpdateStatus -> the Mac's own unified-log lines ->
//! its Authenticate with the new version -> compliant in `fleetbus su status`; a
//! Mac that answers NotNow is `refused`, one whose log says otaAbandoned is
//! `abandoned` with the reason. The deadline is set relative to now in the policy
//! and moved by reloading it (the decisions' clock is the one given to them: their
//! unit tests step through fixed times), never by sleeping.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

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
const BROKEN: &str = "C02SUERROR01";
const BROKEN_UDID: &str = "5U000005-0000-4000-8000-00000000BE05";

/// RFC 3339 for now plus `hours`.
fn in_hours(hours: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::hours(hours))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The shipped example with its requirements replaced by one whose deadline is
/// `deadline`, and the loopback MDM and feed.
fn config(mdm: &FakeNanoMdm, feed_url: &str, deadline: &str) -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/software-update.yaml"),
    )
    .unwrap();
    let start = example.find("  requirements:\n").expect("requirements");
    let end = example.find("\nrules:\n").expect("rules");
    let requirements = format!(
        "  requirements:\n    - name: fleet\n      required_minimum_os_version: latest\n      required_installation_date: \"{deadline}\"\n      max_user_deferrals: 2\n"
    );
    let example = format!("{}{requirements}{}", &example[..start], &example[end..])
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
    format!("server:\n  data_dir: data\n  api_tokens: [\"${{file:api-token}}\"]\n{example}")
}

fn setup(dir: &Path, config: &str) {
    std::fs::write(dir.join("api-token"), TOKEN).unwrap();
    std::fs::write(dir.join("source-token"), SOURCE_TOKEN).unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/nanomdm-api-key"), MDM_KEY).unwrap();
    std::fs::write(dir.join("fleetbus.yaml"), config).unwrap();
}

fn put_mac(server: &Server, serial: &str, udid: &str, os: &str) {
    put_device(
        server,
        serial,
        json!({"udid": udid, "os_version": os, "model": "Mac14,7", "enrollment_state": "enrolled"}),
    );
}

/// The commands of `request_type` sent to `udid`, once there are `n`.
fn sent_n(
    mdm: &FakeNanoMdm,
    request_type: &str,
    udid: &str,
    n: usize,
) -> Vec<fleetbus_mdm::Command> {
    let to_it = || -> Vec<fleetbus_mdm::Command> {
        mdm.calls_of(request_type)
            .into_iter()
            .filter(|c| c.ids.iter().any(|i| i == udid))
            .map(|c| c.command)
            .collect()
    };
    wait_for(
        &format!("{n} {request_type} to {udid}"),
        Duration::from_secs(30),
        || to_it().len() >= n,
    );
    let all = to_it();
    assert_eq!(all.len(), n, "exactly {n} {request_type} to {udid}");
    all
}

/// The one (newest) command of `request_type` to `udid`, once there is the `n`th.
fn nth(mdm: &FakeNanoMdm, request_type: &str, udid: &str, n: usize) -> fleetbus_mdm::Command {
    sent_n(mdm, request_type, udid, n).pop().unwrap()
}

fn su_status(dir: &Path, server: &Server, args: &[&str]) -> (i32, Value) {
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
        .args(args)
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

/// The status entry of `serial` once its state is `stage`.
fn wait_stage(server: &Server, serial: &str, stage: &str) -> Value {
    let mut last = Value::Null;
    let found = (0..300).any(|_| {
        let (_, status) = server.get("/v1/software-update/status");
        last = status;
        let entry = last["behind"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(last["compliant_devices"].as_array().into_iter().flatten())
            .find(|d| d["serial"] == serial)
            .cloned();
        match entry {
            Some(e) if e["state"] == stage => true,
            _ => {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        }
    });
    assert!(found, "{serial} never reached {stage}: {last:#}");
    last["behind"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(last["compliant_devices"].as_array().into_iter().flatten())
        .find(|d| d["serial"] == serial)
        .cloned()
        .unwrap()
}

/// Moves the deadline: the policy file rewritten and reloaded, then evaluated now.
fn move_deadline(dir: &Path, server: &Server, mdm: &FakeNanoMdm, feed_url: &str, deadline: &str) {
    std::fs::write(dir.join("fleetbus.yaml"), config(mdm, feed_url, deadline)).unwrap();
    let (code, body) = server.post(
        "/v1/admin/reload",
        Some(TOKEN),
        "application/json",
        b"",
        &[],
    );
    assert_eq!(code, 200, "{body}");
    evaluate_now(server);
}

/// The Mac answers `command`, once its `MDM Command Enqueued` event is on its
/// timeline (a real Mac answers seconds later; the fake answers at once, and the
/// story is checked in order).
fn answer(server: &Server, command: &fleetbus_mdm::Command, status: &str, extra: &str) {
    wait_for(
        "the command on the timeline",
        Duration::from_secs(20),
        || {
            timeline(server, &format!("device/{MAC}")).iter().any(|e| {
                e["event"]["detail-type"] == "MDM Command Enqueued"
                    && e["event"]["detail"]["command"]["command_uuid"] == command.command_uuid
            })
        },
    );
    webhook(
        server,
        &acknowledge(MAC_UDID, &command.command_uuid, status, extra),
    );
}

/// The Mac downloading at 42 %, as OSUpdateStatus answers.
const DOWNLOADING: &str = "<key>OSUpdateStatus</key><array><dict><key>DownloadPercentComplete</key><real>0.42</real>\
    <key>IsDownloaded</key><false/><key>ProductKey</key><string>MSU_UPDATE_24B83_patch_15.1</string>\
    <key>Status</key><string>Downloading</string></dict></array>";

/// The Mac acknowledges `schedule`, then answers the `n`th OSUpdateStatus that
/// follows it: downloading, with `action` on record.
fn answer_schedule(
    server: &Server,
    mdm: &FakeNanoMdm,
    schedule: &fleetbus_mdm::Command,
    n: usize,
    action: &str,
) {
    answer(server, schedule, "Acknowledged", "");
    let follow = nth(mdm, "OSUpdateStatus", MAC_UDID, n);
    answer(server, &follow, "Acknowledged", DOWNLOADING);
    wait_for(
        &format!("{action} on record"),
        Duration::from_secs(20),
        || {
            let e = wait_stage(server, MAC, "downloading");
            e["install_action"] == action && e["pending_command"].is_null()
        },
    );
}

/// `fleetbus su evaluate`: the policy looks at every Mac now.
fn evaluate_now(server: &Server) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["su", "evaluate", "--url", &server.base, "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("evaluation asked for"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn install_action(c: &fleetbus_mdm::Command) -> Value {
    c.payload_json()["Updates"][0].clone()
}

#[test]
fn a_release_brings_the_mac_below_it_to_the_new_version_by_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    // The feed's newest macOS is 15.1 (build 24B83). It answers only once the
    // inventory is in: the release must find every Mac in the asset store.
    let feed = feed_server(feed(false));
    feed.down.store(true, std::sync::atomic::Ordering::SeqCst);
    setup(dir.path(), &config(&mdm, &feed.url, &in_hours(30 * 24)));
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
    put_mac(&server, BROKEN, BROKEN_UDID, "14.6");
    feed.down.store(false, std::sync::atomic::Ordering::SeqCst);

    // 1. The release: the four Macs below it scan; the current one is left alone.
    let scan = nth(&mdm, "ScheduleOSUpdateScan", MAC_UDID, 1);
    nth(&mdm, "ScheduleOSUpdateScan", LATE_UDID, 1);
    nth(&mdm, "ScheduleOSUpdateScan", GAVE_UP_UDID, 1);
    let broken_scan = nth(&mdm, "ScheduleOSUpdateScan", BROKEN_UDID, 1);
    assert_eq!(mdm.calls_of("ScheduleOSUpdateScan").len(), 4);
    let entry = wait_stage(&server, MAC, "scan sent");
    assert_eq!(entry["required_version"], "15.1");
    assert_eq!(entry["requirement"], "fleet");
    let (code, status) = su_status(dir.path(), &server, &[]);
    assert_eq!(code, 1, "Macs are behind: {status}");
    assert_eq!(status["required_from"], "policy");
    assert_eq!(status["compliant"], 1, "{status}");
    assert_eq!(status["non_compliant"], 4, "{status}");
    assert_eq!(
        status["requirements"],
        json!([{"name": "fleet", "compliant": 1, "non_compliant": 4}])
    );
    // --below narrows to the Macs below a version.
    let (_, below) = su_status(dir.path(), &server, &["--below", "15"]);
    let serials: Vec<&str> = below["behind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, [GAVE_UP, MAC, BROKEN], "{below}");

    // One Mac answers the scan with an Error: failed, with its ErrorChain, and
    // asked again at the next evaluation.
    webhook(
        &server,
        &acknowledge(
            BROKEN_UDID,
            &broken_scan.command_uuid,
            "Error",
            "<key>ErrorChain</key><array><dict><key>ErrorCode</key><integer>12021</integer>\
             <key>ErrorDomain</key><string>MCMDMErrorDomain</string>\
             <key>LocalizedDescription</key><string>The device is not supervised.</string>\
             </dict></array>",
        ),
    );
    let broken = wait_stage(&server, BROKEN, "failed");
    assert_eq!(
        broken["why"], "The device is not supervised. (MCMDMErrorDomain 12021)",
        "{broken}"
    );
    assert_eq!(broken["next"], "sent again at the next evaluation");

    // 2. The scan is acknowledged: the Mac is asked what it found.
    answer(&server, &scan, "Acknowledged", "");
    let available = nth(&mdm, "AvailableOSUpdates", MAC_UDID, 1);

    // 3. It names the OS update (and a non-OS one): exactly that ProductKey is
    //    scheduled, DownloadOnly while the deadline is a month away.
    let offered = "<key>AvailableOSUpdates</key><array>\
        <dict><key>HumanReadableName</key><string>Safari</string><key>IsOSUpdate</key><false/>\
        <key>ProductKey</key><string>052-12345</string><key>Version</key><string>18.1</string></dict>\
        <dict><key>HumanReadableName</key><string>macOS Sequoia 15.1</string><key>IsOSUpdate</key><true/>\
        <key>ProductKey</key><string>MSU_UPDATE_24B83_patch_15.1</string><key>Version</key><string>15.1</string>\
        <key>Build</key><string>24B83</string><key>RestartRequired</key><true/></dict></array>";
    answer(&server, &available, "Acknowledged", offered);
    let schedule = nth(&mdm, "ScheduleOSUpdate", MAC_UDID, 1);
    assert_eq!(
        install_action(&schedule),
        json!({"ProductKey": "MSU_UPDATE_24B83_patch_15.1", "ProductVersion": "15.1", "InstallAction": "DownloadOnly"})
    );

    // 4. Scheduled: OSUpdateStatus follows it; its answer says downloading, 42 %.
    answer_schedule(&server, &mdm, &schedule, 1, "DownloadOnly");
    let entry = wait_stage(&server, MAC, "downloading");
    assert_eq!(entry["progress"], 0.42);
    assert_eq!(entry["install_action"], "DownloadOnly");
    assert_eq!(entry["product_key"], "MSU_UPDATE_24B83_patch_15.1");

    // The other Mac refuses the scan: NotNow, reported with what happens next.
    let late_scan = nth(&mdm, "ScheduleOSUpdateScan", LATE_UDID, 1);
    webhook(
        &server,
        &acknowledge(LATE_UDID, &late_scan.command_uuid, "NotNow", ""),
    );
    let late = wait_stage(&server, LATE, "refused");
    assert!(late["why"].as_str().unwrap().contains("NotNow"), "{late}");
    assert!(
        late["next"].as_str().unwrap().contains("sent again"),
        "{late}"
    );

    // 5. The deadline three days away: InstallLater with the policy's deferrals.
    move_deadline(dir.path(), &server, &mdm, &feed.url, &in_hours(3 * 24));
    let later = nth(&mdm, "ScheduleOSUpdate", MAC_UDID, 2);
    assert_eq!(install_action(&later)["InstallAction"], "InstallLater");
    assert_eq!(install_action(&later)["MaxUserDeferrals"], 2);
    // The refused Mac is asked again at this evaluation.
    nth(&mdm, "ScheduleOSUpdateScan", LATE_UDID, 2);
    answer_schedule(&server, &mdm, &later, 2, "InstallLater");

    // 6. The deadline passed an hour ago: InstallASAP; two days ago: InstallForceRestart.
    move_deadline(dir.path(), &server, &mdm, &feed.url, &in_hours(-1));
    let asap = nth(&mdm, "ScheduleOSUpdate", MAC_UDID, 3);
    assert_eq!(install_action(&asap)["InstallAction"], "InstallASAP");
    assert!(install_action(&asap).get("MaxUserDeferrals").is_none());
    answer_schedule(&server, &mdm, &asap, 3, "InstallASAP");
    move_deadline(dir.path(), &server, &mdm, &feed.url, &in_hours(-48));
    let force = nth(&mdm, "ScheduleOSUpdate", MAC_UDID, 4);
    assert_eq!(
        install_action(&force)["InstallAction"],
        "InstallForceRestart"
    );
    answer(&server, &force, "Acknowledged", "");
    // OSUpdateStatus follows: installing.
    let follow = nth(&mdm, "OSUpdateStatus", MAC_UDID, 4);
    let installing = "<key>OSUpdateStatus</key><array><dict><key>IsDownloaded</key><true/>\
        <key>ProductKey</key><string>MSU_UPDATE_24B83_patch_15.1</string>\
        <key>Status</key><string>Installing</string></dict></array>";
    answer(&server, &follow, "Acknowledged", installing);
    wait_for("installing on record", Duration::from_secs(20), || {
        wait_stage(&server, MAC, "installing")["pending_command"].is_null()
    });

    // 7. The Mac's own log tells the install (the seed's lines).
    // Up to the finished install (the fixture's closing otaAbandoned is another
    // Mac's story, below): the download, the user putting it off twice, the
    // restart countdown, the install.
    let ulog = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ulog/fixtures/softwareupdate.ndjson"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.contains("otaAbandoned"))
    .map(|l| format!("{l}\n"))
    .collect::<String>()
    .into_bytes();
    let (code, body) = server.post(
        &format!("/v1/sources/devlogs?serial={MAC}"),
        Some(SOURCE_TOKEN),
        "application/x-ndjson",
        &ulog,
        &[],
    );
    assert_eq!(code, 200, "{body}");
    // Log lines may be delivered in any order: the state follows their times.
    wait_for(
        "the install and two deferrals",
        Duration::from_secs(20),
        || {
            let e = wait_stage(&server, MAC, "installing");
            e["deferrals_used"] == 2
                && e["why"] == "the Mac finished installing; it restarts into the new version"
        },
    );
    // A download-progress line logged earlier, delivered late: the state does
    // not go back.
    let early = String::from_utf8_lossy(&ulog)
        .lines()
        .find(|l| l.contains("Reported progress (end): phase:DOWNLOADING"))
        .expect("a progress line")
        .replace("09:31:02.550010", "09:31:03.000000");
    let (code, body) = server.post(
        &format!("/v1/sources/devlogs?serial={MAC}"),
        Some(SOURCE_TOKEN),
        "application/x-ndjson",
        format!("{early}\n").as_bytes(),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    wait_for("the late line delivered", Duration::from_secs(20), || {
        let events = timeline(&server, &format!("device/{MAC}"));
        let late = events
            .iter()
            .find(|e| e["event"]["time"] == "2024-10-03T16:31:03Z")
            .map(|e| e["event"]["id"].clone());
        late.is_some_and(|id| {
            events.iter().any(|e| {
                e["event"]["detail-type"] == "Target Delivery Succeeded"
                    && e["event"]["detail"]["rule"] == "software-update"
                    && e["event"]["detail"]["event-id"] == id
            })
        })
    });
    assert_eq!(
        wait_stage(&server, MAC, "installing")["state"],
        "installing"
    );

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
    let gave_up = wait_stage(&server, GAVE_UP, "abandoned");
    assert_eq!(gave_up["why"], "[SUMacControllerError:7749]", "{gave_up}");
    // The workflow's trouble rule hears of each.
    let trouble = dir.path().join("software-update-trouble.log");
    wait_for("the trouble log", Duration::from_secs(20), || {
        std::fs::read_to_string(&trouble).is_ok_and(|t| {
            t.contains("\"abandoned\"") && t.contains("\"refused\"") && t.contains("\"failed\"")
        })
    });

    // 8. After the restart, the next evaluation asks the installing Mac its
    //    version (DeviceInformation): 15.1, compliant.
    evaluate_now(&server);
    let info = nth(&mdm, "DeviceInformation", MAC_UDID, 1);
    assert_eq!(
        info.payload_json()["Queries"],
        json!(["OSVersion", "BuildVersion"])
    );
    answer(
        &server,
        &info,
        "Acknowledged",
        "<key>QueryResponses</key><dict><key>OSVersion</key><string>15.1</string>\
             <key>BuildVersion</key><string>24B83</string></dict>",
    );
    let done = wait_stage(&server, MAC, "compliant");
    assert_eq!(done["os_version"], "15.1", "{done}");

    // The refused Mac updates by itself: its Authenticate on 15.1 is enough.
    let mut back = authenticate(LATE_UDID, LATE);
    back["event_id"] = json!("late-auth-after-update");
    let payload = format!(
        "<key>BuildVersion</key><string>24B83</string><key>DeviceName</key><string>MacBook Air</string>\
         <key>MessageType</key><string>Authenticate</string><key>Model</key><string>Mac14,2</string>\
         <key>OSVersion</key><string>15.1</string><key>SerialNumber</key><string>{LATE}</string>\
         <key>Topic</key><string>com.apple.mgmt.External.e0bd1eac</string><key>UDID</key><string>{LATE_UDID}</string>"
    );
    back["checkin_event"]["raw_payload"] = json!(plist_b64(&payload));
    webhook(&server, &back);
    wait_for("compliant", Duration::from_secs(20), || {
        su_status(dir.path(), &server, &[]).1["compliant"] == 3
    });
    let (code, status) = su_status(dir.path(), &server, &[]);
    assert_eq!(code, 1, "the Mac that gave up is still behind: {status}");
    let behind: Vec<&str> = status["behind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(behind, [GAVE_UP, BROKEN], "{status}");
    // The Mac that failed was asked again at the first later evaluation only (its
    // second scan is unanswered, and waited for).
    sent_n(&mdm, "ScheduleOSUpdateScan", BROKEN_UDID, 2);
    // The text output says the same, per requirement.
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["su", "status", "--url", &server.base, "--token", TOKEN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("software_update policy: 3 of 5 enrolled Macs compliant, 2 behind")
            && text.contains("fleet: 3 compliant, 2 behind")
            && text.contains(&format!("{GAVE_UP}  14.6 -> 15.1 by "))
            && text.contains("abandoned ([SUMacControllerError:7749])"),
        "{text}"
    );

    // The Mac's timeline tells the story in order (oldest first here).
    let events = timeline(&server, &format!("device/{MAC}"));
    let mut story: Vec<String> = events
        .iter()
        .rev()
        .filter_map(|e| {
            let dt = e["event"]["detail-type"].as_str()?;
            let d = &e["event"]["detail"];
            match (dt, d["command"]["request_type"].as_str()) {
                ("MDM Command Enqueued" | "MDM Command Result", Some(rt)) => {
                    Some(format!("{dt}: {rt}"))
                }
                ("Software Update Status Changed", _) => {
                    Some(format!("-> {}", d["stage"].as_str()?))
                }
                ("MDM Check-in", _) => Some(dt.to_owned()),
                _ => None,
            }
        })
        .collect();
    story.dedup();
    let pos = |s: &str| {
        story
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} not in {story:#?}"))
    };
    let order = [
        "MDM Command Enqueued: ScheduleOSUpdateScan",
        "-> scan sent",
        "MDM Command Result: ScheduleOSUpdateScan",
        "-> scanned",
        "MDM Command Enqueued: AvailableOSUpdates",
        "MDM Command Result: AvailableOSUpdates",
        "-> update found",
        "-> scheduled",
        "MDM Command Result: ScheduleOSUpdate",
        "MDM Command Enqueued: OSUpdateStatus",
        "MDM Command Result: OSUpdateStatus",
        "-> downloading",
        "-> installing",
        "MDM Command Enqueued: DeviceInformation",
        "MDM Command Result: DeviceInformation",
        "-> compliant",
    ];
    let at: Vec<usize> = order.iter().map(|s| pos(s)).collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "{order:?} at {at:?} in {story:#?}"
    );
    // Each step is linked to the one before it: the first schedule's result
    // traces back to the release.
    let result = with_type(&events, "MDM Command Result")
        .into_iter()
        .rev()
        .find(|e| e["event"]["detail"]["command"]["request_type"] == "ScheduleOSUpdate")
        .unwrap();
    let id = result["event"]["id"].as_str().unwrap();
    let (_, trace) = server.get(&format!("/v1/events/{id}/trace"));
    let root = &trace["causes"][0]["event"];
    assert_eq!(root["detail-type"], "OS Release Published", "{trace}");
    assert_eq!(root["detail"]["product_version"], "15.1");

    // The evaluations sampled each Mac into the series, by requirement and state.
    let (code, series) = server.get("/v1/stats/series/software_update");
    assert_eq!(code, 200, "{series}");
    let text = series.to_string();
    assert!(
        text.contains("compliant") && text.contains("behind"),
        "{series}"
    );
    server.stop();
}

#[test]
fn macs_on_14_or_later_get_the_enforcement_declaration_and_their_status_items_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let rx = receiver();
    let feed = feed_server(feed(false));
    feed.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let text = config(&mdm, &feed.url, "2026-12-20T17:00:00Z")
        .replace(
            "      max_user_deferrals: 2\n",
            "      max_user_deferrals: 2\n      declarations: true\n",
        )
        .replace(
            "http://127.0.0.1:9002/v1/declarations",
            &format!("{}/hook", rx.url),
        )
        .replace("method: PUT", "method: POST");
    setup(dir.path(), &text);
    let server = Server::start(dir.path());
    put_mac(&server, MAC, MAC_UDID, "14.6");
    put_mac(&server, LATE, LATE_UDID, "13.6");
    feed.down.store(false, std::sync::atomic::Ordering::SeqCst);

    // The Mac on 14.6 gets the declaration, routed to the DDM server; the one on
    // 13.6 cannot take it and gets the commands.
    wait_for("the declaration", Duration::from_secs(30), || {
        !rx.bodies.lock().unwrap().is_empty()
    });
    let (declaration, _) = rx.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        declaration,
        json!({
            "Type": "com.apple.configuration.softwareupdate.enforcement.specific",
            "Identifier": "fleetbus.softwareupdate.enforcement.15.1",
            "ServerToken": "15.1-2026-12-20T17:00:00",
            "Payload": {
                "TargetOSVersion": "15.1",
                "TargetBuildVersion": "24B83",
                "TargetLocalDateTime": "2026-12-20T17:00:00",
                "DetailsURL": "https://it.example.com/macos-updates"
            }
        })
    );
    let declared = wait_stage(&server, MAC, "declared");
    assert_eq!(declared["deadline"], "2026-12-20T17:00:00Z");
    nth(&mdm, "ScheduleOSUpdateScan", LATE_UDID, 1);
    assert!(mdm
        .calls()
        .iter()
        .all(|c| !c.ids.iter().any(|i| i == MAC_UDID)));

    // Its status report says downloading, then failed with the reason.
    let report = |state: &str| {
        let data = json!({"StatusItems": {"softwareupdate": {
            "install-state": state,
            "pending-version": {"os-version": "15.1", "build-version": "24B83"},
            "failure-reason": {"count": 1, "reason": "Not enough free space", "timestamp": "2026-12-04T10:00:00Z"}
        }}, "Errors": []});
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(data.to_string())
        };
        let payload = format!(
            "<key>MessageType</key><string>DeclarativeManagement</string>\
             <key>Endpoint</key><string>status</string>\
             <key>Data</key><data>{b64}</data>\
             <key>UDID</key><string>{MAC_UDID}</string>"
        );
        json!({"topic": "mdm.DeclarativeManagement", "event_id": format!("ddm-{state}"),
               "created_at": "2026-12-04T10:00:00Z",
               "checkin_event": {"udid": MAC_UDID, "raw_payload": plist_b64(&payload)}})
    };
    webhook(&server, &report("downloading"));
    let e = wait_stage(&server, MAC, "downloading");
    assert_eq!(e["available_version"], "15.1", "{e}");
    webhook(&server, &report("failed"));
    let e = wait_stage(&server, MAC, "failed");
    assert_eq!(e["why"], "Not enough free space", "{e}");
    // An evaluation does not declare it again: the declaration stands.
    evaluate_now(&server);
    nth(&mdm, "ScheduleOSUpdateScan", LATE_UDID, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.bodies.lock().unwrap().len(), 1);
    assert_eq!(
        wait_stage(&server, MAC, "failed")["install_action"],
        "declaration"
    );
    // The declaration and each change are on the Mac's timeline.
    let events = timeline(&server, &format!("device/{MAC}"));
    assert_eq!(
        with_type(&events, "Software Update Declaration").len(),
        1,
        "{events:#?}"
    );
    server.stop();
}

#[test]
fn a_release_to_a_fleet_larger_than_the_chain_budget_loses_no_step() {
    // Each Mac's steps are chains of their own: with a budget of 20 events per
    // chain, a release to 30 Macs (two events each: the command, the change of
    // state) still puts every event on the bus, and their answers too.
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let feed = feed_server(feed(false));
    feed.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let text = config(&mdm, &feed.url, "2026-12-20T17:00:00Z")
        .replace("server:\n", "server:\n  chain_budget: 20\n");
    setup(dir.path(), &text);
    let server = Server::start(dir.path());
    let macs: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("C02FLEET{i:04}"),
                format!("5U0000FF-0000-4000-8000-00000000{i:04}"),
            )
        })
        .collect();
    for (serial, udid) in &macs {
        put_mac(&server, serial, udid, "14.6");
    }
    feed.down.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("30 scans", Duration::from_secs(30), || {
        mdm.calls_of("ScheduleOSUpdateScan").len() == 30
    });
    // Every Mac answers: each is asked AvailableOSUpdates.
    for (_, udid) in &macs {
        let scan = nth(&mdm, "ScheduleOSUpdateScan", udid, 1);
        webhook(
            &server,
            &acknowledge(udid, &scan.command_uuid, "Acknowledged", ""),
        );
    }
    wait_for("30 AvailableOSUpdates", Duration::from_secs(30), || {
        mdm.calls_of("AvailableOSUpdates").len() == 30
    });
    for (serial, _) in &macs {
        let events = timeline(&server, &format!("device/{serial}"));
        let story: Vec<&str> = events
            .iter()
            .filter_map(|e| e["event"]["detail-type"].as_str())
            .filter(|t| *t != "Target Delivery Succeeded")
            .collect();
        for want in [
            "MDM Command Enqueued",
            "MDM Command Result",
            "Software Update Status Changed",
        ] {
            assert!(story.contains(&want), "{serial}: {want} in {story:?}");
        }
    }
    server.stop();
}

#[test]
fn a_requirement_with_its_own_mdm_server_sends_its_macs_commands_there() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let leaving = FakeNanoMdm::start();
    let feed = feed_server(feed(false));
    feed.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let text = config(&mdm, &feed.url, "2026-12-20T17:00:00Z").replace(
        "  requirements:\n",
        &format!(
            "  requirements:\n    - name: migrating\n      tags: [old-mdm]\n      required_minimum_os_version: latest\n      required_installation_date: \"2026-12-20T17:00:00Z\"\n      mdm: {{server: nanomdm, url: \"{}\", api_key: \"${{file:secrets/nanomdm-api-key}}\"}}\n",
            leaving.url
        ),
    );
    setup(dir.path(), &text);
    let server = Server::start(dir.path());
    put_mac(&server, MAC, MAC_UDID, "14.6");
    put_device(
        &server,
        LATE,
        json!({"udid": LATE_UDID, "os_version": "14.6", "model": "Mac14,7",
               "enrollment_state": "enrolled", "tags": ["old-mdm"]}),
    );
    feed.down.store(false, std::sync::atomic::Ordering::SeqCst);
    nth(&mdm, "ScheduleOSUpdateScan", MAC_UDID, 1);
    nth(&leaving, "ScheduleOSUpdateScan", LATE_UDID, 1);
    assert!(mdm
        .calls()
        .iter()
        .all(|c| !c.ids.iter().any(|i| i == LATE_UDID)));
    assert!(leaving
        .calls()
        .iter()
        .all(|c| !c.ids.iter().any(|i| i == MAC_UDID)));
    assert_eq!(
        wait_stage(&server, LATE, "scan sent")["requirement"],
        "migrating"
    );
    server.stop();
}
