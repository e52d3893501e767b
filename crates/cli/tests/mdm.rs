//! `fleetbus mdm ...` through the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fleetbus(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fleetbus");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn commands_lists_the_catalog_and_filters_by_os() {
    let all = fleetbus(&["mdm", "commands"], None);
    assert!(all.status.success());
    let text = String::from_utf8(all.stdout).unwrap();
    assert_eq!(text.lines().count(), 66);
    assert!(text.lines().any(|l| l.starts_with("DeviceLock ")));

    let tv = stdout_json(&fleetbus(
        &["mdm", "commands", "--os", "tvOS", "--output", "json"],
        None,
    ));
    let names: Vec<&str> = tv
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["request_type"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"DeviceInformation"));
    assert!(!names.contains(&"DeviceLock"), "DeviceLock is n/a on tvOS");

    let bad = fleetbus(&["mdm", "commands", "--os", "beos"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown OS"));
}

#[test]
fn device_lock_xml_parses_back() {
    let out = fleetbus(
        &[
            "mdm",
            "command",
            "DeviceLock",
            "--pin",
            "123456",
            "--message",
            "Call IT",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let xml = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(xml.starts_with("<?xml"));
    let parsed = stdout_json(&fleetbus(&["mdm", "parse", "-"], Some(&out.stdout)));
    assert_eq!(parsed["kind"], "command");
    assert_eq!(parsed["request_type"], "DeviceLock");
    assert_eq!(parsed["payload"]["PIN"], "123456");
    assert_eq!(parsed["command_uuid"].as_str().unwrap().len(), 36);
}

#[test]
fn each_run_gets_a_fresh_uuid_unless_given() {
    let a = stdout_json(&fleetbus(
        &["mdm", "command", "ProfileList", "--format", "json"],
        None,
    ));
    let b = stdout_json(&fleetbus(
        &["mdm", "command", "ProfileList", "--format", "json"],
        None,
    ));
    assert_ne!(a["CommandUUID"], b["CommandUUID"]);
    let c = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "ProfileList",
            "--format",
            "json",
            "--uuid",
            "fixed-1",
        ],
        None,
    ));
    assert_eq!(c["CommandUUID"], "fixed-1");
}

#[test]
fn friendly_flags_build_the_nested_keys() {
    let up = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "ScheduleOSUpdate",
            "--action",
            "InstallLater",
            "--version",
            "14.5",
            "--key",
            "MSU_UPDATE_23F79_patch_14.5",
            "--deferrals",
            "3",
            "--priority",
            "High",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(
        up["Command"]["Updates"][0],
        serde_json::json!({"InstallAction": "InstallLater", "ProductVersion": "14.5",
            "ProductKey": "MSU_UPDATE_23F79_patch_14.5", "MaxUserDeferrals": 3, "Priority": "High"})
    );
    let info = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "DeviceInformation",
            "--queries",
            "Model,OSVersion",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(
        info["Command"]["Queries"],
        serde_json::json!(["Model", "OSVersion"])
    );
    let settings = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "Settings",
            "--device-name",
            "Mac-42",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(
        settings["Command"]["Settings"][0],
        serde_json::json!({"Item": "DeviceName", "DeviceName": "Mac-42"})
    );
    let rl = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "SetRecoveryLock",
            "--password",
            "s3cret",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(rl["Command"]["NewPassword"], "s3cret");
}

#[test]
fn install_profile_reads_the_file_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wifi.mobileconfig");
    std::fs::write(
        &path,
        b"<?xml version=\"1.0\"?><plist version=\"1.0\"><dict/></plist>",
    )
    .unwrap();
    let out = fleetbus(
        &[
            "mdm",
            "command",
            "InstallProfile",
            "--file",
            path.to_str().unwrap(),
        ],
        None,
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(
        xml.contains("<key>Payload</key>") && xml.contains("<data>"),
        "{xml}"
    );
}

