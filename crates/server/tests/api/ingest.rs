//! Ingest endpoints in process: PutEvents (REST and AWS JSON 1.1), envelopes, sources.

use serde_json::json;

use crate::support::{eventually, Api, SOURCE_TOKEN, TOKEN};

fn entry(serial: &str) -> serde_json::Value {
    json!({
        "Source": "com.example.inventory",
        "DetailType": "Device Seen",
        "Detail": json!({"serial": serial}).to_string(),
        "Resources": [format!("device/{serial}")],
    })
}

#[test]
fn put_events_stores_each_entry_and_answers_its_id() {
    let api = Api::start();
    let (status, answer) = api.post_json(
        "/v1/events",
        &json!({"Entries": [entry("C02A"), entry("C02B")]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 0);
    let id = answer["Entries"][1]["EventId"].as_str().unwrap().to_owned();
    let (status, event) = api.get(&format!("/v1/events/{id}"));
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["event"]["detail"]["serial"], "C02B", "{event}");
    assert_eq!(event["event"]["resources"], json!(["device/C02B"]));
    assert_eq!(event["meta"]["ingest_source"], "api");
}

#[test]
fn put_events_reports_a_bad_entry_in_its_slot_and_keeps_the_rest() {
    let api = Api::start();
    let bad = json!({"Source": "com.example", "DetailType": "X", "Detail": "not json"});
    let (status, answer) = api.post_json("/v1/events", &json!({"Entries": [entry("C02A"), bad]}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 1, "{answer}");
    assert!(answer["Entries"][0]["EventId"].is_string(), "{answer}");
    assert_eq!(
        answer["Entries"][1]["ErrorCode"], "MalformedDetail",
        "{answer}"
    );
}

#[test]
fn the_aws_json_protocol_needs_the_put_events_target() {
    let api = Api::start();
    let body = json!({"Entries": [entry("C02A")]}).to_string();
    let json11 = ("content-type", "application/x-amz-json-1.1");
    let (status, answer) = api.call(
        "POST",
        "/",
        Some(TOKEN),
        &[json11, ("x-amz-target", "AWSEvents.PutEvents")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 0);
    let (status, answer) = api.call("POST", "/", Some(TOKEN), &[json11], body.as_bytes());
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = api.call(
        "POST",
        "/",
        Some(TOKEN),
        &[
            json11,
            ("x-amz-target", "AWSEvents.CreatePartnerEventSource"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["__type"], "UnknownOperationException");
    // PutRule is an action now: a body without its Name is AWS's validation error.
    let (status, answer) = api.call(
        "POST",
        "/",
        Some(TOKEN),
        &[json11, ("x-amz-target", "AWSEvents.PutRule")],
        body.as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["__type"], "ValidationException");
}

#[test]
fn an_envelope_to_an_unknown_bus_is_404() {
    let api = Api::start();
    let (status, answer) = api.post_json(
        "/v1/buses/nope/events",
        &json!({"source": "x", "detail-type": "y", "detail": {}}),
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["message"], "unknown bus \"nope\"");
}

#[test]
fn a_generic_source_maps_the_body_onto_the_timeline() {
    let api = Api::start();
    let body = json!({"system": "crm", "kind": "Ping", "device": "device/C02Z"});
    let (status, answer) = api.call(
        "POST",
        "/v1/sources/hooks",
        Some(SOURCE_TOKEN),
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    eventually("the event on the device's timeline", || {
        let (_, timeline) = api.get("/v1/timeline?resource=device/C02Z");
        timeline["events"]
            .as_array()
            .is_some_and(|e| e.len() == 1 && e[0]["event"]["detail-type"] == "Ping")
    });
}

#[test]
fn a_single_event_that_fails_validation_is_a_400_not_a_200_with_a_failed_entry() {
    let api = Api::start();
    // A structured CloudEvent without `type`: a webhook sender would take a 200 as delivered.
    let ce = json!({"specversion": "1.0", "id": "ce-1", "source": "/okta"});
    let (status, answer) = api.call(
        "POST",
        "/v1/buses/default/events",
        Some(TOKEN),
        &[("content-type", "application/cloudevents+json")],
        ce.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "ValidationException", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("type"),
        "{answer}"
    );
    // The same for one envelope object.
    let (status, answer) = api.post_json(
        "/v1/buses/default/events",
        &json!({"source": "a", "detail-type": "One", "detail": 5}),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "detail: must be a JSON object, not a number"
    );
    // A batch keeps answering entry by entry.
    let (status, answer) = api.post_json(
        "/v1/buses/default/events",
        &json!([{"source": "a", "detail-type": "One", "detail": 5}]),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 1, "{answer}");
}

#[test]
fn a_repeat_within_the_dedup_window_is_answered_as_a_duplicate() {
    let api = Api::start();
    let envelope = json!({"source": "a", "detail-type": "One", "id": "same-id", "detail": {}});
    let (status, first) = api.post_json("/v1/buses/default/events", &envelope);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["Entries"][0], json!({"EventId": "same-id"}));
    let (status, second) = api.post_json("/v1/buses/default/events", &envelope);
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["Entries"][0],
        json!({"EventId": "same-id", "Duplicate": true})
    );
    assert_eq!(second["FailedEntryCount"], 0);
}

#[test]
fn a_batch_over_the_entry_cap_is_refused_whole() {
    let api = Api::start();
    let line = "{\"source\":\"a\",\"detail-type\":\"One\",\"detail\":{}}\n";
    let body = line.repeat(10_001);
    let (status, answer) = api.call(
        "POST",
        "/v1/buses/default/events",
        Some(TOKEN),
        &[("content-type", "application/x-ndjson")],
        body.as_bytes(),
    );
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "TooManyEntries");
    let (_, stats) = api.get("/v1/timeline?resource=none");
    assert_eq!(stats["events"], json!([]));
}

/// Room for a request's deliveries is reserved before anything is committed: a
/// request that would take the backlog past `max_backlog` is refused whole, not
/// accepted because the backlog was below the limit when it arrived.
#[test]
fn a_request_whose_deliveries_do_not_fit_the_backlog_is_refused_whole() {
    let config = crate::support::BASE_CONFIG
        .replace("server:\n", "server:\n  max_backlog: 10\n")
        .replace(
            "rules: []",
            "rules:
  - name: stuck
    event_pattern: {source: [a]}
    targets:
      - id: nowhere
        kind: http
        url: http://127.0.0.1:9/never",
        );
    let api = Api::with(crate::support::Options {
        config,
        ..Default::default()
    });
    let envelope = |n: usize| json!({"source": "a", "detail-type": "One", "id": format!("e-{n}"), "detail": {}});
    let five: Vec<_> = (0..5).map(envelope).collect();
    let (status, answer) = api.post_json("/v1/buses/default/events", &json!(five));
    assert_eq!(status, 200, "{answer}");
    let twenty: Vec<_> = (5..25).map(envelope).collect();
    let (status, answer) = api.post_json("/v1/buses/default/events", &json!(twenty));
    assert_eq!(status, 429, "{answer}");
    // Nothing of the refused request was stored.
    let (status, _) = api.get("/v1/events/e-5");
    assert_eq!(status, 404);
    // What fits still goes in.
    let five_more: Vec<_> = (25..30).map(envelope).collect();
    let (status, answer) = api.post_json("/v1/buses/default/events", &json!(five_more));
    assert_eq!(status, 200, "{answer}");
}

fn softwareupdate_log() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ulog/fixtures/softwareupdate.ndjson");
    std::fs::read(path).unwrap()
}

fn post_logs(api: &Api, headers: &[(&str, &str)], body: &[u8]) -> (u16, serde_json::Value) {
    api.call(
        "POST",
        "/v1/sources/devlogs?serial=C02LOG",
        Some(SOURCE_TOKEN),
        headers,
        body,
    )
}

/// Devices send their logs gzipped: a gzip body is read, not answered 200 with
/// nothing in it.
#[test]
fn a_gzip_log_batch_gives_the_same_events_as_the_plain_one() {
    use std::io::Write;
    let api = Api::start();
    let plain = softwareupdate_log();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let (status, zipped) = post_logs(&api, &[("content-encoding", "gzip")], &gz);
    assert_eq!(status, 200, "{zipped}");
    let n = zipped["Entries"].as_array().unwrap().len();
    assert!(n > 0, "{zipped}");
    let (status, unzipped) = post_logs(&api, &[], &plain);
    assert_eq!(status, 200, "{unzipped}");
    assert_eq!(unzipped["Entries"].as_array().unwrap().len(), n);
}

#[test]
fn other_encodings_are_415_and_a_body_without_log_entries_is_400() {
    let api = Api::start();
    let (status, answer) = post_logs(&api, &[("content-encoding", "br")], b"\x1b\x00");
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"]["code"], "UnsupportedEncoding");
    let (status, answer) = post_logs(&api, &[], b"this is not a log\nnor is this\n");
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("body holds no unified-log entries (2 line(s)"),
        "{message}"
    );
    let (status, answer) = post_logs(&api, &[("content-encoding", "gzip")], b"not gzip at all");
    assert_eq!(status, 400, "{answer}");
}
