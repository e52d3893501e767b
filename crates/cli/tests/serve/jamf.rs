//! `kind: jamf` through the real binary: Jamf Pro's webhook bodies as Jamf
//! documents them (field names and nesting are Jamf's; values are made up here),
//! both of Jamf's credential styles, refusals and a redelivery.

use base64::Engine as _;
use serde_json::{json, Value};

use super::support::*;

/// A ComputerCheckIn as current Jamf Pro sends it: the computer nested under
/// `computer`, with the check-in's trigger and user beside it.
fn checkin() -> Value {
    json!({
        "event": {
            "computer": {
                "alternateMacAddress": "72:00:01:AA:B0:C1",
                "building": "North",
                "department": "Engineering",
                "deviceName": "Ada's MacBook Pro",
                "emailAddress": "ada@example.com",
                "jssID": 42,
                "macAddress": "60:03:08:11:22:33",
                "model": "MacBook Pro (14-inch, 2023)",
                "osBuild": "24A335",
                "osVersion": "15.0",
                "phone": "",
                "position": "Engineer",
                "realName": "Ada Lovelace",
                "room": "3",
                "serialNumber": "C02JAMF0001",
                "udid": "11111111-2222-3333-4444-555555555555",
                "userDirectoryID": "-1",
                "username": "ada"
            },
            "trigger": "CLIENT_CHECKIN",
            "username": "Ada Lovelace"
        },
        "webhook": {
            "eventTimestamp": 1764806400123_i64,
            "id": 7,
            "name": "fleetbus",
            "webhookEvent": "ComputerCheckIn"
        }
    })
}

/// A ComputerAdded in Jamf's flat shape: the computer's fields at the event's top.
fn computer_added() -> Value {
    json!({
        "event": {
            "alternateMacAddress": "",
            "building": "",
            "department": "",
            "deviceName": "mac-0002",
            "emailAddress": "",
            "ipAddress": "10.0.0.2",
            "jssID": 43,
            "macAddress": "60:03:08:44:55:66",
            "model": "Mac mini (2024)",
            "osBuild": "24A335",
            "osVersion": "15.0",
            "phone": "",
            "position": "",
            "realName": "",
            "reportedIpAddress": "10.0.0.2",
            "room": "",
            "serialNumber": "C02JAMF0002",
            "udid": "66666666-7777-8888-9999-000000000000",
            "userDirectoryID": "-1",
            "username": "grace",
            "managementId": "b1c2d3e4-0000-4000-8000-000000000002"
        },
        "webhook": {
            "eventTimestamp": 1764806401000_i64,
            "id": 8,
            "name": "fleetbus",
            "webhookEvent": "ComputerAdded"
        }
    })
}

fn basic(token: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("jamf:{token}"));
    format!("Basic {encoded}")
}

fn post(server: &Server, source: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    server.post(
        &format!("/v1/sources/{source}"),
        None,
        "application/json",
        body.to_string().as_bytes(),
        headers,
    )
}

#[test]
fn jamf_webhooks_land_on_the_device_and_user_timelines() {
    let (_dir, _rx, server) = start();
    let auth = basic(SOURCE_TOKEN);
    let (status, body) = post(&server, "jamf", &[("Authorization", &auth)], &checkin());
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &server,
        "jamf-header",
        &[("X-Jamf-Token", SOURCE_TOKEN)],
        &computer_added(),
    );
    assert_eq!(status, 200, "{body}");

    let device = received(&server, "device/C02JAMF0001");
    assert_eq!(device.len(), 1, "{device:?}");
    let e = &device[0]["event"];
    assert_eq!(e["source"], "jamf.pro");
    assert_eq!(e["detail-type"], "ComputerCheckIn");
    assert_eq!(
        e["time"], "2025-12-04T00:00:00Z",
        "eventTimestamp, to the second"
    );
    assert_eq!(
        e["resources"],
        json!(["device/C02JAMF0001", "user/ada@example.com"])
    );
    assert_eq!(e["detail"]["event"]["trigger"], "CLIENT_CHECKIN");
    assert_eq!(e["detail"]["webhook"]["id"], 7);
    assert_eq!(received(&server, "user/ada@example.com").len(), 1);

    // The flat shape, with no email: the username names the user.
    let added = received(&server, "device/C02JAMF0002");
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["event"]["detail-type"], "ComputerAdded");
    assert_eq!(
        added[0]["event"]["resources"],
        json!(["device/C02JAMF0002", "user/grace"])
    );
    server.stop();
}

