//! `fleetbus config schema`: the configuration's JSON Schema.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the JSON Schema of the configuration file (for editors' YAML support).
    Schema,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&fleetbus_config::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
