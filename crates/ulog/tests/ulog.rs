//! Integration tests over realistic fixtures: both output styles, gzip, junk lines, every
//! built-in extraction rule, and property tests of the parsers.

use std::io::Write;

use fleetbus_ulog::extract::{builtin_rules, parse_dictionary, RuleSpec};
use fleetbus_ulog::{events_from_ndjson, open, Extractor, LogEntry, Predicate, StrField};
use serde_json::Value;

#[path = "ulog/proptests.rs"]
mod proptests;
#[path = "ulog/seed.rs"]
mod seed;

const SU: &[u8] = include_bytes!("../fixtures/softwareupdate.ndjson");
const MDM: &[u8] = include_bytes!("../fixtures/mdmclient.json");

fn entries(bytes: &[u8]) -> (Vec<Value>, fleetbus_ulog::ReadStats) {
    let mut r = open(bytes).unwrap();
    let mut out = Vec::new();
    let stats = r
        .for_each_entry(|_, e| {
            out.push(e.to_value());
            true
        })
        .unwrap();
    (out, stats)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn reads_ndjson_style_with_header() {
    let (es, stats) = entries(SU);
    assert_eq!(es.len(), 17);
    assert_eq!(stats.junk_lines, 1, "the `Filtering the log data` header");
    assert_eq!(es[0]["processImagePath"], "/usr/libexec/softwareupdated");
    assert!(es[0]["backtrace"]["frames"].is_array());
    assert_eq!(es[0]["source"], Value::Null);
    assert_eq!(es[0].as_object().unwrap().len(), 23, "every field kept");
}

#[test]
fn reads_json_array_style_with_header() {
    let (es, stats) = entries(MDM);
    assert_eq!(es.len(), 9);
    assert_eq!(stats.junk_lines, 2);
    assert_eq!(
        es[8]["eventMessage"],
        "cert[2]: AnchorTrusted =(leaf)[force]> 0"
    );
}

#[test]
fn gzip_input_is_the_same() {
    assert_eq!(entries(&gzip(SU)).0, entries(SU).0);
    assert_eq!(entries(&gzip(MDM)).0, entries(MDM).0);
}

#[test]
fn junk_in_the_middle_is_skipped() {
    let mut input = SU.to_vec();
    input.extend_from_slice(b"garbage line\n{\"truncated\": \n\n");
    input.extend_from_slice(SU.split(|b| *b == b'\n').nth(2).unwrap());
    let (es, stats) = entries(&input);
    assert_eq!(es.len(), 18);
    assert_eq!(stats.junk_lines, 3, "header, garbage, truncated");
}

#[test]
fn filters_fixtures() {
    let count = |bytes: &[u8], p: &str| {
        let pred = Predicate::parse(p).unwrap();
        let mut r = open(bytes).unwrap();
        let mut n = 0;
        r.for_each_entry(|raw, e| {
            let m = pred.matches(e);
            // The prefilter never rejects a match.
            assert!(!m || pred.may_match(raw), "{p}");
            n += usize::from(m);
            true
        })
        .unwrap();
        n
    };
    let typical = r#"subsystem == "com.apple.SoftwareUpdateMacController" AND eventMessage CONTAINS[c] "ota""#;
    assert_eq!(count(SU, typical), 5);
    assert_eq!(count(SU, "messageType == error"), 1);
    assert_eq!(count(SU, r#"process == "runningboardd""#), 1);
    assert_eq!(
        count(
            MDM,
            r#"(subsystem IN {"com.apple.ManagedClient", "com.apple.mdmclient"}) && (category IN {"HTTPUtil"} || eventMessage CONTAINS[cd] "INSTALLPROFILE")"#
        ),
        5
    );
    assert_eq!(count(MDM, r#"NOT process == "mdmclient""#), 1);
}

fn all_events() -> Vec<Value> {
    let ex = Extractor::builtin();
    let (mut a, junk_a) = events_from_ndjson(&ex, SU, "C02XK1JDJG5J");
    let (b, junk_b) = events_from_ndjson(&ex, MDM, "C02XK1JDJG5J");
    assert_eq!((junk_a, junk_b), (1, 2));
    a.extend(b);
    a
}

fn find<'a>(events: &'a [Value], rule: &str, action: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail"]["rule"] == rule && e["detail"]["action"] == action)
        .collect()
}

#[test]
fn envelopes_are_eventbridge_shaped() {
    let events = all_events();
    for e in &events {
        let o = e.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "account",
                "detail",
                "detail-type",
                "id",
                "region",
                "resources",
                "source",
                "time",
                "version"
            ]
        );
        assert_eq!(e["version"], "0");
        assert_eq!(e["source"], "fleetbus.ulog");
        assert_eq!(e["resources"], serde_json::json!(["device/C02XK1JDJG5J"]));
        assert_eq!(e["detail"]["device"]["serial"], "C02XK1JDJG5J");
        assert_eq!(e["detail"]["scope"], "device");
        assert!(uuid::Uuid::parse_str(e["id"].as_str().unwrap()).is_ok());
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
    let avail = &find(&events, "softwareupdate.ota-event", "otaAvailable")[0];
    // 09:12:44.123456-0700 is 16:12:44.123456 UTC.
    assert_eq!(avail["time"], "2024-10-03T16:12:44.123456Z");
    assert_eq!(
        avail["detail"]["log"]["timestamp"],
        "2024-10-03 09:12:44.123456-0700"
    );
    assert_eq!(avail["detail"]["log"]["process"], "softwareupdated");
}

#[test]
fn software_update_events() {
    let events = all_events();
    for action in [
        "otaAvailable",
        "otaDownloaded",
        "otaReady",
        "otaInstalling",
        "otaAbandoned",
    ] {
        assert_eq!(
            find(&events, "softwareupdate.ota-event", action).len(),
            1,
            "{action}"
        );
    }
    let avail = &find(&events, "softwareupdate.ota-event", "otaAvailable")[0]["detail"];
    assert_eq!(avail["targetOSVersion"], "15.1");
    assert_eq!(avail["targetBuild"], "24B83");
    assert_eq!(avail["updateType"], "minor");
    assert_eq!(avail["mdm"], true);
    assert_eq!(avail["notification"], false);
    assert_eq!(avail["installTonight"], false);
    assert_eq!(avail["result"], "success");
    let ready = &find(&events, "softwareupdate.ota-event", "otaReady")[0]["detail"];
    assert_eq!(ready["installTonight"], true);
    let abandoned = &find(&events, "softwareupdate.ota-event", "otaAbandoned")[0];
    assert_eq!(
        abandoned["detail"]["failureReason"],
        "Insufficient space for update"
    );
    assert_eq!(abandoned["detail"]["targetOSVersion"], "15.1.1");
    assert_eq!(abandoned["detail-type"], "Software Update OTA Event");

    let progress = find(&events, "softwareupdate.progress", "progress");
    assert_eq!(progress.len(), 4);
    assert_eq!(progress[1]["detail"]["phase"], "DOWNLOADING");
    assert_eq!(progress[1]["detail"]["portionComplete"], 0.42);
    assert_eq!(progress[1]["detail"]["stalled"], false);
    assert_eq!(progress[1]["detail"]["estimatedTimeRemaining"], 312.0);
    assert_eq!(progress[3]["detail"]["phase"], "PREPARED");
    assert_eq!(progress[3]["detail"]["progress"], 1.0);
    assert_eq!(
        progress[3]["detail"]["productKey"],
        "MSU_UPDATE_24B83_patch_15.1"
    );

    let finished = find(&events, "softwareupdate.finished", "updateFinished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["detail"]["result"], "success");

    let countdown = find(
        &events,
        "softwareupdate.restart-countdown",
        "restartCountdown",
    );
    assert_eq!(countdown.len(), 1);
    assert_eq!(countdown[0]["detail"]["countdown"], "Start");
    assert_eq!(countdown[0]["detail"]["seconds"], 60);

    let clicks = find(&events, "softwareupdate.user-action", "userAction");
    let choices: Vec<(&str, &str)> = clicks
        .iter()
        .map(|e| {
            (
                e["detail"]["verb"].as_str().unwrap(),
                e["detail"]["choice"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        choices,
        [
            ("clicked", "Remind Me Later"),
            ("dismissed", ""),
            ("clicked", "restart now")
        ]
    );

    let tonight = find(&events, "softwareupdate.mdm-tonight", "scheduleTonight");
    assert_eq!(tonight.len(), 1);
    assert_eq!(tonight[0]["detail"]["productVersion"], "15.1");
    assert_eq!(
        tonight[0]["detail"]["productKey"],
        "MSU_UPDATE_24B83_patch_15.1"
    );
}

#[test]
fn mdm_client_events() {
    let events = all_events();
    let requested = find(&events, "mdm.software-update-requested", "updateRequested");
    assert_eq!(requested.len(), 1);
    let d = &requested[0]["detail"];
    assert_eq!(d["InstallAction"], "InstallASAP");
    assert_eq!(d["ProductKey"], "MSU_UPDATE_24B83_patch_15.1");
    assert_eq!(d["ProductVersion"], "15.1");
    assert_eq!(d["MaxUserDeferrals"], 3);
    assert_eq!(d["Priority"], "High");

    let reqs = find(&events, "mdm.server-request", "serverRequest");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["detail"]["requestType"], "ScheduleOSUpdate");
    assert_eq!(reqs[0]["detail"]["sequence"], 12804726);
    assert_eq!(reqs[0]["detail"]["target"], "Device");

    let results = find(&events, "mdm.command-result", "commandResult");
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["detail"]["status"], "Error");
    assert_eq!(results[1]["detail"]["requestType"], "InstallProfile");

    let profile = find(&events, "mdm.install-profile", "installProfile");
    assert_eq!(profile.len(), 1);
    assert_eq!(profile[0]["detail"]["profileName"], "Corporate Wi-Fi");
    assert_eq!(
        profile[0]["detail"]["profileIdentifier"],
        "com.example.wifi.corp"
    );

    let tokens = find(&events, "mdm.bootstrap-token", "bootstrapToken");
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[0]["detail"]["operation"], "Get");
    assert_eq!(tokens[1]["detail"]["httpStatus"], 200);
    assert_eq!(tokens[1]["detail"]["messageType"], "GetBootstrapToken");
    assert_eq!(tokens[2]["detail"]["httpStatus"], 500);
    assert_eq!(tokens[2]["detail"]["messageType"], "SetBootstrapToken");
}

#[test]
fn user_rules_from_yaml() {
    let yaml = r#"
- name: acme.agent-crash
  detail-type: Agent Crashed
  predicate: 'process == "acme-agent" AND messageType == fault'
  action: crash
  patterns:
    - 'exited with code (?P<code>\d+)'
  types:
    code: integer
  detail:
    team: endpoint
"#;
    let specs: Vec<RuleSpec> = serde_saphyr::from_str(yaml).unwrap();
    let ex = Extractor::new(specs).unwrap();
    let mut e = LogEntry::default();
    e.set_str(StrField::ProcessImagePath, "/usr/local/bin/acme-agent");
    e.set_str(StrField::MessageType, "Fault");
    e.set_str(StrField::Timestamp, "2024-10-03 09:12:44.000000+0000");
    e.set_str(StrField::EventMessage, "worker exited with code 139");
    let events = ex.events(&e, Some("SERIAL1"));
    assert_eq!(events.len(), 1);
    let d = &events[0]["detail"];
    assert_eq!(
        (d["action"].as_str(), d["code"].as_i64(), d["team"].as_str()),
        (Some("crash"), Some(139), Some("endpoint"))
    );
    assert_eq!(events[0]["time"], "2024-10-03T09:12:44Z");

    let unknown = "- name: x\n  detail-type: X\n  predicate: TRUEPREDICATE\n  colour: red\n";
    let err = serde_saphyr::from_str::<Vec<RuleSpec>>(unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn builtins_roundtrip_through_serde() {
    for spec in builtin_rules() {
        let json = serde_json::to_string(&spec).unwrap();
        let back: RuleSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
    assert!(!parse_dictionary("{ a = 1; }").is_empty());
}
