//! The three shipped MDM workflows end to end: the real binary, a loopback HTTP
//! server playing NanoMDM (checks the API key and the command plist, answers as
//! NanoMDM does) whose webhooks the test sends back, a Slack receiver, and the asset
//! store filled through `fleetbus assets import`.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::support::{receiver, timeline, wait_for, Server, SOURCE_TOKEN, TOKEN};

pub(super) const MDM_KEY: &str = "nanomdm-test-key";

/// One enqueue call the fake NanoMDM accepted.
#[derive(Debug, Clone)]
pub(super) struct Enqueued {
    pub(super) ids: Vec<String>,
    pub(super) command: fleetbus_mdm::Command,
    pub(super) push: bool,
}

pub(super) struct FakeNanoMdm {
    pub(super) url: String,
    pub(super) calls: Arc<Mutex<Vec<Enqueued>>>,
    /// MicroMDM's `POST /v1/commands` bodies.
    micromdm: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<Vec<String>>>,
    /// This many enqueues are queued but answered 503, as when the answer is lost.
    lose_answers: Arc<std::sync::atomic::AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl FakeNanoMdm {
    pub(super) fn start() -> FakeNanoMdm {
        use axum::http::{HeaderMap, StatusCode, Uri};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let calls: Arc<Mutex<Vec<Enqueued>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("nanomdm:{MDM_KEY}"))
        );
        let micromdm: Arc<Mutex<Vec<Value>>> = Arc::default();
        let lose_answers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, r, lose) = (calls.clone(), refused.clone(), lose_answers.clone());
        let (m, mr) = (micromdm.clone(), refused.clone());
        let micro_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("micromdm:{MDM_KEY}"))
        );
        // MicroMDM's raw endpoint: the command plist as body, the UDID in the path,
        // 201 with the payload; it does not push, `GET /push/{udid}` does.
        let (p, pr, push_auth) = (micromdm.clone(), refused.clone(), micro_auth.clone());
        let micro = axum::routing::post(
            move |axum::extract::Path(udid): axum::extract::Path<String>,
                  headers: HeaderMap,
                  body: axum::body::Bytes| {
                let (m, r, expected) = (m.clone(), mr.clone(), micro_auth.clone());
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some(expected.as_str())
                    {
                        r.lock().unwrap().push("bad micromdm credentials".into());
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    let command = match fleetbus_mdm::parse_command(&body) {
                        Ok(c) => c,
                        Err(e) => {
                            r.lock().unwrap().push(format!("micromdm body: {e}"));
                            return (StatusCode::BAD_REQUEST, String::new());
                        }
                    };
                    let answer = json!({"payload": {"udid": udid, "command_uuid": command.command_uuid, "command": {"request_type": command.request_type}}});
                    m.lock().unwrap().push(json!({
                        "udid": udid,
                        "command_uuid": command.command_uuid,
                        "request_type": command.request_type,
                        "command": command.payload_json(),
                    }));
                    (StatusCode::CREATED, answer.to_string())
                }
            },
        );
        let push = axum::routing::get(
            move |axum::extract::Path(udid): axum::extract::Path<String>, headers: HeaderMap| {
                let (p, r, expected) = (p.clone(), pr.clone(), push_auth.clone());
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some(expected.as_str())
                    {
                        r.lock()
                            .unwrap()
                            .push("bad micromdm push credentials".into());
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    p.lock().unwrap().push(json!({"push": udid}));
                    (
                        StatusCode::OK,
                        json!({"status": 0, "id": "apns-1"}).to_string(),
                    )
                }
            },
        );
        let app = axum::Router::new()
            .route("/v1/commands/{udid}", micro)
            .route("/push/{udid}", push)
            .route(
                "/v1/enqueue/{ids}",
                axum::routing::put(
                    move |axum::extract::Path(ids): axum::extract::Path<String>,
                          uri: Uri,
                          headers: HeaderMap,
                          body: axum::body::Bytes| {
                        let (c, r, expected, lose) =
                            (c.clone(), r.clone(), expected.clone(), lose.clone());
                        async move {
                            if headers.get("authorization").and_then(|v| v.to_str().ok())
                                != Some(expected.as_str())
                            {
                                r.lock().unwrap().push("bad credentials".into());
                                return (StatusCode::UNAUTHORIZED, "unauthorized".to_string());
                            }
                            let command = match fleetbus_mdm::parse_command(&body) {
                                Ok(c) => c,
                                Err(e) => {
                                    r.lock().unwrap().push(e.to_string());
                                    return (StatusCode::BAD_REQUEST, e.to_string());
                                }
                            };
                            let ids: Vec<String> = ids.split(',').map(str::to_owned).collect();
                            let push = !uri.query().unwrap_or("").contains("nopush=1");
                            let status: serde_json::Map<String, Value> = ids
                                .iter()
                                .map(|id| {
                                    (id.clone(), json!({"push_result": format!("push-{id}")}))
                                })
                                .collect();
                            let answer = json!({
                                "status": status,
                                "no_push": !push,
                                "command_uuid": command.command_uuid,
                                "request_type": command.request_type,
                            });
                            c.lock().unwrap().push(Enqueued { ids, command, push });
                            let lost = lose
                                .fetch_update(
                                    std::sync::atomic::Ordering::SeqCst,
                                    std::sync::atomic::Ordering::SeqCst,
                                    |n| n.checked_sub(1),
                                )
                                .is_ok();
                            if lost {
                                return (StatusCode::SERVICE_UNAVAILABLE, "try later".to_string());
                            }
                            (StatusCode::OK, answer.to_string())
                        }
                    },
                ),
            );
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeNanoMdm {
            url,
            calls,
            micromdm,
            refused,
            lose_answers,
            _rt: rt,
        }
    }

    pub(super) fn calls(&self) -> Vec<Enqueued> {
        self.calls.lock().unwrap().clone()
    }

    pub(super) fn calls_of(&self, request_type: &str) -> Vec<Enqueued> {
        self.calls()
            .into_iter()
            .filter(|c| c.command.request_type == request_type)
            .collect()
    }
}

