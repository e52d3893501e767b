//! Soak benchmark (not a test): holds a steady ingest rate against a receiver that
//! fails one call in ten, and every report interval prints the server's resident
//! memory, open files, WAL size and delivery backlog, so a leak or an unbounded
//! queue shows as a line that keeps growing.
//!
//! Run: `cargo bench -p fleetbus --bench soak` (FLEETBUS_SOAK_SECS, default 600;
//! FLEETBUS_SOAK_RATE events/s, default 1,000; FLEETBUS_SOAK_REPORT_SECS, default 60).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::TOKEN;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// VmRSS of a process in MiB (0 without /proc).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn main() {
    let secs = env("FLEETBUS_SOAK_SECS", 600);
    let rate = env("FLEETBUS_SOAK_RATE", 1000).max(1);
    let report = Duration::from_secs(env("FLEETBUS_SOAK_REPORT_SECS", 60).max(1));
    let dir = tempfile::tempdir().unwrap();
    let (url, calls) = support::receiver(10, |_| {});
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    // Every event is delivered over HTTP (a tenth of the calls fail and are retried
    // after a second) and logged; outcomes are archived like every event.
    let config = format!(
        "server:\n  data_dir: data\n  api_tokens: ['${{file:token}}']\nrules:\n\
         \x20 - name: soak\n    event_pattern: {{source: [soak]}}\n    targets:\n\
         \x20     - {{id: http, kind: http, url: '{url}/hook', concurrency: 16, retry_policy: {{maximum_retry_attempts: 10}}}}\n\
         \x20     - {{id: log, kind: log, path: out.log}}\n"
    );
    std::fs::write(dir.path().join("fleetbus.yaml"), config).unwrap();
    let binary = env!("CARGO_BIN_EXE_fleetbus");
    let (child, base) = support::serve(binary, dir.path());
    let pid = child.id();
    let wal = dir.path().join("data/fleetbus.db-wal");
    println!(
        "soak: {rate} events/s for {secs} s, 1 in 10 deliveries failing; a line every {} s",
        report.as_secs()
    );
    println!("  min   acked   rss_mib  open_files  wal_mib  backlog  receiver_calls");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    // Batches of 10 every 10 ms per sender: the rate split over 4 senders.
    let batch = 10u64;
    let senders: Vec<_> = (0..4u64)
        .map(|t| {
            let (stop, acked, base) = (stop.clone(), acked.clone(), base.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let period = Duration::from_secs_f64(4.0 * batch as f64 / rate as f64);
                let start = Instant::now();
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let due = start + period * k;
                    k += 1;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let entries: Vec<_> = (0..batch)
                        .map(|i| json!({"Source": "soak", "DetailType": "Soak", "Detail": json!({"t": t, "i": i}).to_string(), "Resources": [format!("device/SOAK{:04}", (k as u64 * batch + i) % 5000)]}))
                        .collect();
                    let ok = agent
                        .post(format!("{base}/v1/events"))
                        .header("Authorization", format!("Bearer {TOKEN}"))
                        .send(json!({"Entries": entries}).to_string())
                        .is_ok_and(|r| r.status() == 200);
                    if ok {
                        acked.fetch_add(batch, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    let mut next = started + report;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += report;
        let wal_mib = std::fs::metadata(&wal).map_or(0.0, |m| m.len() as f64 / 1048576.0);
        println!(
            "{:5.1} {:7} {:9.1} {:11} {:8.1} {:8} {:15}",
            started.elapsed().as_secs_f64() / 60.0,
            acked.load(Ordering::Relaxed),
            rss_mib(pid),
            open_files(pid),
            wal_mib,
            support::metric(&agent, &base, "fleetbus_delivery_backlog"),
            calls.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "soak: {} events acknowledged in {elapsed:.0} s ({:.0} events/s)",
        acked.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed) as f64 / elapsed
    );
    support::stop(child);
}