#[test]
fn key_value_and_json_payloads_are_typed_and_validated() {
    let ok = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "ScheduleOSUpdateScan",
            "Force=true",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(ok["Command"]["Force"], true);
    let ok = stdout_json(&fleetbus(
        &[
            "mdm",
            "command",
            "DeviceLock",
            "--json",
            r#"{"Message":"hi"}"#,
            "PIN=654321",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(ok["Command"]["Message"], "hi");
    assert_eq!(ok["Command"]["PIN"], "654321");

    let cases: [(&[&str], &str); 7] = [
        (
            &["DeviceLock", "--pin", "abcdef"],
            "key PIN has value \"abcdef\" which is not a valid Find My PIN (six digits)",
        ),
        (
            &["DeviceLock", "PIN=12345"],
            "not a valid Find My PIN (six digits)",
        ),
        (
            &["DeviceLock", "Pin=1"],
            "unknown key Pin (allowed: Message, PhoneNumber, PIN)",
        ),
        (&["DeviceInformation"], "missing required key Queries"),
        (
            &["ScheduleOSUpdateScan", "Force=maybe"],
            "key Force must be a boolean, found a string",
        ),
        (
            &["ScheduleOSUpdate", "--action", "Soon"],
            "allowed: Default, DownloadOnly, InstallASAP",
        ),
        (
            &["DeviceLok"],
            "unknown request type \"DeviceLok\" (did you mean DeviceLock?)",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["mdm", "command"];
        all.extend_from_slice(args);
        let out = fleetbus(&all, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let wrong = fleetbus(
        &["mdm", "command", "DeviceLock", "--device-name", "x"],
        None,
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr(&wrong).contains("--device-name applies to Settings only"));
}

#[test]
fn binary_output_is_a_binary_plist() {
    let out = fleetbus(
        &["mdm", "command", "ProfileList", "--format", "binary"],
        None,
    );
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"bplist00"));
}

const ERROR_REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CommandUUID</key>
	<string>0a9b7f3e-2c51-4e0c-8d7a-3f1e2b4c5d6e</string>
	<key>ErrorChain</key>
	<array>
		<dict>
			<key>ErrorCode</key>
			<integer>12021</integer>
			<key>ErrorDomain</key>
			<string>MCMDMErrorDomain</string>
			<key>LocalizedDescription</key>
			<string>Unknown command</string>
		</dict>
	</array>
	<key>Status</key>
	<string>Error</string>
	<key>UDID</key>
	<string>0000FE00-5FDF-5EC4-8429-15640684C489</string>
</dict>
</plist>
"#;

#[test]
fn parse_prints_responses_and_check_ins_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.plist");
    std::fs::write(&path, ERROR_REPORT).unwrap();
    let r = stdout_json(&fleetbus(&["mdm", "parse", path.to_str().unwrap()], None));
    assert_eq!(r["kind"], "response");
    assert_eq!(r["status"], "Error");
    assert_eq!(r["error_chain"][0]["error_code"], 12021);

    // A binary TokenUpdate check-in: data comes out as base64.
    let mut d = plist::Dictionary::new();
    d.insert(
        "MessageType".into(),
        plist::Value::String("TokenUpdate".into()),
    );
    d.insert("UDID".into(), plist::Value::String("U-1".into()));
    d.insert(
        "Topic".into(),
        plist::Value::String("com.apple.mgmt.External.x".into()),
    );
    d.insert("Token".into(), plist::Value::Data(vec![1, 2, 3]));
    let mut bin = Vec::new();
    plist::Value::Dictionary(d)
        .to_writer_binary(&mut bin)
        .unwrap();
    let c = stdout_json(&fleetbus(&["mdm", "parse", "-"], Some(&bin)));
    assert_eq!(c["kind"], "checkin");
    assert_eq!(c["message_type"], "TokenUpdate");
    assert_eq!(c["known"], true);
    assert_eq!(c["fields"]["Token"], "AQID");

    let junk = fleetbus(&["mdm", "parse", "-"], Some(b"hello"));
    assert_eq!(junk.status.code(), Some(2));
    assert!(stderr(&junk).contains("invalid plist"));
}
