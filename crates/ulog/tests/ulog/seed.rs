//! Every software-update log line the seed talk shows
//! (`../shared/seeds/001_0b36ed8793b12dc9.txt`), run through the built-in rules.
//!
//! The messages are the seed's text as it stands, blank lines between keys included
//! (the slides' layout; to the dictionary parser it is whitespace). Only the slides'
//! markdown is removed: `**otaAvailable**` is `otaAvailable` and the backticks around
//! one `MDM requested` dictionary are gone. Where the seed shows a line's process,
//! subsystem and category they are used; elsewhere the process that writes the line
//! on macOS is (`softwareupdated`, `SoftwareUpdateNotificationManager`, `mdmclient`).

use fleetbus_ulog::{events_from_ndjson, open, Extractor};
use serde_json::{json, Value};

const SERIAL: &str = "C02XK1JDJG5J";

/// Where a line comes from.
#[derive(Clone, Copy)]
struct Origin {
    process: &'static str,
    subsystem: &'static str,
    category: &'static str,
}

const SU: Origin = Origin {
    process: "softwareupdated",
    subsystem: "com.apple.SoftwareUpdateMacController",
    category: "SU",
};
const MSU: Origin = Origin {
    process: "softwareupdated",
    subsystem: "com.apple.MobileSoftwareUpdate",
    category: "Info",
};
const NOTIFY: Origin = Origin {
    process: "SoftwareUpdateNotificationManager",
    subsystem: "com.apple.SoftwareUpdateNotificationManager",
    category: "Default",
};
const MDMCLIENT: Origin = Origin {
    process: "mdmclient",
    subsystem: "com.apple.ManagedClient",
    category: "MDMDaemon",
};
const HTTPUTIL: Origin = Origin {
    process: "mdmclient",
    subsystem: "com.apple.ManagedClient",
    category: "HTTPUtil",
};

/// One `log show --style ndjson` line.
fn line(o: Origin, message: &str) -> String {
    json!({
        "timestamp": "2023-07-14 13:54:10.356000-0700",
        "messageType": "Default",
        "eventType": "logEvent",
        "subsystem": o.subsystem,
        "category": o.category,
        "processImagePath": format!("/usr/libexec/{}", o.process),
        "processID": 512,
        "eventMessage": message,
    })
    .to_string()
}

/// The events the built-in rules make of one line.
fn events(o: Origin, message: &str) -> Vec<Value> {
    let (events, junk) =
        events_from_ndjson(&Extractor::builtin(), line(o, message).as_bytes(), SERIAL);
    assert_eq!(junk, 0);
    events
}

/// The one event a line makes: its detail-type and detail.
fn one(o: Origin, message: &str) -> (String, Value) {
    let evs = events(o, message);
    assert_eq!(
        evs.len(),
        1,
        "{message:?} made {} events: {:#?}",
        evs.len(),
        evs.iter().map(|e| &e["detail"]["rule"]).collect::<Vec<_>>()
    );
    let e = &evs[0];
    assert_eq!(e["resources"], json!([format!("device/{SERIAL}")]));
    (
        e["detail-type"].as_str().unwrap().to_owned(),
        e["detail"].clone(),
    )
}

const OTA_AVAILABLE: &str = r#"[SUMacControllerEventReporter] Sending event (otaAvailable): {

UUID = "93ACDFF0-BD23-45A4-9807-519751379B78";

clientAccessControlPriority = ClientInitiated;

clientCommand = SUMacControllerCommandScan;

commandLine = false;

configUserInitiated = true;

descriptor = "SUMacControllerDescriptor(UUID:16FADDB1-9B8A-4980-B6F0-B78996C60752 SU:macOS Ventura 13.4.1
22F82 (Customer)(SU) SFR:macOS 13.4.1 22F82 (Customer) BRAIN:22F82 BRIDGEOS:NO((null)) ROSETTA:YES((null))
RECOVERYOS:YES)";

installTonight = true;

installedRecoveryOSBuild = 22E261;

installedRecoveryOSVersion = "13.3.1";

mdm = false;

notification = false;

targetOSVersion = 22F82;

updateType = incremental;

}"#;