pub(super) fn plist_b64(body: &str) -> String {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n{body}\n</dict>\n</plist>\n"
    );
    base64::engine::general_purpose::STANDARD.encode(xml)
}

pub(super) fn authenticate(udid: &str, serial: &str) -> Value {
    json!({
        "topic": "mdm.Authenticate",
        "event_id": format!("auth-{udid}"),
        "created_at": "2026-11-23T09:15:02Z",
        "checkin_event": {
            "udid": udid,
            "ids": {"id": udid, "type": "Device"},
            "raw_payload": plist_b64(&format!(
                "<key>BuildVersion</key><string>23F79</string>
<key>DeviceName</key><string>MacBook Pro</string>
<key>MessageType</key><string>Authenticate</string>
<key>Model</key><string>Mac14,7</string>
<key>OSVersion</key><string>14.5</string>
<key>SerialNumber</key><string>{serial}</string>
<key>Topic</key><string>com.apple.mgmt.External.e0bd1eac</string>
<key>UDID</key><string>{udid}</string>"
            )),
        }
    })
}

/// The first TokenUpdate: NanoMDM's enrollment. It carries no serial number.
pub(super) fn first_token_update(udid: &str) -> Value {
    json!({
        "topic": "mdm.TokenUpdate",
        "event_id": format!("tu-{udid}"),
        "created_at": "2026-11-23T09:15:04Z",
        "checkin_event": {
            "udid": udid,
            "ids": {"id": udid, "type": "Device"},
            "token_update_tally": 1,
            "raw_payload": plist_b64(&format!(
                "<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>728F8670-4934-4A30-BADF-7B43C261FC14</string>
<key>Token</key><data>c3FyHWhjG3tmSA55LFFIQg==</data>
<key>Topic</key><string>com.apple.mgmt.External.e0bd1eac</string>
<key>UDID</key><string>{udid}</string>"
            )),
        }
    })
}

/// A device's report for a command, as NanoMDM forwards it.
pub(super) fn acknowledge(udid: &str, uuid: &str, status: &str, extra: &str) -> Value {
    json!({
        "topic": "mdm.Connect",
        "event_id": format!("ack-{uuid}-{status}"),
        "created_at": "2026-11-23T09:16:00Z",
        "acknowledge_event": {
            "udid": udid,
            "ids": {"id": udid, "type": "Device"},
            "status": status,
            "command_uuid": uuid,
            "raw_payload": plist_b64(&format!(
                "<key>CommandUUID</key><string>{uuid}</string>
<key>Status</key><string>{status}</string>
<key>UDID</key><string>{udid}</string>{extra}"
            )),
        }
    })
}

pub(super) fn webhook(server: &Server, body: &Value) {
    webhook_to(server, "nanomdm", body)
}

