//! The archive at scale (`cargo bench -p fleetbus-engine --bench archive`): a real
//! SQLite store filled with `FLEETBUS_ARCHIVE_EVENTS` events (default 5,000,000)
//! over 30 days from 10,000 devices, then measured through the engine: a node's
//! timeline (p50/p99 over 1,000 random devices), counts over 24 h in 1 h buckets,
//! a pattern query over a day followed to its end, a replay's rate, and bytes per
//! archived event. Not a test: it prints figures (README, Benchmarks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbus_engine::store::{
    sqlite::SqliteStore, EventQuery, Millis, NewEvent, ReplayState, Store, StoreOptions,
};
use fleetbus_engine::{CountKey, CountQuery, Engine, ReplayRequest, Settings};
use fleetbus_event::{Event, Meta, StoredEvent};
use serde_json::json;
use time::OffsetDateTime;

const DEVICES: u64 = 10_000;
const DAYS: i64 = 30;
const DAY: Millis = 86_400_000;
const SOURCES: [(&str, &str); 6] = [
    ("jamf", "ComputerCheckIn"),
    ("jamf", "ComputerInventoryCompleted"),
    ("com.okta", "user.session.start"),
    ("fleetbus.mdm", "MDM Check-in"),
    ("fleetbus.delivery", "Target Delivery Succeeded"),
    ("fleetbus.ulog", "Software Update Progress"),
];

const CONFIG: &str = "rules:
  - name: audit
    event_pattern: {source: [jamf], detail-type: [ComputerCheckIn]}
    targets:
      - {id: file, kind: log, path: replayed.log}
";

fn event(n: u64, at: Millis) -> NewEvent {
    let (source, detail_type) = SOURCES[(n % SOURCES.len() as u64) as usize];
    let serial = format!("C02B{:06}", (n * 7919) % DEVICES);
    let detail = json!({
        "serial": serial,
        "n": n,
        "os_version": format!("15.{}", n % 4),
        "user": format!("user{}@example.com", n % 3_000),
    });
    let mut e = Event::new(
        source,
        detail_type,
        detail.as_object().cloned().unwrap_or_default(),
    );
    e.id = format!("bench-{n:010}");
    e.resources = vec![format!("device/{serial}")];
    let received_at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000).unwrap();
    e.time = received_at.replace_nanosecond(0).unwrap();
    let mut meta = Meta::ingested("default", "bench");
    meta.received_at = received_at;
    let json = e.to_json();
    NewEvent::new(
        StoredEvent { event: e, meta },
        &json,
        Vec::new(),
        Vec::new(),
    )
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u64 = std::env::var("FLEETBUS_ARCHIVE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let dir = tempfile::tempdir().unwrap();
    let config = fleetbus_config::load_str("bench.yaml", CONFIG, dir.path()).unwrap();
    let options = StoreOptions::new(Duration::from_secs(60));
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data"), options).unwrap());
    let now = fleetbus_engine::store::now_ms();
    let start = now - DAYS * DAY;
    let step = (DAYS * DAY) as f64 / total as f64;

    // Fill: batches of 2,000 straight into the store (no matching, no jobs).
    let t = Instant::now();
    let mut n = 0u64;
    while n < total {
        let batch: Vec<NewEvent> = (n..(n + 2_000).min(total))
            .map(|i| event(i, start + (i as f64 * step) as Millis))
            .collect();
        n += batch.len() as u64;
        store.append(batch, now).await.unwrap();
        if n.is_multiple_of(500_000) {
            eprintln!(
                "filled {n} events ({:.0} events/s)",
                n as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    let fill = t.elapsed();
    println!(
        "filled {total} events over {DAYS} days in {:.1} s ({:.0} events/s appended)",
        fill.as_secs_f64(),
        total as f64 / fill.as_secs_f64()
    );

    let mut settings = Settings::from_config(&config);
    settings.retention.archive = Duration::from_secs(365 * 86_400);
    let engine = Engine::start(&config, store.clone(), settings)
        .await
        .unwrap();

    // A node's timeline: the newest 100 entries of random devices.
    let mut times = Vec::new();
    for i in 0..1_000u64 {
        let serial = format!("C02B{:06}", (i * 104_729) % DEVICES);
        let t = Instant::now();
        let got = engine
            .timeline(format!("device/{serial}"), 100)
            .await
            .unwrap();
        times.push(t.elapsed());
        assert!(!got.is_empty());
    }
    times.sort();
    println!(
        "timeline (newest 100 of ~{} per device): p50 {}, p99 {}, max {}",
        total / DEVICES,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1])
    );

    // Counts over the last 24 h in 1 h buckets, per detail-type.
    let mut times = Vec::new();
    let mut scanned = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let c = engine
            .count_series(CountQuery {
                key: CountKey::DetailType,
                bucket_ms: 3_600_000,
                since: now - DAY,
                until: now,
                pattern: None,
            })
            .await
            .unwrap();
        times.push(t.elapsed());
        scanned = c.scanned;
    }
    times.sort();
    println!(
        "counts over 24 h in 1 h buckets ({scanned} events read): p50 {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(times[times.len() - 1])
    );

    // A pattern over one day, every page followed to the end.
    let pattern = fleetbus_pattern::Pattern::parse(
        r#"{"source": ["com.okta"], "detail": {"user": ["user44@example.com"]}}"#,
    )
    .unwrap();
    let t = Instant::now();
    let (mut found, mut pages, mut after) = (0, 0, None);
    loop {
        let page = engine
            .query(
                EventQuery {
                    since: Some(now - DAY),
                    until: Some(now),
                    after,
                    limit: 100,
                    ..EventQuery::default()
                },
                Some(&pattern),
            )
            .await
            .unwrap();
        found += page.events.len();
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    println!(
        "pattern query over a day: {found} events in {pages} pages, {}",
        ms(t.elapsed())
    );

    // A replay of one day to the one rule: events looked at per second until done.
    let t = Instant::now();
    engine
        .start_replay(ReplayRequest {
            name: "bench".into(),
            description: None,
            archive: "default".into(),
            bus: None,
            from: now - DAY,
            to: now,
            rules: vec!["audit".into()],
        })
        .await
        .unwrap();
    let done = loop {
        let r = engine.replay("bench".into()).await.unwrap().unwrap();
        if r.state == ReplayState::Completed {
            break r;
        }
        assert!(!r.state.is_final(), "{r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let looked = total as f64 / DAYS as f64;
    println!("replay of a day (~{looked:.0} events looked at, {} replayed to the rule): {:.1} s, {:.0} events/s looked at", done.events, t.elapsed().as_secs_f64(), looked / t.elapsed().as_secs_f64());
    engine.shutdown().await;
    drop(engine);
    drop(store);

    // The store closed: its WAL is checkpointed into the file.
    let size =
        |name: &str| std::fs::metadata(dir.path().join("data").join(name)).map_or(0, |m| m.len());
    let (db, wal) = (size("fleetbus.db"), size("fleetbus.db-wal"));
    println!(
        "archive: {:.1} MiB ({:.0} bytes per event: event, indexes, resource rows), WAL {:.1} MiB",
        db as f64 / 1048576.0,
        db as f64 / total as f64,
        wal as f64 / 1048576.0
    );
}
