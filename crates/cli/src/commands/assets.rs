//! `fleetbus assets ...`: the asset store of a running server, through its
//! authenticated API (devices, users, CSV import, the MDM command ledger).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::http::{encode, Api, ServerArgs};
use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Action,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Import an inventory CSV (fleetbus or Jamf Pro column names); all rows or none.
    Import {
        /// The CSV file, or `-` for stdin.
        file: PathBuf,
    },
    /// List devices, optionally filtered.
    Devices {
        /// Only this user's devices.
        #[arg(long)]
        user: Option<String>,
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only devices whose OS version is below this one, e.g. 14.6.
        #[arg(long)]
        os_below: Option<String>,
        /// Only enrolled devices.
        #[arg(long)]
        enrolled_only: bool,
    },
    /// One device with its escrowed PINs and MDM commands.
    Device { serial: String },
    /// List users.
    Users,
    /// One user with their devices.
    User { id: String },
    /// One MDM command from the ledger, by CommandUUID.
    Command { uuid: String },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(&args.server)?;
    let answer = match &args.command {
        Action::Import { file } => {
            let body = if file.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                    .context("reading stdin")?;
                b
            } else {
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
            };
            api.post_as("/v1/assets/import", "text/csv", &body)?
        }
        Action::Devices {
            user,
            tag,
            os_below,
            enrolled_only,
        } => {
            let mut query = Vec::new();
            for (k, v) in [("user", user), ("tag", tag), ("os_below", os_below)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", encode(v)));
                }
            }
            if *enrolled_only {
                query.push("enrolled_only=true".into());
            }
            api.get(&format!("/v1/assets/devices?{}", query.join("&")))?
        }
        Action::Device { serial } => api.get(&format!("/v1/assets/devices/{}", encode(serial)))?,
        Action::Users => api.get("/v1/assets/users")?,
        Action::User { id } => api.get(&format!("/v1/assets/users/{}", encode(id)))?,
        Action::Command { uuid } => api.get(&format!("/v1/mdm/commands/{}", encode(uuid)))?,
    };
    if args.server.output != Output::Text {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        Action::Import { .. } => println!(
            "imported {} device(s) and {} user(s)",
            answer["devices"], answer["users"]
        ),
        Action::Devices { .. } => {
            let devices = answer["devices"].as_array().cloned().unwrap_or_default();
            if devices.is_empty() {
                println!("no devices");
            }
            for d in devices {
                println!("{}", device_line(&d));
            }
        }
        Action::Users => {
            for u in answer["users"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<20} {:<30} {}",
                    s(&u["id"]),
                    s(&u["email"]),
                    s(&u["status"])
                );
            }
        }
        Action::User { .. } => {
            println!(
                "{}  {}  {}  {}",
                s(&answer["id"]),
                s(&answer["email"]),
                s(&answer["name"]),
                s(&answer["status"])
            );
            for d in answer["devices"].as_array().cloned().unwrap_or_default() {
                println!("  {}", device_line(&d));
            }
        }
        // Records are nested and few: pretty JSON reads best.
        Action::Device { .. } | Action::Command { .. } => {
            println!("{}", serde_json::to_string_pretty(&answer)?)
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn device_line(d: &Value) -> String {
    format!(
        "{:<14} {:<24} {:<16} {:<8} {:<10} {}",
        s(&d["serial"]),
        s(&d["name"]),
        s(&d["model"]),
        s(&d["os_version"]),
        s(&d["enrollment_state"]),
        s(&d["user_id"])
    )
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}
