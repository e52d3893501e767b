//! `fleetbus ulog ...`: filter, summarise and extract events from macOS unified logs
//! (`log show --style json|ndjson` output, plain or gzip, from a file or stdin).

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use fleetbus_ulog::entry::{compact_json, format_compact};
use fleetbus_ulog::extract::{EnvelopeOptions, RuleSpec};
use fleetbus_ulog::summary::{Counter, GroupBy};
use fleetbus_ulog::{Extractor, LogEntry, LogReader, Predicate, StrField};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the entries matching a `log --predicate` style predicate (exit 1 if none).
    Filter(FilterArgs),
    /// Count entries by subsystem, category, process or message type.
    Summary(SummaryArgs),
    /// Print the events the extraction rules produce, as NDJSON EventBridge envelopes.
    Events(EventsArgs),
    /// Print a device's own token for a `unified-log` source with `device_key`, to
    /// deploy to that Mac's log shipper: it is accepted for that serial only.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The device's serial number.
    serial: String,
    /// Configuration file or directory.
    #[arg(short, long, default_value = "fleetbus.yaml")]
    config: std::path::PathBuf,
    /// The `unified-log` source (default: the only one with a `device_key`).
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, clap::Args)]
struct FilterArgs {
    /// NSPredicate, e.g. 'subsystem == "com.apple.ManagedClient" AND eventMessage CONTAINS[c] "token"'.
    #[arg(long, short)]
    predicate: String,
    /// `log show --style json|ndjson` output, optionally gzip; `-` for stdin.
    #[arg(default_value = "-")]
    input: String,
    /// Output style: `ndjson` (one entry per line, every field) or `compact` (like `log`).
    #[arg(long, value_enum, default_value_t = Style::Ndjson)]
    style: Style,
    /// Print read counters (entries, junk lines, bytes, matches) to stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Parse every entry instead of skipping those the literal prefilter rules out.
    #[arg(long, hide = true)]
    no_prefilter: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Style {
    Ndjson,
    Compact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Subsystem,
    Category,
    Process,
    #[value(name = "messageType", alias = "message-type")]
    MessageType,
    #[value(name = "eventType", alias = "event-type")]
    EventType,
    Sender,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct SummaryArgs {
    /// `log show --style json|ndjson` output, optionally gzip; `-` for stdin.
    #[arg(default_value = "-")]
    input: String,
    /// What to count by.
    #[arg(long, value_enum, default_value_t = By::Subsystem)]
    by: By,
    /// List the distinct subsystems (sorted) instead of counting.
    #[arg(long, conflicts_with_all = ["list_categories", "list_processes"])]
    list_subsystems: bool,
    /// List the distinct categories (of `--subsystem` when given).
    #[arg(long, conflicts_with = "list_processes")]
    list_categories: bool,
    /// List the distinct processes.
    #[arg(long)]
    list_processes: bool,
    /// Only entries of this subsystem.
    #[arg(long)]
    subsystem: Option<String>,
    /// Only entries matching this predicate.
    #[arg(long, short)]
    predicate: Option<String>,
    /// Show only the N largest groups.
    #[arg(long)]
    top: Option<usize>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct EventsArgs {
    /// `log show --style json|ndjson` output, optionally gzip; `-` for stdin.
    #[arg(default_value = "-")]
    input: String,
    /// The device's serial number: `resources: ["device/<serial>"]`.
    #[arg(long)]
    device: Option<String>,
    /// Extra extraction rules: a YAML or JSON list of rules (see the fleetbus-ulog README).
    #[arg(long)]
    rules: Option<String>,
    /// Use only the rules from `--rules`.
    #[arg(long, requires = "rules")]
    no_builtin: bool,
    /// The events' `source`.
    #[arg(long, default_value = fleetbus_ulog::extract::DEFAULT_SOURCE)]
    source: String,
    /// The events' `account`.
    #[arg(long, default_value = "000000000000")]
    account: String,
    /// The events' `region`.
    #[arg(long, default_value = "local")]
    region: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Filter(a) => filter(a),
        Command::Summary(a) => summary(a),
        Command::Events(a) => events(a),
        Command::Token(a) => token(a),
    }
}

fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let config = fleetbus_config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keyed: Vec<&fleetbus_config::Source> = config
        .sources
        .iter()
        .filter(|s| s.device_key.is_some())
        .filter(|s| args.source.as_deref().is_none_or(|n| n == s.name))
        .collect();
    let source = match keyed.as_slice() {
        [one] => *one,
        [] => bail!(
            "no unified-log source{} has a device_key in {}",
            args.source
                .as_deref()
                .map(|n| format!(" named {n:?}"))
                .unwrap_or_default(),
            args.config.display()
        ),
        many => bail!(
            "several sources have a device_key ({}): name one with --source",
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let Some(serial) = Some(args.serial.as_str()).filter(|s| {
        !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }) else {
        bail!(
            "serial {:?}: letters, digits or '-', at most 64",
            args.serial
        );
    };
    let key = source.device_key.as_ref().expect("filtered on device_key");
    println!(
        "{}",
        fleetbus_server::sources::unified_log::device_token(key, serial)
    );
    Ok(ExitCode::SUCCESS)
}

fn open_input(input: &str) -> anyhow::Result<LogReader<Box<dyn BufRead>>> {
    let source: Box<dyn Read> = if input == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(input).with_context(|| format!("opening {input}"))?)
    };
    fleetbus_ulog::open(source).with_context(|| format!("reading {input}"))
}

fn parse_predicate(p: &str) -> anyhow::Result<Predicate> {
    Predicate::parse(p).map_err(|e| anyhow::anyhow!("{}", e.render(p)))
}

/// Ends quietly when the reader of our output went away (`| head`).
fn finish_output(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing output"),
    }
}

