//! Backpressure through the real binary: past `server.max_backlog` pending
//! deliveries, ingest answers 429 with `Retry-After` and `/readyz` is not ready;
//! once the receiver recovers and the backlog drains, intake resumes and every
//! accepted event is delivered.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use super::support::{edit_config, receiver, wait_for, write_config, Server, TOKEN};

/// A PutEvents call: status, `Retry-After` header, body.
fn put(server: &Server, serial: &str) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let entries = json!({"Entries": [{"Source": "s", "DetailType": "Notify", "Detail": json!({"serial": serial}).to_string()}]});
    let mut resp = agent
        .post(format!("{}/v1/events", server.base))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(entries.to_string())
        .expect("request");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn readyz(server: &Server) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("{}/readyz", server.base))
        .call()
        .expect("request")
        .status()
        .as_u16()
}

/// The `fleetbus_delivery_backlog` gauge.
fn backlog(server: &Server) -> f64 {
    let (_, metrics) = server.get("/metrics");
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fleetbus_delivery_backlog "))
        .expect("the backlog gauge")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_backlog_answers_429_until_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    edit_config(dir.path(), |c| {
        c.replace("dedup_window: 10m", "dedup_window: 10m\n  max_backlog: 3")
    });
    let server = Server::start(dir.path());

    // The receiver fails, so the api deliveries stay pending and fill the backlog.
    rx.fail_next.store(usize::MAX / 2, Ordering::SeqCst);
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..50 {
        let serial = format!("C02BP{i:03}");
        match put(&server, &serial) {
            (200, _, body) => {
                assert_eq!(body["FailedEntryCount"], 0, "{body}");
                accepted.push(serial);
            }
            (429, retry_after, body) => {
                refused = Some((retry_after, body));
                break;
            }
            other => panic!("unexpected answer {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (retry_after, body) = refused.expect("no 429 although the receiver kept failing");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "ThrottlingException", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("delivery backlog is full (") && message.ends_with(", limit 3)"),
        "{body}"
    );
    // Room is reserved per request, so the backlog never passes the limit (readiness
    // may read 200 again as soon as the next small request would fit).
    let pending = backlog(&server);
    assert!(pending <= 3.0, "backlog {pending} past the limit");
    assert!(!accepted.is_empty(), "{accepted:?}");

    // The receiver recovers: the retries get through, the backlog drains and
    // intake resumes; nothing accepted was dropped.
    rx.fail_next.store(0, Ordering::SeqCst);
    wait_for("the backlog to drain", Duration::from_secs(30), || {
        backlog(&server) == 0.0
    });
    assert_eq!(readyz(&server), 200);
    assert_eq!(put(&server, "C02BPLAST").0, 200);
    accepted.push("C02BPLAST".into());
    wait_for(
        "every accepted event delivered",
        Duration::from_secs(30),
        || {
            let got = rx.bodies.lock().unwrap();
            accepted
                .iter()
                .all(|s| got.iter().any(|(b, _)| b["device"] == s.as_str()))
        },
    );
    server.stop();
}

/// Ordinary load (4 clients, PutEvents batches of 10, for 8 s, every event
/// delivered to an HTTP receiver) neither wedges intake at 429 nor delivers
/// anything twice: afterwards the backlog is 0, /readyz is 200 and each event
/// reached the receiver exactly once (by its idempotency key).
#[test]
fn steady_load_never_wedges_and_delivers_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = std::sync::Arc::new(Server::start(dir.path()));
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let server = server.clone();
            std::thread::spawn(move || {
                let mut accepted = 0usize;
                let mut n = 0;
                while std::time::Instant::now() < deadline {
                    let entries: Vec<Value> = (0..10)
                        .map(|i| json!({"Source": "load", "DetailType": "Notify", "Detail": json!({"serial": format!("C{c}-{n}-{i}")}).to_string()}))
                        .collect();
                    n += 1;
                    let (status, body) = server.post(
                        "/v1/events",
                        Some(TOKEN),
                        "application/json",
                        json!({"Entries": entries}).to_string().as_bytes(),
                        &[],
                    );
                    match status {
                        200 => accepted += 10 - body["FailedEntryCount"].as_u64().unwrap_or(0) as usize,
                        // Backpressure is allowed under load; it must clear.
                        429 => std::thread::sleep(Duration::from_millis(50)),
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(accepted > 100, "{accepted}");
    wait_for(
        "every accepted event delivered",
        Duration::from_secs(60),
        || rx.bodies.lock().unwrap().len() >= accepted,
    );
    std::thread::sleep(Duration::from_millis(500));
    let keys: Vec<String> = rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(_, k)| k.clone())
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "deliveries repeated");
    assert_eq!(keys.len(), accepted, "deliveries lost or extra");
    assert_eq!(backlog(&server), 0.0);
    assert_eq!(readyz(&server), 200);
    assert_eq!(put(&server, "C02AFTER").0, 200, "intake is not wedged");
    let server = std::sync::Arc::try_unwrap(server).ok().unwrap();
    server.stop();
}

/// A request of more than 10,000 entries is refused whole (413), nothing stored.
#[test]
fn a_request_over_the_entry_cap_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());
    let entries: Vec<Value> = (0..10_001)
        .map(|i| json!({"Source": "cap", "DetailType": "X", "Detail": "{}", "Resources": [format!("device/CAP{}", i % 2)]}))
        .collect();
    let (status, body) = server.post(
        "/v1/events",
        Some(TOKEN),
        "application/json",
        json!({"Entries": entries}).to_string().as_bytes(),
        &[],
    );
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("10000"),
        "{body}"
    );
    let (_, page) = server.get("/v1/events?source=cap&limit=5");
    assert_eq!(
        page["events"],
        json!([]),
        "nothing of a refused request is stored"
    );
    server.stop();
}
