//! The `fleetbus` binary: one entry point for every command.
//!
//! Exit codes, everywhere: 0 success, 1 a negative answer (e.g. "does not match"),
//! 2 a usage, input or configuration error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

// Ingest allocates and frees many small buffers across threads; glibc's
// allocator spent about a fifth of the server's time there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fleetbus: an event-driven engine for a fleet of devices, users and cloud resources.
#[derive(Debug, Parser)]
#[command(name = "fleetbus", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version.
    Version,
    /// Run the engine and its HTTP API.
    Serve(commands::serve::Args),
    /// The dead-letter queue of a running server.
    Dlq(commands::dlq::Args),
    /// The archive of a running server: query events, trace what caused what.
    Events(commands::events::Args),
    /// A node's timeline (device/SERIAL, user/ID), with what caused each entry.
    Timeline(commands::events::TimelineArgs),
    /// Counts of archived events over time, per group, as a terminal chart.
    Trends(commands::events::TrendsArgs),
    /// Replays of the archive (as EventBridge's): start, follow, list, cancel.
    Replay(commands::replay::Args),
    /// The asset store of a running server: devices, users, CSV import, MDM commands.
    Assets(commands::assets::Args),
    /// Copy a data directory's stores while fleetbus serve runs (consistent snapshot).
    Backup(commands::backup::BackupArgs),
    /// Put a backup into a data directory while no fleetbus serve uses it.
    Restore(commands::backup::RestoreArgs),
    /// Run a candidate configuration's rules over a server's archive, delivering
    /// nothing: what would fire, against what fires today (exit 1 if it differs).
    Simulate(commands::simulate::Args),
    /// Software update: where the fleet stands against the required macOS version.
    Su(commands::su::Args),
    /// Check a configuration file or directory and report every error.
    Validate(commands::validate::Args),
    /// Configuration helpers (JSON Schema for editors).
    Config(commands::config::Args),
    /// Test whether an EventBridge pattern matches an event.
    TestPattern(commands::pattern::TestArgs),
    /// Explain why a pattern does or does not match an event.
    Explain(commands::pattern::ExplainArgs),
    /// Count matches of many named patterns over an NDJSON event file.
    Match(commands::pattern::MatchArgs),
    /// Apple MDM commands, responses and check-ins.
    Mdm(commands::mdm::Args),
    /// macOS unified logs: filter, summarise, extract events.
    Ulog(commands::ulog::Args),
}

/// Exit code for usage, input and configuration errors.
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_ERROR),
            };
        }
    };
    let result = match cli.command {
        Command::Version => {
            println!(
                "fleetbus {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("FLEETBUS_COMMIT")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => commands::serve::run(args),
        Command::Dlq(args) => commands::dlq::run(args),
        Command::Events(args) => commands::events::run(args),
        Command::Timeline(args) => commands::events::timeline(args),
        Command::Trends(args) => commands::events::trends(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Assets(args) => commands::assets::run(args),
        Command::Backup(args) => commands::backup::backup(args),
        Command::Restore(args) => commands::backup::restore(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Su(args) => commands::su::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::TestPattern(args) => commands::pattern::test(args),
        Command::Explain(args) => commands::pattern::explain(args),
        Command::Match(args) => commands::pattern::count(args),
        Command::Mdm(args) => commands::mdm::run(args),
        Command::Ulog(args) => commands::ulog::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
