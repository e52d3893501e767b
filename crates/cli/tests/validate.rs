//! `fleetbus validate` as the real binary: what `serve` would refuse when building
//! targets is reported with the load errors, at file:line:col.

use std::process::Command;

const CONFIG: &str = r#"server:
  api_tokens: ["${file:tok}"]
rules:
  - name: r
    event_pattern: {source: [a]}
    targets:
      - id: h
        kind: http
        url: http://127.0.0.1:9/x
        headers:
          "Bad Header": x
      - id: u
        kind: http
        url: "http://exa mple.com/"
      - {id: fine, kind: log, path: out.log}
"#;

#[test]
fn targets_that_would_not_build_are_validation_errors_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "t\n").unwrap();
    std::fs::write(dir.path().join("c.yaml"), CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .current_dir(dir.path())
        .args(["validate", "-c", "c.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r#"
    c.yaml:11:25: rules[0].targets[0].headers.Bad Header: target "h": invalid header "Bad Header" (invalid HTTP header name)
    c.yaml:14:14: rules[0].targets[1].url: target "u": "http://exa mple.com/" is not a valid URL (invalid international domain name)
    c.yaml: 2 error(s)
    "#);
    // Nothing was created: building checks, it does not open files.
    assert!(!dir.path().join("out.log").exists());
}

#[test]
fn a_valid_config_still_validates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "t\n").unwrap();
    let fine = CONFIG
        .replace("\"Bad Header\": x", "X-Good: x")
        .replace("exa mple", "example");
    std::fs::write(dir.path().join("c.yaml"), fine).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .current_dir(dir.path())
        .args(["validate", "-c", "c.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "c.yaml: ok (1 rules, 3 targets, 0 sources, 1 buses)"
    );
}
