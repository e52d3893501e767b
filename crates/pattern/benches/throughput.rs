//! Throughput of fleetbus's matcher next to the `quamina` crate, single-threaded, events
//! already in memory, on the reference file (200,000 events from gen_events.py, generated
//! if absent), plus peak memory measured in separate child processes.
//!
//! `cargo bench -p fleetbus-pattern` runs everything. Environment:
//! - `FLEETBUS_BENCH_EVENTS`: the NDJSON file (default `$CARGO_TARGET_DIR/events.ndjson`,
//!   else `target/events.ndjson` in the workspace), generated when missing;
//! - `FLEETBUS_BENCH_LIMIT`: use only the first N events (e.g. for callgrind runs);
//! - `FLEETBUS_BENCH_ONLY`: `fleetbus` or `quamina` to run one engine;
//! - `FLEETBUS_BENCH_CASES`: comma-separated case names (common, scale, exact-1, ...);
//! - `FLEETBUS_BENCH_REPS`: timed repetitions per case (default 3, median reported).

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fleetbus_pattern::{Matcher, Pattern};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
}

fn events_path() -> PathBuf {
    if let Ok(p) = std::env::var("FLEETBUS_BENCH_EVENTS") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("events.ndjson")
}

fn ensure_events(path: &Path) {
    if path.exists() {
        return;
    }
    eprintln!(
        "generating {} with gen_events.py --count 200000 --seed 7",
        path.display()
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create target dir");
    }
    let out = std::fs::File::create(path).expect("create events file");
    let st = Command::new("python3")
        .arg(testdata().join("gen_events.py"))
        .args(["--count", "200000", "--seed", "7"])
        .stdout(out)
        .status()
        .expect("run python3");
    assert!(st.success(), "gen_events.py failed");
}

fn load_events(path: &Path, limit: usize) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).expect("open events");
    std::io::BufReader::new(f)
        .split(b'\n')
        .map(|l| l.expect("read events"))
        .filter(|l| !l.is_empty())
        .take(limit)
        .collect()
}

/// (name, pattern JSON) pairs for a case.
fn patterns(case: &str, events: &[Vec<u8>]) -> Vec<(u32, String)> {
    if let Some(n) = case.strip_prefix("exact-") {
        let n: usize = n.parse().expect("exact-N");
        // Exact matches on distinct event ids: each pattern matches one event.
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for e in events {
            if out.len() == n {
                break;
            }
            let v: serde_json::Value = serde_json::from_slice(e).expect("event json");
            if let Some(id) = v["id"].as_str() {
                if seen.insert(id.to_owned()) {
                    out.push((out.len() as u32, format!(r#"{{"id": ["{id}"]}}"#)));
                }
            }
        }
        return out;
    }
    let file = testdata().join(format!("patterns-{case}.json"));
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read patterns"))
            .expect("patterns json");
    list.iter()
        .enumerate()
        .map(|(i, p)| (i as u32, p["pattern"].to_string()))
        .collect()
}

trait Engine {
    fn run(&self, e: &[u8]) -> usize;
}

impl Engine for Matcher<u32> {
    fn run(&self, e: &[u8]) -> usize {
        self.matches_for_event(e).expect("fleetbus match").len()
    }
}

impl Engine for quamina::Quamina<u32> {
    fn run(&self, e: &[u8]) -> usize {
        self.matches_for_event(e).expect("quamina match").len()
    }
}

fn build(engine: &str, pats: &[(u32, String)]) -> Box<dyn Engine> {
    match engine {
        "fleetbus" => {
            let mut m = Matcher::new();
            for (n, p) in pats {
                m.add_pattern(*n, &Pattern::parse(p).expect("pattern"))
                    .expect("add");
            }
            Box::new(m)
        }
        _ => {
            // The default 10 MiB automaton budget is too small for 10,000 patterns.
            let mut q = quamina::QuaminaBuilder::<u32>::new()
                .with_arena_byte_budget(1 << 30)
                .build()
                .expect("quamina builder");
            for (n, p) in pats {
                q.add_pattern(*n, p).expect("quamina add");
            }
            Box::new(q)
        }
    }
}

fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Child mode: load the patterns, stream the events from disk (not held in memory), and
/// print peak RSS.
fn memory_child(engine: &str, case: &str, path: &Path) {
    let sample = load_events(path, 20_000);
    let pats = patterns(case, &sample);
    drop(sample);
    let m = build(engine, &pats);
    drop(pats);
    let f = std::fs::File::open(path).expect("open events");
    let mut matched = 0;
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.expect("read");
        if !line.is_empty() {
            matched += m.run(&line);
        }
    }
    println!("{:.1} {matched}", vm_hwm_mb());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = events_path();
    if args.len() >= 4 && args[1] == "--memory" {
        memory_child(&args[2], &args[3], &path);
        return;
    }
    ensure_events(&path);
    let limit = std::env::var("FLEETBUS_BENCH_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let reps = std::env::var("FLEETBUS_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let engines: Vec<&str> = match std::env::var("FLEETBUS_BENCH_ONLY").as_deref() {
        Ok("fleetbus") => vec!["fleetbus"],
        Ok("quamina") => vec!["quamina"],
        _ => vec!["fleetbus", "quamina"],
    };
    let cases_env = std::env::var("FLEETBUS_BENCH_CASES")
        .unwrap_or_else(|_| "common,scale,exact-1,exact-100,exact-10000".into());
    let cases: Vec<&str> = cases_env.split(',').collect();
    let events = load_events(&path, limit);
    let bytes: usize = events.iter().map(Vec::len).sum();
    println!(
        "{} events, {:.1} MB, one thread, events in memory, median of {reps}",
        events.len(),
        bytes as f64 / 1e6
    );
    println!(
        "{:<12} {:<9} {:>8} {:>12} {:>9} {:>9}",
        "case", "engine", "patterns", "events/s", "MB/s", "matches"
    );
    for case in &cases {
        let pats = patterns(case, &events);
        let mut rates = Vec::new();
        let mut totals = Vec::new();
        for engine in &engines {
            let m = build(engine, &pats);
            let mut secs = Vec::new();
            let mut total = 0;
            for _ in 0..reps {
                let t = Instant::now();
                total = 0;
                for e in &events {
                    total += m.run(e);
                }
                secs.push(t.elapsed().as_secs_f64());
            }
            let s = median(secs);
            let eps = events.len() as f64 / s;
            println!(
                "{case:<12} {engine:<9} {:>8} {:>12.0} {:>9.1} {:>9}",
                pats.len(),
                eps,
                bytes as f64 / 1e6 / s,
                total
            );
            rates.push(eps);
            totals.push(total);
        }
        if rates.len() == 2 {
            println!(
                "{case:<12} speed-up fleetbus/quamina: {:.2}x",
                rates[0] / rates[1]
            );
            if totals[0] != totals[1] {
                println!(
                    "{case:<12} NOTE: total match counts differ (fleetbus {}, quamina {})",
                    totals[0], totals[1]
                );
            }
        }
    }
    if std::env::var("FLEETBUS_BENCH_LIMIT").is_err() {
        let exe = std::env::current_exe().expect("current exe");
        println!("peak RSS (VmHWM) with the pattern set loaded, events streamed from disk:");
        for case in ["common", "scale"] {
            for engine in &engines {
                let out = Command::new(&exe)
                    .args(["--memory", engine, case])
                    .output()
                    .expect("memory child");
                let text = String::from_utf8_lossy(&out.stdout);
                let mb = text.split_whitespace().next().unwrap_or("?");
                println!("{case:<12} {engine:<9} {mb} MB");
            }
        }
    }
}
