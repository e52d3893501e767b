//! `fleetbus dlq list|redrive`: the dead-letter queue of a running server, through
//! its authenticated API.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

use super::http::{Api, ServerArgs};
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
    /// List dead-lettered deliveries.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send dead-lettered deliveries back for delivery (all, or the given job ids).
    Redrive { ids: Vec<i64> },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    let (method, path, body) = match &args.command {
        Command::List { limit } => ("GET", format!("/v1/dlq?limit={limit}"), None),
        Command::Redrive { ids } if ids.is_empty() => ("POST", "/v1/dlq/redrive".to_owned(), None),
        Command::Redrive { ids } => (
            "POST",
            "/v1/dlq/redrive".to_owned(),
            Some(serde_json::json!({ "ids": ids }).to_string()),
        ),
    };
    let answer = match method {
        "GET" => api.get(&path)?,
        _ => api.post(&path, body.as_deref())?,
    };
    if args.server.output != Output::Text {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        Command::List { .. } => {
            let entries = answer["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                println!("the dead-letter queue is empty");
            }
            for e in entries {
                println!(
                    "job {}  rule {}  target {}  event {}  attempts {}  {}",
                    e["job_id"],
                    str_of(&e["rule"]),
                    str_of(&e["target"]),
                    str_of(&e["event_id"]),
                    e["attempts"],
                    str_of(&e["error"])
                );
            }
        }
        Command::Redrive { .. } => {
            let moved = answer["redriven"].as_array().map_or(0, Vec::len);
            if moved == 0 {
                bail!("nothing was redriven (no matching dead-lettered job)");
            }
            println!("redriven {moved} job(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
