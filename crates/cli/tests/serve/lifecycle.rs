//! The process and its data over time: retention, reload under load, kill -9, one
//! process per data directory, SIGTERM draining to a deadline and a second SIGTERM.

use std::time::Duration;

use serde_json::{json, Value};

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::support::*;

/// A PutEvents request whose body never arrives in full.
fn half_sent_request(server: &Server) -> TcpStream {
    let mut conn = TcpStream::connect(server.base.strip_prefix("http://").unwrap()).unwrap();
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"Entries\": ["
    )
    .unwrap();
    conn
}

#[test]
fn retention_prunes_old_events_and_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    edit_config(dir.path(), |c| {
        c.replace("dedup_window: 10m", "dedup_window: 1s")
            + "retention:\n  archive: 2s\n  deliveries: 2s\n"
    });
    let server = Server::start(dir.path());

    // One delivered event and one whose delivery is dead-lettered (400).
    let sent = server.put_events(json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02P\"}", "Resources": ["device/C02P"]}]));
    let delivered = sent["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    wait_for("delivery", Duration::from_secs(10), || {
        !rx.bodies.lock().unwrap().is_empty()
    });
    rx.status.store(400, Ordering::SeqCst);
    let sent = server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02Q\"}"}]),
    );
    let dead = sent["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    wait_for("dead letter", Duration::from_secs(10), || {
        server.get("/v1/dlq").1.to_string().contains(&dead)
    });
    assert_eq!(server.get(&format!("/v1/events/{delivered}")).0, 200);

    // Past both retentions, the archive, the timeline and the dead letter are gone.
    wait_for("pruning", Duration::from_secs(15), || {
        server.get(&format!("/v1/events/{delivered}")).0 == 404
            && server.get(&format!("/v1/events/{dead}")).0 == 404
    });
    let (_, timeline) = server.get("/v1/timeline?resource=device/C02P");
    assert!(!timeline.to_string().contains(&delivered), "{timeline}");
    assert!(!server.get("/v1/dlq").1.to_string().contains(&dead));
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("fleetbus_store_pruned_total{kind=\"events\"}"),
        "{metrics}"
    );
    server.stop();
}

#[test]
fn reload_mid_stream_loses_nothing_and_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());
    let mut sent = Vec::new();
    for round in 0..6 {
        let entries: Vec<Value> = (0..20).map(|i| json!({"Source": "r", "DetailType": format!("R{round}"), "Detail": json!({"i": i}).to_string()})).collect();
        let answer = server.put_events(Value::Array(entries));
        sent.extend(
            answer["Entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["EventId"].as_str().unwrap().to_owned()),
        );
        if round == 2 {
            write_config(dir.path(), &rx.url, "  - name: added\n    event_pattern: {source: [r]}\n    targets:\n      - {id: f, kind: log, path: added.log}\n");
            let (status, body) = server.post(
                "/v1/admin/reload",
                Some(TOKEN),
                "application/json",
                b"",
                &[],
            );
            assert_eq!(status, 200, "{body}");
        }
    }
    // A broken config is refused whole and the running one stays.
    std::fs::write(dir.path().join("fleetbus.yaml"), "rules: 5\n").unwrap();
    let (status, body) = server.post(
        "/v1/admin/reload",
        Some(TOKEN),
        "application/json",
        b"",
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fleetbus.yaml:1:8: rules: wrong type"),
        "{body}"
    );

    let log = dir.path().join("all.log");
    wait_for("all 120 events", Duration::from_secs(15), || {
        lines(&log).len() >= 120
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut got: Vec<String> = lines(&log)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(
        got, sent,
        "each event delivered exactly once to the unchanged rule"
    );
    wait_for("added rule's events", Duration::from_secs(10), || {
        lines(&dir.path().join("added.log")).len() >= 60
    });
    assert_eq!(lines(&dir.path().join("added.log")).len(), 60);
    server.stop();
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());
    let base = server.base.clone();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let entries: Vec<Value> = (0..10).map(|i| json!({"Source": "load", "DetailType": "L", "Detail": json!({"t": t, "n": n, "i": i}).to_string()})).collect();
                    n += 1;
                    let Ok(mut resp) = agent.post(format!("{base}/v1/events")).header("Authorization", format!("Bearer {TOKEN}")).send(json!({"Entries": entries}).to_string()) else { break };
                    if resp.status() != 200 {
                        continue;
                    }
                    let Ok(text) = resp.body_mut().read_to_string() else { break };
                    let v: Value = serde_json::from_str(&text).unwrap();
                    acked.lock().unwrap().extend(v["Entries"].as_array().unwrap().iter().filter_map(|e| e["EventId"].as_str().map(str::to_owned)));
                }
            })
        })
        .collect();
    // A moment under load that varies run to run.
    let millis = 300 + (std::process::id() as u64 % 700);
    std::thread::sleep(Duration::from_millis(millis));
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no event was acknowledged before the kill"
    );

    let server = Server::start(dir.path());
    for id in acked.iter().step_by((acked.len() / 50).max(1)) {
        let (status, body) = server.get(&format!("/v1/events/{id}"));
        assert_eq!(status, 200, "acknowledged event {id} lost: {body}");
    }
    let log = dir.path().join("all.log");
    wait_for(
        "every acknowledged event delivered",
        Duration::from_secs(30),
        || {
            let got: std::collections::HashSet<String> = lines(&log)
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            acked.iter().all(|id| got.contains(id))
        },
    );
    eprintln!(
        "kill -9 after {millis} ms: {} acknowledged events, all stored and delivered",
        acked.len()
    );
    server.stop();
}

