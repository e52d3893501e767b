//! One auth layer in front of every protected route, before any body is read.

use std::io::{Read, Write};

use base64::Engine as _;
use serde_json::json;

use crate::support::{Api, SOURCE_TOKEN, TOKEN};

/// Every route that needs the management API token.
const PROTECTED: &[(&str, &str)] = &[
    ("POST", "/v1/events"),
    ("GET", "/v1/events?limit=1"),
    ("GET", "/v1/events/some-id/trace"),
    ("GET", "/v1/stats/counts"),
    ("POST", "/v1/buses/default/events"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/v1/dlq"),
    ("POST", "/v1/dlq/redrive"),
    ("GET", "/v1/events/some-id"),
    ("GET", "/v1/timeline?resource=device/X"),
    ("GET", "/v1/assets/devices"),
    ("GET", "/v1/assets/devices/C02X"),
    ("PUT", "/v1/assets/devices/C02X"),
    ("GET", "/v1/assets/users"),
    ("GET", "/v1/assets/users/u1"),
    ("PUT", "/v1/assets/users/u1"),
    ("POST", "/v1/assets/import"),
    ("GET", "/v1/mdm/commands/abc"),
];

#[test]
fn every_protected_route_refuses_a_missing_or_wrong_token() {
    let api = Api::start();
    for (method, path) in PROTECTED {
        for token in [None, Some("wrong"), Some(SOURCE_TOKEN)] {
            let (status, body) = api.call(method, path, token, &[], b"{}");
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["error"]["code"], "Unauthorized", "{method} {path}");
        }
    }
}

/// The AWS API answers in AWS's shape: 403 MissingAuthenticationTokenException.
#[test]
fn the_aws_api_refuses_a_missing_or_wrong_token_as_aws_does() {
    let api = Api::start();
    for token in [None, Some("wrong"), Some(SOURCE_TOKEN)] {
        let (status, body) = api.call(
            "POST",
            "/",
            token,
            &[("x-amz-target", "AWSEvents.ListEventBuses")],
            b"{}",
        );
        assert_eq!(status, 403, "{token:?}: {body}");
        assert_eq!(body["__type"], "MissingAuthenticationTokenException");
    }
}

#[test]
fn the_right_token_passes_the_layer() {
    let api = Api::start();
    let (status, body) = api.get("/v1/dlq");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"], json!([]), "{body}");
}

#[test]
fn an_unauthenticated_caller_gets_401_before_the_body_is_judged() {
    let api = Api::start();
    let (status, _) = api.call("POST", "/v1/events", None, &[], b"not json");
    assert_eq!(status, 401);
    let (status, body) = api.call("POST", "/v1/events", Some(TOKEN), &[], b"not json");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn an_unauthenticated_request_is_answered_without_reading_its_body() {
    let api = Api::start();
    let addr = api.addr();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Promises 4 MB and sends none of it: the answer must not wait for the body.
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 4000000\r\n\r\n"
    )
    .unwrap();
    let mut answer = [0u8; 12];
    conn.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
}

#[test]
fn open_routes_need_no_token() {
    let api = Api::start();
    for path in ["/healthz", "/readyz"] {
        let (status, _) = api.call("GET", path, None, &[], b"");
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn a_source_takes_its_own_token_not_the_api_token() {
    let api = Api::start();
    let event = json!({"system": "crm", "kind": "Ping", "device": "device/C02X"});
    let body = event.to_string();
    let (status, _) = api.call(
        "POST",
        "/v1/sources/hooks",
        Some(TOKEN),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    let (status, answer) = api.call(
        "POST",
        "/v1/sources/hooks",
        Some(SOURCE_TOKEN),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
}

#[test]
fn a_source_token_works_as_the_basic_auth_password() {
    // MDM servers send credentials only from the webhook URL's userinfo.
    let api = Api::start();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("fleetbus:{SOURCE_TOKEN}"));
    let event = json!({"system": "crm", "kind": "Ping", "device": "device/C02X"});
    let (status, answer) = api.call(
        "POST",
        "/v1/sources/hooks",
        None,
        &[("authorization", &format!("Basic {basic}"))],
        event.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let wrong = base64::engine::general_purpose::STANDARD.encode("fleetbus:nope");
    let (status, _) = api.call(
        "POST",
        "/v1/sources/hooks",
        None,
        &[("authorization", &format!("Basic {wrong}"))],
        event.to_string().as_bytes(),
    );
    assert_eq!(status, 401);
}

#[test]
fn an_unknown_source_is_404_whatever_the_token() {
    let api = Api::start();
    for token in [None, Some(SOURCE_TOKEN)] {
        let (status, body) = api.call("POST", "/v1/sources/nope", token, &[], b"{}");
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["message"], "unknown source \"nope\"");
    }
}