pub(super) fn webhook_to(server: &Server, source: &str, body: &Value) {
    let (status, answer) = server.post(
        &format!("/v1/sources/{source}"),
        Some(SOURCE_TOKEN),
        "application/json",
        body.to_string().as_bytes(),
        &[],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
}

/// `fleetbus` with the test's config and server URL.
fn cli(dir: &Path, server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(args)
        .arg("-c")
        .arg(dir.join("fleetbus.yaml"))
        .args(["--url", &server.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fleetbus {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(super) fn with_type<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"]["detail-type"] == detail_type)
        .collect()
}

fn setup(dir: &Path, rules: &str, mdm: &FakeNanoMdm, csv: &str) {
    std::fs::write(dir.join("api-token"), TOKEN).unwrap();
    std::fs::write(dir.join("source-token"), SOURCE_TOKEN).unwrap();
    std::fs::write(dir.join("mdm-key"), MDM_KEY).unwrap();
    std::fs::write(dir.join("inventory.csv"), csv).unwrap();
    let config = format!(
        r#"
server:
  data_dir: data
  api_tokens: ["${{file:api-token}}"]
sources:
  - name: nanomdm
    kind: nanomdm
    tokens: ["${{file:source-token}}"]
  - name: micromdm
    kind: micromdm
    tokens: ["${{file:source-token}}"]
  - name: okta
    kind: okta
    tokens: ["${{file:source-token}}"]
    token_header: Authorization
rules:
{rules}
"#
    )
    .replace("{mdm}", &mdm.url);
    std::fs::write(dir.join("fleetbus.yaml"), config).unwrap();
}

/// Starts the server on `rules` with [`GRACE_AND_ALAN`] imported into the asset store.
fn start_with_inventory(dir: &Path, rules: &str, mdm: &FakeNanoMdm) -> Server {
    setup(dir, rules, mdm, GRACE_AND_ALAN);
    let server = Server::start(dir);
    let csv = dir.join("inventory.csv");
    cli(dir, &server, &["assets", "import", csv.to_str().unwrap()]);
    server
}

/// Slack got one line per Mac of Grace's, and nothing else.
fn assert_grace_locked_reported(slack: &super::support::Receiver) {
    let mut reports: Vec<Value> = slack
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.0.clone())
        .collect();
    reports.sort_by_key(|v| v.to_string());
    assert_eq!(
        reports,
        vec![
            json!({"text": "Locked C02AAAAAAAA1"}),
            json!({"text": "Locked C02AAAAAAAA2"})
        ]
    );
}

/// Grace has two Macs, Alan one.
const GRACE_AND_ALAN: &str = "serial,udid,name,os_version,enrollment_state,user_id,user_email\n\
    C02AAAAAAAA1,UDID-GRACE-1,Grace MBP,14.5,enrolled,grace,grace@example.com\n\
    C02AAAAAAAA2,UDID-GRACE-2,Grace Air,15.1,enrolled,grace,grace@example.com\n\
    C02BBBBBBBB1,UDID-ALAN-1,Alan MBP,14.5,enrolled,alan,alan@example.com\n";

/// A Slack line per DeviceLock enqueued.
const LOCK_REPORT: &str = r#"
  - name: lock-report
    event_pattern:
      source: [fleetbus.mdm]
      detail-type: [MDM Command Enqueued]
      detail: {command: {request_type: [DeviceLock]}}
    targets:
      - id: slack
        kind: slack
        url: ${file:slack-url}
        input_transformer:
          input_paths_map: {serial: $.detail.device.serial}
          input_template: '{"text": "Locked <serial>"}'
"#;

const SERIAL_1: &str = "C02XK1JDJG5J";
const UDID_1: &str = "0000FE00-5FDF-5EC4-8429-15640684C489";

#[test]
fn enrollment_names_the_device_posts_to_slack_and_links_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let slack = receiver();
    std::fs::write(dir.path().join("slack-url"), format!("{}/hook", slack.url)).unwrap();
    let rules = r#"
  - name: enrolled
    event_pattern:
      source: [mdm.nanomdm]
      detail-type: [MDM Check-in]
      detail: {action: [enroll]}
    targets:
      - id: record
        kind: assets
        device:
          serial: $.detail.device.serial
          udid: $.detail.device.udid
          enrollment_state: enrolled
          enrolled_at: $.time
      - id: name-it
        kind: mdm
        server: nanomdm
        url: {mdm}
        api_key: ${file:mdm-key}
        devices: {udid: $.detail.device.udid, serial: $.detail.device.serial}
        mdm_command:
          RequestType: Settings
          Settings: [{Item: DeviceName, DeviceName: <device.name>}]
      - id: slack
        kind: slack
        url: ${file:slack-url}
        input_transformer:
          input_paths_map: {serial: $.detail.device.serial}
          input_template: '{"text": "Enrolled <serial>"}'
"#;
    // A Jamf Pro inventory export: the name comes from here.
    let csv = format!(
        "Serial Number,Computer Name,Model,Operating System Version,Username,Email Address\n{SERIAL_1},Ada's MacBook Pro,MacBook Pro (14-inch),14.5,ada,ada@example.com\n"
    );
    setup(dir.path(), rules, &mdm, &csv);
    let server = Server::start(dir.path());
    let imported = cli(
        dir.path(),
        &server,
        &[
            "assets",
            "import",
            dir.path().join("inventory.csv").to_str().unwrap(),
        ],
    );
    assert_eq!(imported.trim(), "imported 1 device(s) and 1 user(s)");

    // Authenticate teaches the UDID -> serial mapping; the TokenUpdate has only the UDID.
    webhook(&server, &authenticate(UDID_1, SERIAL_1));
    webhook(&server, &first_token_update(UDID_1));

    wait_for("the Settings command", Duration::from_secs(20), || {
        !mdm.calls_of("Settings").is_empty()
    });
    let call = &mdm.calls_of("Settings")[0];
    assert_eq!(call.ids, vec![UDID_1]);
    assert!(call.push);
    let payload = call.command.payload_json();
    assert_eq!(
        payload["Settings"],
        json!([{"Item": "DeviceName", "DeviceName": "Ada's MacBook Pro"}])
    );
    let uuid = call.command.command_uuid.clone();

    wait_for("the Slack post", Duration::from_secs(20), || {
        !slack.bodies.lock().unwrap().is_empty()
    });
    assert_eq!(
        slack.bodies.lock().unwrap()[0].0,
        json!({"text": format!("Enrolled {SERIAL_1}")})
    );

    wait_for("the asset update", Duration::from_secs(20), || {
        server.get(&format!("/v1/assets/devices/{SERIAL_1}")).1["enrollment_state"] == "enrolled"
    });
    let (_, device) = server.get(&format!("/v1/assets/devices/{SERIAL_1}"));
    assert_eq!(device["udid"], UDID_1);
    assert_eq!(device["user_id"], "ada");
    assert_eq!(device["enrolled_at"], "2026-11-23T09:15:04Z");
    assert_eq!(device["commands"][0]["command_uuid"], json!(uuid));

    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("fleetbus_mdm_commands_enqueued_total")
                && l.contains("request_type=\"Settings\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );

    // The device acknowledges: the result names the request type and links its cause.
    webhook(&server, &acknowledge(UDID_1, &uuid, "Acknowledged", ""));
    let events = timeline(&server, &format!("device/{SERIAL_1}"));
    let enroll = with_type(&events, "MDM Check-in")
        .into_iter()
        .find(|e| e["event"]["detail"]["action"] == "enroll")
        .expect("the enroll event is on the device's timeline")
        .clone();
    let results = with_type(&events, "MDM Command Result");
    assert_eq!(results.len(), 1, "{events:#?}");
    let result = results[0];
    assert_eq!(
        result["event"]["detail"]["command"]["request_type"],
        "Settings"
    );
    assert_eq!(
        result["event"]["detail"]["command"]["status"],
        "Acknowledged"
    );
    assert_eq!(result["event"]["detail"]["command"]["rule"], "enrolled");
    assert_eq!(result["meta"]["causation_id"], enroll["event"]["id"]);
    assert_eq!(result["meta"]["hop"], 1);
    // The enqueue itself is on the timeline too, and the user's.
    assert_eq!(with_type(&events, "MDM Command Enqueued").len(), 1);
    assert_eq!(
        with_type(&timeline(&server, "user/ada"), "MDM Command Result").len(),
        1
    );
    let ledger = cli(
        dir.path(),
        &server,
        &["assets", "command", &uuid, "--output", "json"],
    );
    let ledger: Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(ledger["status"], "Acknowledged");
    assert_eq!(ledger["event_id"], enroll["event"]["id"]);
    assert!(mdm.refused.lock().unwrap().is_empty());
    server.stop();
}

#[test]
fn deactivated_user_gets_devices_locked_with_escrowed_pins() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let slack = receiver();
    std::fs::write(dir.path().join("slack-url"), format!("{}/hook", slack.url)).unwrap();
    let rules = r#"
  - name: offboard
    event_pattern: {detail-type: [User Deactivated]}
    targets:
      - id: record
        kind: assets
        user: {id: $.detail.user.id, status: deactivated}
      - id: lock
        kind: mdm
        server: nanomdm
        url: {mdm}
        api_key: ${file:mdm-key}
        devices: {user: $.detail.user.id}
        variables: {reason: $.detail.reason}
        mdm_command:
          RequestType: DeviceLock
          PIN: <pin>
          Message: "This Mac is locked (<reason>). Call IT."
"#
    .to_owned()
        + LOCK_REPORT;
    let server = start_with_inventory(dir.path(), &rules, &mdm);

    mdm.lose_answers
        .store(1, std::sync::atomic::Ordering::SeqCst);
    server.put_events(json!([{
        "Source": "idp.okta",
        "DetailType": "User Deactivated",
        "Detail": json!({"user": {"id": "grace", "email": "grace@example.com"}, "reason": "offboarding"}).to_string(),
        "Resources": ["user/grace"],
    }]));

    // The first enqueue is queued by NanoMDM but its answer is lost (503): the
    // delivery is retried, the device already answered for is skipped, and the
    // other gets the same command again, with the same CommandUUID and PIN.
    wait_for("three DeviceLock enqueues", Duration::from_secs(20), || {
        mdm.calls_of("DeviceLock").len() >= 3
    });
    wait_for("two Slack reports", Duration::from_secs(20), || {
        slack.bodies.lock().unwrap().len() >= 2
    });
    let all = mdm.calls_of("DeviceLock");
    assert_eq!(all.len(), 3, "{all:?}");
    let (first, again) = (&all[0], &all[2]);
    assert_eq!(first.ids, again.ids);
    assert_eq!(first.command.command_uuid, again.command.command_uuid);
    assert_eq!(
        first.command.payload_json()["PIN"],
        again.command.payload_json()["PIN"]
    );
    let locks: Vec<_> = all[1..].to_vec();
    let mut locked: Vec<String> = locks.iter().map(|c| c.ids.join(",")).collect();
    locked.sort();
    assert_eq!(locked, vec!["UDID-GRACE-1", "UDID-GRACE-2"]);
    let mut pins = Vec::new();
    for (call, serial) in [
        ("UDID-GRACE-1", "C02AAAAAAAA1"),
        ("UDID-GRACE-2", "C02AAAAAAAA2"),
    ] {
        let call = locks.iter().find(|c| c.ids == [call]).unwrap();
        let payload = call.command.payload_json();
        let pin = payload["PIN"].as_str().unwrap().to_owned();
        assert!(
            pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()),
            "{pin}"
        );
        assert_eq!(
            payload["Message"],
            "This Mac is locked (offboarding). Call IT."
        );
        // Escrowed in the device record, readable through the authenticated API only.
        let (_, device) = server.get(&format!("/v1/assets/devices/{serial}"));
        assert_eq!(device["escrowed_pins"][0]["pin"], json!(pin), "{device}");
        assert_eq!(device["escrowed_pins"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            device["escrowed_pins"][0]["command_uuid"],
            json!(call.command.command_uuid)
        );
        pins.push(pin);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let unauthenticated = agent
        .get(format!("{}/v1/assets/devices/C02AAAAAAAA1", server.base))
        .call()
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);

    assert_grace_locked_reported(&slack);
    let (_, user) = server.get("/v1/assets/users/grace");
    assert_eq!(user["status"], "deactivated");
    assert_eq!(user["devices"].as_array().map(Vec::len), Some(2));
    // Alan's Mac was not touched.
    assert!(server.get("/v1/assets/devices/C02BBBBBBBB1").1["commands"]
        .as_array()
        .is_some_and(Vec::is_empty));
    // The CLI lists the user's devices from the store.
    let listed = cli(
        dir.path(),
        &server,
        &["assets", "devices", "--user", "grace"],
    );
    let serials: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(serials, vec!["C02AAAAAAAA1", "C02AAAAAAAA2"], "{listed}");
    // PUT merges fields; a serial in the body must agree with the path.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let put = |body: Value| {
        agent
            .put(format!("{}/v1/assets/devices/C02AAAAAAAA1", server.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        put(json!({"add_tags": ["offboarded"], "notes": "locked"})),
        200
    );
    assert_eq!(put(json!({"serial": "OTHER"})), 400);
    // The token is checked before the body is parsed: 401, not 400.
    let anonymous = agent
        .put(format!("{}/v1/assets/devices/C02AAAAAAAA1", server.base))
        .header("Content-Type", "application/json")
        .send("not json")
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(anonymous, 401);
    let (_, device) = server.get("/v1/assets/devices/C02AAAAAAAA1");
    assert_eq!(device["tags"], json!(["offboarded"]));
    assert_eq!(device["notes"], "locked");
    assert_eq!(device["name"], "Grace MBP");

    // Every step is on the user's timeline and on each device's; no PIN anywhere.
    wait_for("the delivery outcomes", Duration::from_secs(20), || {
        with_type(
            &timeline(&server, "user/grace"),
            "Target Delivery Succeeded",
        )
        .len()
            >= 2
    });
    let user_events = timeline(&server, "user/grace");
    assert_eq!(with_type(&user_events, "User Deactivated").len(), 1);
    assert_eq!(with_type(&user_events, "MDM Command Enqueued").len(), 2);
    for serial in ["C02AAAAAAAA1", "C02AAAAAAAA2"] {
        let events = timeline(&server, &format!("device/{serial}"));
        let enqueued = with_type(&events, "MDM Command Enqueued");
        assert_eq!(enqueued.len(), 1, "{events:#?}");
        assert_eq!(enqueued[0]["event"]["detail"]["pin_escrowed"], true);
    }
    let all = serde_json::to_string(&user_events).unwrap();
    for pin in &pins {
        assert!(
            !all.contains(&format!("\"{pin}\"")),
            "a PIN leaked into an event"
        );
    }
    server.stop();
}

#[test]
fn scheduled_os_update_nudge_retries_not_now_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let slack = receiver();
    let command = r#"
          RequestType: ScheduleOSUpdate
          Updates: [{ProductVersion: "14.6.1", InstallAction: InstallLater, MaxUserDeferrals: 3, Priority: High}]"#;
    std::fs::write(dir.path().join("slack-url"), format!("{}/hook", slack.url)).unwrap();
    let rules = format!(
        r#"
  - name: os-nudge
    schedule: cron(* * * * ? *)
    targets:
      - id: nudge
        kind: mdm
        server: nanomdm
        url: {{mdm}}
        api_key: ${{file:mdm-key}}
        devices: {{os_below: "14.6"}}
        mdm_command:{command}
  - name: os-nudge-retry
    event_pattern:
      source: [mdm.nanomdm]
      detail-type: [MDM Command Result]
      detail: {{command: {{request_type: [ScheduleOSUpdate], status: [NotNow]}}}}
    targets:
      - id: again
        kind: mdm
        server: nanomdm
        url: {{mdm}}
        api_key: ${{file:mdm-key}}
        devices: {{udid: $.detail.device.udid}}
        mdm_command:{command}
  - name: os-nudge-report
    event_pattern:
      source: [mdm.nanomdm]
      detail-type: [MDM Command Result]
      detail: {{command: {{request_type: [ScheduleOSUpdate], status: [Error]}}}}
    targets:
      - id: slack
        kind: slack
        url: ${{file:slack-url}}
        input_transformer:
          input_paths_map:
            serial: $.detail.device.serial
            why: $.detail.command.error_chain[0].localized_description
          input_template: '{{"text": "OS update failed on <serial>: <why>"}}'
"#
    );
    let csv = "serial,udid,os_version,enrollment_state\n\
        C02OLD000001,UDID-OLD-1,14.2,enrolled\n\
        C02OLD000002,UDID-OLD-2,13.6.1,enrolled\n\
        C02NEW000001,UDID-NEW-1,15.1,enrolled\n\
        C02GONE00001,UDID-GONE-1,12.7,unenrolled\n";
    setup(dir.path(), &rules, &mdm, csv);
    let server = Server::start(dir.path());
    cli(
        dir.path(),
        &server,
        &[
            "assets",
            "import",
            dir.path().join("inventory.csv").to_str().unwrap(),
        ],
    );

    // The cron rule fires at the next minute boundary.
    wait_for("the scheduled nudge", Duration::from_secs(75), || {
        mdm.calls_of("ScheduleOSUpdate").len() >= 2
    });
    let first = mdm.calls_of("ScheduleOSUpdate");
    let mut targeted: Vec<String> = first.iter().take(2).map(|c| c.ids.join(",")).collect();
    targeted.sort();
    assert_eq!(targeted, vec!["UDID-OLD-1", "UDID-OLD-2"]);
    assert_eq!(
        first[0].command.payload_json()["Updates"],
        json!([{"ProductVersion": "14.6.1", "InstallAction": "InstallLater", "MaxUserDeferrals": 3, "Priority": "High"}])
    );
    let uuid_of = |udid: &str| {
        first
            .iter()
            .find(|c| c.ids == [udid])
            .unwrap()
            .command
            .command_uuid
            .clone()
    };

    // Old-1 says NotNow: the retry rule sends the update again.
    webhook(
        &server,
        &acknowledge("UDID-OLD-1", &uuid_of("UDID-OLD-1"), "NotNow", ""),
    );
    wait_for("the retried command", Duration::from_secs(20), || {
        server.get("/v1/assets/devices/C02OLD000001").1["commands"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["rule"] == "os-nudge-retry"))
    });

    // Old-2 reports an error: Slack hears why.
    let error_chain = "<key>ErrorChain</key><array><dict>
<key>ErrorCode</key><integer>12021</integer>
<key>ErrorDomain</key><string>MCMDMErrorDomain</string>
<key>LocalizedDescription</key><string>The update is not available</string>
</dict></array>";
    webhook(
        &server,
        &acknowledge("UDID-OLD-2", &uuid_of("UDID-OLD-2"), "Error", error_chain),
    );
    wait_for("the error report", Duration::from_secs(20), || {
        !slack.bodies.lock().unwrap().is_empty()
    });
    assert_eq!(
        slack.bodies.lock().unwrap()[0].0,
        json!({"text": "OS update failed on C02OLD000002: The update is not available"})
    );
    assert!(mdm.calls().iter().all(|c| !c
        .ids
        .iter()
        .any(|i| i == "UDID-NEW-1" || i == "UDID-GONE-1")));
    assert!(mdm.refused.lock().unwrap().is_empty());
    server.stop();
}

#[test]
fn micromdm_in_and_out_with_basic_auth_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let rules = r#"
  - name: inventory-on-enroll
    event_pattern:
      source: [mdm.micromdm]
      detail: {action: [enroll]}
    targets:
      - id: ask
        kind: mdm
        server: micromdm
        url: {mdm}
        api_key: ${file:mdm-key}
        devices: {udid: $.detail.device.udid}
        mdm_command: {RequestType: DeviceInformation, Queries: [Model, OSVersion]}
"#;
    setup(dir.path(), rules, &mdm, "serial\n");
    let server = Server::start(dir.path());
    // MicroMDM's webhook URL carries the token as userinfo: Basic auth.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("fleetbus:{SOURCE_TOKEN}"))
    );
    let (status, _) = server.post(
        "/v1/sources/micromdm",
        None,
        "application/json",
        authenticate(UDID_1, SERIAL_1).to_string().as_bytes(),
        &[("Authorization", "Basic Zm9vOndyb25n")],
    );
    assert_eq!(status, 401);
    let (status, answer) = server.post(
        "/v1/sources/micromdm",
        None,
        "application/json",
        authenticate(UDID_1, SERIAL_1).to_string().as_bytes(),
        &[("Authorization", &basic)],
    );
    assert_eq!(status, 200, "{answer}");
    // MicroMDM counts no TokenUpdates (no token_update_tally, no ids): the first
    // since the Authenticate is the enrollment, a later one a token refresh.
    let mut token_update = first_token_update(UDID_1);
    let inner = token_update["checkin_event"].as_object_mut().unwrap();
    inner.remove("token_update_tally");
    inner.remove("ids");
    webhook_to(&server, "micromdm", &token_update);
    token_update["event_id"] = json!("tu-refresh");
    webhook_to(&server, "micromdm", &token_update);
    wait_for("the MicroMDM command", Duration::from_secs(20), || {
        !mdm.micromdm.lock().unwrap().is_empty()
    });
    // Through the raw plist endpoint, in Apple's own key names, then a push.
    let sent = mdm.micromdm.lock().unwrap()[0].clone();
    assert_eq!(sent["udid"], UDID_1);
    assert_eq!(sent["request_type"], "DeviceInformation");
    assert_eq!(sent["command"]["Queries"], json!(["Model", "OSVersion"]));
    wait_for("the MicroMDM push", Duration::from_secs(20), || {
        mdm.micromdm.lock().unwrap().len() == 2
    });
    assert_eq!(mdm.micromdm.lock().unwrap()[1], json!({"push": UDID_1}));
    let uuid = sent["command_uuid"].as_str().unwrap().to_owned();
    let answer = "<key>QueryResponses</key><dict><key>Model</key><string>Mac14,7</string><key>OSVersion</key><string>14.5</string></dict>";
    webhook_to(
        &server,
        "micromdm",
        &acknowledge(UDID_1, &uuid, "Acknowledged", answer),
    );
    let events = timeline(&server, &format!("device/{SERIAL_1}"));
    let results = with_type(&events, "MDM Command Result");
    assert_eq!(results.len(), 1, "{events:#?}");
    let command = &results[0]["event"]["detail"]["command"];
    assert_eq!(command["request_type"], "DeviceInformation");
    assert_eq!(command["query_responses"]["OSVersion"], "14.5");
    assert_eq!(results[0]["event"]["source"], "mdm.micromdm");
    assert!(results[0]["meta"]["causation_id"].is_string());
    assert!(mdm.refused.lock().unwrap().is_empty());
    let checkins = with_type(&events, "MDM Check-in");
    let actions: Vec<&Value> = checkins
        .iter()
        .map(|e| &e["event"]["detail"]["action"])
        .collect();
    assert_eq!(
        actions,
        [
            &json!("token_update"),
            &json!("enroll"),
            &json!("authenticate")
        ],
        "newest first"
    );
    assert_eq!(
        mdm.micromdm.lock().unwrap().len(),
        2,
        "one enrollment, one command and its push"
    );
    server.stop();
}

