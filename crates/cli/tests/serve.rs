//! `fleetbus serve` end to end: the real binary, real HTTP receivers, a real SMTP
//! sink and real programs on loopback, a real SQLite file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "serve/mdm_workflows.rs"]
mod mdm_workflows;

#[path = "serve/backpressure.rs"]
mod backpressure;

use fleetbus_test_support::smtp;

const TOKEN: &str = "test-api-token";
const SOURCE_TOKEN: &str = "test-source-token";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
            .args(["serve", "-c"])
            .arg(dir.join("fleetbus.yaml"))
            .args(["--listen", "127.0.0.1:0"])
            .env("FLEETBUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fleetbus");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.send(body).expect("request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn put_events(&self, entries: Value) -> Value {
        let (status, body) = self.post(
            "/v1/events",
            Some(TOKEN),
            "application/json",
            json!({"Entries": entries}).to_string().as_bytes(),
            &[],
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "fleetbus exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fleetbus did not stop within 20 s of SIGTERM");
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn write_config(dir: &Path, receiver: &str, extra_rules: &str) {
    std::fs::write(dir.join("api-token"), TOKEN).unwrap();
    std::fs::write(dir.join("source-token"), SOURCE_TOKEN).unwrap();
    let config = format!(
        r#"
server:
  data_dir: data
  api_tokens: ["${{file:api-token}}"]
  dedup_window: 10m
sources:
  - name: hooks
    kind: generic
    tokens: ["${{file:source-token}}"]
    mapping:
      source: $.system
      detail_type: $.kind
      resources: ["$.device"]
      id: $.uid
  - name: devlogs
    kind: unified-log
    tokens: ["${{file:source-token}}"]
rules:
  - name: all
    event_pattern: {{source: [{{anything-but: {{prefix: "fleetbus."}}}}]}}
    targets:
      - {{id: file, kind: log, path: all.log}}
  - name: outcomes
    event_pattern: {{source: [fleetbus.delivery]}}
    targets:
      - {{id: file, kind: log, path: outcomes.log}}
  - name: to-api
    event_pattern: {{detail-type: [Notify]}}
    targets:
      - id: api
        kind: http
        url: {receiver}/hook
        retry_policy: {{maximum_retry_attempts: 5}}
        input_transformer:
          input_paths_map: {{serial: $.detail.serial, type: $.detail-type}}
          input_template: '{{"device": <serial>, "what": <type>}}'
{extra_rules}
"#
    );
    std::fs::write(dir.join("fleetbus.yaml"), config).unwrap();
}

/// Rewrites the config [`write_config`] wrote, for a test's own settings.
fn edit_config(dir: &Path, f: impl FnOnce(String) -> String) {
    let path = dir.join("fleetbus.yaml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(config)).unwrap();
}

/// A loopback HTTP receiver whose answers the test sets.
struct Receiver {
    url: String,
    bodies: Arc<std::sync::Mutex<Vec<(Value, String)>>>,
    fail_next: Arc<AtomicUsize>,
    status: Arc<AtomicUsize>,
    /// When set, the `fail_next` answers are 429 with this `Retry-After`.
    retry_after: Arc<std::sync::Mutex<Option<String>>>,
    /// When each request arrived.
    hits: Arc<std::sync::Mutex<Vec<Instant>>>,
    _rt: tokio::runtime::Runtime,
}

fn receiver() -> Receiver {
    use axum::http::{HeaderMap, StatusCode};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bodies: Arc<std::sync::Mutex<Vec<(Value, String)>>> = Arc::default();
    let fail_next = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(AtomicUsize::new(200));
    let retry_after: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let hits: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (b, f, s) = (bodies.clone(), fail_next.clone(), status.clone());
    let (ra, h) = (retry_after.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (b, f, s, ra) = (b.clone(), f.clone(), s.clone(), ra.clone());
            h.lock().unwrap().push(Instant::now());
            async move {
                let mut answer = HeaderMap::new();
                if f.load(Ordering::SeqCst) > 0 {
                    f.fetch_sub(1, Ordering::SeqCst);
                    if let Some(after) = ra.lock().unwrap().clone() {
                        answer.insert("retry-after", after.parse().unwrap());
                        return (StatusCode::TOO_MANY_REQUESTS, answer);
                    }
                    return (StatusCode::SERVICE_UNAVAILABLE, answer);
                }
                let code = StatusCode::from_u16(s.load(Ordering::SeqCst) as u16).unwrap();
                if code.is_success() {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    b.lock()
                        .unwrap()
                        .push((serde_json::from_str(&body).unwrap_or(Value::Null), key));
                }
                (code, answer)
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        bodies,
        fail_next,
        status,
        retry_after,
        hits,
        _rt: rt,
    }
}

#[test]
fn ingest_auth_limits_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());

    // PutEvents: a batch, answered entry by entry.
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

    // Authentication: none, wrong, and a source token on the API.
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

    // Size limits: an entry over 256 KiB is refused whole.
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

    // Full envelopes as NDJSON, CloudEvents structured and binary.
    let ndjson = "{\"source\":\"a\",\"detail-type\":\"One\",\"id\":\"nd-1\"}\n{\"source\":\"a\",\"detail-type\":\"Two\",\"detail\":5}\n";
    let (status, body) = server.post(
        "/v1/buses/default/events",
        Some(TOKEN),
        "application/x-ndjson",
        ndjson.as_bytes(),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["FailedEntryCount"], 1);
    assert_eq!(
        body["Entries"][1]["ErrorMessage"],
        "detail: must be a JSON object, not a number"
    );
    let ce = json!({"specversion": "1.0", "id": "ce-1", "source": "/okta", "type": "user.lifecycle.deactivate", "subject": "user/jdoe@example.com", "data": {"actor": "admin"}});
    let (status, body) = server.post(
        "/v1/buses/default/events",
        Some(TOKEN),
        "application/cloudevents+json",
        ce.to_string().as_bytes(),
        &[],
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
    let (status, body) = server.post(
        "/v1/buses/nope/events",
        Some(TOKEN),
        "application/json",
        b"{}",
        &[],
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.post(
        "/v1/buses/default/events",
        Some(TOKEN),
        "application/json",
        b"{\"source\": ",
        &[],
    );
    assert_eq!(status, 400, "{body}");

    // A generic source maps its body; a repeated id is accepted and dropped.
    let hook = json!({"system": "jamf", "kind": "ComputerCheckIn", "device": "device/C02C", "uid": "j-1", "extra": 1}).to_string();
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

    // Every accepted event reaches the catch-all log once; duplicates do not.
    let log = dir.path().join("all.log");
    wait_for("6 events in all.log", Duration::from_secs(10), || {
        lines(&log).len() >= 6
    });
    std::thread::sleep(Duration::from_millis(300));
    let logged = lines(&log);
    let ids: Vec<&str> = logged.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(logged.len(), 6, "{ids:?}");
    assert_eq!(ids.iter().filter(|i| **i == "j-1").count(), 1);
    let hooked = logged.iter().find(|e| e["id"] == "j-1").unwrap();
    assert_eq!(hooked["resources"], json!(["device/C02C"]));
    assert_eq!(hooked["detail"]["extra"], 1);

    // Each delivery's outcome is an event linked to its cause, on the device's timeline.
    wait_for("outcomes", Duration::from_secs(10), || {
        lines(&dir.path().join("outcomes.log")).len() >= 6
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
fn retries_dead_letters_and_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());

    // Two 503s, then success: delivered once, with a stable idempotency key.
    rx.fail_next.store(2, Ordering::SeqCst);
    let answer = server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02R\"}"}]),
    );
    let id = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    wait_for("retried delivery", Duration::from_secs(15), || {
        !rx.bodies.lock().unwrap().is_empty()
    });
    {
        let got = rx.bodies.lock().unwrap();
        assert_eq!(got[0].0, json!({"device": "C02R", "what": "Notify"}));
        assert_eq!(got[0].1, format!("{id}:to-api:api"));
    }
    wait_for("success outcome", Duration::from_secs(20), || {
        lines(&dir.path().join("outcomes.log"))
            .iter()
            .any(|e| e["detail"]["target"] == "api" && e["detail"]["attempts"] == 3)
    });

    // A 400 is permanent: straight to the dead-letter queue with the reason.
    rx.status.store(400, Ordering::SeqCst);
    server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02D\"}"}]),
    );
    let fleetbus = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
            .args(args)
            .args([
                "-c",
                dir.path().join("fleetbus.yaml").to_str().unwrap(),
                "--url",
                &server.base,
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    wait_for("dead letter", Duration::from_secs(10), || {
        fleetbus(&["dlq", "list"]).1.contains("permanent failure")
    });
    let (code, out, _) = fleetbus(&["dlq", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("rule to-api  target api") && out.contains("400"),
        "{out}"
    );
    let failed = lines(&dir.path().join("outcomes.log"));
    assert!(
        failed
            .iter()
            .any(|e| e["detail-type"] == "Target Delivery Failed"),
        "{failed:?}"
    );

    // Redrive once the receiver is fixed.
    rx.status.store(200, Ordering::SeqCst);
    let (code, out, err) = fleetbus(&["dlq", "redrive"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("redriven 1 job(s)"), "{out}");
    wait_for("redriven delivery", Duration::from_secs(10), || {
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|(b, _)| b["device"] == "C02D")
    });
    assert!(fleetbus(&["dlq", "list"]).1.contains("empty"));
    let (code, _, err) = fleetbus(&["dlq", "redrive"]);
    assert_eq!(code, Some(2), "{err}");
    server.stop();
}

#[test]
fn a_receivers_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let extra = format!(
        r#"
  - name: impatient
    event_pattern: {{detail-type: [Hurry]}}
    targets:
      - id: short-lived
        kind: http
        url: {}/hook
        retry_policy: {{maximum_event_age: 60s}}
"#,
        rx.url
    );
    write_config(dir.path(), &rx.url, &extra);
    let server = Server::start(dir.path());

    // 429 with Retry-After: 3, then success: the second attempt waits the 3 s
    // (backoff alone would retry within 1 s).
    *rx.retry_after.lock().unwrap() = Some("3".into());
    rx.fail_next.store(1, Ordering::SeqCst);
    server.put_events(
        json!([{"Source": "s", "DetailType": "Notify", "Detail": "{\"serial\":\"C02W\"}"}]),
    );
    wait_for(
        "delivery after Retry-After",
        Duration::from_secs(20),
        || !rx.bodies.lock().unwrap().is_empty(),
    );
    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2, "{hits:?}");
    let waited = hits[1] - hits[0];
    assert!(
        waited >= Duration::from_millis(2900),
        "retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "retried after {waited:?}");

    // Asked to come back after the event's maximum age: dead-lettered at once,
    // saying why, instead of an attempt that could only fail.
    *rx.retry_after.lock().unwrap() = Some("3600".into());
    rx.fail_next.store(1, Ordering::SeqCst);
    server.put_events(json!([{"Source": "s", "DetailType": "Hurry", "Detail": "{}"}]));
    wait_for("dead letter", Duration::from_secs(10), || {
        let (_, dlq) = server.get("/v1/dlq");
        dlq.to_string().contains("Retry-After")
    });
    let (_, dlq) = server.get("/v1/dlq");
    let text = dlq.to_string();
    assert!(
        text.contains(
            "the receiver asked to wait 3600s (Retry-After), past the maximum event age 60s"
        ) && text.contains("http 429"),
        "{text}"
    );
    assert_eq!(rx.hits.lock().unwrap().len(), 3);
    server.stop();
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
fn exec_emits_events_and_the_hop_limit_stops_loops() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let extra = r#"
  - name: run-handler
    event_pattern: {detail-type: [Run]}
    targets:
      - id: handler
        kind: exec
        command: ["/bin/sh", "-c", "cat > /dev/null; echo '{\"source\":\"handler\",\"detail-type\":\"Handled\",\"detail\":{\"by\":\"'$FLEETBUS_RULE'\"}}'; echo not-json"]
        emit_events: true
  - name: loop
    event_pattern: {detail-type: [Loop]}
    targets:
      - {id: again, kind: bus, bus: default}
"#;
    write_config(dir.path(), &rx.url, extra);
    let server = Server::start(dir.path());
    let answer = server.put_events(json!([
        {"Source": "s", "DetailType": "Run", "Detail": "{}"},
        {"Source": "s", "DetailType": "Loop", "Detail": "{}"},
    ]));
    let run_id = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    let log = dir.path().join("all.log");
    wait_for("handled event", Duration::from_secs(10), || {
        lines(&log).iter().any(|e| e["detail-type"] == "Handled")
    });
    let (_, timeline) = server.get(&format!(
        "/v1/events/{}",
        lines(&log)
            .iter()
            .find(|e| e["detail-type"] == "Handled")
            .unwrap()["id"]
            .as_str()
            .unwrap()
    ));
    assert_eq!(timeline["meta"]["causation_id"], run_id.as_str());
    assert_eq!(timeline["event"]["detail"]["by"], "run-handler");

    // The loop re-puts each event; hop 8 is the last accepted, then it stops.
    wait_for("loop to stop", Duration::from_secs(15), || {
        lines(&log)
            .iter()
            .filter(|e| e["detail-type"] == "Loop")
            .count()
            >= 9
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        lines(&log)
            .iter()
            .filter(|e| e["detail-type"] == "Loop")
            .count(),
        9
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

#[test]
fn email_over_starttls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    // The sink's runtime lives as long as the test.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pki = smtp::test_pki(&["127.0.0.1"]);
    let (port, mails) = rt.block_on(smtp::start(
        smtp::Mode::StartTls(pki.acceptor),
        "250 ok\r\n",
        Some("PLAIN"),
    ));
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("smtp-password"), "s3cret pass").unwrap();
    // Two targets on one sink: `mail` trusts the test CA, `stranger` only the
    // platform's roots, which do not know it.
    let target = |id: &str, ca_file: &str| {
        format!(
            r#"
      - id: {id}
        kind: email
        from: fleetbus <bot@example.com>
        to: [admin@example.com]
        subject: "fleetbus: <detail-type> <$.detail.device.serial>"
        smtp:
          host: 127.0.0.1
          port: {port}
          tls: starttls
          username: fleetbus
          password: ${{file:smtp-password}}{ca_file}"#
        )
    };
    let extra = format!(
        "  - name: mail-admins\n    event_pattern: {{detail-type: [Device Enrolled]}}\n    targets:{}{}\n",
        target("mail", "\n          ca_file: ca.pem"),
        target("stranger", ""),
    );
    write_config(dir.path(), &rx.url, &extra);
    let server = Server::start(dir.path());

    let answer = server.put_events(json!([{
        "Source": "com.example.mdm",
        "DetailType": "Device Enrolled",
        "Detail": "{\"device\":{\"serial\":\"C02MAIL\"}}",
        "Resources": ["device/C02MAIL"],
    }]));
    let id = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();

    // Delivered over TLS, authenticated with the password from the secret file.
    wait_for("the mail", Duration::from_secs(15), || {
        !mails.lock().unwrap().is_empty()
    });
    let m = mails.lock().unwrap()[0].clone();
    assert!(m.tls, "not encrypted: {m:?}");
    assert_eq!(m.auth.as_deref(), Some("fleetbus:s3cret pass"), "{m:?}");
    // EHLO in plain, STARTTLS, EHLO again over TLS.
    assert_eq!(m.ehlo, 2, "{m:?}");
    assert!(m.from.contains("bot@example.com"), "{m:?}");
    assert_eq!(m.rcpt, vec!["<admin@example.com>"], "{m:?}");
    for expected in [
        "Subject: fleetbus: Device Enrolled C02MAIL".to_owned(),
        // The idempotency key `<event id>:<rule>:<target>`, made a Message-ID.
        format!("Message-ID: <{id}.mail-admins.mail@fleetbus>"),
        // The body is the event, pretty-printed.
        format!("\"id\": \"{id}\""),
        "\"serial\": \"C02MAIL\"".to_owned(),
    ] {
        assert!(
            m.data.contains(&expected),
            "{expected:?} not in\n{}",
            m.data
        );
    }

    let outcomes = dir.path().join("outcomes.log");
    wait_for("the success outcome", Duration::from_secs(10), || {
        lines(&outcomes).iter().any(|e| {
            e["detail-type"] == "Target Delivery Succeeded" && e["detail"]["target"] == "mail"
        })
    });
    let succeeded = lines(&outcomes)
        .into_iter()
        .find(|e| {
            e["detail-type"] == "Target Delivery Succeeded" && e["detail"]["target"] == "mail"
        })
        .unwrap();
    assert_eq!(succeeded["detail"]["rule"], "mail-admins", "{succeeded}");
    assert_eq!(succeeded["detail"]["event-id"], id.as_str(), "{succeeded}");
    assert_eq!(succeeded["detail"]["status"], "smtp 250", "{succeeded}");
    assert_eq!(succeeded["detail"]["attempts"], 1, "{succeeded}");

    // Without ca_file the certificate is refused: a permanent failure, so
    // dead-lettered on the first attempt (the default retry policy would
    // otherwise keep trying for a day), saying why.
    wait_for("the dead letter", Duration::from_secs(15), || {
        server.get("/v1/dlq").1.to_string().contains("stranger")
    });
    let (status, dlq) = server.get("/v1/dlq");
    assert_eq!(status, 200, "{dlq}");
    let entries = dlq["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{dlq}");
    let dead = &entries[0];
    assert_eq!(
        (
            dead["event_id"].as_str(),
            dead["rule"].as_str(),
            dead["target"].as_str()
        ),
        (Some(id.as_str()), Some("mail-admins"), Some("stranger")),
        "{dead}"
    );
    assert_eq!(dead["attempts"], 1, "{dead}");
    let error = dead["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "the TLS certificate of 127.0.0.1:{port} was refused"
        )) && error.contains("UnknownIssuer")
            && error.contains("set smtp.ca_file"),
        "{error}"
    );
    wait_for("the failure outcome", Duration::from_secs(10), || {
        lines(&outcomes).iter().any(|e| {
            e["detail-type"] == "Target Delivery Failed" && e["detail"]["target"] == "stranger"
        })
    });
    // Nothing reached the sink for it: still the one message.
    assert_eq!(mails.lock().unwrap().len(), 1);
    server.stop();
}
