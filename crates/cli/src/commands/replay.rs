//! `fleetbus replay start|describe|list|cancel|archives`: EventBridge-style replays
//! of a running server's archive, through its authenticated API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

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
    /// Deliver the archived events of a window again, to the chosen rules (or every
    /// rule of the bus), each with `replay-name` set.
    Start {
        /// The archive: `default` (every event) or a name from `archives:`.
        #[arg(long, default_value = "default")]
        archive: String,
        /// Start of the window: RFC 3339, or a duration before now (`7d`).
        #[arg(long)]
        since: String,
        /// End of the window (default: now).
        #[arg(long)]
        until: Option<String>,
        /// A rule to deliver to (repeat for several; default: every rule of the bus).
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// The replay's name (default: `replay-<time>`).
        #[arg(long)]
        name: Option<String>,
        /// For the default archive: the bus whose events are replayed.
        #[arg(long)]
        bus: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Follow the replay until it ends, printing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// One replay's state and progress.
    Describe { name: String },
    /// Every replay, most recent first.
    List,
    /// Stop a starting or running replay.
    Cancel { name: String },
    /// The archives a replay can read.
    Archives,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    let text = args.server.output == Output::Text;
    match args.command {
        Command::Start {
            archive,
            since,
            until,
            rules,
            name,
            bus,
            description,
            wait,
        } => {
            let body = json!({
                "archive": archive,
                "since": since,
                "until": until,
                "rules": rules,
                "name": name,
                "bus": bus,
                "description": description,
            });
            let mut r = api.post("/v1/replays", Some(&body.to_string()))?;
            if !text {
                println!("{r}");
            } else {
                println!(
                    "replay {} {} (archive {}, {} to {})",
                    s(&r["name"]),
                    s(&r["state"]),
                    s(&r["archive"]),
                    s(&r["event_start_time"]),
                    s(&r["event_end_time"])
                );
            }
            if wait {
                let path = format!("/v1/replays/{}", encode(s(&r["name"])));
                let mut last = String::new();
                loop {
                    let line = progress(&r);
                    if text && line != last {
                        eprintln!("{line}");
                        last = line;
                    }
                    if matches!(s(&r["state"]), "COMPLETED" | "CANCELLED" | "FAILED") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    r = api.get(&path)?;
                }
                if !text {
                    println!("{r}");
                }
                if s(&r["state"]) != "COMPLETED" {
                    bail!(
                        "replay {} ended {}: {}",
                        s(&r["name"]),
                        s(&r["state"]),
                        s(&r["state_reason"])
                    );
                }
            }
        }
        Command::Describe { name } => {
            let r = api.get(&format!("/v1/replays/{}", encode(&name)))?;
            if !text {
                println!("{r}");
            } else {
                describe(&r);
            }
        }
        Command::List => {
            let all = api.get("/v1/replays")?;
            if !text {
                println!("{all}");
                return Ok(ExitCode::SUCCESS);
            }
            let list = all["replays"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no replays");
            }
            for r in list {
                println!(
                    "{:<32} {:<10} archive {:<16} events {:<8} started {}",
                    s(&r["name"]),
                    s(&r["state"]),
                    s(&r["archive"]),
                    r["events_replayed"],
                    s(&r["replay_start_time"])
                );
            }
        }
        Command::Cancel { name } => {
            let r = api.post(&format!("/v1/replays/{}/cancel", encode(&name)), None)?;
            if !text {
                println!("{r}");
            } else {
                println!("replay {} {}", s(&r["name"]), s(&r["state"]));
            }
        }
        Command::Archives => {
            let all = api.get("/v1/archives")?;
            if !text {
                println!("{all}");
                return Ok(ExitCode::SUCCESS);
            }
            for a in all["archives"].as_array().cloned().unwrap_or_default() {
                let pattern = match &a["event_pattern"] {
                    Value::Null => "every event".to_owned(),
                    p => p.to_string(),
                };
                println!(
                    "{:<24} retention {}d  {}  {}",
                    s(&a["name"]),
                    a["retention_days"],
                    pattern,
                    s(&a["description"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(r: &Value) -> String {
    format!(
        "{} {}: {} events replayed, {} deliveries queued, last replayed {}",
        s(&r["name"]),
        s(&r["state"]),
        r["events_replayed"],
        r["deliveries_queued"],
        r["event_last_replayed_time"].as_str().unwrap_or("-")
    )
}

fn describe(r: &Value) {
    let rules = r["rules"]
        .as_array()
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.iter()
                .map(|v| s(v).to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "every rule of the bus".into());
    for (k, v) in [
        ("name", s(&r["name"]).to_owned()),
        ("state", s(&r["state"]).to_owned()),
        ("reason", s(&r["state_reason"]).to_owned()),
        ("archive", s(&r["archive"]).to_owned()),
        ("bus", s(&r["bus"]).to_owned()),
        ("rules", rules),
        (
            "window",
            format!(
                "{} to {}",
                s(&r["event_start_time"]),
                s(&r["event_end_time"])
            ),
        ),
        (
            "last replayed",
            s(&r["event_last_replayed_time"]).to_owned(),
        ),
        ("events", r["events_replayed"].to_string()),
        ("deliveries", r["deliveries_queued"].to_string()),
        ("started", s(&r["replay_start_time"]).to_owned()),
        ("ended", s(&r["replay_end_time"]).to_owned()),
    ] {
        if !v.is_empty() {
            println!("{k:<14} {v}");
        }
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