#[test]
fn a_redelivered_jamf_body_is_stored_once() {
    let (_dir, _rx, server) = start();
    let auth = basic(SOURCE_TOKEN);
    let (_, first) = post(&server, "jamf", &[("Authorization", &auth)], &checkin());
    let (status, again) = post(&server, "jamf", &[("Authorization", &auth)], &checkin());
    assert_eq!(status, 200, "{again}");
    let id = first["Entries"][0]["EventId"].clone();
    assert!(id.is_string(), "{first}");
    assert_eq!(
        again["Entries"][0]["EventId"], id,
        "the id comes from the body"
    );
    assert_eq!(again["Entries"][0]["Duplicate"], true, "{again}");
    // Another check-in of the same Mac (a later timestamp) is another event.
    let mut later = checkin();
    later["webhook"]["eventTimestamp"] = json!(1764806460000_i64);
    let (_, third) = post(&server, "jamf", &[("Authorization", &auth)], &later);
    assert_ne!(third["Entries"][0]["EventId"], id);
    assert_eq!(received(&server, "device/C02JAMF0001").len(), 2);
    server.stop();
}

#[test]
fn jamf_refuses_unknown_events_wrong_shapes_and_wrong_credentials() {
    let (_dir, _rx, server) = start();
    let auth = basic(SOURCE_TOKEN);
    let refuse = |body: Value, want: &str| {
        let (status, answer) = post(&server, "jamf", &[("Authorization", &auth)], &body);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["message"], want, "{answer}");
    };
    let mut unknown = checkin();
    unknown["webhook"]["webhookEvent"] = json!("ComputerExploded");
    let (_, answer) = post(&server, "jamf", &[("Authorization", &auth)], &unknown);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("webhook.webhookEvent: unknown event \"ComputerExploded\" (expected one of ComputerAdded, "),
        "{answer}"
    );
    let mut no_serial = checkin();
    no_serial["event"]["computer"]
        .as_object_mut()
        .unwrap()
        .remove("serialNumber");
    refuse(
        no_serial,
        "event.serialNumber: missing (ComputerCheckIn events carry the computer's serial number at event.serialNumber or event.computer.serialNumber)",
    );
    let mut bad_time = checkin();
    bad_time["webhook"]["eventTimestamp"] = json!("yesterday");
    refuse(
        bad_time,
        "webhook.eventTimestamp: must be epoch milliseconds, found \"yesterday\"",
    );
    refuse(
        json!({"event": {}}),
        "webhook: missing (expected an object with webhookEvent)",
    );
    let (status, answer) = server.post(
        "/v1/sources/jamf",
        None,
        "application/json",
        b"<JSSEvent/>",
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Jamf webhooks must use content type JSON"),
        "{answer}"
    );

    // Credentials: the header source says which header it wants, and takes no Basic.
    let wrong = basic("not-the-token");
    let (status, answer) = post(&server, "jamf", &[("Authorization", &wrong)], &checkin());
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = post(
        &server,
        "jamf-header",
        &[("Authorization", &auth)],
        &checkin(),
    );
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "missing or wrong token for source \"jamf-header\" (expected the source's token in the x-jamf-token header)"
    );
    assert!(
        received(&server, "device/C02JAMF0001").is_empty(),
        "a refused body was ingested"
    );
    server.stop();
}

/// Every documented `webhookEvent`, one fixture file each in the shape Jamf documents
/// (`crates/server/tests/fixtures/jamf/`), through the binary: each is stored with
/// its detail-type, resources and the body as Jamf sent it.
#[test]
fn every_documented_jamf_event_is_taken_through_the_binary() {
    let (_dir, _rx, server) = start();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures/jamf");
    let expected: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&std::fs::read(dir.join("expected-resources.json")).unwrap())
            .unwrap();
    assert_eq!(expected.len(), 21, "the 21 documented events");
    for (name, resources) in &expected {
        let body: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let (status, answer) = post(
            &server,
            "jamf",
            &[("Authorization", basic(SOURCE_TOKEN).as_str())],
            &body,
        );
        assert_eq!(status, 200, "{name}: {answer}");
        let id = answer["Entries"][0]["EventId"].as_str().unwrap();
        let (_, stored) = server.get(&format!("/v1/events/{id}"));
        let e = &stored["event"];
        assert_eq!(e["source"], "jamf.pro", "{name}");
        assert_eq!(e["detail-type"], name.as_str());
        assert_eq!(e["resources"], json!(resources), "{name}");
        assert_eq!(e["detail"], body, "{name}: the body as Jamf sent it");
    }
    server.stop();
}
