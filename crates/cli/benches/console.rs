//! Console benchmark (not a test): how long the pages take to render on a big
//! archive: a device with 10,000 events on its timeline, the overview and the
//! event search, each fetched 20 times through the real binary.
//!
//! Run: `cargo bench -p fleetbus --bench console` (FLEETBUS_BENCH_DEVICE_EVENTS to
//! change the 10,000).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::TOKEN;

fn main() {
    let n: usize = std::env::var("FLEETBUS_BENCH_DEVICE_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    std::fs::write(
        dir.path().join("fleetbus.yaml"),
        "server:\n  data_dir: data\n  api_tokens: ['${file:token}']\nrules:\n  - name: all\n    event_pattern: {source: [bench]}\n    targets:\n      - {id: log, kind: log, path: out.log}\n",
    )
    .unwrap();
    let (child, base) = support::serve(env!("CARGO_BIN_EXE_fleetbus"), dir.path());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    // The device's history: n events (and as many delivery outcomes on it).
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let entries: Vec<_> = chunk
            .iter()
            .map(|i| json!({"Source": "bench", "DetailType": format!("Step {}", i % 20), "Detail": json!({"i": i, "serial": "C02BENCHDEV1"}).to_string(), "Resources": ["device/C02BENCHDEV1"]}))
            .collect();
        let resp = agent
            .post(format!("{base}/v1/events"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send(json!({"Entries": entries}).to_string())
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Let the deliveries finish so the pages are read, not the writer.
    let settle = Instant::now();
    while support::metric(&agent, &base, "fleetbus_delivery_backlog") > 0.0
        && settle.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let login = agent
        .post(format!("{base}/ui/login"))
        .send_form([("token", TOKEN)])
        .unwrap();
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    println!("console pages on an archive with {n} events on one device (20 fetches each):");
    for (name, path) in [
        ("device page", "/ui/devices/C02BENCHDEV1"),
        ("overview", "/ui/"),
        ("event search", "/ui/events?source=bench"),
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let mut resp = agent
                .get(format!("{base}{path}"))
                .header("Cookie", &cookie)
                .call()
                .unwrap();
            let body = resp.body_mut().read_to_string().unwrap();
            times.push(start.elapsed());
            assert!(resp.status() == 200 && body.len() > 1000, "{path}");
        }
        times.sort();
        println!(
            "  {name:<13} p50 {:6.1} ms  max {:6.1} ms",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
    }
    support::stop(child);
}
