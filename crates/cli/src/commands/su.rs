//! `fleetbus su status`: where the fleet stands against the required macOS version,
//! from a running server (`GET /v1/software-update/status`); `fleetbus su evaluate`
//! asks the `software_update:` policy to look at every Mac now.

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
    /// How many Macs run the required version, and for each that does not, where
    /// it is in the update and what happens next. Exits 1 when any is behind.
    Status {
        /// The required version: Macs below it are behind (default: the newest
        /// macOS release an os-feed source published).
        #[arg(long)]
        below: Option<String>,
        /// Only Macs with this tag (group) in the asset store.
        #[arg(long, alias = "tag")]
        group: Option<String>,
    },
    /// Under a `software_update:` policy: look at every Mac now (after changing
    /// the policy, or to escalate without waiting for its schedule).
    Evaluate,
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    let (below, group) = match &args.command {
        Command::Status { below, group } => (below, group),
        Command::Evaluate => {
            let answer = api.post("/v1/software-update/evaluate", None)?;
            if args.server.output != Output::Text {
                println!("{answer}");
            } else {
                println!(
                    "evaluation asked for (event {}); `fleetbus su status` shows where each Mac stands",
                    s(&answer["event_id"])
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut query = Vec::new();
    if let Some(v) = below {
        query.push(format!("version={}", encode(v)));
    }
    if let Some(t) = group {
        query.push(format!("tag={}", encode(t)));
    }
    let path = if query.is_empty() {
        "/v1/software-update/status".to_owned()
    } else {
        format!("/v1/software-update/status?{}", query.join("&"))
    };
    let answer = api.get(&path)?;
    let behind = answer["non_compliant"].as_u64().unwrap_or(0);
    if args.server.output != Output::Text {
        println!("{answer}");
    } else {
        if answer["required_from"] == "policy" {
            println!(
                "software_update policy: {} of {} enrolled Macs compliant, {behind} behind",
                answer["compliant"], answer["devices"],
            );
            for r in answer["requirements"].as_array().into_iter().flatten() {
                println!(
                    "  {}: {} compliant, {} behind",
                    s(&r["name"]),
                    r["compliant"],
                    r["non_compliant"]
                );
            }
        } else {
            println!(
                "macOS {} required ({}): {} of {} enrolled Macs compliant, {behind} behind",
                s(&answer["required_version"]),
                if answer["required_from"] == "os-feed" {
                    "newest published release"
                } else {
                    "as asked"
                },
                answer["compliant"],
                answer["devices"],
            );
        }
        for d in answer["behind"].as_array().into_iter().flatten() {
            let target = match (d["required_version"].as_str(), d["deadline"].as_str()) {
                (Some(v), Some(by)) => format!(" -> {v} by {by}"),
                (Some(v), None) => format!(" -> {v}"),
                _ => String::new(),
            };
            let action = d["install_action"]
                .as_str()
                .map(|a| format!(" [{a}]"))
                .unwrap_or_default();
            println!(
                "  {}  {}{target}  {}{action}{}\n      next: {}",
                s(&d["serial"]),
                s(&d["os_version"]),
                s(&d["state"]),
                d["why"]
                    .as_str()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default(),
                s(&d["next"]),
            );
        }
    }
    Ok(if behind > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
