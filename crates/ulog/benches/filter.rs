//! Filter throughput and peak memory on a large generated unified log, side by side with a
//! Python implementation of the same filter (`benches/filter.py`).
//!
//! `cargo bench -p fleetbus-ulog` generates (once) two NDJSON logs in
//! `$CARGO_TARGET_DIR/ulog-bench/` (sizes from `ULOG_BENCH_MB`, default `150,600`), then for
//! each: filters in a child process (so VmHWM is the filter's own), best of 3, with and
//! without the literal prefilter; then runs Python on the largest one. Figures go to stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fleetbus_ulog::{LogEntry, Predicate};

const PREDICATE: &str =
    r#"subsystem == "com.apple.SoftwareUpdateMacController" AND eventMessage CONTAINS[c] "ota""#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 4 && args[1] == "--child" {
        child(&args[2], args[3] == "prefilter");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` / test harness probes: nothing to list.
        return;
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("ulog-bench");
    std::fs::create_dir_all(&dir).expect("creating bench dir");
    let sizes: Vec<u64> = std::env::var("ULOG_BENCH_MB")
        .unwrap_or_else(|_| "150,600".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let exe = std::env::current_exe().expect("bench executable");
    println!("predicate: {PREDICATE}");
    let mut largest = None;
    for mb in &sizes {
        let path = dir.join(format!("ulog-{mb}MB.ndjson"));
        generate(&path, mb * 1_000_000);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        for mode in ["prefilter", "full-parse"] {
            let mut best = f64::MAX;
            let mut line = String::new();
            for _ in 0..3 {
                let t = Instant::now();
                let out = Command::new(&exe)
                    .args(["--child", &path.to_string_lossy(), mode])
                    .output()
                    .expect("running child");
                let secs = t.elapsed().as_secs_f64();
                line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                best = best.min(secs);
            }
            println!(
                "rust {mode:<10} {:>5} MB: {:>7.1} MB/s  best of 3 {:.2} s  ({line})",
                bytes / 1_000_000,
                bytes as f64 / 1e6 / best,
                best
            );
        }
        largest = Some((path, bytes));
    }
    let Some((path, bytes)) = largest else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/filter.py");
    for variant in ["json", "prefilter"] {
        let t = Instant::now();
        let out = Command::new("python3")
            .arg(&script)
            .arg(&path)
            .arg(variant)
            .output();
        let secs = t.elapsed().as_secs_f64();
        match out {
            Ok(o) if o.status.success() => println!(
                "python {variant:<9} {:>5} MB: {:>7.1} MB/s  {secs:.2} s  ({})",
                bytes / 1_000_000,
                bytes as f64 / 1e6 / secs,
                String::from_utf8_lossy(&o.stdout).trim()
            ),
            _ => println!("python {variant}: could not run python3"),
        }
    }
}

/// Filters `path` and prints the match count and this process's peak RSS.
fn child(path: &str, prefilter: bool) {
    let pred = Predicate::parse(PREDICATE).expect("predicate");
    let file = File::open(path).expect("opening bench log");
    let mut reader = fleetbus_ulog::open(file).expect("reader");
    let mut sink = std::io::sink();
    let mut matched = 0u64;
    while let Some(raw) = reader.next_record().expect("reading") {
        if prefilter && !pred.may_match(raw) {
            continue;
        }
        let Ok(entry) = LogEntry::parse(raw) else {
            continue;
        };
        if pred.matches(&entry) {
            matched += 1;
            let _ = sink.write_all(raw);
        }
    }
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "?".to_owned());
    println!(
        "matched {matched}, entries {}, VmHWM {hwm}",
        reader.stats().entries
    );
}

/// Deterministic xorshift generator (no dependency needed for a fixed workload).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (process path, sender path, subsystem, category, messages) of a typical busy Mac.
const SOURCES: &[(&str, &str, &str, &str, &[&str])] = &[
    ("/usr/libexec/runningboardd", "/System/Library/PrivateFrameworks/RunningBoard.framework/Versions/A/RunningBoard", "com.apple.runningboard", "monitor", &["Calculated state for app<application.com.apple.Safari.1234(501)>: running-active (role: UserInteractive) (endowments: <private>)", "Acquiring assertion targeting [app<application.com.apple.mail(501)>:812] from originator [osservice<com.apple.WindowServer(88)>:405]"]),
    ("/usr/sbin/wifid", "/System/Library/PrivateFrameworks/WiFiPolicy.framework/WiFiPolicy", "com.apple.WiFiPolicy", "", &["__WiFiDeviceManagerScanPreviousNetworkChannel: rescan 0 networks, channel 36", "WiFiRoam: RSSI -67 below threshold -70, evaluating roam candidates"]),
    ("/usr/libexec/trustd", "/System/Library/Frameworks/Security.framework/Versions/A/Security", "com.apple.securityd", "policy", &["cert[2]: AnchorTrusted =(leaf)[force]> 0", "cert[0]: SSLHostname =(leaf)[force]> 0"]),
    ("/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow", "/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow", "com.apple.loginwindow.logging", "Standard", &["-[SessionAgentNotificationCenter sendDistributedNotification:withUserInfo:] | sending distributed notification: com.apple.screenIsUnlocked", "ApplicationManager: Launching application com.apple.dock"]),
    ("/usr/libexec/softwareupdated", "/System/Library/PrivateFrameworks/SoftwareUpdateMacController.framework/Versions/A/SoftwareUpdateMacController", "com.apple.SoftwareUpdateMacController", "SU", &["[SUMacControllerProgressManager] Reported progress (end): phase:DOWNLOADING stalled:NO portionComplete:0.420000 estimatedTimeRemaining:312.000000", "[SUMacControllerEventReporter] Sending event: com.apple.softwareupdate.otaDownloaded {\n    targetOSVersion = \"15.1\";\n    mdm = 1;\n}", "[SUMacControllerStatusManager] Checking for available updates"]),
    ("/usr/libexec/mdmclient", "/usr/libexec/mdmclient", "com.apple.ManagedClient", "MDMDaemon", &["Processing server request: DeviceInformation for: <Device> (12804726)", "[Acknowledged(DeviceInformation):12804726]"]),
    ("/usr/libexec/kernelmanagerd", "/usr/libexec/kernelmanagerd", "com.apple.kernelmanager", "default", &["Received kext load notification: com.apple.driver.usb.AppleUSBHostBillboardDevice", "No kext found matching bundle identifier"]),
];

fn generate(path: &Path, target: u64) {
    if std::fs::metadata(path)
        .map(|m| m.len() >= target)
        .unwrap_or(false)
    {
        return;
    }
    eprintln!("generating {} ...", path.display());
    let file = File::create(path).expect("creating bench log");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut written = 0u64;
    let mut n = 0u64;
    let mut line = String::with_capacity(2048);
    while written < target {
        // About 3% SoftwareUpdateMacController and 2% mdmclient, like a Mac mid-update.
        let pick = rng.below(100);
        let src = match pick {
            0..=2 => &SOURCES[4],
            3..=4 => &SOURCES[5],
            _ => &SOURCES[[0, 1, 2, 3, 6][(pick % 5) as usize]],
        };
        let (proc_path, sender, subsystem, category, messages) = *src;
        let msg = messages[rng.below(messages.len() as u64) as usize];
        let mtype =
            ["Default", "Default", "Default", "Info", "Debug", "Error"][rng.below(6) as usize];
        let secs = n / 20;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let value = serde_json::json!({
            "timezoneName": "",
            "messageType": mtype,
            "eventType": "logEvent",
            "source": null,
            "formatString": "%{public}@",
            "userID": 0,
            "activityIdentifier": rng.below(1_000_000),
            "subsystem": subsystem,
            "category": category,
            "threadID": rng.below(10_000_000),
            "senderImageUUID": "7D3B4C1E-2F60-3A41-9C8D-5E6F7A8B9C0D",
            "backtrace": {"frames": [{"imageOffset": rng.below(1_000_000), "imageUUID": "7D3B4C1E-2F60-3A41-9C8D-5E6F7A8B9C0D"}]},
            "bootUUID": "6C1B2E0A-5D3F-4C55-9A77-0E2B0B7E51C4",
            "processImagePath": proc_path,
            "senderImagePath": sender,
            "timestamp": format!("2024-10-03 {h:02}:{m:02}:{s:02}.{:06}-0700", rng.below(1_000_000)),
            "machTimestamp": 1_000_000_000_000 + n * 50_000,
            "eventMessage": msg,
            "processImageUUID": "1A2B3C4D-5E6F-3071-8293-A4B5C6D7E8F9",
            "traceID": rng.below(1 << 52),
            "processID": 100 + rng.below(900),
            "senderProgramCounter": rng.below(1_000_000),
            "parentActivityIdentifier": 0,
        });
        line.clear();
        // `log` escapes `/` as `\/`.
        line.push_str(&value.to_string().replace('/', "\\/"));
        line.push('\n');
        out.write_all(line.as_bytes()).expect("writing bench log");
        written += line.len() as u64;
        n += 1;
    }
    out.flush().expect("flushing bench log");
}