#[test]
fn ota_available_with_its_dictionary() {
    let (dt, d) = one(SU, OTA_AVAILABLE);
    assert_eq!(dt, "Software Update OTA Event");
    assert_eq!(d["rule"], "softwareupdate.ota-event");
    assert_eq!(d["action"], "otaAvailable");
    assert_eq!(d["targetOSVersion"], "22F82");
    assert_eq!(d["installTonight"], true);
    assert_eq!(d["mdm"], false);
    assert_eq!(d["notification"], false);
    assert_eq!(d["commandLine"], false);
    assert_eq!(d["configUserInitiated"], true);
    assert_eq!(d["updateType"], "incremental");
    assert_eq!(d["installedRecoveryOSBuild"], "22E261");
    assert_eq!(d["installedRecoveryOSVersion"], "13.3.1");
    assert_eq!(d["clientCommand"], "SUMacControllerCommandScan");
    assert_eq!(d["UUID"], "93ACDFF0-BD23-45A4-9807-519751379B78");
    assert!(d["descriptor"]
        .as_str()
        .unwrap()
        .starts_with("SUMacControllerDescriptor(UUID:16FADDB1"));
    // The third one the seed shows: an MDM-initiated scan that notifies.
    let third = OTA_AVAILABLE
        .replace("installTonight = true", "installTonight = false")
        .replace("mdm = false", "mdm = true")
        .replace("notification = false", "notification = true");
    let (_, d) = one(SU, &third);
    assert_eq!(
        (&d["installTonight"], &d["mdm"], &d["notification"]),
        (&json!(false), &json!(true), &json!(true))
    );
}

#[test]
fn ota_abandoned_with_its_failure_reason() {
    let (dt, d) = one(
        SU,
        r#"Sending event (otaAbandoned): {

event = otaAbandoned;

failureReason = "[SUMacControllerError:7749]";

result = "SUMacControllerError - 7749 (SUMacControllerErrorCommitStashInvalidState)";

}"#,
    );
    assert_eq!(dt, "Software Update OTA Event");
    assert_eq!(d["action"], "otaAbandoned");
    assert_eq!(d["failureReason"], "[SUMacControllerError:7749]");
    assert_eq!(
        d["result"],
        "SUMacControllerError - 7749 (SUMacControllerErrorCommitStashInvalidState)"
    );
}

#[test]
fn ota_events_without_a_dictionary() {
    for action in ["otaDownloaded", "otaReady", "otaInstalling"] {
        let (dt, d) = one(SU, &format!("Sending event ({action})"));
        assert_eq!(dt, "Software Update OTA Event");
        assert_eq!(d["action"], action);
    }
}

#[test]
fn update_status_with_product_key_phase_and_progress() {
    let (dt, d) = one(
        SU,
        "UpdateStatus 'MSU_UPDATE_22F82_patch_13.4.1_minor' ==> {  \n    phase = downloading;  \n    productKeys = (  \n        \"MSU_UPDATE_22F82_patch_13.4.1_minor\"  \n    );  \n    progress = \"91.80247783660889\";  \n}",
    );
    assert_eq!(dt, "Software Update Progress");
    assert_eq!(d["report"], "UpdateStatus");
    assert_eq!(d["productKey"], "MSU_UPDATE_22F82_patch_13.4.1_minor");
    assert_eq!(d["phase"], "downloading");
    assert_eq!(d["progress"], 91.80247783660889);
    assert_eq!(
        d["productKeys"],
        json!(["MSU_UPDATE_22F82_patch_13.4.1_minor"])
    );

    let (_, d) = one(
        SU,
        "UpdateStatus 'MSU_UPDATE_22F82_patch_13.4.1_minor' ==> {\n\nphase = downloaded;\n\nproductKeys = (\n\n\"MSU_UPDATE_22F82_patch_13.4.1_minor\"\n\n);\n\nprogress = 100;\n\n}",
    );
    assert_eq!(
        (&d["phase"], &d["progress"]),
        (&json!("downloaded"), &json!(100.0))
    );

    let (_, d) = one(
        SU,
        "UpdateStatus 'MSU_UPDATE_23A5286i_patch_14.0_minor' ==> {  \n    DoltLaterScheduledDate = \"2023-07-12 09:00:00 +0000\";  \n  \n    phase = \"not running\";  \n  \n    progress = 0;  \n}",
    );
    assert_eq!(d["productKey"], "MSU_UPDATE_23A5286i_patch_14.0_minor");
    assert_eq!(d["phase"], "not running");
    assert_eq!(d["DoltLaterScheduledDate"], "2023-07-12 09:00:00 +0000");
}

