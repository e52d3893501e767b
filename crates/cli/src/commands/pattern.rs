//! `fleetbus test-pattern`, `explain` and `match`.

use std::process::ExitCode;

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
}

#[derive(Debug, clap::Args)]
pub struct MatchArgs {
    /// A JSON list of `{"name": ..., "pattern": {...}}`.
    #[arg(long)]
    patterns: String,
    /// NDJSON events, optionally gzip-compressed.
    #[arg(long)]
    events: String,
}

pub fn test(_args: TestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("test-pattern is not built yet")
}

pub fn explain(_args: ExplainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("explain is not built yet")
}

pub fn count(_args: MatchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("match is not built yet")
}
