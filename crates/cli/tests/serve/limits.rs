//! What unauthenticated or idle clients can hold, through the real binary: the body
//! of an unauthenticated request is never read, idle connections are closed at the
//! header deadline, and connections beyond `server.max_connections` are closed at
//! once while the server keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::support::*;

fn start_with(limits: &str) -> (tempfile::TempDir, Receiver, Server) {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    edit_config(dir.path(), |c| {
        c.replacen(
            "  dedup_window: 10m\n",
            &format!("  dedup_window: 10m\n{limits}"),
            1,
        )
    });
    let server = Server::start(dir.path());
    (dir, rx, server)
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the peer closes or `limit` passes; returns what came and when.
fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn an_unauthenticated_request_is_answered_before_its_body_is_sent() {
    let (_dir, _rx, server) = start_with("");
    let mut s = connect(&server);
    // A 4 MB body announced, a few bytes sent, the rest never.
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: fleetbus\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n{\"Entries\":[").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).expect("an answer without the body");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    server.stop();
}

#[test]
fn idle_connections_close_at_the_header_deadline_and_the_cap_holds() {
    let (_dir, _rx, server) = start_with("  header_timeout: 1s\n  max_connections: 4\n");
    // Silent: closed at the deadline, not held.
    let mut idle = connect(&server);
    let (_, after) = read_until_closed(&mut idle);
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(5),
        "{after:?}"
    );

    // Four held open (each sends half a head, renewed under the deadline by the
    // test's pace); a fifth is closed at once.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fifth = connect(&server);
    let (text, after) = read_until_closed(&mut fifth);
    assert!(
        after < Duration::from_millis(800),
        "the fifth waited {after:?}: {text}"
    );
    // Once they go, the server serves again.
    held.clear();
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
    drop(fifth);
    drop(idle);
    server.stop();
}

#[test]
fn limits_are_located_config_errors() {
    let (code, text) = validate_yaml(
        "server:\n  max_connections: 0\n  header_timeout: soon\n  drain_timeout: 0s\n",
    );
    assert_eq!(code, Some(2), "{text}");
    for want in [
        "c.yaml:2:20: server.max_connections: must be at least 1",
        "c.yaml:3:19: server.header_timeout: \"soon\" is not a duration",
        "c.yaml:4:18: server.drain_timeout: must be longer than 0s",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// Every error answer is JSON with a code and a message, the framework's own
/// refusals included.
#[test]
fn framework_refusals_are_json_errors_too() {
    let (_dir, _rx, server) = start_with("  max_body_bytes: 2048\n");
    let big = format!(
        "{{\"Entries\": [{{\"Source\": \"s\", \"DetailType\": \"X\", \"Detail\": \"{}\"}}]}}",
        "x".repeat(4000)
    );
    let (status, body) = server.post(
        "/v1/events",
        Some(TOKEN),
        "application/json",
        big.as_bytes(),
        &[],
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "RequestTooLarge", "{body}");
    assert_eq!(
        body["error"]["message"],
        "the request body is larger than server.max_body_bytes (2048 bytes)"
    );
    let (status, body) = server.get("/v1/timeline");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationException", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resource"),
        "{body}"
    );
    let (status, body) = server.get("/v1/no-such-thing");
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"]["message"],
        "no such endpoint \"/v1/no-such-thing\""
    );
    let (status, body) = server.get("/v1/dlq/redrive");
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "MethodNotAllowed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("GET is not allowed at /v1/dlq/redrive"),
        "{body}"
    );
    server.stop();
}
