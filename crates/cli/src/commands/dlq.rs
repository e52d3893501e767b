//! `fleetbus dlq list|redrive`: the dead-letter queue of a running server, through
//! its authenticated API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Configuration of the server (its listen address and first API token).
    #[arg(
        short,
        long,
        default_value = "fleetbus.yaml",
        env = "FLEETBUS_CONFIG",
        global = true
    )]
    config: PathBuf,
    /// Server URL (default: http://<server.listen>).
    #[arg(long, env = "FLEETBUS_URL", global = true)]
    url: Option<String>,
    #[arg(long, value_enum, default_value_t, global = true)]
    output: Output,
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
    let config = fleetbus_config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    let token = config
        .server
        .api_tokens
        .first()
        .context("server.api_tokens is empty: no token to call the API with")?;
    let (method, path, body) = match &args.command {
        Command::List { limit } => ("GET", format!("/v1/dlq?limit={limit}"), None),
        Command::Redrive { ids } if ids.is_empty() => ("POST", "/v1/dlq/redrive".to_owned(), None),
        Command::Redrive { ids } => (
            "POST",
            "/v1/dlq/redrive".to_owned(),
            Some(serde_json::json!({ "ids": ids }).to_string()),
        ),
    };
    let answer = super::http::call(&base, method, &path, token.expose(), body.as_deref())?;
    if args.output == Output::Json {
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
