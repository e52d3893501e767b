//! The archive through the real binary: `GET /v1/events` paged while events keep
//! arriving, `fleetbus events query|trace` and `fleetbus timeline`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::support::*;

fn batch(source: &str, from: usize, n: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| {
                json!({"Source": source, "DetailType": "Archived", "Detail": format!("{{\"n\": {i}}}"),
                       "Resources": [format!("device/C02Q{:04}", i % 3)]})
            })
            .collect(),
    )
}

/// Follows `GET /v1/events` pages from `query` to the end; returns the events.
fn follow(server: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10_000 {
        let (status, page) = server.get(&format!("/v1/events?{query}{cursor}"));
        assert_eq!(status, 200, "{page}");
        out.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
    panic!("the pages never ended");
}

fn ns(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["event"]["detail"]["n"].as_i64().unwrap())
        .collect()
}

#[test]
fn paging_never_skips_or_repeats_while_events_arrive() {
    let (_dir, _rx, server) = start();
    for i in 0..6 {
        server.put_events(batch("paged", i * 50, 50));
    }
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 300;
            while !stop.load(Ordering::Relaxed) {
                server.put_events(batch("paged", i, 5));
                i += 5;
            }
        })
    };
    let newest = follow(&server, "source=paged&limit=37");
    let oldest = follow(&server, "source=paged&limit=41&order=oldest");
    let device = follow(
        &server,
        "resource=device/C02Q0001&detail-type=Archived&limit=9&order=oldest",
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Newest first began at the 300th event at the latest: from wherever it began,
    // every older event once, in order.
    let n = ns(&newest);
    let top = n[0];
    assert!(top >= 299, "{top}");
    assert_eq!(n, (0..=top).rev().collect::<Vec<_>>());
    // Oldest first ran into events that arrived while it paged: all of them once.
    let o = ns(&oldest);
    assert_eq!(o, (0..o.len() as i64).collect::<Vec<_>>());
    assert!(o.len() >= 300);
    // A resource's events only.
    let d = ns(&device);
    assert!(d.iter().all(|n| n % 3 == 1), "{d:?}");
    assert_eq!(
        d,
        (0..d.len() as i64).map(|k| 3 * k + 1).collect::<Vec<_>>()
    );

    // A pattern narrows further; bad parameters are named.
    let (_, page) = server.get("/v1/events?source=paged&limit=5&pattern=%7B%22detail%22%3A%7B%22n%22%3A%5B7%2C%2011%5D%7D%7D");
    assert_eq!(ns(page["events"].as_array().unwrap()), [11, 7]);
    let (status, err) = server.get("/v1/events?pattern=%7Bnope");
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("parameter pattern: invalid pattern"),
        "{err}"
    );
    let (status, err) = server.get("/v1/events?limit=5000");
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parameter limit"),
        "{err}"
    );
    let (status, _) = server.get("/v1/events?since=yesterday");
    assert_eq!(status, 400);
    let server = Arc::try_unwrap(server).ok().expect("the writer is done");
    server.stop();
}