#[test]
fn mdm_update_status_with_its_error() {
    let (dt, d) = one(
        SU,
        "mdmUpdateStatus: {  \n    error = \"No updates were selected.\";   \n  \n    phase = failed;  \n  \n    productKeys = (  \n  \n);  \n  \n    productMarketingVersion = \"13.4.1\";  \n  \n    progress = 0;  \n  \n}",
    );
    assert_eq!(dt, "Software Update Progress");
    assert_eq!(d["report"], "mdmUpdateStatus");
    assert_eq!(d["error"], "No updates were selected.");
    assert_eq!(d["phase"], "failed");
    assert_eq!(d["productKeys"], json!([]));
    assert_eq!(d["productMarketingVersion"], "13.4.1");
    assert_eq!(d["progress"], 0.0);
}

#[test]
fn mdm_requested_as_each_vendor_sends_it() {
    // Kandji, first and second command.
    let (dt, d) = one(
        SU,
        "MDM requested: {\n\nInstallAction = DownloadOnly;\n\nPriority = High;\n\nProductKey = \"MSU_UPDATE_22F82_patch_13.4.1_minor\";\n\nProductVersion = \"13.4.1\";\n\n}",
    );
    assert_eq!(dt, "MDM Software Update Requested");
    assert_eq!(d["InstallAction"], "DownloadOnly");
    assert_eq!(d["Priority"], "High");
    assert_eq!(d["ProductKey"], "MSU_UPDATE_22F82_patch_13.4.1_minor");
    assert_eq!(d["ProductVersion"], "13.4.1");
    let (_, d) = one(
        SU,
        "MDM requested: {\n\nInstallAction = Default;\n\nPriority = High;\n\nProductKey = \"MSU_UPDATE_22F82_patch_13.4.1_minor\";\n\nProductVersion = \"13.4.1\";\n\n}",
    );
    assert_eq!(d["InstallAction"], "Default");
    // JumpCloud.
    let (_, d) = one(
        SU,
        "MDM requested: {\n\nInstallAction = InstallLater;\n\nMaxUserDeferrals = 1;\n\nProductKey = \"MSU_UPDATE_22F82_patch_13.4.1_minor\";\n\n}",
    );
    assert_eq!(
        (&d["InstallAction"], &d["MaxUserDeferrals"]),
        (&json!("InstallLater"), &json!(1))
    );
    // Workspace ONE, with the key as it spells it.
    let (_, d) = one(
        SU,
        "MDM requested: {\n\nInstallAction = InstallLater;\n\nMaxUserDeferals = 3;\n\nProductKey = \"MSU_UPDATE_23A5286i_patch_14.0_minor\";\n\nProductVersion = \"14.0\";\n\n}",
    );
    assert_eq!(d["MaxUserDeferals"], 3);
    assert_eq!(d["ProductVersion"], "14.0");
    assert!(d.get("MaxUserDeferrals").is_none());
    let (_, d) = one(
        SU,
        "MDM requested: {\n\nInstallAction = Default;\n\nProductKey = \"MSU_UPDATE_23A5286i_patch_14.0_minor\";\n\n}",
    );
    assert_eq!(d["ProductKey"], "MSU_UPDATE_23A5286i_patch_14.0_minor");
    // SimpleMDM.
    let (_, d) = one(
        SU,
        "MDM requested: {\n\nInstallAction = NotifyOnly;\n\nProductVersion = \"13.4.1\";\n\n}",
    );
    assert_eq!(
        (&d["InstallAction"], &d["ProductVersion"]),
        (&json!("NotifyOnly"), &json!("13.4.1"))
    );
}

