//! NanoMDM and MicroMDM webhook bodies, shaped as those servers send them, become
//! check-in and command-result events.

use base64::Engine as _;
use fleetbus_mdm::webhook::{micromdm, nanomdm, DETAIL_TYPE_CHECKIN, DETAIL_TYPE_COMMAND_RESULT};
use serde_json::{json, Value};

const UDID: &str = "0000FE00-5FDF-5EC4-8429-15640684C489";
const SERIAL: &str = "C02XK1JDJG5J";

fn plist(body: &str) -> String {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n{body}\n</dict>\n</plist>\n"
    );
    base64::engine::general_purpose::STANDARD.encode(xml)
}

fn authenticate_payload() -> String {
    plist(&format!(
        "<key>BuildVersion</key><string>23F79</string>
<key>DeviceName</key><string>Jane's MacBook Pro</string>
<key>MessageType</key><string>Authenticate</string>
<key>Model</key><string>Mac14,7</string>
<key>ModelName</key><string>MacBook Pro</string>
<key>OSVersion</key><string>14.5</string>
<key>ProductName</key><string>Mac14,7</string>
<key>SerialNumber</key><string>{SERIAL}</string>
<key>Topic</key><string>com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9</string>
<key>UDID</key><string>{UDID}</string>"
    ))
}

fn token_update_payload() -> String {
    plist(&format!(
        "<key>AwaitingConfiguration</key><false/>
<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>728F8670-4934-4A30-BADF-7B43C261FC14</string>
<key>Token</key><data>c3FyHWhjG3tmSA55LFFIQg==</data>
<key>Topic</key><string>com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9</string>
<key>UDID</key><string>{UDID}</string>"
    ))
}

#[test]
fn nanomdm_authenticate_carries_the_device() {
    let body = json!({
        "topic": "mdm.Authenticate",
        "event_id": "2f1c6b1e-46bb-4b0f-9a53-6a0c3d7e9b10",
        "created_at": "2024-06-03T09:15:02.123456789Z",
        "checkin_event": {
            "udid": UDID,
            "ids": {"id": UDID, "type": "Device"},
            "url_params": {"group": "staff"},
            "raw_payload": authenticate_payload()
        }
    });
    let events = nanomdm::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.detail_type, DETAIL_TYPE_CHECKIN);
    assert_eq!(e.topic, "mdm.Authenticate");
    assert_eq!(
        e.event_id.as_deref(),
        Some("2f1c6b1e-46bb-4b0f-9a53-6a0c3d7e9b10")
    );
    assert_eq!(e.resource().as_deref(), Some("device/C02XK1JDJG5J"));
    assert_eq!(e.enrollment_id.as_deref(), Some(UDID));
    let d = &e.detail;
    assert_eq!(d["scope"], "device");
    assert_eq!(d["action"], "authenticate");
    assert_eq!(d["server"], "nanomdm");
    assert_eq!(
        d["device"],
        json!({"udid": UDID, "serial": SERIAL, "model": "Mac14,7", "model_name": "MacBook Pro",
               "product_name": "Mac14,7", "os_version": "14.5", "build_version": "23F79",
               "device_name": "Jane's MacBook Pro"})
    );
    assert_eq!(d["enrollment"]["type"], "Device");
    assert_eq!(d["enrollment"]["channel"], "device");
    assert_eq!(d["url_params"]["group"], "staff");
    assert_eq!(d["checkin"]["MessageType"], "Authenticate");
}

#[test]
fn nanomdm_first_token_update_is_an_enrollment_and_hides_tokens() {
    let body = json!({
        "topic": "mdm.TokenUpdate",
        "event_id": "e1",
        "created_at": "2024-06-03T09:15:04Z",
        "checkin_event": {
            "udid": UDID,
            "ids": {"id": UDID, "type": "Device"},
            "token_update_tally": 1,
            "raw_payload": token_update_payload()
        }
    });
    let e = &nanomdm::parse(body.to_string().as_bytes()).unwrap()[0];
    assert_eq!(e.detail["action"], "enroll");
    assert_eq!(e.detail["token_update_tally"], 1);
    // No serial in a TokenUpdate: the resource falls back to the UDID.
    assert_eq!(e.serial, None);
    assert_eq!(e.resource(), Some(format!("device/{UDID}")));
    let checkin = &e.detail["checkin"];
    assert!(checkin.get("Token").is_none() && checkin.get("PushMagic").is_none());
    assert_eq!(checkin["TokenPresent"], true);

    let mut later = body.clone();
    later["checkin_event"]["token_update_tally"] = json!(4);
    let e = &nanomdm::parse(later.to_string().as_bytes()).unwrap()[0];
    assert_eq!(e.detail["action"], "token_update");
}

