//! Ingest through the binary: PutEvents answered entry by entry, auth, size limits,
//! envelopes (NDJSON, CloudEvents), configured sources, and what accepted events
//! become (log deliveries, outcome events on the timeline, metrics).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::support::*;

fn post_envelopes(server: &Server, content_type: &str, body: &[u8]) -> (u16, Value) {
    server.post(
        "/v1/buses/default/events",
        Some(TOKEN),
        content_type,
        body,
        &[],
    )
}

#[test]
fn put_events_answers_entry_by_entry() {
    let (_dir, _rx, server) = start();
    let answer = server.put_events(json!([
        {"Source": "com.example.mdm", "DetailType": "MDM Check-in", "Detail": "{\"action\":\"enroll\"}", "Resources": ["device/C02A"]},
        {"Source": "com.example.mdm", "DetailType": "Bad", "Detail": "[1]"},
        {"Source": "", "DetailType": "x", "Detail": "{}"},
        {"Source": "jamf", "DetailType": "Computer Added", "Detail": "{}", "Time": 1700000000, "EventBusName": "arn:aws:events:eu-west-1:1:event-bus/default"},
    ]));
    assert_eq!(answer["FailedEntryCount"], 2, "{answer}");
    assert!(answer["Entries"][0]["EventId"].is_string());
    assert_eq!(answer["Entries"][1]["ErrorCode"], "MalformedDetail");
    assert_eq!(
        answer["Entries"][1]["ErrorMessage"],
        "Detail: must be a JSON object"
    );
    assert_eq!(
        answer["Entries"][2]["ErrorMessage"],
        "Source: must not be empty"
    );
    assert!(answer["Entries"][3]["EventId"].is_string());
    server.stop();
}

#[test]
fn the_api_refuses_missing_wrong_and_source_tokens_and_a_source_refuses_the_api_token() {
    let (_dir, _rx, server) = start();
    for token in [None, Some("wrong"), Some(SOURCE_TOKEN)] {
        let (status, body) = server.post(
            "/v1/events",
            token,
            "application/json",
            b"{\"Entries\":[]}",
            &[],
        );
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    let (status, _) = server.post(
        "/v1/sources/hooks",
        Some(TOKEN),
        "application/json",
        b"{}",
        &[],
    );
    assert_eq!(status, 401);
    server.stop();
}

#[test]
fn an_entry_over_256_kib_is_refused_whole() {
    let (_dir, _rx, server) = start();
    let big = json!({"x": "y".repeat(300 * 1024)}).to_string();
    let (status, body) = server.post(
        "/v1/events",
        Some(TOKEN),
        "application/json",
        json!({"Entries": [{"Source": "s", "DetailType": "t", "Detail": big}]})
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "EventTooLarge");
    server.stop();
}

#[test]
fn ndjson_envelopes_are_answered_line_by_line() {
    let (_dir, _rx, server) = start();
    let ndjson = "{\"source\":\"a\",\"detail-type\":\"One\",\"id\":\"nd-1\"}\n{\"source\":\"a\",\"detail-type\":\"Two\",\"detail\":5}\n";
    let (status, body) = post_envelopes(&server, "application/x-ndjson", ndjson.as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["FailedEntryCount"], 1);
    assert_eq!(
        body["Entries"][1]["ErrorMessage"],
        "detail: must be a JSON object, not a number"
    );
    let (status, body) = post_envelopes(&server, "application/json", b"{\"source\": ");
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post(
        "/v1/buses/nope/events",
        Some(TOKEN),
        "application/json",
        b"{}",
        &[],
    );
    assert_eq!(status, 404, "{body}");
    server.stop();
}

#[test]
fn cloudevents_in_structured_and_binary_mode_keep_their_ids() {
    let (_dir, _rx, server) = start();
    let ce = json!({"specversion": "1.0", "id": "ce-1", "source": "/okta", "type": "user.lifecycle.deactivate", "subject": "user/jdoe@example.com", "data": {"actor": "admin"}});
    let (status, body) = post_envelopes(
        &server,
        "application/cloudevents+json",
        ce.to_string().as_bytes(),
    );
    assert_eq!(
        (status, body["Entries"][0]["EventId"].as_str()),
        (200, Some("ce-1")),
        "{body}"
    );
    let (status, body) = server.post(
        "/v1/buses/default/events",
        Some(TOKEN),
        "application/json",
        b"{\"serial\":\"C02B\"}",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-2"),
            ("ce-source", "fleet"),
            ("ce-type", "Host Seen"),
            ("ce-subject", "device/C02B"),
        ],
    );
    assert_eq!(
        (status, body["Entries"][0]["EventId"].as_str()),
        (200, Some("ce-2")),
        "{body}"
    );
    server.stop();
}

