//! `fleetbus backup` while the server writes, and `fleetbus restore` into a fresh
//! data directory that a new server then serves.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::support::*;

fn fleetbus(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbus"))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_new_data_directory() {
    let (dir, rx, server) = start();
    let put = |n: usize, serial: &str| {
        let entries: Vec<_> = (0..n)
            .map(|i| json!({"Source": "backup.test", "DetailType": "Noted", "Detail": json!({"i": i}).to_string(), "Resources": [format!("device/{serial}")]}))
            .collect();
        server.put_events(json!(entries));
    };
    for _ in 0..4 {
        put(50, "C02BACKUP01");
    }
    let config = dir.path().join("fleetbus.yaml");
    let backup = dir.path().join("bk");
    // Ingest goes on while the copy is taken.
    let busy = Arc::new(AtomicBool::new(true));
    let writer = {
        let (busy, base) = (busy.clone(), server.base.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            while busy.load(Ordering::Relaxed) {
                let body = json!({"Entries": [{"Source": "backup.test", "DetailType": "During", "Detail": "{}", "Resources": ["device/C02BACKUP02"]}]});
                let _ = agent
                    .post(format!("{base}/v1/events"))
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .send(body.to_string());
            }
        })
    };
    let (ok, out) = fleetbus(&["backup", "--to", backup.to_str().unwrap()], &config);
    busy.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("event store:") && out.contains("asset store:"),
        "{out}"
    );
    assert!(backup.join("fleetbus-backup.json").is_file());
    // Not into a directory that holds something, and no restore under a running server.
    let (ok, out) = fleetbus(&["backup", "--to", backup.to_str().unwrap()], &config);
    assert!(!ok && out.contains("is not empty"), "{out}");
    let (ok, out) = fleetbus(
        &["restore", "--from", backup.to_str().unwrap(), "--force"],
        &config,
    );
    assert!(
        !ok && out.contains("in use by another fleetbus serve (pid"),
        "{out}"
    );
    server.stop();

    // A new machine: its own directory and config, the backup restored into it.
    let fresh = tempfile::tempdir().unwrap();
    write_config(fresh.path(), &rx.url, "");
    let fresh_config = fresh.path().join("fleetbus.yaml");
    // The backup leaves the PIN key out: the restore says where to put it and
    // changes nothing until it is there.
    let (ok, out) = fleetbus(
        &["restore", "--from", backup.to_str().unwrap()],
        &fresh_config,
    );
    assert!(!ok && out.contains("pin.key"), "{out}");
    assert!(
        !fresh.path().join("data/fleetbus.db").exists(),
        "nothing restored half"
    );
    std::fs::copy(
        dir.path().join("data/pin.key"),
        fresh.path().join("data/pin.key"),
    )
    .unwrap();
    let (ok, out) = fleetbus(
        &["restore", "--from", backup.to_str().unwrap()],
        &fresh_config,
    );
    assert!(ok, "{out}");
    let (ok, out) = fleetbus(
        &["restore", "--from", backup.to_str().unwrap()],
        &fresh_config,
    );
    assert!(
        !ok && out.contains("--force"),
        "a second restore needs --force: {out}"
    );
    let (ok, out) = fleetbus(
        &["restore", "--from", dir.path().to_str().unwrap(), "--force"],
        &fresh_config,
    );
    assert!(!ok && out.contains("is not a fleetbus backup"), "{out}");
    let restored = Server::start(fresh.path());
    assert_eq!(received(&restored, "device/C02BACKUP01").len(), 200);
    // What arrived during the copy is there up to the snapshot's commit, whole.
    let during = received(&restored, "device/C02BACKUP02");
    assert!(during.iter().all(|e| e["event"]["detail-type"] == "During"));
    restored.stop();
}