fn filter(args: FilterArgs) -> anyhow::Result<ExitCode> {
    let pred = parse_predicate(&args.predicate)?;
    let mut reader = open_input(&args.input)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut matched: u64 = 0;
    let mut compacted = Vec::new();
    let write_result = (|| -> anyhow::Result<io::Result<()>> {
        while let Some(raw) = reader.next_record()? {
            if !args.no_prefilter && !pred.may_match(raw) {
                continue;
            }
            let entry = match LogEntry::parse(raw) {
                Ok(e) => e,
                Err(_) => {
                    reader.reject_last();
                    continue;
                }
            };
            if !pred.matches(&entry) {
                continue;
            }
            matched += 1;
            let written = match args.style {
                Style::Compact => writeln!(out, "{}", format_compact(&entry)),
                Style::Ndjson if raw.contains(&b'\n') => {
                    compacted.clear();
                    compact_json(raw, &mut compacted);
                    compacted.push(b'\n');
                    out.write_all(&compacted)
                }
                Style::Ndjson => out.write_all(raw).and_then(|()| out.write_all(b"\n")),
            };
            if let Err(e) = written {
                return Ok(Err(e));
            }
        }
        Ok(out.flush())
    })()?;
    finish_output(write_result)?;
    if args.stats {
        let s = reader.stats();
        eprintln!(
            "entries {} junk_lines {} bytes {} matched {}",
            s.entries, s.junk_lines, s.bytes, matched
        );
    }
    Ok(if matched > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let pred = args.predicate.as_deref().map(parse_predicate).transpose()?;
    let group = if args.list_subsystems {
        GroupBy::Subsystem
    } else if args.list_categories {
        GroupBy::Category
    } else if args.list_processes {
        GroupBy::Process
    } else {
        match args.by {
            By::Subsystem => GroupBy::Subsystem,
            By::Category => GroupBy::Category,
            By::Process => GroupBy::Process,
            By::MessageType => GroupBy::MessageType,
            By::EventType => GroupBy::EventType,
            By::Sender => GroupBy::Sender,
        }
    };
    let listing = args.list_subsystems || args.list_categories || args.list_processes;
    let mut reader = open_input(&args.input)?;
    let mut counter = Counter::default();
    let stats = reader.for_each_entry(|_, entry| {
        if let Some(s) = &args.subsystem {
            if entry.get_str(StrField::Subsystem) != Some(s.as_str()) {
                return true;
            }
        }
        if pred.as_ref().is_some_and(|p| !p.matches(entry)) {
            return true;
        }
        counter.add(group.key(entry));
        true
    })?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = if listing {
        let names = counter.names();
        match args.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string(&names)?),
            Output::Text => names.iter().try_for_each(|n| writeln!(out, "{n}")),
        }
    } else {
        let mut rows = counter.sorted();
        if let Some(n) = args.top {
            rows.truncate(n);
        }
        match args.output {
            Output::Json => {
                let groups: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(k, n)| serde_json::json!({"name": k, "count": n}))
                    .collect();
                let doc = serde_json::json!({
                    "total": counter.total(),
                    "groups": groups,
                    "junk_lines": stats.junk_lines,
                });
                writeln!(out, "{doc}")
            }
            Output::Text => (|| {
                let width = rows.first().map_or(1, |(_, n)| n.to_string().len());
                for (k, n) in &rows {
                    let name = if k.is_empty() { "(none)" } else { k };
                    writeln!(out, "{n:>width$} {name}")?;
                }
                writeln!(out, "{:>width$} total", counter.total())?;
                if stats.junk_lines > 0 {
                    writeln!(out, "({} junk lines skipped)", stats.junk_lines)?;
                }
                Ok(())
            })(),
        }
    };
    finish_output(result.and_then(|()| out.flush()))?;
    Ok(ExitCode::SUCCESS)
}

fn load_rules(path: &str) -> anyhow::Result<Vec<RuleSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        serde_json::from_str(&text).with_context(|| format!("{path}: invalid rules"))
    } else {
        serde_saphyr::from_str(&text).with_context(|| format!("{path}: invalid rules"))
    }
}

fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let user = args.rules.as_deref().map(load_rules).transpose()?;
    let extractor = match (args.no_builtin, user) {
        (true, Some(rules)) => Extractor::new(rules)?,
        (false, Some(rules)) => Extractor::builtin().with_rules(rules)?,
        (_, None) => Extractor::builtin(),
    }
    .with_options(EnvelopeOptions {
        source: args.source,
        account: args.account,
        region: args.region,
    });
    if extractor.rules().is_empty() {
        bail!("no extraction rules");
    }
    let mut reader = open_input(&args.input)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_err = None;
    reader.for_each_entry(|_, entry| {
        for event in extractor.events(entry, args.device.as_deref()) {
            if let Err(e) = writeln!(out, "{event}") {
                write_err = Some(e);
                return false;
            }
        }
        true
    })?;
    finish_output(match write_err {
        Some(e) => Err(e),
        None => out.flush(),
    })?;
    Ok(ExitCode::SUCCESS)
}