fn cli(dir: &std::path::Path, server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(args)
        .args(["-c"])
        .arg(dir.join("fleetbus.yaml"))
        .args(["--url", &server.base])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_queries_traces_and_shows_timelines() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let extra = r#"
  - name: relay
    event_pattern: {detail-type: [Relay]}
    targets:
      - {id: onward, kind: bus, bus: default}
"#;
    write_config(dir.path(), &rx.url, extra);
    let server = Server::start(dir.path());
    server.put_events(batch("cli", 0, 12));
    let answer = server.put_events(json!([
        {"Source": "cli", "DetailType": "Relay", "Detail": "{}", "Resources": ["device/C02TRACE"]}
    ]));
    let root = answer["Entries"][0]["EventId"].as_str().unwrap().to_owned();
    wait_for(
        "the relay's outcomes",
        std::time::Duration::from_secs(20),
        || {
            received(&server, "device/C02TRACE").len() >= 2
                && timeline(&server, "device/C02TRACE").len() >= 4
        },
    );

    let (code, out, err) = cli(
        dir.path(),
        &server,
        &[
            "events",
            "query",
            "--source",
            "cli",
            "--detail-type",
            "Archived",
            "--limit",
            "5",
            "--output",
            "ndjson",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ns(&lines), [11, 10, 9, 8, 7]);
    let (code, out, _) = cli(
        dir.path(),
        &server,
        &[
            "events",
            "query",
            "--source",
            "cli",
            "--oldest-first",
            "--limit",
            "3",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines()
            .all(|l| l.contains("cli") && l.contains("Archived")),
        "{out}"
    );
    let (code, _, err) = cli(
        dir.path(),
        &server,
        &["events", "query", "--pattern", "{nope"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("parameter pattern"), "{err}");

    // The trace: the root, its copy on the bus, and the deliveries of both.
    let (code, out, err) = cli(dir.path(), &server, &["events", "trace", &root]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("* ") && first.contains("Relay") && first.contains(&root),
        "{out}"
    );
    assert!(out.contains("rule relay -> target onward: "), "{out}");
    assert!(out.contains("rule all -> target file: "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("  ") && l.contains("Relay [cli]")),
        "{out}"
    );

    // The timeline: each derived entry says what caused it.
    let (code, out, err) = cli(dir.path(), &server, &["timeline", "device/C02TRACE"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("<- caused by {root}")), "{out}");
    assert!(out.contains("-> caused "), "{out}");
    server.stop();
}

/// Counts per detail-type, rule and outcome equal what was ingested and delivered,
/// agree with `fleetbus match` over the same events exported with `events query`,
/// and `fleetbus trends` charts them.
#[test]
fn counts_agree_with_match_and_trends_chart_them() {
    let (dir, _rx, server) = start();
    let mut entries = Vec::new();
    for i in 0..10 {
        let dt = if i < 7 { "Seven" } else { "Three" };
        entries.push(
            json!({"Source": "trends", "DetailType": dt, "Detail": format!("{{\"n\": {i}}}")}),
        );
    }
    server.put_events(Value::Array(entries));
    let pattern = "%7B%22source%22%3A%5B%22trends%22%5D%7D";
    let counts = |q: &str| {
        let (status, c) = server.get(&format!("/v1/stats/counts?since=1h&bucket=10m&{q}"));
        assert_eq!(status, 200, "{c}");
        c
    };
    let total = |c: &Value, k: &str| -> u64 {
        c["series"][k]
            .as_array()
            .map_or(0, |v| v.iter().filter_map(Value::as_u64).sum())
    };
    let by_type = counts(&format!("group_by=detail-type&pattern={pattern}"));
    assert_eq!(
        (total(&by_type, "Seven"), total(&by_type, "Three")),
        (7, 3),
        "{by_type}"
    );
    assert_eq!(
        by_type["buckets"], 7,
        "an hour in 10-minute buckets, aligned"
    );
    assert_eq!(by_type["truncated"], false);
    // Deliveries: the config's "all" rule logs every one of them.
    wait_for("ten deliveries", std::time::Duration::from_secs(20), || {
        total(&counts("group_by=rule"), "all") >= 10
    });
    assert_eq!(total(&counts("group_by=rule"), "all"), 10);
    assert_eq!(total(&counts("group_by=target"), "all/file"), 10);
    assert_eq!(total(&counts("group_by=outcome"), "succeeded"), 10);
    // Without a pattern the store counts detail-types and sources itself: the
    // same series as reading every event (a pattern matching all forces that).
    let all = "%7B%22source%22%3A%5B%7B%22prefix%22%3A%22%22%7D%5D%7D";
    for group in ["detail-type", "source"] {
        let counted = counts(&format!("group_by={group}"));
        let read = counts(&format!("group_by={group}&pattern={all}"));
        assert_eq!(counted["series"], read["series"], "{group}");
        assert_eq!(counted["scanned"], read["scanned"], "{group}");
        assert_eq!(counted["start"], read["start"]);
    }
    assert_eq!(total(&counts("group_by=source"), "trends"), 10);
    let (status, err) = server.get("/v1/stats/counts?group_by=colour");
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("parameter group_by"),
        "{err}"
    );

    // The same events through `fleetbus match`.
    let (code, out, err) = cli(
        dir.path(),
        &server,
        &[
            "events", "query", "--source", "trends", "--limit", "1000", "--output", "ndjson",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let envelopes: String = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].to_string() + "\n")
        .collect();
    std::fs::write(dir.path().join("events.ndjson"), envelopes).unwrap();
    std::fs::write(
        dir.path().join("patterns.json"),
        r#"[{"name": "seven", "pattern": {"source": ["trends"], "detail-type": ["Seven"]}},
            {"name": "three", "pattern": {"source": ["trends"], "detail-type": ["Three"]}}]"#,
    )
    .unwrap();
    let matched = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["match", "--output", "json", "--patterns"])
        .arg(dir.path().join("patterns.json"))
        .arg("--events")
        .arg(dir.path().join("events.ndjson"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&matched.stdout);
    let matched: Value = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .next()
        .expect("match prints JSON")
        .unwrap();
    assert_eq!(matched["counts"]["seven"], total(&by_type, "Seven"));
    assert_eq!(matched["counts"]["three"], total(&by_type, "Three"));

    // And as a chart.
    let (code, out, err) = cli(
        dir.path(),
        &server,
        &[
            "trends",
            "--since",
            "1h",
            "--bucket",
            "10m",
            "--pattern",
            r#"{"source": ["trends"]}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("detail-type per 10m, "), "{out}");
    assert!(
        lines[1].trim_start().starts_with("Seven") && lines[1].contains(" 7  "),
        "{out}"
    );
    assert!(
        lines[2].trim_start().starts_with("Three") && lines[2].contains(" 3  "),
        "{out}"
    );
    server.stop();
}

/// With `--url` and `--token` (or FLEETBUS_URL / FLEETBUS_TOKEN) the CLI needs no
/// configuration file.
#[test]
fn the_cli_reaches_a_server_with_url_and_token_alone() {
    let (_dir, _rx, server) = start();
    server.put_events(batch("remote", 0, 3));
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetbus"));
        c.current_dir(elsewhere.path())
            .env_remove("FLEETBUS_CONFIG")
            .env_remove("FLEETBUS_URL")
            .env_remove("FLEETBUS_TOKEN");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(
        &[],
        &[
            "events",
            "query",
            "--source",
            "remote",
            "--url",
            &server.base,
            "--token",
            TOKEN,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, out, err) = run(
        &[("FLEETBUS_URL", &server.base), ("FLEETBUS_TOKEN", TOKEN)],
        &["dlq", "list"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("empty"), "{out}");
    // Without them and without a config, the error says how.
    let (code, _, err) = run(&[], &["dlq", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("--url and --token"), "{err}");
    let (code, _, err) = run(
        &[],
        &["dlq", "list", "--url", &server.base, "--token", "wrong"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("401"), "{err}");
    server.stop();
}

/// `fleetbus events export` writes every matching event, oldest first, as gzip
/// NDJSON (or plain), following every page.
#[test]
fn export_writes_a_slice_as_gzip_ndjson() {
    use std::io::Read;
    let (dir, _rx, server) = start();
    for i in 0..3 {
        server.put_events(batch("export", i * 500, 500));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args([
            "events", "export", "--source", "export", "--since", "1h", "-c",
        ])
        .arg(dir.path().join("fleetbus.yaml"))
        .args(["--url", &server.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 1500 events"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&out.stdout[..])
        .read_to_string(&mut text)
        .expect("gzip");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ns(&events), (0..1500).collect::<Vec<_>>());
    assert!(events[0]["meta"]["received_at"].is_string());
    let (code, plain, _) = cli(
        dir.path(),
        &server,
        &[
            "events",
            "export",
            "--source",
            "export",
            "--plain",
            "--pattern",
            r#"{"detail": {"n": [3]}}"#,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(plain.lines().count(), 1, "{plain}");
    server.stop();
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .arg("version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git, to compare the commit with");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert_eq!(
        text.trim(),
        format!("fleetbus {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

/// `fleetbus simulate`: a candidate configuration over the archive, nothing
/// delivered; the same rules fire the same (exit 0), a changed pattern and an
/// exemption are counted (exit 1), and the counts equal `fleetbus match` on the
/// same events.
#[test]
fn simulate_compares_a_candidate_with_the_running_rules() {
    let (dir, rx, server) = start();
    let mut entries = Vec::new();
    for i in 0..8 {
        let dt = if i < 5 { "Notify" } else { "Other" };
        entries.push(json!({"Source": "sim", "DetailType": dt, "Detail": json!({"serial": format!("C02SIM{i}")}).to_string(), "Resources": [format!("device/C02SIM{i}")]}));
    }
    server.put_events(Value::Array(entries));
    wait_for("the deliveries", std::time::Duration::from_secs(20), || {
        rx.bodies.lock().unwrap().len() >= 5
    });
    let delivered = rx.bodies.lock().unwrap().len();
    let simulate = |candidate: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
            .args([
                "simulate",
                "--since",
                "1h",
                "--output",
                "json",
                "--url",
                &server.base,
                "--token",
                TOKEN,
                "-c",
            ])
            .arg(candidate)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap_or(-1), v)
    };
    // A rule made through the AWS API (a management token may call it) runs
    // beside the file's whatever the candidate file says.
    let (status, made) = server.post(
        "/",
        Some(TOKEN),
        "application/x-amz-json-1.1",
        br#"{"Name": "api-made", "EventPattern": "{\"source\": [\"sim\"]}"}"#,
        &[("X-Amz-Target", "AWSEvents.PutRule")],
    );
    assert_eq!(status, 200, "{made}");
    // The running configuration as the candidate: nothing changes.
    let (code, same) = simulate(&dir.path().join("fleetbus.yaml"));
    assert_eq!(code, 0, "{same}");
    assert_eq!(
        same["rules"]["api-made"]["today"], same["rules"]["api-made"]["candidate"],
        "{same}"
    );
    assert_eq!(same["rules"]["to-api"]["today"], 5, "{same}");
    assert_eq!(same["rules"]["to-api"]["candidate"], 5, "{same}");
    // A wider pattern with one Mac exempted.
    let candidate = std::fs::read_to_string(dir.path().join("fleetbus.yaml"))
        .unwrap()
        .replace(
            "    event_pattern: {detail-type: [Notify]}\n",
            "    event_pattern: {detail-type: [Notify, Other]}\n    exempt: {resources: [device/C02SIM0]}\n",
        );
    std::fs::write(dir.path().join("candidate.yaml"), candidate).unwrap();
    let (code, changed) = simulate(&dir.path().join("candidate.yaml"));
    assert_eq!(code, 1, "{changed}");
    let to_api = &changed["rules"]["to-api"];
    assert_eq!(
        (
            to_api["today"].as_u64(),
            to_api["candidate"].as_u64(),
            to_api["exempted"].as_u64()
        ),
        (Some(5), Some(7), Some(1)),
        "{changed}"
    );
    assert_eq!(changed["changed"], json!(["to-api"]));
    // What the target would get: the input transformer run for real.
    assert_eq!(to_api["sample"]["api"]["device"], "C02SIM1", "{changed}");
    assert_eq!(
        rx.bodies.lock().unwrap().len(),
        delivered,
        "nothing was delivered"
    );

    // The candidate's counts are `fleetbus match`'s on the same events.
    let (code, out, err) = cli(
        dir.path(),
        &server,
        &[
            "events", "query", "--since", "1h", "--limit", "1000", "--output", "ndjson",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let envelopes: String = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].to_string() + "\n")
        .collect();
    std::fs::write(dir.path().join("sim.ndjson"), envelopes).unwrap();
    std::fs::write(
        dir.path().join("sim-patterns.json"),
        json!([{"name": "all", "pattern": {"source": [{"anything-but": {"prefix": "fleetbus."}}]}},
               {"name": "to-api", "pattern": {"detail-type": ["Notify", "Other"]}}])
        .to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(["match", "--output", "json", "--patterns"])
        .arg(dir.path().join("sim-patterns.json"))
        .arg("--events")
        .arg(dir.path().join("sim.ndjson"))
        .output()
        .unwrap();
    let matched: Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |v: &Value, name: &str| -> u64 {
        v["counts"][name]
            .as_u64()
            .or_else(|| v[name].as_u64())
            .unwrap_or_else(|| panic!("{v}"))
    };
    assert_eq!(
        count(&matched, "all"),
        changed["rules"]["all"]["candidate"].as_u64().unwrap()
    );
    // `match` knows no exemptions: simulate's candidate plus exempted.
    assert_eq!(count(&matched, "to-api"), 7 + 1);
    server.stop();
}