#[test]
fn nanomdm_user_channel_token_update() {
    let payload = plist(&format!(
        "<key>MessageType</key><string>TokenUpdate</string>
<key>Token</key><data>AAEC</data>
<key>PushMagic</key><string>X</string>
<key>Topic</key><string>com.apple.mgmt.External.x</string>
<key>UDID</key><string>{UDID}</string>
<key>UserID</key><string>B2E4B8C6-3E2A-4F6B-9C1D-2A3B4C5D6E7F</string>
<key>UserShortName</key><string>jdoe</string>
<key>UserLongName</key><string>Jane Doe</string>"
    ));
    let body = json!({
        "topic": "mdm.TokenUpdate",
        "created_at": "2024-06-03T09:20:00Z",
        "checkin_event": {
            "udid": UDID,
            "ids": {"id": format!("{UDID}:B2E4B8C6-3E2A-4F6B-9C1D-2A3B4C5D6E7F"), "type": "User", "parent_id": UDID},
            "token_update_tally": 1,
            "raw_payload": payload
        }
    });
    let e = &nanomdm::parse(body.to_string().as_bytes()).unwrap()[0];
    assert_eq!(e.detail["enrollment"]["channel"], "user");
    assert_eq!(e.detail["user"]["short_name"], "jdoe");
    assert!(e.enrollment_id.as_deref().unwrap().contains(':'));
}

#[test]
fn checkout_is_unenroll() {
    let payload = plist(&format!(
        "<key>MessageType</key><string>CheckOut</string>
<key>Topic</key><string>com.apple.mgmt.External.x</string>
<key>UDID</key><string>{UDID}</string>"
    ));
    let body = json!({"topic": "mdm.CheckOut", "event_id": "x", "created_at": "2018-08-13T18:36:12.727463835Z",
        "checkin_event": {"udid": UDID, "url_params": null, "raw_payload": payload}});
    let e = &micromdm::parse(body.to_string().as_bytes()).unwrap()[0];
    assert_eq!(e.detail["action"], "unenroll");
    assert_eq!(e.detail["server"], "micromdm");
    assert!(e.detail.get("url_params").is_none());
}

#[test]
fn micromdm_connect_with_device_information_is_a_command_result() {
    let payload = plist(&format!(
        "<key>CommandUUID</key><string>76eda240-5488-4989-8339-f2ae160113c4</string>
<key>QueryResponses</key>
<dict>
  <key>DeviceName</key><string>Mac-42</string>
  <key>Model</key><string>Mac14,7</string>
  <key>OSVersion</key><string>14.5</string>
  <key>SerialNumber</key><string>{SERIAL}</string>
</dict>
<key>Status</key><string>Acknowledged</string>
<key>UDID</key><string>{UDID}</string>"
    ));
    let body = json!({
        "topic": "mdm.Connect",
        "event_id": "3444be1d-bbf0-45dc-9da3-f707beeecf1b",
        "created_at": "2018-08-13T14:30:16.789541405Z",
        "acknowledge_event": {
            "udid": UDID,
            "status": "Acknowledged",
            "command_uuid": "76eda240-5488-4989-8339-f2ae160113c4",
            "url_params": null,
            "raw_payload": payload
        }
    });
    let e = &micromdm::parse(body.to_string().as_bytes()).unwrap()[0];
    assert_eq!(e.detail_type, DETAIL_TYPE_COMMAND_RESULT);
    assert_eq!(
        e.command_uuid.as_deref(),
        Some("76eda240-5488-4989-8339-f2ae160113c4")
    );
    assert_eq!(e.resource().as_deref(), Some("device/C02XK1JDJG5J"));
    let d = &e.detail;
    assert_eq!(d["action"], "command_result");
    assert_eq!(d["command"]["status"], "Acknowledged");
    assert_eq!(d["command"]["query_responses"]["OSVersion"], "14.5");
    assert_eq!(d["device"]["os_version"], "14.5");
    assert!(
        d["command"].get("request_type").is_none(),
        "the ledger fills it"
    );
}

#[test]
fn nanomdm_error_report_keeps_the_error_chain() {
    let payload = plist(&format!(
        "<key>CommandUUID</key><string>c0ffee00-0000-4000-8000-000000000001</string>
<key>ErrorChain</key>
<array><dict>
  <key>ErrorCode</key><integer>4</integer>
  <key>ErrorDomain</key><string>MDMClientError</string>
  <key>LocalizedDescription</key><string>Invalid Recovery Lock password</string>
</dict></array>
<key>RequestType</key><string>SetRecoveryLock</string>
<key>Status</key><string>Error</string>
<key>UDID</key><string>{UDID}</string>"
    ));
    let body = json!({"topic": "mdm.Connect", "event_id": "e9", "created_at": "2024-06-03T10:00:00Z",
        "acknowledge_event": {"udid": UDID, "ids": {"id": UDID, "type": "Device"}, "status": "Error",
            "command_uuid": "c0ffee00-0000-4000-8000-000000000001", "raw_payload": payload}});
    let e = &nanomdm::parse(body.to_string().as_bytes()).unwrap()[0];
    let c = &e.detail["command"];
    assert_eq!(c["status"], "Error");
    assert_eq!(c["request_type"], "SetRecoveryLock");
    assert_eq!(c["error_chain"][0]["error_code"], 4);
    assert_eq!(c["error_chain"][0]["error_domain"], "MDMClientError");
}