/// The seed's second flow from its real start: Okta's event hook says a user was
/// deactivated -> the user's Macs from the asset store (found by the login Okta
/// names, the user's email) -> DeviceLock through NanoMDM -> a Slack line per Mac,
/// each step on the device's timeline.
#[test]
fn an_okta_deactivation_locks_the_users_macs_and_reports_to_slack() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let slack = receiver();
    std::fs::write(dir.path().join("slack-url"), format!("{}/hook", slack.url)).unwrap();
    let rules = r#"
  - name: offboard
    event_pattern: {source: [okta], detail-type: [user.lifecycle.deactivate]}
    targets:
      - id: lock
        kind: mdm
        server: nanomdm
        url: {mdm}
        api_key: ${file:mdm-key}
        devices: {user: "$.detail.target[?@.type=='User'].alternateId"}
        mdm_command:
          RequestType: DeviceLock
          PIN: <pin>
          Message: "This Mac is locked. Call IT."
"#
    .to_owned()
        + LOCK_REPORT;
    let server = start_with_inventory(dir.path(), &rules, &mdm);
    // As Okta posts it (field names are Okta's; values made up here).
    let delivery = json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/whoTEST000000000",
        "eventId": "c0ffee00-0000-4000-8000-000000000001",
        "eventTime": "2026-12-03T10:15:31.000Z",
        "contentType": "application/json",
        "data": {"events": [{
            "uuid": "c0ffee00-0000-4000-8000-000000000002",
            "published": "2026-12-03T10:15:30.000Z",
            "eventType": "user.lifecycle.deactivate",
            "version": "0",
            "displayMessage": "Deactivate Okta user",
            "severity": "INFO",
            "actor": {"id": "00uADMIN", "type": "User", "alternateId": "it@example.com", "displayName": "IT"},
            "outcome": {"result": "SUCCESS"},
            "target": [{"id": "00uGRACE", "type": "User", "alternateId": "grace@example.com", "displayName": "Grace Hopper"}]
        }]}
    });
    let (status, answer) = server.post(
        "/v1/sources/okta",
        None,
        "application/json",
        delivery.to_string().as_bytes(),
        &[("Authorization", SOURCE_TOKEN)],
    );
    assert_eq!(status, 200, "{answer}");
    wait_for("two DeviceLock enqueues", Duration::from_secs(20), || {
        mdm.calls_of("DeviceLock").len() >= 2
    });
    wait_for("two Slack reports", Duration::from_secs(20), || {
        slack.bodies.lock().unwrap().len() >= 2
    });
    let mut locked: Vec<String> = mdm
        .calls_of("DeviceLock")
        .iter()
        .map(|c| c.ids.join(","))
        .collect();
    locked.sort();
    assert_eq!(
        locked,
        vec!["UDID-GRACE-1", "UDID-GRACE-2"],
        "Alan's Mac untouched"
    );
    assert_grace_locked_reported(&slack);
    let okta = timeline(&server, "user/grace@example.com");
    assert_eq!(
        with_type(&okta, "user.lifecycle.deactivate").len(),
        1,
        "{okta:#?}"
    );
    for serial in ["C02AAAAAAAA1", "C02AAAAAAAA2"] {
        let events = timeline(&server, &format!("device/{serial}"));
        assert_eq!(
            with_type(&events, "MDM Command Enqueued").len(),
            1,
            "{events:#?}"
        );
    }
    // "Why was this Mac locked" is one trace: the Okta event -> the lock delivery and
    // one MDM Command Enqueued per Mac -> each one's Slack delivery.
    let okta_id = with_type(&okta, "user.lifecycle.deactivate")[0]["event"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reports = |tree: &Value| -> usize {
        tree["effects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["event"]["detail-type"] == "MDM Command Enqueued")
            .flat_map(|e| e["effects"].as_array().cloned().unwrap_or_default())
            .filter(|o| {
                o["event"]["detail-type"] == "Target Delivery Succeeded"
                    && o["event"]["detail"]["rule"] == "lock-report"
            })
            .count()
    };
    wait_for("both reports on the trace", Duration::from_secs(20), || {
        let (_, t) = server.get(&format!("/v1/events/{okta_id}/trace"));
        reports(&t["tree"]) == 2
    });
    let (status, trace) = server.get(&format!("/v1/events/{okta_id}/trace"));
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["causes"], json!([]), "the Okta event is the root");
    assert_eq!(
        trace["tree"]["event"]["detail-type"],
        "user.lifecycle.deactivate"
    );
    let effects = trace["tree"]["effects"].as_array().unwrap();
    assert!(
        effects
            .iter()
            .any(|e| e["event"]["detail-type"] == "Target Delivery Succeeded"
                && e["event"]["detail"]["rule"] == "offboard"
                && e["event"]["detail"]["target"] == "lock"),
        "{trace:#}"
    );
    let enqueued: Vec<&Value> = effects
        .iter()
        .filter(|e| e["event"]["detail-type"] == "MDM Command Enqueued")
        .collect();
    assert_eq!(enqueued.len(), 2, "{trace:#}");
    // From a Mac's command back up to the Okta event.
    let enqueued_id = enqueued[0]["event"]["id"].as_str().unwrap();
    let (_, up) = server.get(&format!("/v1/events/{enqueued_id}/trace"));
    assert_eq!(up["causes"][0]["event"]["id"], okta_id.as_str(), "{up:#}");
    assert_eq!(up["tree"]["meta"]["root_id"], okta_id.as_str());
    let (status, missing) = server.get("/v1/events/no-such-event/trace");
    assert_eq!(status, 404, "{missing}");
    server.stop();
}

