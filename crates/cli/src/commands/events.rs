//! `fleetbus events query|trace` and `fleetbus timeline`: the archive of a running
//! server, through its authenticated API. Queries follow the server's pages
//! (`next`) until `--limit` events are printed or the range is exhausted.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use super::http::{encode, Api, ServerArgs};
use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Archived events matching filters and an EventBridge pattern.
    Query(QueryArgs),
    /// Every archived event matching the filters, oldest first, as gzip-compressed
    /// NDJSON on stdout (each line the event with its metadata), for long-term
    /// retention elsewhere; progress on stderr.
    Export(ExportArgs),
    /// What caused an event and what it caused, as a tree.
    Trace {
        /// The event id.
        id: String,
    },
    /// The part of an event kept beside it because it was too large for the event
    /// (an MDM command's full answer), on stdout.
    Attachment {
        /// The event id.
        id: String,
    },
}

/// Which archived events: the API's filters.
#[derive(Debug, clap::Args)]
struct Filters {
    #[arg(long)]
    source: Option<String>,
    #[arg(long = "detail-type")]
    detail_type: Option<String>,
    /// Events naming this resource (e.g. device/C02XK1JDJG5J).
    #[arg(long)]
    resource: Option<String>,
    /// Received at or after: RFC 3339, or a duration ago (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Received before: RFC 3339, or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// An EventBridge event pattern (JSON) the events must match.
    #[arg(long)]
    pattern: Option<String>,
}

