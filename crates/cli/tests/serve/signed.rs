//! Signed webhooks through the real binary: a body signed as GitHub signs (hex,
//! `sha256=`), one signed with its time as Slack signs (`v0:{timestamp}:{body}`),
//! and NanoMDM's `-webhook-hmac-key` (base64 in `X-Hmac-Signature`), each refused
//! when the secret is wrong, the body tampered with or the time stale.

use base64::Engine as _;
use serde_json::json;

use super::support::*;

fn hmac(secret: &str, message: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, message).as_ref().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_signed_body_is_taken_and_a_wrong_or_tampered_one_refused() {
    let (_dir, _rx, server) = start();
    let body =
        json!({"system": "ci", "kind": "Build Passed", "device": "device/C02SIGNED"}).to_string();
    let post = |body: &str, signature: String| {
        server.post(
            "/v1/sources/signed",
            None,
            "application/json",
            body.as_bytes(),
            &[("X-Hub-Signature-256", &signature)],
        )
    };
    let good = format!(
        "sha256={}",
        hex::encode(hmac(SOURCE_TOKEN, body.as_bytes()))
    );
    let (status, answer) = post(&body, good.clone());
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&body.replace("Passed", "Failed"), good);
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["error"]["code"], "InvalidSignatureException",
        "{answer}"
    );
    assert_eq!(
        answer["error"]["message"],
        "source \"signed\": signature does not match the body (wrong secret, or the body was changed)"
    );
    let wrong = format!(
        "sha256={}",
        hex::encode(hmac("not-the-secret", body.as_bytes()))
    );
    assert_eq!(post(&body, wrong).0, 401);
    let (status, answer) = server.post(
        "/v1/sources/signed",
        None,
        "application/json",
        body.as_bytes(),
        &[],
    );
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "source \"signed\": missing signature header x-hub-signature-256"
    );
    assert_eq!(
        received(&server, "device/C02SIGNED").len(),
        1,
        "only the good body"
    );
    server.stop();
}

#[test]
fn a_signature_with_its_time_is_refused_once_stale() {
    let (_dir, _rx, server) = start();
    let body =
        json!({"system": "slack", "kind": "Command", "device": "device/C02SLACK"}).to_string();
    let post = |at: i64| {
        let sig = format!(
            "v0={}",
            hex::encode(hmac(SOURCE_TOKEN, format!("v0:{at}:{body}").as_bytes()))
        );
        server.post(
            "/v1/sources/slack-signed",
            None,
            "application/json",
            body.as_bytes(),
            &[
                ("X-Slack-Signature", &sig),
                ("X-Slack-Request-Timestamp", &at.to_string()),
            ],
        )
    };
    let (status, answer) = post(now());
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(now() - 3600);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("beyond the tolerance of 300s"),
        "{answer}"
    );
    assert_eq!(received(&server, "device/C02SLACK").len(), 1);
    server.stop();
}

#[test]
fn nanomdm_webhooks_signed_with_its_hmac_key_need_no_token() {
    let (_dir, _rx, server) = start();
    let body = json!({
        "topic": "mdm.Authenticate",
        "event_id": "signed-auth-1",
        "created_at": "2026-12-03T09:15:02Z",
        "checkin_event": {
            "udid": "UDID-SIGNED",
            "raw_payload": base64::engine::general_purpose::STANDARD.encode(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>\
                 <key>MessageType</key><string>Authenticate</string>\
                 <key>SerialNumber</key><string>C02HMAC0001</string>\
                 <key>Topic</key><string>com.apple.mgmt.External.x</string>\
                 <key>UDID</key><string>UDID-SIGNED</string></dict></plist>"
            )
        }
    })
    .to_string();
    let sig = base64::engine::general_purpose::STANDARD.encode(hmac(SOURCE_TOKEN, body.as_bytes()));
    let (status, answer) = server.post(
        "/v1/sources/nanomdm-signed",
        None,
        "application/json",
        body.as_bytes(),
        &[("X-Hmac-Signature", &sig)],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(received(&server, "device/C02HMAC0001").len(), 1);
    let (status, _) = server.post(
        "/v1/sources/nanomdm-signed",
        None,
        "application/json",
        body.replace("signed-auth-1", "signed-auth-2").as_bytes(),
        &[("X-Hmac-Signature", &sig)],
    );
    assert_eq!(status, 401, "a tampered body");
    server.stop();
}