#[test]
fn install_options_default_and_asap() {
    let (dt, d) = one(
        SU,
        "InstallAction: Default options: {\n\nBootstrapToken = \"<NON-EMPTY STRING>\";\n\nDoInForeground = 1;\n\nMDMInitiated = 1;\n\nSkipFLO = 1;\n\n}",
    );
    assert_eq!(dt, "Software Update Install Options");
    assert_eq!(d["installAction"], "Default");
    assert_eq!(d["BootstrapToken"], "<NON-EMPTY STRING>");
    assert_eq!(
        (&d["DoInForeground"], &d["MDMInitiated"], &d["SkipFLO"]),
        (&json!(1), &json!(1), &json!(1))
    );
    let (_, d) = one(
        SU,
        "InstallASAP options: {\n\nBootstrapToken = \"<NON-EMPTY STRING>\";\n\nDoInForeground = 0;\n\nMDMInitiated = 1;\n\nSkipFLO = 1;\n\n}",
    );
    assert_eq!(
        (&d["installAction"], &d["DoInForeground"]),
        (&json!("InstallASAP"), &json!(0))
    );
}

#[test]
fn mdm_initiated_scan_with_its_options() {
    let (dt, d) = one(
        SU,
        "MDM initiated, scanning for update with options: {\n\nBootstrapToken = Exists;\n\nDoInForeground = 0;\n\nMDMInitiated = 1;\n\nProductKeys = (\n\n\"MSU_UPDATE_23A5286i_patch_14.0_minor\"\n\n);\n\nScheduleUpdateForLater = 1;\n\n}",
    );
    assert_eq!(dt, "Software Update MDM Scan");
    assert_eq!(d["BootstrapToken"], "Exists");
    assert_eq!(
        d["ProductKeys"],
        json!(["MSU_UPDATE_23A5286i_patch_14.0_minor"])
    );
    assert_eq!(d["ScheduleUpdateForLater"], 1);
}

#[test]
fn processing_server_request() {
    for rt in ["ScheduleOSUpdateScan", "AvailableOSUpdates"] {
        let (dt, d) = one(MDMCLIENT, &format!("Processing server request: {rt}"));
        assert_eq!(dt, "MDM Client Request");
        assert_eq!(d["requestType"], rt);
    }
}

#[test]
fn update_finished_analytics_phase() {
    let (dt, d) = one(
        MSU,
        "1eba23280 : Attempting to gather\nanalytics data for phase : UpdateFinished",
    );
    assert_eq!(dt, "Software Update Finished");
    assert_eq!(d["action"], "updateFinished");
    assert_eq!(d["phase"], "UpdateFinished");
}

#[test]
fn restart_countdown_ticks_removal_and_reboot() {
    for n in (1..=9).rev() {
        let (dt, d) = one(
            NOTIFY,
            &format!("SUOSUCountdownNotification: seconds remaining: {n}"),
        );
        assert_eq!(dt, "Software Update Restart Countdown");
        assert_eq!(d["seconds"], n);
    }
    let (dt, d) = one(
        NOTIFY,
        "SUOSUCountdownNotification: Remove restart countdown!",
    );
    assert_eq!(dt, "Software Update Restart Countdown Removed");
    assert_eq!(d["action"], "restartCountdownRemoved");
    let (dt, d) = one(
        NOTIFY,
        "SUOSURestartCountdownOperation: Starting restart countdown",
    );
    assert_eq!(dt, "Software Update Restart Countdown");
    assert_eq!(d["countdown"], "Start");
    let (dt, d) = one(
        SU,
        "Skipping restart notification, immediately going down for the reboot",
    );
    assert_eq!(dt, "Software Update Rebooting");
    assert_eq!(d["action"], "rebootNow");
}

#[test]
fn the_users_answers_to_notifications() {
    let (dt, d) = one(
        NOTIFY,
        "Received notification response w/ request identifier:\ncom.apple.SoftwareUpdateNotificationManager.RestartCountdown, action identifier:\nRESTART, source: RestartCountdown, type: (null), userInfo: {\n\n SecondsRemaining = 52;\n\n Source = RestartCountdown;\n\n}",
    );
    assert_eq!(dt, "Software Update Notification Response");
    assert_eq!(d["notification"], "RestartCountdown");
    assert_eq!(d["actionIdentifier"], "RESTART");
    assert_eq!(d["notificationSource"], "RestartCountdown");
    assert_eq!(d["SecondsRemaining"], 52);

    let (dt, d) = one(
        NOTIFY,
        "SUOSUNotificationCenterDelegate: Restart countdown: user clicked restart",
    );
    assert_eq!(dt, "Software Update User Action");
    assert_eq!(
        (&d["verb"], &d["choice"]),
        (&json!("clicked"), &json!("restart"))
    );
    assert_eq!(d["notification"], "Restart countdown");
    let (_, d) = one(
        NOTIFY,
        "SUOSUNotificationCenterDelegate: Restart countdown: user dismissed the notification",
    );
    assert_eq!(d["verb"], "dismissed");
    let (_, d) = one(
        NOTIFY,
        "SUOSUNotificationCenterDelegate: User dismissed the notification\ncom.apple.SoftwareUpdateNotificationManager.UpdatesAvailableOfferLater",
    );
    assert_eq!(d["verb"], "dismissed");
    assert_eq!(d["notification"], "UpdatesAvailableOfferLater");

    let (dt, d) = one(
        NOTIFY,
        "SUOSUNotificationCenterDelegate: Schedule MDM tonight action",
    );
    assert_eq!(dt, "Software Update Scheduled Tonight");
    assert_eq!(d["action"], "scheduleTonight");
}