/// Posts the generic source's body for `j-1` twice (the second a duplicate).
fn post_hook_twice(server: &Server) {
    let hook = json!({"system": "jamf", "kind": "ComputerCheckIn", "device": "device/C02C", "user": "ada@example.com", "uid": "j-1", "extra": 1}).to_string();
    for _ in 0..2 {
        let (status, body) = server.post(
            "/v1/sources/hooks",
            Some(SOURCE_TOKEN),
            "application/json",
            hook.as_bytes(),
            &[],
        );
        assert_eq!(
            (status, body["Entries"][0]["EventId"].as_str()),
            (200, Some("j-1")),
            "{body}"
        );
    }
}

#[test]
fn a_generic_source_maps_its_body_and_a_repeated_id_is_delivered_once() {
    let (dir, _rx, server) = start();
    post_hook_twice(&server);
    let (status, body) = server.post(
        "/v1/sources/hooks",
        Some(SOURCE_TOKEN),
        "application/json",
        b"{\"kind\": \"x\"}",
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "body: mapping.source $.system matched nothing"
    );
    // A marker after the duplicate: once it is logged, a second j-1 would be too.
    server.put_events(json!([{"Source": "marker", "DetailType": "Marker", "Detail": "{}"}]));
    let log = dir.path().join("all.log");
    wait_for("the marker in all.log", Duration::from_secs(10), || {
        lines(&log).iter().any(|e| e["source"] == "marker")
    });
    std::thread::sleep(Duration::from_millis(300));
    let logged = lines(&log);
    let ids: Vec<&str> = logged.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(logged.len(), 2, "{ids:?}");
    let hooked = logged.iter().find(|e| e["id"] == "j-1").unwrap();
    // A template resource puts the body's value into its text.
    assert_eq!(
        hooked["resources"],
        json!(["device/C02C", "user/ada@example.com"])
    );
    assert_eq!(hooked["detail"]["extra"], 1);
    server.stop();
}

#[test]
fn each_delivery_outcome_is_an_event_linked_to_its_cause_on_the_timeline() {
    let (dir, _rx, server) = start();
    post_hook_twice(&server);
    wait_for("the outcome", Duration::from_secs(10), || {
        !lines(&dir.path().join("outcomes.log")).is_empty()
    });
    let (status, timeline) = server.get("/v1/timeline?resource=device/C02C");
    assert_eq!(status, 200);
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["detail-type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"Target Delivery Succeeded") && kinds.contains(&"ComputerCheckIn"),
        "{kinds:?}"
    );
    let outcome = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["source"] == "fleetbus.delivery")
        .unwrap();
    assert_eq!(outcome["meta"]["causation_id"], "j-1");
    assert_eq!(outcome["event"]["detail"]["rule"], "all");
    server.stop();
}

#[test]
fn metrics_count_stored_events() {
    let (_dir, _rx, server) = start();
    server.put_events(json!([{"Source": "s", "DetailType": "t", "Detail": "{}"}]));
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("fleetbus_events_stored_total"),
        "{metrics}"
    );
    server.stop();
}

