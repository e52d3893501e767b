//! Replays through the real binary: `fleetbus replay start|describe|list|cancel`
//! and `/v1/replays` re-deliver an archive's window to the chosen rules with
//! `replay-name`, archive nothing twice, and resume after `kill -9`.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::support::*;

const RULES: &str = r#"
  - name: live
    event_pattern: {source: [replayed], replay-name: [{exists: false}]}
    targets:
      - {id: file, kind: log, path: live.log}
  - name: audit
    event_pattern: {source: [replayed]}
    targets:
      - {id: file, kind: log, path: audit.log}
  - name: other
    event_pattern: {source: [replayed]}
    targets:
      - {id: file, kind: log, path: other.log}
  - name: slow
    event_pattern: {source: [replayed], replay-name: [{exists: true}]}
    targets:
      - id: api
        kind: http
        url: RECEIVER/hook
        retry_policy: {maximum_retry_attempts: 185}
archives:
  - name: odd
    description: the odd ones, kept a year
    event_pattern: {detail: {odd: [true]}}
    retention: 365d
"#;

fn setup() -> (tempfile::TempDir, Receiver, Server) {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, &RULES.replace("RECEIVER", &rx.url));
    let server = Server::start(dir.path());
    (dir, rx, server)
}

fn put(server: &Server, from: usize, n: usize) {
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(10) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"Source": "replayed", "DetailType": "Replayable",
                       "Detail": json!({"n": i, "odd": i % 2 == 1}).to_string()})
            })
            .collect();
        let body = json!({"Entries": entries}).to_string();
        // A full backlog (429) is waited out, as a sender would.
        for attempt in 0.. {
            let (status, answer) = server.post(
                "/v1/events",
                Some(TOKEN),
                "application/json",
                body.as_bytes(),
                &[],
            );
            match status {
                200 => break,
                429 if attempt < 200 => std::thread::sleep(Duration::from_millis(50)),
                _ => panic!("{status}: {answer}"),
            }
        }
    }
}

