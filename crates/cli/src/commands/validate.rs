//! `fleetbus validate`: check a configuration and report every error at once.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file or directory of YAML files.
    #[arg(short, long, default_value = "fleetbus.yaml")]
    config: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("validate is not built yet")
}
