//! `fleetbus ulog filter|summary|events` run as the real binary over the ulog fixtures.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "ulog", "fixtures", name]
        .iter()
        .collect();
    p.to_string_lossy().into_owned()
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .arg("ulog")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TYPICAL: &str =
    r#"subsystem == "com.apple.SoftwareUpdateMacController" AND eventMessage CONTAINS[c] "ota""#;

#[test]
fn filter_ndjson_and_exit_codes() {
    let o = run(
        &[
            "filter",
            "--predicate",
            TYPICAL,
            &fixture("softwareupdate.ndjson"),
            "--stats",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let out = lines(&o);
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|e| e["eventMessage"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("ota")));
    // Every field is passed through.
    assert!(out[0]["backtrace"]["frames"].is_array());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("entries 17 junk_lines 1"), "{stderr}");
    assert!(stderr.contains("matched 5"), "{stderr}");

    let none = run(
        &[
            "filter",
            "-p",
            r#"process == "nothing-like-this""#,
            &fixture("softwareupdate.ndjson"),
        ],
        None,
    );
    assert_eq!(none.status.code(), Some(1));
    assert!(none.stdout.is_empty());
}

#[test]
fn filter_pretty_json_from_stdin_gzip() {
    let raw = std::fs::read(fixture("mdmclient.json")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let bytes = gz.finish().unwrap();
    let o = run(
        &[
            "filter",
            "-p",
            r#"process == "mdmclient" AND eventMessage CONTAINS[c] "bootstraptoken""#,
            "-",
        ],
        Some(&bytes),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = lines(&o);
    assert_eq!(out.len(), 3, "pretty entries come out as one line each");
}

#[test]
fn filter_compact_style() {
    let o = run(
        &[
            "filter",
            "-p",
            "messageType == error",
            "--style",
            "compact",
            &fixture("softwareupdate.ndjson"),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("2024-10-03 23:41:00.000 E  softwareupdated[512:1a2b] [com.apple.SoftwareUpdateMacController:SU] [SUMacControllerEventReporter] Sending event"),
        "{text}"
    );
}

#[test]
fn predicate_errors_point_at_the_column() {
    let o = run(
        &[
            "filter",
            "-p",
            r#"subsystem == "a" AND process CONTAINS[z] "b""#,
            &fixture("softwareupdate.ndjson"),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("column 39"), "{err}");
    assert!(err.contains("unknown modifier `z`"), "{err}");
    assert!(err.contains(&format!("\n{}^", " ".repeat(40))), "{err}");
}

#[test]
fn missing_file_is_an_input_error() {
    let o = run(&["summary", "/nonexistent/log.ndjson"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/log.ndjson"));
}

#[test]
fn summaries() {
    let su = fixture("softwareupdate.ndjson");
    let o = run(&["summary", &su], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("15 com.apple.SoftwareUpdateMacController"),
        "{text}"
    );
    assert!(text.contains("17 total"), "{text}");
    assert!(text.contains("(1 junk lines skipped)"), "{text}");

    let o = run(
        &["summary", &su, "--by", "messageType", "--output", "json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total"], 17);
    assert_eq!(
        v["groups"][0],
        serde_json::json!({"name": "Default", "count": 15})
    );

    let o = run(&["summary", &su, "--list-subsystems"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "com.apple.SoftwareUpdateMacController\ncom.apple.SoftwareUpdateNotificationManager\ncom.apple.runningboard\n"
    );
    let mdm = fixture("mdmclient.json");
    let o = run(
        &[
            "summary",
            &mdm,
            "--list-categories",
            "--subsystem",
            "com.apple.ManagedClient",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "HTTPUtil\nMDMDaemon\n");
    let o = run(
        &["summary", &mdm, "--list-processes", "--output", "json"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        r#"["mdmclient","trustd"]"#
    );
    let o = run(
        &[
            "summary",
            &mdm,
            "--by",
            "process",
            "-p",
            "messageType == error",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("2 mdmclient\n"));
}

#[test]
fn events_for_a_device() {
    let o = run(
        &[
            "events",
            &fixture("softwareupdate.ndjson"),
            "--device",
            "C02XK1JDJG5J",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let events = lines(&o);
    assert!(events.len() >= 15, "{}", events.len());
    assert!(events
        .iter()
        .all(|e| e["resources"] == serde_json::json!(["device/C02XK1JDJG5J"])));
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|e| e["detail"]["action"].as_str())
        .collect();
    for a in [
        "otaAvailable",
        "otaDownloaded",
        "otaReady",
        "otaInstalling",
        "otaAbandoned",
        "updateFinished",
        "updateRequested",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[test]
fn events_with_user_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "- name: trust.anchor\n  detail-type: Trust Evaluation\n  predicate: 'process == \"trustd\"'\n  patterns: ['AnchorTrusted =\\((?P<which>\\w+)\\)']\n",
    )
    .unwrap();
    let rules = rules.to_string_lossy().into_owned();
    let o = run(
        &[
            "events",
            &fixture("mdmclient.json"),
            "--rules",
            &rules,
            "--no-builtin",
            "--account",
            "123456789012",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let events = lines(&o);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["which"], "leaf");
    assert_eq!(events[0]["account"], "123456789012");
    assert_eq!(events[0]["resources"], serde_json::json!([]));

    std::fs::write(
        dir.path().join("bad.yaml"),
        "- name: x\n  detail-type: X\n  predicate: 'a =='\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml").to_string_lossy().into_owned();
    let o = run(
        &["events", &fixture("mdmclient.json"), "--rules", &bad],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rule `x`"));
}
