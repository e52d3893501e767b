//! `fleetbus validate`: check a configuration and report every error at once.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file or directory of YAML files.
    #[arg(short, long, default_value = "fleetbus.yaml", env = "FLEETBUS_CONFIG")]
    config: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // What `serve` would refuse when building targets (a header name, a URL) is a
    // validation error too, located like the others.
    let loaded = fleetbus_config::load(&args.config).and_then(|config| {
        let built = fleetbus_targets::check_builds(&config);
        if built.is_empty() {
            Ok(config)
        } else {
            Err(fleetbus_config::ConfigErrors(built))
        }
    });
    match loaded {
        Ok(config) => {
            let (rules, sources, buses) =
                (config.rules.len(), config.sources.len(), config.buses.len());
            let targets: usize = config.rules.iter().map(|r| r.targets.len()).sum();
            match args.output {
                Output::Text => println!(
                    "{}: ok ({rules} rules, {targets} targets, {sources} sources, {buses} buses)",
                    args.config.display()
                ),
                Output::Json | Output::Ndjson => println!(
                    "{}",
                    json!({"ok": true, "rules": rules, "targets": targets, "sources": sources, "buses": buses})
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            match args.output {
                Output::Text => {
                    eprintln!("{errors}");
                    eprintln!("{}: {} error(s)", args.config.display(), errors.0.len());
                }
                Output::Json | Output::Ndjson => {
                    let list: Vec<_> = errors
                        .0
                        .iter()
                        .map(|e| json!({"file": e.file, "line": e.loc.line, "column": e.loc.col, "path": e.path, "message": e.message}))
                        .collect();
                    println!("{}", json!({"ok": false, "errors": list}));
                }
            }
            Ok(ExitCode::from(crate::EXIT_ERROR))
        }
    }
}