impl Filters {
    /// As query parameters, encoded.
    fn params(&self) -> Vec<String> {
        [
            ("source", &self.source),
            ("detail-type", &self.detail_type),
            ("resource", &self.resource),
            ("since", &self.since),
            ("until", &self.until),
            ("pattern", &self.pattern),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect()
    }
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// Events to print at most.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Oldest first (default newest first).
    #[arg(long)]
    oldest_first: bool,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    filters: Filters,
    /// Plain NDJSON instead of gzip.
    #[arg(long)]
    plain: bool,
}

/// The timeline of a node (`fleetbus timeline device/C02...`).
#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    /// The resource, e.g. device/C02XK1JDJG5J or user/ada@example.com.
    resource: String,
    /// Entries to print at most.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// Time-bucketed counts of archived events as a terminal chart.
#[derive(Debug, clap::Args)]
pub struct TrendsArgs {
    /// What to count by: detail-type, source, rule, target or outcome.
    #[arg(long = "group-by", default_value = "detail-type")]
    group_by: String,
    /// Bucket size: 1m, 1h, 1d, ...
    #[arg(long, default_value = "1h")]
    bucket: String,
    /// From: RFC 3339, or a duration ago (default 24h).
    #[arg(long)]
    since: Option<String>,
    /// To: RFC 3339, or a duration ago (default now).
    #[arg(long)]
    until: Option<String>,
    /// An EventBridge event pattern (JSON) the counted events must match.
    #[arg(long)]
    pattern: Option<String>,
    /// Groups shown, busiest first.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// `fleetbus trends`: one line per group with its total and a sparkline.
pub fn trends(args: TrendsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    let mut path = format!(
        "/v1/stats/counts?group_by={}&bucket={}",
        encode(&args.group_by),
        encode(&args.bucket)
    );
    for (k, v) in [
        ("since", &args.since),
        ("until", &args.until),
        ("pattern", &args.pattern),
    ] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    let counts = api.get(&path)?;
    match args.server.output {
        Output::Text => print!("{}", render_trends(&counts, &args.group_by, args.top)),
        _ => println!("{counts}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The counts as text: a heading, then per group its total and a sparkline.
fn render_trends(c: &Value, group_by: &str, top: usize) -> String {
    let mut out = String::new();
    let start = c["start"].as_i64().unwrap_or(0);
    let bucket = c["bucket_ms"].as_i64().unwrap_or(1).max(1);
    let n = c["buckets"].as_i64().unwrap_or(0);
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "{group_by} per {}, {} .. {} ({n} buckets)",
        human(bucket),
        at(start),
        at(start + n * bucket)
    );
    let mut series: Vec<(String, Vec<u64>)> = c["series"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let counts = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            (k.clone(), counts)
        })
        .collect();
    series.sort_by(|a, b| {
        let (ta, tb): (u64, u64) = (a.1.iter().sum(), b.1.iter().sum());
        tb.cmp(&ta).then_with(|| a.0.cmp(&b.0))
    });
    if series.is_empty() {
        out.push_str("  no events in this range\n");
    }
    let width = series
        .iter()
        .take(top)
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (name, counts) in series.iter().take(top) {
        let total: u64 = counts.iter().sum();
        let _ = writeln!(out, "  {name:<width$}  {total:>8}  {}", sparkline(counts));
    }
    if series.len() > top {
        let _ = writeln!(out, "  ... {} more (--top)", series.len() - top);
    }
    if c["truncated"] == true {
        out.push_str("  (stopped at the scan limit: counts are partial; narrow the range)\n");
    }
    out
}

/// One block per bucket, scaled to the largest; a zero is a space.
fn sparkline(counts: &[u64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    counts
        .iter()
        .map(|&n| match n {
            0 => ' ',
            n => BLOCKS[((n * 8 - 1) / max).min(7) as usize],
        })
        .collect()
}

/// `3600000` -> `1h`.
fn human(ms: i64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}s", ms / 1000)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    match args.command {
        Command::Query(q) => query(&api, &q, args.server.output),
        Command::Export(e) => export(&api, &e),
        Command::Trace { id } => {
            let trace = api.get(&format!("/v1/events/{}/trace", encode(&id)))?;
            match args.server.output {
                Output::Text => print!("{}", render_trace(&trace)),
                _ => println!("{trace}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Attachment { id } => {
            let body = api.get(&format!("/v1/events/{}/attachment", encode(&id)))?;
            match (&body, args.server.output) {
                (Value::String(text), _) => println!("{text}"),
                (_, Output::Text) => println!("{}", serde_json::to_string_pretty(&body)?),
                _ => println!("{body}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `fleetbus timeline RESOURCE`: newest first, each entry with what caused it and
/// how many events it caused.
pub fn timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    let answer = api.get(&format!(
        "/v1/events?resource={}&limit={}",
        encode(&args.resource),
        args.limit.clamp(1, 1_000)
    ))?;
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    match args.server.output {
        Output::Json => println!("{}", Value::Array(events)),
        Output::Ndjson => events.iter().for_each(|e| println!("{e}")),
        Output::Text => {
            if events.is_empty() {
                println!("no events name {}", args.resource);
            }
            let ids: std::collections::HashSet<&str> = events
                .iter()
                .filter_map(|e| e["event"]["id"].as_str())
                .collect();
            for e in &events {
                let mut line = row(e);
                if let Some(cause) = e["meta"]["causation_id"].as_str() {
                    let marker = if ids.contains(cause) {
                        ""
                    } else {
                        " (not on this timeline)"
                    };
                    let _ = write!(line, "  <- caused by {cause}{marker}");
                }
                let effects = events
                    .iter()
                    .filter(|o| o["meta"]["causation_id"] == e["event"]["id"])
                    .count();
                if effects > 0 {
                    let _ = write!(line, "  -> caused {effects}");
                }
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows every page, oldest first, writing each event as it comes.
fn export(api: &Api, e: &ExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut params = vec!["order=oldest".to_owned(), "limit=1000".to_owned()];
    params.extend(e.filters.params());
    let stdout = std::io::stdout().lock();
    let n = if e.plain {
        let mut w = std::io::BufWriter::new(stdout);
        let n = write_pages(api, &params, &mut w)?;
        w.flush()?;
        n
    } else {
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(stdout),
            flate2::Compression::default(),
        );
        let n = write_pages(api, &params, &mut gz)?;
        // The gzip trailer is written here, not left to a drop that hides errors.
        gz.finish()?.flush()?;
        n
    };
    eprintln!("exported {n} events");
    Ok(ExitCode::SUCCESS)
}

/// Writes every page's events as NDJSON; returns how many.
fn write_pages(api: &Api, params: &[String], out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
    let mut cursor: Option<String> = None;
    let mut n: u64 = 0;
    loop {
        let mut path = format!("/v1/events?{}", params.join("&"));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let answer = api.get(&path)?;
        for ev in answer["events"].as_array().into_iter().flatten() {
            writeln!(out, "{ev}")?;
            n += 1;
            if n.is_multiple_of(10_000) {
                eprintln!("exported {n} events...");
            }
        }
        match answer["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(n),
        }
    }
}

fn query(api: &Api, q: &QueryArgs, output: Output) -> anyhow::Result<ExitCode> {
    let mut params = q.filters.params();
    if q.oldest_first {
        params.push("order=oldest".into());
    }
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    while events.len() < q.limit {
        let mut path = format!("/v1/events?limit={}", (q.limit - events.len()).min(1_000));
        for p in &params {
            path.push('&');
            path.push_str(p);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let answer = api.get(&path)?;
        for e in answer["events"].as_array().into_iter().flatten() {
            if output == Output::Ndjson {
                // Streamed: a long query shows its first events at once.
                println!("{e}");
            }
            events.push(e.clone());
        }
        match answer["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    match output {
        Output::Ndjson => {}
        Output::Json => println!("{}", Value::Array(events)),
        Output::Text => {
            if events.is_empty() {
                println!("no events match");
            }
            for e in &events {
                println!("{}", row(e));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `time  source  detail-type  id  resources`
fn row(e: &Value) -> String {
    let ev = &e["event"];
    let resources: Vec<&str> = ev["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{}  {:<22} {:<32} {}  {}",
        ev["time"].as_str().unwrap_or(""),
        ev["source"].as_str().unwrap_or(""),
        ev["detail-type"].as_str().unwrap_or(""),
        ev["id"].as_str().unwrap_or(""),
        resources.join(" ")
    )
}

/// The trace as an indented tree: the causes from the root down, then the event
/// and its effects.
fn render_trace(t: &Value) -> String {
    let mut out = String::new();
    let causes = t["causes"].as_array().cloned().unwrap_or_default();
    for (depth, c) in causes.iter().enumerate() {
        let _ = writeln!(out, "{}{}", "  ".repeat(depth), node(c));
    }
    fn walk(out: &mut String, n: &Value, depth: usize, mark: &str) {
        let _ = writeln!(out, "{}{mark}{}", "  ".repeat(depth), node(n));
        for e in n["effects"].as_array().into_iter().flatten() {
            walk(out, e, depth + 1, "");
        }
    }
    walk(&mut out, &t["tree"], causes.len(), "* ");
    if t["truncated"] == true {
        out.push_str("(the trace stops at its limit; more effects may exist)\n");
    }
    out
}

/// One line of a trace: what happened, and for a delivery outcome its rule,
/// target and status.
fn node(n: &Value) -> String {
    let ev = &n["event"];
    let d = &ev["detail"];
    let mut line = format!(
        "{} {} [{}] {}",
        ev["time"].as_str().unwrap_or(""),
        ev["detail-type"].as_str().unwrap_or(""),
        ev["source"].as_str().unwrap_or(""),
        ev["id"].as_str().unwrap_or("")
    );
    if let (Some(rule), Some(target)) = (d["rule"].as_str(), d["target"].as_str()) {
        let _ = write!(line, "  rule {rule} -> target {target}");
        if let Some(s) = d["status"].as_str() {
            let _ = write!(line, ": {s}");
        }
        if let Some(e) = d["error"].as_str() {
            let _ = write!(line, ": {e}");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("device/C02 X"), "device%2FC02%20X");
        assert_eq!(encode("{\"a\":[1]}"), "%7B%22a%22%3A%5B1%5D%7D");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn trends_render_busiest_first_with_sparklines() {
        let c = serde_json::json!({
            "start": 1_800_000_000_000_i64, "bucket_ms": 3_600_000, "buckets": 4,
            "series": {"Quiet": [0, 1, 0, 0], "Busy": [8, 4, 0, 2]}, "truncated": false
        });
        assert_eq!(
            render_trends(&c, "detail-type", 10),
            "detail-type per 1h, 2027-01-15T08:00:00Z .. 2027-01-15T12:00:00Z (4 buckets)\n  Busy         14  █▄ ▂\n  Quiet         1   █  \n"
        );
        assert!(render_trends(&c, "x", 1).ends_with("  ... 1 more (--top)\n"));
        assert_eq!(sparkline(&[1, 2, 3, 4, 5, 6, 7, 8]), "▁▂▃▄▅▆▇█");
        assert_eq!(human(86_400_000), "1d");
        assert_eq!(human(90_000), "90s");
    }

    #[test]
    fn traces_render_as_an_indented_tree() {
        let ev = |id: &str, dt: &str, detail: Value| serde_json::json!({"event": {"id": id, "detail-type": dt, "source": "s", "time": "t", "detail": detail}, "meta": {}});
        let mut tree = ev("b", "Locked", serde_json::json!({}));
        tree["effects"] = serde_json::json!([{
            "event": ev("c", "Target Delivery Succeeded", serde_json::json!({"rule": "r", "target": "slack", "status": "200"}))["event"],
            "effects": []
        }]);
        let t = serde_json::json!({"causes": [ev("a", "User Deactivated", serde_json::json!({}))], "tree": tree, "truncated": false});
        assert_eq!(
            render_trace(&t),
            "t User Deactivated [s] a\n  * t Locked [s] b\n    t Target Delivery Succeeded [s] c  rule r -> target slack: 200\n"
        );
    }
}