#[test]
fn unified_log_source_puts_device_events() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());
    let ulog = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ulog/fixtures/softwareupdate.ndjson"),
    )
    .unwrap();
    let (status, body) = server.post(
        "/v1/sources/devlogs?serial=C02LOG",
        Some(SOURCE_TOKEN),
        "application/x-ndjson",
        &ulog,
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let extracted = body["Entries"].as_array().unwrap().len();
    assert!(extracted > 0, "{body}");
    assert_eq!(body["FailedEntryCount"], 0, "{body}");
    // Without a device serial the batch is refused whole.
    let (status, body) = server.post(
        "/v1/sources/devlogs",
        Some(SOURCE_TOKEN),
        "application/x-ndjson",
        &ulog,
        &[],
    );
    assert_eq!(status, 400, "{body}");
    // The events are on the device's timeline (the catch-all rule here skips fleetbus.* sources).
    let (status, timeline) = server.get("/v1/timeline?resource=device/C02LOG&limit=1000");
    assert_eq!(status, 200);
    let events = timeline["events"].as_array().unwrap();
    assert_eq!(events.len(), extracted, "{timeline}");
    assert!(
        events
            .iter()
            .all(|e| e["event"]["source"] == "fleetbus.ulog"),
        "{timeline}"
    );
    server.stop();
}

/// With `device_key`, each Mac posts with a token of its own that is good for its
/// own serial only; the shared token is not accepted by a source without `tokens`.
#[test]
fn a_device_token_posts_logs_for_its_own_serial_only() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());
    let token = |serial: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetbus"))
            .args(["ulog", "token", serial, "--source", "devlogs-bound", "-c"])
            .arg(dir.path().join("fleetbus.yaml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let ada = token("C02ADA");
    assert_eq!(ada.len(), 64, "{ada}");
    assert_ne!(ada, token("C02BOB"));
    let ulog = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ulog/fixtures/softwareupdate.ndjson"),
    )
    .unwrap();
    let post = |serial: &str, token: &str| {
        server.post(
            &format!("/v1/sources/devlogs-bound?serial={serial}"),
            Some(token),
            "application/x-ndjson",
            &ulog,
            &[],
        )
    };
    let (status, body) = post("C02ADA", &ada);
    assert_eq!(status, 200, "{body}");
    // Ada's token for Bob's serial, or the shared source token: refused, nothing stored.
    let (status, body) = post("C02BOB", &ada);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the device's own token"),
        "{body}"
    );
    assert_eq!(post("C02BOB", SOURCE_TOKEN).0, 401);
    assert!(received(&server, "device/C02BOB").is_empty());
    assert!(!received(&server, "device/C02ADA").is_empty());
    // A missing or bad key reference is a config error at load; a source with
    // neither tokens nor device_key is refused as before.
    let (code, out) = validate_yaml("sources:\n  - name: logs\n    kind: unified-log\n");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("needs at least one token"), "{out}");
    let (code, out) = validate_yaml(
        "sources:\n  - name: logs\n    kind: jamf\n    device_key: x\n    tokens: [y]\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("device_key"), "{out}");
    server.stop();
}

/// A duplicate dropped within the dedup window is said in the answer and in the
/// log, one line per interval however many arrive.
#[test]
fn dropped_duplicates_are_logged_once_per_interval() {
    let (_dir, _rx, server) = start();
    let body = json!({"system": "hr", "kind": "Hired", "uid": "same-id", "device": "device/C02DUP", "user": "ada"});
    for _ in 0..5 {
        let (status, answer) = server.post(
            "/v1/sources/hooks",
            Some(SOURCE_TOKEN),
            "application/json",
            body.to_string().as_bytes(),
            &[],
        );
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(received(&server, "device/C02DUP").len(), 1);
    wait_for(
        "the duplicate's log line",
        std::time::Duration::from_secs(10),
        || {
            !server
                .log_lines("duplicate event accepted and dropped")
                .is_empty()
        },
    );
    let lines = server.log_lines("duplicate event accepted and dropped");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("id=same-id") || lines[0].contains("id=\"same-id\""),
        "{lines:?}"
    );
    server.stop();
}
