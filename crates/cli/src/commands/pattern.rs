//! `fleetbus test-pattern`, `explain` and `match`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use fleetbus_pattern::{Matcher, Pattern};

use super::input::read_json_arg;

/// Output format for commands whose output is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The pattern: a file path, `-` for stdin, or inline JSON.
    #[arg(long)]
    pattern: String,
    /// The event: a file path, `-` for stdin, or inline JSON.
    #[arg(long)]
    event: String,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The pattern: a file path, `-` for stdin, or inline JSON.
    #[arg(long)]
    pattern: String,
    /// The event: a file path, `-` for stdin, or inline JSON.
    #[arg(long)]
    event: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, clap::Args)]
pub struct MatchArgs {
    /// A JSON list of `{"name": ..., "pattern": {...}}`.
    #[arg(long)]
    patterns: String,
    /// NDJSON events, optionally gzip-compressed (`.gz`), or `-` for stdin.
    #[arg(long)]
    events: String,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

fn load_pair(pattern: &str, event: &str) -> anyhow::Result<(Pattern, String)> {
    if pattern == "-" && event == "-" {
        anyhow::bail!("only one of --pattern and --event can be read from stdin");
    }
    let ptext = read_json_arg(pattern).context("reading the pattern")?;
    let p = Pattern::parse(&ptext).context("invalid pattern")?;
    let etext = read_json_arg(event).context("reading the event")?;
    Ok((p, etext))
}

pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let (p, event) = load_pair(&args.pattern, &args.event)?;
    let mut m = Matcher::new();
    m.add_pattern((), &p)?;
    let hit = !m
        .matches_for_event(event.trim().as_bytes())
        .context("invalid event")?
        .is_empty();
    println!("{hit}");
    Ok(if hit {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (p, event) = load_pair(&args.pattern, &args.event)?;
    let ex = fleetbus_pattern::explain(&p, event.trim().as_bytes()).context("invalid event")?;
    match args.output {
        Output::Text => print!("{ex}"),
        Output::Json => {
            let branches: Vec<_> = ex
                .branches
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "matched": b.matched,
                        "array_conflict": b.array_conflict,
                        "failures": b.failures.iter().map(|f| serde_json::json!({
                            "path": f.path, "wanted": f.wanted, "had": f.had,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"matched": ex.matched, "branches": branches})
            );
        }
    }
    Ok(if ex.matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(serde::Deserialize)]
struct NamedPattern {
    name: String,
    pattern: serde_json::Value,
}

fn read_events(path: &str) -> anyhow::Result<Vec<u8>> {
    let mut raw = Vec::new();
    if path == "-" {
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("reading stdin")?;
    } else {
        raw = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {path}"))?;
        return Ok(out);
    }
    Ok(raw)
}

/// Counts matches per name index over the lines of `chunk`; `first_line` is the 1-based
/// number of the chunk's first line, for error messages.
fn count_chunk(
    m: &Matcher<u32>,
    chunk: &[u8],
    first_line: usize,
    names: usize,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut counts = vec![0u64; names];
    let mut events = 0;
    for (i, line) in chunk.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        events += 1;
        let hits = m
            .matches_for_event(line)
            .with_context(|| format!("event on line {}", first_line + i))?;
        for h in hits {
            counts[h as usize] += 1;
        }
    }
    Ok((counts, events))
}

pub fn count(args: MatchArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.patterns)
        .with_context(|| format!("reading {}", args.patterns))?;
    let list: Vec<NamedPattern> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON list of {{\"name\": ..., \"pattern\": {{...}}}}",
            args.patterns
        )
    })?;
    let mut names: Vec<String> = list.iter().map(|p| p.name.clone()).collect();
    names.sort();
    names.dedup();
    let mut m = Matcher::new();
    for (i, np) in list.iter().enumerate() {
        let p = Pattern::from_value(&np.pattern)
            .with_context(|| format!("pattern {} ({:?})", i + 1, np.name))?;
        let idx = names
            .binary_search(&np.name)
            .map_err(|_| anyhow::anyhow!("name index"))?;
        m.add_pattern(idx as u32, &p)?;
    }
    let data = read_events(&args.events)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Split at line boundaries into one chunk per thread.
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut line = 1;
    for t in 1..=threads {
        let mut end = if t == threads {
            data.len()
        } else {
            (data.len() * t / threads).max(start)
        };
        while end < data.len() && data[end - 1] != b'\n' {
            end += 1;
        }
        let chunk = &data[start..end];
        chunks.push((chunk, line));
        line += chunk.iter().filter(|b| **b == b'\n').count();
        start = end;
    }
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Vec<u64>, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|(c, l)| {
                let m = &m;
                let n = names.len();
                s.spawn(move || count_chunk(m, c, *l, n))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut totals = vec![0u64; names.len()];
    let mut events = 0;
    for r in results {
        let (c, e) = r?;
        events += e;
        for (t, x) in totals.iter_mut().zip(c) {
            *t += x;
        }
    }
    match args.output {
        Output::Text => {
            let mut out = String::new();
            for (n, c) in names.iter().zip(&totals) {
                out.push_str(&format!("{n} {c}\n"));
            }
            print!("{out}");
        }
        Output::Json => {
            let map: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .zip(&totals)
                .map(|(n, c)| (n.clone(), serde_json::Value::from(*c)))
                .collect();
            println!("{}", serde_json::json!({"events": events, "counts": map}));
        }
    }
    let mb = data.len() as f64 / 1e6;
    let secs = elapsed.max(1e-9);
    eprintln!(
        "matched {events} events ({mb:.1} MB) against {} patterns in {elapsed:.3} s on {threads} thread{}: {:.0} events/s, {:.1} MB/s",
        list.len(),
        if threads == 1 { "" } else { "s" },
        events as f64 / secs,
        mb / secs
    );
    Ok(ExitCode::SUCCESS)
}