fn now() -> String {
    // The archive keeps receipt times in milliseconds: step past the last one.
    std::thread::sleep(Duration::from_millis(5));
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

fn fleetbus(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(args)
        .args(["--url", &server.base, "--token", TOKEN])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Archived events of the test's source, every page.
fn archived(server: &Server) -> usize {
    let (mut n, mut cursor) = (0, String::new());
    loop {
        let (status, page) = server.get(&format!("/v1/events?source=replayed&limit=1000{cursor}"));
        assert_eq!(status, 200, "{page}");
        n += page["events"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return n,
        }
    }
}

fn replay(server: &Server, name: &str) -> Value {
    let (status, r) = server.get(&format!("/v1/replays/{name}"));
    assert_eq!(status, 200, "{r}");
    r
}

#[test]
fn a_replay_redelivers_its_window_to_the_chosen_rules_only_and_archives_nothing_again() {
    let (dir, _rx, server) = setup();
    put(&server, 0, 40);
    let log = |name: &str| lines(&dir.path().join(name));
    wait_for("live deliveries", Duration::from_secs(20), || {
        log("live.log").len() == 40 && log("audit.log").len() == 40 && log("other.log").len() == 40
    });
    let until = now();
    assert_eq!(archived(&server), 40);

    // To one rule, from the default archive, followed to the end.
    let (code, out, err) = fleetbus(
        &server,
        &[
            "replay",
            "start",
            "--archive",
            "default",
            "--since",
            "1h",
            "--until",
            &until,
            "--rule",
            "audit",
            "--name",
            "again",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("replay again STARTING") || out.contains("replay again RUNNING"),
        "{out}"
    );
    assert!(
        err.contains("again COMPLETED: 40 events replayed, 40 deliveries queued"),
        "{err}"
    );
    wait_for("replayed deliveries", Duration::from_secs(20), || {
        log("audit.log").len() == 80
    });
    let audit = log("audit.log");
    let replayed: Vec<&Value> = audit
        .iter()
        .filter(|e| e.get("replay-name").is_some())
        .collect();
    assert_eq!(
        replayed.len(),
        40,
        "each archived event once more, with replay-name"
    );
    assert!(replayed.iter().all(|e| e["replay-name"] == "again"));
    let mut ns: Vec<i64> = replayed
        .iter()
        .map(|e| e["detail"]["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, (0..40).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        log("live.log").len(),
        40,
        "a live rule that excludes replays gets none"
    );
    assert_eq!(log("other.log").len(), 40, "a rule not chosen gets none");
    assert_eq!(
        archived(&server),
        40,
        "replayed events are not archived again"
    );
    let r = replay(&server, "again");
    assert_eq!(r["state"], "COMPLETED");
    assert_eq!(r["events_replayed"], 40);
    assert_eq!(r["rules"], json!(["audit"]));
    assert!(r["event_last_replayed_time"].is_string());

    // From a named archive to every rule of the bus that matches a replay.
    let (status, started) = server.post(
        "/v1/replays",
        Some(TOKEN),
        "application/json",
        json!({"archive": "odd", "since": "1h", "until": until, "name": "odd-ones"})
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!(status, 201, "{started}");
    wait_for("the odd replay", Duration::from_secs(20), || {
        replay(&server, "odd-ones")["state"] == "COMPLETED"
    });
    wait_for("odd deliveries", Duration::from_secs(20), || {
        log("audit.log").len() == 100 && log("other.log").len() == 60
    });
    let other = log("other.log");
    assert!(other[40..]
        .iter()
        .all(|e| e["replay-name"] == "odd-ones" && e["detail"]["odd"] == true));
    assert_eq!(log("live.log").len(), 40);

    // Listed, most recent first, in the CLI and the API.
    let (code, out, err) = fleetbus(&server, &["replay", "list"]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["odd-ones", "again"], "{out}");
    let (code, out, _) = fleetbus(&server, &["replay", "describe", "again"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("state          COMPLETED") && out.contains("rules          audit"),
        "{out}"
    );
    let (code, out, _) = fleetbus(&server, &["replay", "archives"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("default") && out.contains("odd") && out.contains("retention 365d"),
        "{out}"
    );

    // An empty window completes and says so.
    let (code, out, err) = fleetbus(
        &server,
        &[
            "replay", "start", "--since", "3h", "--until", "2h", "--name", "empty", "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = replay(&server, "empty");
    assert_eq!(r["events_replayed"], 0);
    assert!(
        r["state_reason"]
            .as_str()
            .unwrap()
            .starts_with("no event of archive \"default\""),
        "{r}"
    );

    // Bad requests name what is wrong, with exit code 2.
    for (args, want) in [
        (
            vec!["--archive", "nope", "--since", "1h"],
            "archive \"nope\" does not exist (archives: default, odd)",
        ),
        (
            vec!["--since", "1h", "--name", "again"],
            "a replay named \"again\" already exists",
        ),
        (
            vec!["--since", "1h", "--rule", "ghost"],
            "rule \"ghost\" does not exist",
        ),
        (
            vec!["--since", "1h", "--until", "2h"],
            "must be before its end",
        ),
        (
            vec!["--since", "yesterday"],
            "parameter since: \"yesterday\" is neither",
        ),
        (
            vec!["--since", "1h", "--until", "2999-01-01T00:00:00Z"],
            "is in the future",
        ),
        (
            vec!["--since", "1h", "--name", "bad name"],
            "replay name \"bad name\" is not valid",
        ),
    ] {
        let mut all = vec!["replay", "start"];
        all.extend(args.iter().copied());
        let (code, out, err) = fleetbus(&server, &all);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (code, _, err) = fleetbus(&server, &["replay", "cancel", "again"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "replay \"again\" is COMPLETED: only a starting or running replay can be cancelled"
        ),
        "{err}"
    );
    let (code, _, err) = fleetbus(&server, &["replay", "describe", "ghost"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("404") && err.contains("replay \"ghost\" does not exist"),
        "{err}"
    );
}

/// A replay held back by a failing target (the backlog full) is killed mid-way
/// with `kill -9`; the next start resumes it from its cursor and every event of
/// the window is delivered, with its replay's name.
#[test]
fn a_replay_killed_mid_way_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    write_config(dir.path(), &rx.url, &RULES.replace("RECEIVER", &rx.url));
    edit_config(dir.path(), |c| {
        c.replacen(
            "dedup_window: 10m",
            "dedup_window: 10m\n  max_backlog: 1000",
            1,
        )
    });
    let server = Server::start(dir.path());
    put(&server, 0, 1200);
    let until = now();
    // The receiver fails: the first page's deliveries fill the backlog and the
    // replay waits for room.
    rx.status.store(503, std::sync::atomic::Ordering::SeqCst);
    let (code, out, err) = fleetbus(
        &server,
        &[
            "replay", "start", "--since", "1h", "--until", &until, "--rule", "slow", "--name",
            "resumed",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the first page", Duration::from_secs(20), || {
        replay(&server, "resumed")["events_replayed"]
            .as_u64()
            .unwrap()
            > 0
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = replay(&server, "resumed");
    assert_eq!(before["state"], "RUNNING", "{before}");
    let done = before["events_replayed"].as_u64().unwrap();
    assert!(done < 1200, "held back mid-way: {before}");
    server.kill9();

    rx.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let server = Server::start(dir.path());
    wait_for("the resumed replay", Duration::from_secs(90), || {
        replay(&server, "resumed")["state"] == "COMPLETED"
    });
    let after = replay(&server, "resumed");
    assert_eq!(after["events_replayed"], 1200, "{after}");
    assert_eq!(
        after["deliveries_queued"], 1200,
        "no page queued twice: {after}"
    );
    wait_for("every replayed delivery", Duration::from_secs(90), || {
        let got: std::collections::HashSet<i64> = rx
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|(b, _)| b["detail"]["n"].as_i64().unwrap())
            .collect();
        got.len() == 1200
    });
    let bodies = rx.bodies.lock().unwrap();
    assert!(
        bodies
            .iter()
            .all(|(b, key)| b["replay-name"] == "resumed"
                && key.ends_with(":slow:api:replay:resumed"))
    );
    drop(bodies);
    assert_eq!(
        archived(&server),
        1200,
        "the archive holds the originals only"
    );
}