#[test]
fn bootstrap_token_requests_and_responses() {
    let (dt, d) = one(
        HTTPUTIL,
        "[0:MDMDaemon:HTTPUtil:<0x4a73>] >>>>> Sending HTTP request (PUT) [MDM_SetBootstrapToken] >>>>>",
    );
    assert_eq!(dt, "MDM Bootstrap Token");
    assert_eq!(
        (&d["httpMethod"], &d["messageType"]),
        (&json!("PUT"), &json!("SetBootstrapToken"))
    );
    let (_, d) = one(
        HTTPUTIL,
        "[0:MDMDaemon:HTTPUtil:<0x4a73>] <<<<< Received HTTP response (200) [MDM_SetBootstrapToken] <<<<<",
    );
    assert_eq!(
        (&d["httpStatus"], &d["messageType"]),
        (&json!(200), &json!("SetBootstrapToken"))
    );
    let (_, d) = one(
        HTTPUTIL,
        ">>>>> Sending HTTP request (PUT) [MDM_GetBootstrapToken] >>>>>",
    );
    assert_eq!(d["messageType"], "GetBootstrapToken");
    let (_, d) = one(
        HTTPUTIL,
        "<<<<< Received HTTP response (200) [MDM_GetBootstrapToken] <<<<<",
    );
    assert_eq!(d["httpStatus"], 200);
    let (_, d) = one(SU, "Prefetching Bootstrap Token for SoftwareUpdate");
    assert_eq!(
        (&d["operation"], &d["client"]),
        (&json!("Prefetch"), &json!("SoftwareUpdate"))
    );
}

#[test]
fn available_updates_did_change() {
    let (dt, d) = one(
        NOTIFY,
        "SUOSUNotificationUpdateService: Available updates did change: (  \n    \"<SUOSUProduct: MSU_UPDATE_22F82_patch_13.4.1_minor>\"  \n)",
    );
    assert_eq!(dt, "Software Update Available Updates Changed");
    assert_eq!(d["productKey"], "MSU_UPDATE_22F82_patch_13.4.1_minor");
    assert_eq!(
        d["items"],
        json!(["<SUOSUProduct: MSU_UPDATE_22F82_patch_13.4.1_minor>"])
    );
}

#[test]
fn option_dictionaries_alone_make_no_bootstrap_token_event() {
    // They mention BootstrapToken as a key; only the options event comes of them.
    let evs = events(
        SU,
        "InstallASAP options: {\n\nBootstrapToken = \"<NON-EMPTY STRING>\";\n\nDoInForeground = 0;\n\n}",
    );
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["detail-type"], "Software Update Install Options");
}

#[test]
fn the_ndjson_trailer_is_neither_an_entry_nor_an_event() {
    let text = format!(
        "{}\n{}\n{{\"count\":2,\"finished\":1}}\n",
        line(SU, "Sending event (otaDownloaded)"),
        line(SU, "Sending event (otaReady)")
    );
    let (evs, junk) = events_from_ndjson(&Extractor::builtin(), text.as_bytes(), SERIAL);
    assert_eq!((evs.len(), junk), (2, 0));
    let mut r = open(text.as_bytes()).unwrap();
    let stats = r.for_each_entry(|_, _| true).unwrap();
    assert_eq!((stats.entries, stats.trailer_count), (2, Some(2)));
}