/// NanoMDM up to v0.8.0 sends every webhook with `"event_id": ""` and never retries
/// one: each such check-in is stored (with an id of fleetbus's own), not refused.
#[test]
fn nanomdm_check_ins_with_an_empty_event_id_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    setup(dir.path(), "  []", &mdm, "serial\n");
    let server = Server::start(dir.path());
    for udid in ["UDID-OLD-1", "UDID-OLD-2"] {
        let mut body = authenticate(udid, &format!("C02{udid}"));
        body["event_id"] = json!("");
        webhook(&server, &body);
    }
    for udid in ["UDID-OLD-1", "UDID-OLD-2"] {
        let events = timeline(&server, &format!("device/C02{udid}"));
        assert_eq!(events.len(), 1, "{events:#?}");
        let id = events[0]["event"]["id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{events:#?}");
    }
    server.stop();
}

/// Idle polls (Connect, status Idle, no command) are not timeline events unless
/// the source asks for them with `idle_polls: true`.
#[test]
fn idle_polls_stay_off_the_timeline_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    setup(dir.path(), "  []", &mdm, "serial\n");
    // The micromdm source asks for them.
    super::support::edit_config(dir.path(), |c| {
        c.replace(
            "  - name: micromdm\n    kind: micromdm\n    tokens: [\"${file:source-token}\"]\n",
            "  - name: micromdm\n    kind: micromdm\n    tokens: [\"${file:source-token}\"]\n    idle_polls: true\n",
        )
    });
    let server = Server::start(dir.path());
    let idle = |udid: &str| {
        json!({"topic": "mdm.Connect", "event_id": format!("idle-{udid}"), "created_at": "2026-11-23T10:00:00Z",
            "acknowledge_event": {"udid": udid, "status": "Idle", "raw_payload": plist_b64(&format!(
                "<key>Status</key><string>Idle</string><key>UDID</key><string>{udid}</string>"))}})
    };
    webhook_to(&server, "nanomdm", &idle("UDID-QUIET"));
    webhook_to(&server, "micromdm", &idle("UDID-LOUD"));
    assert!(timeline(&server, "device/UDID-QUIET").is_empty());
    let loud = timeline(&server, "device/UDID-LOUD");
    assert_eq!(loud.len(), 1, "{loud:#?}");
    assert_eq!(loud[0]["event"]["detail"]["action"], "idle");
    server.stop();
}