#[test]
fn idle_polling_is_a_check_in_not_a_result() {
    let payload = plist(&format!(
        "<key>Status</key><string>Idle</string><key>UDID</key><string>{UDID}</string>"
    ));
    let body = json!({"topic": "mdm.Connect", "created_at": "2024-06-03T10:00:00Z",
        "acknowledge_event": {"udid": UDID, "status": "Idle", "raw_payload": payload}});
    let e = &nanomdm::parse(body.to_string().as_bytes()).unwrap()[0];
    assert_eq!(e.detail_type, DETAIL_TYPE_CHECKIN);
    assert_eq!(e.detail["action"], "idle");
    assert!(e.detail.get("command").is_none());
}

#[test]
fn other_topics_get_snake_case_actions_and_arrays_are_accepted() {
    let dm = plist(&format!(
        "<key>MessageType</key><string>DeclarativeManagement</string>
<key>Endpoint</key><string>tokens</string>
<key>UDID</key><string>{UDID}</string>"
    ));
    let gbt = plist(&format!(
        "<key>MessageType</key><string>GetBootstrapToken</string>
<key>UDID</key><string>{UDID}</string>"
    ));
    let body = json!([
        {"topic": "mdm.DeclarativeManagement", "checkin_event": {"udid": UDID, "raw_payload": dm}},
        {"topic": "mdm.GetBootstrapToken", "checkin_event": {"udid": UDID, "raw_payload": gbt}}
    ]);
    let events = nanomdm::parse(body.to_string().as_bytes()).unwrap();
    let actions: Vec<&Value> = events.iter().map(|e| &e.detail["action"]).collect();
    assert_eq!(
        actions,
        vec!["declarative_management", "get_bootstrap_token"]
    );
}

#[test]
fn malformed_bodies_are_errors_naming_the_problem() {
    let cases: [(&[u8], &str); 4] = [
        (b"not json", "not JSON"),
        (br#"{"checkin_event":{}}"#, "topic"),
        (
            br#"{"topic":"mdm.Authenticate","checkin_event":{"raw_payload":"!!!"}}"#,
            "base64",
        ),
        (
            br#"{"topic":"mdm.Authenticate","checkin_event":{"raw_payload":"aGVsbG8="}}"#,
            "check-in",
        ),
    ];
    for (body, needle) in cases {
        let err = nanomdm::parse(body).unwrap_err().to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
}

/// NanoMDM up to v0.8.0 sends `"event_id": ""`: that is no id (the event gets a
/// fresh one), never an event refused for an empty id.
#[test]
fn an_empty_nanomdm_event_id_is_no_id() {
    let body = json!({
        "topic": "mdm.Authenticate",
        "event_id": "",
        "created_at": "2024-06-03T09:15:02.123456789Z",
        "checkin_event": {"udid": UDID, "raw_payload": authenticate_payload()}
    });
    let events = nanomdm::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].event_id, None);
    assert_eq!(events[0].detail["action"], "authenticate");
}

/// A message on a user's channel (NanoMDM `ids.type` User, or a `UserID` in the
/// message) has scope `user`, so a rule can tell it from the device's.
#[test]
fn user_channel_messages_have_user_scope() {
    let user_token_update = plist(&format!(
        "<key>MessageType</key><string>TokenUpdate</string>
<key>PushMagic</key><string>728F8670-4934-4A30-BADF-7B43C261FC14</string>
<key>Token</key><data>c3FyHWhjG3tmSA55LFFIQg==</data>
<key>Topic</key><string>com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9</string>
<key>UDID</key><string>{UDID}</string>
<key>UserID</key><string>B0B1C2D3-0000-4000-8000-000000000001</string>
<key>UserShortName</key><string>jane</string>"
    ));
    let by_ids = json!({
        "topic": "mdm.TokenUpdate",
        "event_id": "u1",
        "checkin_event": {"udid": UDID, "ids": {"id": "B0B1C2D3-0000-4000-8000-000000000001", "type": "User", "parent_id": UDID},
                          "raw_payload": user_token_update}
    });
    let events = nanomdm::parse(by_ids.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].detail["scope"], "user");
    assert_eq!(events[0].detail["user"]["short_name"], "jane");
    let device = json!({
        "topic": "mdm.TokenUpdate",
        "event_id": "d1",
        "checkin_event": {"udid": UDID, "ids": {"id": UDID, "type": "Device"}, "raw_payload": token_update_payload()}
    });
    let events = nanomdm::parse(device.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].detail["scope"], "device");
}
