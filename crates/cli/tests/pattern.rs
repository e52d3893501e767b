//! `fleetbus test-pattern`, `explain` and `match`, run as the real binary. `match` is
//! checked against counts computed by the independent tree-walking reference evaluator
//! of `fleetbus-test-support`, over a small generated event file.

use fleetbus_test_support::reference;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fleetbus(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleetbus");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait fleetbus")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const EVENT: &str = r#"{"source": "aws.ec2", "detail": {"state": "stopped", "tags": [{"k": "a", "v": "1"}, {"k": "b", "v": "2"}]}}"#;

#[test]
fn test_pattern_exit_codes() {
    let yes = fleetbus(
        &[
            "test-pattern",
            "--pattern",
            r#"{"source": ["aws.ec2"]}"#,
            "--event",
            EVENT,
        ],
        None,
    );
    assert_eq!(yes.status.code(), Some(0));
    assert_eq!(stdout(&yes), "true\n");
    let no = fleetbus(
        &[
            "test-pattern",
            "--pattern",
            r#"{"source": ["aws.s3"]}"#,
            "--event",
            EVENT,
        ],
        None,
    );
    assert_eq!(no.status.code(), Some(1));
    assert_eq!(stdout(&no), "false\n");
    // The event from stdin, the pattern from a file.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.json");
    std::fs::write(&p, r#"{"detail": {"state": [{"prefix": "stop"}]}}"#).expect("write");
    let o = fleetbus(
        &[
            "test-pattern",
            "--pattern",
            p.to_str().expect("utf8"),
            "--event",
            "-",
        ],
        Some(EVENT),
    );
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "true\n".to_owned())
    );
}

#[test]
fn bad_input_exits_2_naming_the_path() {
    let o = fleetbus(
        &[
            "test-pattern",
            "--pattern",
            r#"{"detail": {"state": [{"foo": 1}]}}"#,
            "--event",
            EVENT,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("detail.state: unknown operator \"foo\""),
        "{err}"
    );
    let o = fleetbus(
        &[
            "test-pattern",
            "--pattern",
            r#"{"source": ["x"]}"#,
            "--event",
            "{nope",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid event"));
    let o = fleetbus(
        &[
            "test-pattern",
            "--pattern",
            "/nonexistent/p.json",
            "--event",
            EVENT,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn explain_says_why() {
    let pattern = r#"{"source": ["aws.ec2"], "$or": [{"detail": {"state": ["running"]}}, {"detail": {"tags": {"k": ["a"], "v": ["2"]}}}]}"#;
    let o = fleetbus(&["explain", "--pattern", pattern, "--event", EVENT], None);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.starts_with("no match\n"), "{text}");
    assert!(
        text.contains("detail.state: wanted \"running\"; event had \"stopped\""),
        "{text}"
    );
    assert!(text.contains("$or branch 2 of 2: does not match"), "{text}");
    assert!(text.contains("not within the same array element"), "{text}");
    let o = fleetbus(
        &[
            "explain",
            "--output",
            "json",
            "--pattern",
            pattern,
            "--event",
            EVENT,
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["matched"], false);
    assert_eq!(v["branches"][0]["failures"][0]["path"], "detail.state");
    let o = fleetbus(
        &[
            "explain",
            "--pattern",
            r#"{"source": ["aws.ec2"]}"#,
            "--event",
            EVENT,
        ],
        None,
    );
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "match\n".to_owned())
    );
}

fn testdata() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
    assert!(
        d.join("gen_events.py").exists(),
        "shared test data missing at {}",
        d.display()
    );
    d
}

/// Counts per name computed by the reference evaluator, in `NAME COUNT` lines.
fn reference_counts(patterns: &Path, events: &str) -> String {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(patterns).expect("read patterns"))
            .expect("patterns json");
    let parsed: Vec<serde_json::Value> = events
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for p in &list {
        let name = p["name"].as_str().expect("name").to_owned();
        counts.entry(name).or_insert(0);
    }
    for ev in &parsed {
        let leaves = reference::leaf_paths(ev);
        let mut hit: Vec<&str> = list
            .iter()
            .filter(|p| reference::matches_prepared(&p["pattern"], ev, &leaves))
            .filter_map(|p| p["name"].as_str())
            .collect();
        hit.sort_unstable();
        hit.dedup();
        for n in hit {
            *counts.entry(n.to_owned()).or_insert(0) += 1;
        }
    }
    counts.iter().map(|(n, c)| format!("{n} {c}\n")).collect()
}

#[test]
fn match_counts_equal_the_reference_evaluator() {
    let data = testdata();
    let gen = Command::new("python3")
        .arg(data.join("gen_events.py"))
        .args(["--count", "3000", "--seed", "7"])
        .output()
        .expect("run python3 gen_events.py");
    assert!(gen.status.success());
    let events = String::from_utf8(gen.stdout).expect("utf8 events");
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("events.ndjson");
    std::fs::write(&plain, &events).expect("write events");
    let gz = dir.path().join("events.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(events.as_bytes()).expect("gzip");
    std::fs::write(&gz, enc.finish().expect("gzip")).expect("write gz");
    for set in ["patterns-common.json", "patterns-scale.json"] {
        let patterns = data.join(set);
        let want = reference_counts(&patterns, &events);
        // Every name is listed and some rules really fire.
        assert!(
            want.lines().filter(|l| !l.ends_with(" 0")).count() > 10,
            "{set}: {want}"
        );
        for (file, threads) in [(&plain, "1"), (&gz, "2")] {
            let o = fleetbus(
                &[
                    "match",
                    "--patterns",
                    patterns.to_str().expect("utf8"),
                    "--events",
                    file.to_str().expect("utf8"),
                    "--threads",
                    threads,
                ],
                None,
            );
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(stdout(&o), want, "{set} on {}", file.display());
            assert!(String::from_utf8_lossy(&o.stderr).contains("events/s"));
        }
    }
}

#[test]
fn match_reports_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.json");
    std::fs::write(&p, r#"[{"name": "a", "pattern": {"source": ["x"]}}]"#).expect("write");
    let e = dir.path().join("e.ndjson");
    std::fs::write(&e, "{\"source\": \"x\"}\n{bad\n").expect("write");
    let o = fleetbus(
        &[
            "match",
            "--patterns",
            p.to_str().expect("utf8"),
            "--events",
            e.to_str().expect("utf8"),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"));
    std::fs::write(&e, "{\"source\": \"x\"}\n\n{\"source\": \"y\"}\n").expect("write");
    let o = fleetbus(
        &[
            "match",
            "--output",
            "json",
            "--patterns",
            p.to_str().expect("utf8"),
            "--events",
            e.to_str().expect("utf8"),
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v, serde_json::json!({"events": 2, "counts": {"a": 1}}));
}
