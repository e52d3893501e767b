//! What the `serve` tests share: the binary started on a config in a temporary
//! directory, a loopback HTTP receiver whose answers a test sets, and waiting helpers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const TOKEN: &str = "test-api-token";
pub const SOURCE_TOKEN: &str = "test-source-token";

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Everything the server wrote to stderr so far (also echoed to the test's).
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
            .args(["serve", "-c"])
            .arg(dir.join("fleetbus.yaml"))
            .args(["--listen", "127.0.0.1:0"])
            .env("FLEETBUS_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fleetbus");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
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
            stderr,
        }
    }

    pub fn post(
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

    pub fn get(&self, path: &str) -> (u16, Value) {
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

    pub fn put_events(&self, entries: Value) -> Value {
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

    /// The lines of the server's stderr that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }

    pub fn stop(mut self) {
        self.sigterm();
        let status = self
            .exited_within(Duration::from_secs(20))
            .expect("fleetbus did not stop within 20 s of SIGTERM");
        assert!(status.success(), "fleetbus exited with {status}");
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status if the process ends within `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
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

pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn write_config(dir: &Path, receiver: &str, extra_rules: &str) {
    std::fs::write(dir.join("api-token"), TOKEN).unwrap();
    std::fs::write(dir.join("source-token"), SOURCE_TOKEN).unwrap();
    std::fs::write(dir.join("device-key"), "test-device-key").unwrap();
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
      resources: ["$.device", "user/{{$.user}}"]
      id: $.uid
  - name: devlogs
    kind: unified-log
    tokens: ["${{file:source-token}}"]
  - name: devlogs-bound
    kind: unified-log
    device_key: "${{file:device-key}}"
  - name: jamf
    kind: jamf
    tokens: ["${{file:source-token}}"]
  - name: jamf-header
    kind: jamf
    tokens: ["${{file:source-token}}"]
    token_header: X-Jamf-Token
  - name: okta
    kind: okta
    tokens: ["${{file:source-token}}"]
    token_header: Authorization
  - name: fleet
    kind: fleet
    tokens: ["${{file:source-token}}"]
  - name: aws
    kind: eventbridge
    tokens: ["${{file:source-token}}"]
    token_header: X-Api-Key
  - name: signed
    kind: generic
    hmac:
      secret: "${{file:source-token}}"
      header: X-Hub-Signature-256
      prefix: "sha256="
    mapping: {{source: $.system, detail_type: $.kind, resources: ["$.device"]}}
  - name: slack-signed
    kind: generic
    hmac:
      secret: "${{file:source-token}}"
      header: X-Slack-Signature
      prefix: "v0="
      message: "v0:{{timestamp}}:{{body}}"
      timestamp_header: X-Slack-Request-Timestamp
    mapping: {{source: $.system, detail_type: $.kind, resources: ["$.device"]}}
  - name: nanomdm-signed
    kind: nanomdm
    hmac:
      secret: "${{file:source-token}}"
      header: X-Hmac-Signature
      encoding: base64
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

/// A server on the shared test config, with its directory and receiver kept alive.
pub fn start() -> (tempfile::TempDir, Receiver, Server) {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, "");
    let server = Server::start(dir.path());
    (dir, rx, server)
}

/// Rewrites the config [`write_config`] wrote, for a test's own settings.
pub fn edit_config(dir: &Path, f: impl FnOnce(String) -> String) {
    let path = dir.join("fleetbus.yaml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(config)).unwrap();
}

/// A loopback HTTP receiver whose answers the test sets.
pub struct Receiver {
    pub url: String,
    pub bodies: Arc<std::sync::Mutex<Vec<(Value, String)>>>,
    pub fail_next: Arc<AtomicUsize>,
    pub status: Arc<AtomicUsize>,
    /// When set, the `fail_next` answers are 429 with this `Retry-After`.
    pub retry_after: Arc<std::sync::Mutex<Option<String>>>,
    /// When each request arrived.
    pub hits: Arc<std::sync::Mutex<Vec<Instant>>>,
    _rt: tokio::runtime::Runtime,
}

pub fn receiver() -> Receiver {
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

/// The events on `resource`'s timeline that senders posted: without the outcome
/// events fleetbus adds as deliveries finish, whose number at any moment depends
/// on timing.
pub fn received(server: &Server, resource: &str) -> Vec<Value> {
    timeline(server, resource)
        .into_iter()
        .filter(|e| e["event"]["source"] != "fleetbus.delivery")
        .collect()
}

/// Merges `fields` into the asset record of device `serial` (`PUT /v1/assets/devices/{serial}`).
pub fn put_device(server: &Server, serial: &str, fields: Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .put(format!("{}/v1/assets/devices/{serial}", server.base))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(fields)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// The events on `resource`'s timeline, newest first (up to 1,000).
pub fn timeline(server: &Server, resource: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/v1/timeline?resource={resource}&limit=1000"));
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Runs `fleetbus validate` on `yaml` (written as `c.yaml` in a fresh directory):
/// the exit code and everything it printed.
pub fn validate_yaml(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["validate", "-c"])
        .arg(dir.path().join("c.yaml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}
