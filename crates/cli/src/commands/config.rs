//! `fleetbus config schema|reference`: the configuration's JSON Schema, and the
//! Markdown reference generated from it (`docs/configuration.md`).

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
    /// Print the configuration reference as Markdown: every key with its type,
    /// description, default and an example (`docs/configuration.md`).
    Reference,
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
        Command::Reference => {
            print!("{}", fleetbus_config::reference_markdown());
            Ok(ExitCode::SUCCESS)
        }
    }
}
