//! The listener's bounds: a connection cap, a deadline for request heads (and idle
//! keep-alive), a deadline per request, and a drain deadline at shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fleetbus_server::Limits;

use crate::support::{Api, Options, TOKEN};

fn limits() -> Limits {
    Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        drain_timeout: Duration::from_millis(300),
    }
}

fn api() -> Api {
    Api::with(Options {
        limits: limits(),
        ..Options::default()
    })
}

fn connect(api: &Api) -> TcpStream {
    let conn = TcpStream::connect(api.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

/// Reads until the server closes the connection; what it sent before.
fn read_to_close(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match conn.read_to_end(&mut out) {
        Ok(_) => {}
        // A close with unread data in the server's buffer arrives as a reset.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the connection open: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_connection_beyond_the_cap_is_closed_at_once_and_the_others_still_serve() {
    let api = api();
    // Hold the cap with connections that have sent part of a head.
    let mut held: Vec<_> = (0..4).map(|_| connect(&api)).collect();
    for c in &mut held {
        c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut extra = connect(&api);
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(read_to_close(&mut extra), "", "answered beyond the cap");
    // Finishing a held head gets an answer on that connection.
    held[0].write_all(b"host: x\r\n\r\n").unwrap();
    let mut answer = [0u8; 12];
    held[0].read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
}

#[test]
fn a_connection_that_sends_no_head_is_closed_at_the_header_deadline() {
    let api = api();
    let mut idle = connect(&api);
    assert_eq!(read_to_close(&mut idle), "");
    let mut partial = connect(&api);
    partial.write_all(b"POST /v1/events HTTP/1.1\r\n").unwrap();
    let answer = read_to_close(&mut partial);
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    // Closed connections free their slots: all four can be used again.
    for _ in 0..4 {
        let (status, _) = api.call("GET", "/healthz", None, &[], b"");
        assert_eq!(status, 200);
    }
}

#[test]
fn a_keep_alive_connection_left_idle_is_closed_at_the_header_deadline() {
    let api = api();
    let mut conn = connect(&api);
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = read_to_close(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_body_that_never_completes_is_answered_408() {
    let api = api();
    let mut conn = connect(&api);
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"Entries\""
    )
    .unwrap();
    let answer = read_to_close(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("RequestTimeout"), "{answer}");
}

#[test]
fn shutdown_with_a_half_sent_request_ends_at_the_drain_deadline() {
    let api = api();
    let mut conn = connect(&api);
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: 100\r\n\r\n{{"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        api.stop_within(Duration::from_secs(5)),
        "the listener did not return after the drain deadline"
    );
}