#[test]
fn a_command_answer_too_large_for_an_event_is_kept_beside_it_and_completes_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mdm = FakeNanoMdm::start();
    let rules = r#"
  - name: apps-on-enroll
    event_pattern:
      source: [mdm.nanomdm]
      detail: {action: [enroll]}
    targets:
      - id: ask
        kind: mdm
        server: nanomdm
        url: {mdm}
        api_key: ${file:mdm-key}
        devices: {udid: $.detail.device.udid}
        mdm_command: {RequestType: InstalledApplicationList}
"#;
    setup(dir.path(), rules, &mdm, "serial\n");
    let server = Server::start(dir.path());
    webhook(&server, &authenticate(UDID_1, SERIAL_1));
    webhook(&server, &first_token_update(UDID_1));
    wait_for(
        "the InstalledApplicationList command",
        Duration::from_secs(20),
        || !mdm.calls.lock().unwrap().is_empty(),
    );
    let uuid = mdm.calls.lock().unwrap()[0].command.command_uuid.clone();
    // A Mac with 3,000 apps answers with far more than an event may hold (256 KiB).
    let apps: String = (0..3000)
        .map(|i| {
            format!(
                "<dict><key>Identifier</key><string>com.example.app{i:04}</string>\
                 <key>Name</key><string>Example App {i:04}</string>\
                 <key>ShortVersion</key><string>1.{i}</string><key>Version</key><string>{i}</string>\
                 <key>BundleSize</key><integer>{}</integer><key>Installing</key><false/></dict>",
                1_000_000 + i
            )
        })
        .collect();
    let answer = format!("<key>InstalledApplicationList</key><array>{apps}</array>");
    let body = acknowledge(UDID_1, &uuid, "Acknowledged", &answer);
    assert!(
        body.to_string().len() > 256 * 1024,
        "the answer is over the event limit"
    );
    webhook(&server, &body);

    // The ledger entry is complete.
    let (status, ledger) = server.get(&format!("/v1/mdm/commands/{uuid}"));
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(ledger["status"], "Acknowledged", "{ledger}");
    // The result event is on the timeline with a summary and says what it keeps aside.
    let events = timeline(&server, &format!("device/{SERIAL_1}"));
    let results = with_type(&events, "MDM Command Result");
    assert_eq!(results.len(), 1, "{events:#?}");
    let result = results[0];
    let command = &result["event"]["detail"]["command"];
    assert_eq!(command["request_type"], "InstalledApplicationList");
    assert_eq!(command["status"], "Acknowledged");
    assert_eq!(
        command["attached"]["summary"]["response"]["InstalledApplicationList"],
        json!({"items": 3000}),
        "{command}"
    );
    assert!(command.get("response").is_none());
    assert_eq!(result["meta"]["attachment"]["part"], "detail.command");
    assert_eq!(
        result["meta"]["attachment"]["content_type"],
        "application/json"
    );
    // The whole answer, through the API and the CLI.
    let id = result["event"]["id"].as_str().unwrap();
    let (status, full) = server.get(&format!("/v1/events/{id}/attachment"));
    assert_eq!(status, 200, "{full}");
    let list = full["response"]["InstalledApplicationList"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 3000);
    assert_eq!(list[2999]["Identifier"], "com.example.app2999");
    assert_eq!(full["command_uuid"], uuid.as_str());
    let printed = cli(
        dir.path(),
        &server,
        &["events", "attachment", id, "--output", "json"],
    );
    let printed: Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(printed, full);
    // The console links it from the event's page and shows it whole.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let login = agent
        .post(format!("{}/ui/login", server.base))
        .send_form([("token", TOKEN)])
        .unwrap();
    let cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = |path: String| {
        agent
            .get(format!("{}{path}", server.base))
            .header("Cookie", &cookie)
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    };
    assert!(page(format!("/ui/events/{id}")).contains("show the attachment"));
    assert!(page(format!("/ui/events/{id}/attachment")).contains("com.example.app2999"));
    // An event without one is a 404 that says so.
    let enroll = with_type(&events, "MDM Check-in")[0]["event"]["id"]
        .as_str()
        .unwrap();
    let (status, answer) = server.get(&format!("/v1/events/{enroll}/attachment"));
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("has no attachment"));
    server.stop();
}
