//! Ingest benchmark (not a timed test): the real binary on the embedded store.
//!
//! 1. Sustained durable ingest through `POST /v1/events` in batches of 100, from 4
//!    client threads, with 100 rules each sending to a log target.
//! 2. Latency from ingest to target delivery at a paced 1,000 events/s: an http
//!    target posts to a receiver here, which compares arrival with the send time
//!    carried in the event; p50 and p99 are printed.
//!
//! Run: `cargo bench -p fleetbus --bench ingest` (FLEETBUS_BENCH_SECS to change the
//! 10 s throughput window; FLEETBUS_BENCH_BASELINE=<another fleetbus binary> and
//! FLEETBUS_BENCH_ROUNDS=<n> to alternate with a baseline in the same run).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{now_us, TOKEN};

/// Distinct PutEvents bodies per client thread, sent in turn.
const BODIES: usize = 64;

/// `sysconf(_SC_CLK_TCK)`, 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of a process, in clock ticks (0 where there is no /proc).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The receiver of the latency run: records each body's `sent_us` against its arrival.
fn receiver(latencies: Arc<Mutex<Vec<u64>>>) -> String {
    support::receiver(0, move |body| {
        let arrived = now_us();
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            if let Some(sent) = v["detail"]["sent_us"].as_u64() {
                latencies.lock().unwrap().push(arrived.saturating_sub(sent));
            }
        }
    })
    .0
}

fn main() {
    // FLEETBUS_BENCH_BASELINE names another fleetbus binary (say, the previous
    // commit's, built the same way) to measure in the same run, alternating with this
    // one FLEETBUS_BENCH_ROUNDS times, so both see the same machine load.
    let mut binaries = vec![("this".to_owned(), env!("CARGO_BIN_EXE_fleetbus").to_owned())];
    if let Ok(baseline) = std::env::var("FLEETBUS_BENCH_BASELINE") {
        binaries.push(("baseline".to_owned(), baseline));
    }
    let rounds: usize = std::env::var("FLEETBUS_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for round in 1..=rounds {
        for (label, binary) in &binaries {
            if binaries.len() > 1 || rounds > 1 {
                println!("== {label} ({binary}), round {round}");
            }
            run(binary);
        }
    }
}

/// One full run (throughput, drain, latency) against a fresh server from `binary`.
fn run(binary: &str) {
    let dir = tempfile::tempdir().unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let url = receiver(latencies.clone());
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let mut config = String::from("server:\n  data_dir: data\n  api_tokens: ['${file:token}']\n  max_backlog: 10000000\nrules:\n");
    for i in 0..100 {
        config.push_str(&format!(
            "  - name: rule-{i}\n    event_pattern: {{detail-type: [Type-{i}]}}\n    targets:\n      - {{id: log, kind: log, path: out.log}}\n"
        ));
    }
    config.push_str(&format!(
        "  - name: latency\n    event_pattern: {{detail-type: [Latency]}}\n    targets:\n      - {{id: http, kind: http, url: '{url}/hook', concurrency: 16}}\n"
    ));
    std::fs::write(dir.path().join("fleetbus.yaml"), config).unwrap();
    let (child, base) = support::serve(binary, dir.path());
    let secs: u64 = std::env::var("FLEETBUS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    // 1. Throughput.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (stop, count, base, ready) = (stop.clone(), count.clone(), base.clone(), ready.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                // Bodies are made before the clock starts: on two cores, building JSON
                // here would take CPU from the server being measured. The server gives
                // every PutEvents entry a fresh id, so repeating a body is not a duplicate.
                let mut n = 0u64;
                let bodies: Vec<String> = (0..BODIES)
                    .map(|_| {
                        let entries: Vec<Value> = (0..100)
                            .map(|i| {
                                n += 1;
                                json!({"Source": "bench", "DetailType": format!("Type-{}", (n + t) % 100), "Detail": json!({"n": n, "i": i, "serial": "C02BENCH0001"}).to_string(), "Resources": ["device/C02BENCH0001"]})
                            })
                            .collect();
                        json!({"Entries": entries}).to_string()
                    })
                    .collect();
                let auth = format!("Bearer {TOKEN}");
                let url = format!("{base}/v1/events");
                ready.wait();
                for body in bodies.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let resp = agent.post(&url).header("Authorization", &auth).send(body.as_str());
                    if let Ok(mut r) = resp {
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        if r.status() == 200 && text.contains("\"FailedEntryCount\":0") {
                            count.fetch_add(100, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    ready.wait();
    let cpu_before = cpu_ticks(child.id());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks(child.id()) - cpu_before;
    let n = count.load(Ordering::Relaxed);
    println!("ingest: {n} events acknowledged durable in {elapsed:.1} s = {:.0} events/s (batches of 100, 4 clients, 100 rules, log target)", n as f64 / elapsed);
    // Throughput depends on what else runs on the machine; CPU per event much less.
    println!(
        "server cpu: {:.2} cores busy, {:.1} us per event (ingest, match, store, deliver, record)",
        cpu as f64 / TICKS_PER_SEC / elapsed,
        cpu as f64 / TICKS_PER_SEC * 1e6 / n.max(1) as f64
    );

    // Let the backlog drain so the latency run measures delivery, not the queue.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let drain = Instant::now();
    loop {
        let backlog = support::metric(&agent, &base, "fleetbus_delivery_backlog");
        if backlog == 0.0 || drain.elapsed() > Duration::from_secs(120) {
            println!(
                "delivery backlog drained in {:.1} s ({} left)",
                drain.elapsed().as_secs_f64(),
                backlog
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // 2. Latency at 1,000 events/s, one event per request.
    let total = 5000u64;
    let period = Duration::from_micros(1000);
    let start = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                for k in (t..total).step_by(4) {
                    let due = start + period * k as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let body = json!({"Entries": [{"Source": "bench", "DetailType": "Latency", "Detail": json!({"sent_us": now_us()}).to_string()}]});
                    let _ = agent.post(format!("{base}/v1/events")).header("Authorization", format!("Bearer {TOKEN}")).send(body.to_string());
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let wait = Instant::now();
    while latencies.lock().unwrap().len() < total as usize
        && wait.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "latency ingest->target at 1,000 events/s: {} delivered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    support::stop(child);
}