#[test]
fn sigterm_with_a_half_sent_request_exits_after_the_drain_deadline() {
    let (_dir, _rx, mut serve) = start();
    let _conn = half_sent_request(&serve);
    std::thread::sleep(Duration::from_millis(200));
    serve.sigterm();
    // The drain deadline is 10 s; the engine's grace for deliveries 10 s more.
    let status = serve
        .exited_within(Duration::from_secs(40))
        .expect("fleetbus serve never exited with a request half sent");
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let (_dir, _rx, mut serve) = start();
    let _conn = half_sent_request(&serve);
    std::thread::sleep(Duration::from_millis(200));
    serve.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        serve.exited_within(Duration::ZERO).is_none(),
        "exited before the drain deadline with a request in flight"
    );
    serve.sigterm();
    let status = serve
        .exited_within(Duration::from_secs(5))
        .expect("a second SIGTERM was ignored");
    assert_eq!(status.code(), Some(130), "{status}");
}

#[test]
fn a_second_serve_on_the_same_data_directory_is_refused_naming_the_holder() {
    let (dir, _rx, first) = start();
    let config = dir.path().join("fleetbus.yaml");
    let second = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["serve", "-c"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("FLEETBUS_LOG", "warn")
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second serve started");
    let stderr = String::from_utf8_lossy(&second.stderr);
    let data = dir.path().join("data");
    assert!(
        stderr.contains(&format!(
            "data directory {} is in use by another fleetbus serve (pid {})",
            data.display(),
            first.child.id()
        )),
        "{stderr}"
    );
}

#[test]
fn storage_path_puts_the_event_store_where_the_config_says() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    edit_config(dir.path(), |c| {
        format!("{c}\nstorage:\n  kind: sqlite\n  path: events\n")
    });
    let server = Server::start(dir.path());
    server.put_events(json!([{"Source": "s", "DetailType": "t", "Detail": "{}"}]));
    server.stop();
    let files: Vec<String> = std::fs::read_dir(dir.path().join("events"))
        .expect("the storage directory exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.ends_with(".db")), "{files:?}");
    let data: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !data.iter().any(|f| f == "events.db" || f == "fleetbus.db"),
        "{data:?}"
    );
}

/// Logs written to a pipe or a file carry no ANSI colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["serve", "-c"])
        .arg(dir.path().join("fleetbus.yaml"))
        .args(["--listen", "127.0.0.1:0"])
        .env("FLEETBUS_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on "), "{line:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child.wait().unwrap();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in: {logs:?}");
}
