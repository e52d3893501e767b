//! `kind: okta` through the real binary: Okta's one-time verification, event hook
//! deliveries in the shape Okta documents (field names are Okta's, values made up
//! here), a redelivery, a malformed batch and the credential Okta sends.

use serde_json::{json, Value};

use super::support::*;

/// An Okta System Log event as an event hook carries it.
fn system_log(uuid: &str, event_type: &str, target: &str) -> Value {
    json!({
        "uuid": uuid,
        "published": "2026-12-03T10:15:30.123Z",
        "eventType": event_type,
        "version": "0",
        "displayMessage": "Deactivate Okta user",
        "severity": "INFO",
        "client": {"zone": "null", "device": "Unknown", "ipAddress": "192.0.2.10",
                   "userAgent": {"os": "Unknown", "browser": "UNKNOWN", "rawUserAgent": "okta-test"}},
        "actor": {"id": "00uADMIN0000000", "type": "User", "alternateId": "it-admin@example.com", "displayName": "IT Admin"},
        "outcome": {"result": "SUCCESS"},
        "target": [
            {"id": "00uTARGET000000", "type": "User", "alternateId": target, "displayName": "Ada Lovelace"},
            {"id": "0oaAPP000000000", "type": "AppInstance", "alternateId": "Slack", "displayName": "Slack"}
        ],
        "transaction": {"type": "WEB", "id": "txn-1", "detail": {}},
        "debugContext": {"debugData": {}},
        "legacyEventType": "core.user.config.user_deactivated"
    })
}

/// A delivery as Okta posts it.
fn delivery(events: Vec<Value>) -> Value {
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/whoTEST000000000",
        "eventId": "b5a188b9-5ece-4636-b041-482ffda96311",
        "data": {"events": events},
        "eventTime": "2026-12-03T10:15:31.000Z",
        "contentType": "application/json"
    })
}

fn post(server: &Server, auth: &str, body: &Value) -> (u16, Value) {
    server.post(
        "/v1/sources/okta",
        None,
        "application/json",
        body.to_string().as_bytes(),
        &[("Authorization", auth)],
    )
}

fn get(server: &Server, headers: &[(&str, &str)]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("{}/v1/sources/okta", server.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn okta_verification_is_answered_with_the_challenge() {
    let (_dir, _rx, server) = start();
    let (status, body) = get(
        &server,
        &[
            ("Authorization", SOURCE_TOKEN),
            ("X-Okta-Verification-Challenge", "chal-123"),
        ],
    );
    assert_eq!((status, &body), (200, &json!({"verification": "chal-123"})));
    let (status, body) = get(&server, &[("Authorization", SOURCE_TOKEN)]);
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&server, &[("X-Okta-Verification-Challenge", "chal-123")]);
    assert_eq!(
        status, 401,
        "the verification request carries Okta's credential too"
    );
    server.stop();
}

#[test]
fn okta_events_land_on_the_user_timeline_once() {
    let (_dir, _rx, server) = start();
    let body = delivery(vec![
        system_log(
            "11111111-0000-4000-8000-000000000001",
            "user.lifecycle.deactivate",
            "ada@example.com",
        ),
        system_log(
            "11111111-0000-4000-8000-000000000002",
            "user.session.start",
            "grace@example.com",
        ),
    ]);
    let (status, answer) = post(&server, SOURCE_TOKEN, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
    let ada = received(&server, "user/ada@example.com");
    assert_eq!(ada.len(), 1, "{ada:?}");
    let e = &ada[0]["event"];
    assert_eq!(e["source"], "okta");
    assert_eq!(e["detail-type"], "user.lifecycle.deactivate");
    assert_eq!(e["id"], "11111111-0000-4000-8000-000000000001");
    assert_eq!(
        e["resources"],
        json!(["user/ada@example.com"]),
        "only User targets"
    );
    assert_eq!(
        e["detail"]["legacyEventType"],
        "core.user.config.user_deactivated"
    );
    assert_eq!(received(&server, "user/grace@example.com").len(), 1);
    // Okta delivers again (it retries what it thinks failed): nothing new is stored.
    let (status, again) = post(&server, SOURCE_TOKEN, &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["Entries"][0]["Duplicate"], true, "{again}");
    assert_eq!(received(&server, "user/ada@example.com").len(), 1);
    server.stop();
}

#[test]
fn a_malformed_okta_batch_is_refused_whole() {
    let (_dir, _rx, server) = start();
    let mut broken = system_log(
        "22222222-0000-4000-8000-000000000002",
        "user.lifecycle.deactivate",
        "b@example.com",
    );
    broken.as_object_mut().unwrap().remove("uuid");
    let body = delivery(vec![
        system_log(
            "22222222-0000-4000-8000-000000000001",
            "user.lifecycle.deactivate",
            "a@example.com",
        ),
        broken,
    ]);
    let (status, answer) = post(&server, SOURCE_TOKEN, &body);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["message"], "data.events[1].uuid: missing");
    assert!(
        received(&server, "user/a@example.com").is_empty(),
        "half a batch was taken"
    );
    let (status, answer) = post(&server, "wrong", &body);
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "missing or wrong token for source \"okta\" (expected the source's token in the authorization header)"
    );
    server.stop();
}
