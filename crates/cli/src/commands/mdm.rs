//! `fleetbus mdm ...`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {}
}
