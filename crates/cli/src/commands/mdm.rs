//! `fleetbus mdm ...`: list the command catalog, build validated command plists, and
//! parse device responses and check-in messages.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use fleetbus_mdm::catalog::{KeySpec, Os, ValueType};
use serde_json::{json, Map, Value};

use super::input::read_json_arg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: MdmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MdmCommand {
    /// List the MDM commands Apple documents, with a one-line description.
    Commands(CommandsArgs),
    /// Print a validated MDM command plist with a fresh CommandUUID.
    Command(Box<CommandArgs>),
    /// Parse a command response or check-in message (XML or binary plist) into JSON.
    Parse(ParseArgs),
}

#[derive(Debug, clap::Args)]
struct CommandsArgs {
    /// Only commands available on this OS (iOS, macOS, tvOS, visionOS, watchOS).
    #[arg(long)]
    os: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Xml,
    Binary,
    Json,
}

#[derive(Debug, clap::Args)]
// `--version` is ScheduleOSUpdate's ProductVersion here, not the program's version.
#[command(disable_version_flag = true)]
struct CommandArgs {
    /// The RequestType, e.g. DeviceLock.
    request_type: String,
    /// Top-level keys as KEY=VALUE; the value is converted to the key's type
    /// (arrays and dictionaries as JSON, data as base64 or @FILE).
    #[arg(value_name = "KEY=VALUE")]
    keys: Vec<String>,
    /// The payload (keys inside Command) as inline JSON, a file, or - for stdin.
    #[arg(long, value_name = "PAYLOAD")]
    json: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Xml)]
    format: Format,
    /// Use this CommandUUID instead of a fresh one.
    #[arg(long)]
    uuid: Option<String>,

    /// DeviceLock: the Find My PIN (macOS).
    #[arg(long, help_heading = "DeviceLock")]
    pin: Option<String>,
    /// DeviceLock: the message shown on the lock screen.
    #[arg(long, help_heading = "DeviceLock")]
    message: Option<String>,
    /// DeviceLock: the phone number shown on the lock screen.
    #[arg(long, help_heading = "DeviceLock")]
    phone_number: Option<String>,

    /// ScheduleOSUpdate: InstallASAP, InstallLater, DownloadOnly, NotifyOnly,
    /// InstallForceRestart or Default.
    #[arg(long, help_heading = "ScheduleOSUpdate")]
    action: Option<String>,
    /// ScheduleOSUpdate: the OS version to install (ProductVersion).
    #[arg(long, help_heading = "ScheduleOSUpdate")]
    version: Option<String>,
    /// ScheduleOSUpdate: the update's product key (ProductKey).
    #[arg(long, help_heading = "ScheduleOSUpdate")]
    key: Option<String>,
    /// ScheduleOSUpdate: how many times the user may defer (MaxUserDeferrals).
    #[arg(long, help_heading = "ScheduleOSUpdate")]
    deferrals: Option<i64>,
    /// ScheduleOSUpdate: Low or High.
    #[arg(long, help_heading = "ScheduleOSUpdate")]
    priority: Option<String>,

    /// DeviceInformation: comma-separated queries, e.g. Model,OSVersion.
    #[arg(long, help_heading = "DeviceInformation", value_delimiter = ',')]
    queries: Vec<String>,

    /// InstallProfile: the .mobileconfig to install (sent as Payload data).
    #[arg(long, help_heading = "InstallProfile")]
    file: Option<std::path::PathBuf>,

    /// Settings: set the device name.
    #[arg(long, help_heading = "Settings")]
    device_name: Option<String>,

    /// SetRecoveryLock: the new recovery lock password (NewPassword).
    #[arg(long, help_heading = "SetRecoveryLock")]
    password: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ParseArgs {
    /// The plist file, or - for stdin.
    file: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        MdmCommand::Commands(a) => commands(a),
        MdmCommand::Command(a) => command(*a),
        MdmCommand::Parse(a) => parse(a),
    }
}

fn commands(args: CommandsArgs) -> anyhow::Result<ExitCode> {
    let os = args.os.as_deref().map(str::parse::<Os>).transpose()?;
    let cat = fleetbus_mdm::catalog();
    let list: Vec<_> = cat.commands_for(os).collect();
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let items: Vec<Value> = list
                .iter()
                .map(|c| {
                    json!({
                        "request_type": c.request_type,
                        "title": c.title,
                        "description": c.description,
                        "os": c.os.iter()
                            .filter(|(_, s)| s.is_available())
                            .map(|(o, s)| (o.to_string(), json!(s)))
                            .collect::<Map<_, _>>(),
                        "keys": c.keys.iter().map(|k| json!({
                            "key": k.key,
                            "type": k.ty,
                            "required": k.required,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &items)?;
            writeln!(out)?;
        }
        Output::Text => {
            let width = list.iter().map(|c| c.request_type.len()).max().unwrap_or(0);
            for c in &list {
                writeln!(out, "{:width$}  {}", c.request_type, c.description)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn command(args: CommandArgs) -> anyhow::Result<ExitCode> {
    let spec = fleetbus_mdm::command::lookup(&args.request_type)?;
    let rt = spec.request_type.as_str();
    let mut payload = match &args.json {
        Some(arg) => {
            let text = read_json_arg(arg)?;
            match serde_json::from_str::<Value>(&text).context("parsing --json payload")? {
                Value::Object(m) => m,
                other => bail!("--json payload must be a JSON object, got {other}"),
            }
        }
        None => Map::new(),
    };
    for kv in &args.keys {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("expected KEY=VALUE, got {kv:?}");
        };
        let value = coerce(spec.key(k), v)?;
        payload.insert(k.to_string(), value);
    }
    apply_friendly_flags(rt, &args, &mut payload)?;

    let mut builder = fleetbus_mdm::CommandBuilder::new(rt).payload(payload);
    if let Some(u) = &args.uuid {
        builder = builder.command_uuid(u.clone());
    }
    let cmd = builder.build()?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Xml => out.write_all(&cmd.to_xml()?)?,
        Format::Binary => out.write_all(&cmd.to_binary()?)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &cmd.to_json())?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Converts a KEY=VALUE value to the key's type; unknown keys and values that do not
/// convert stay strings so the validator reports them with the catalog's words.
fn coerce(spec: Option<&KeySpec>, raw: &str) -> anyhow::Result<Value> {
    let Some(spec) = spec else {
        return Ok(Value::String(raw.to_string()));
    };
    let as_string = || Value::String(raw.to_string());
    Ok(match spec.ty {
        ValueType::Integer => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| as_string()),
        ValueType::Real => raw
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| as_string()),
        ValueType::Boolean => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => as_string(),
        },
        ValueType::Data => match raw.strip_prefix('@') {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
                Value::String(fleetbus_mdm::value::encode_base64(&bytes))
            }
            None => as_string(),
        },
        ValueType::Array => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Array(_)) => v,
            // A plain list of strings may be given comma-separated.
            _ => Value::Array(
                raw.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            ),
        },
        ValueType::Dictionary | ValueType::Any => {
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| as_string())
        }
        ValueType::String | ValueType::Date => as_string(),
    })
}

/// Applies the everyday flags, each only for its command.
fn apply_friendly_flags(
    rt: &str,
    a: &CommandArgs,
    payload: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let only = |flag: &str, set: bool, for_rt: &str| -> anyhow::Result<()> {
        if set && rt != for_rt {
            bail!("--{flag} applies to {for_rt} only, not {rt}");
        }
        Ok(())
    };
    only("pin", a.pin.is_some(), "DeviceLock")?;
    only("message", a.message.is_some(), "DeviceLock")?;
    only("phone-number", a.phone_number.is_some(), "DeviceLock")?;
    let os_update = a.action.is_some()
        || a.version.is_some()
        || a.key.is_some()
        || a.deferrals.is_some()
        || a.priority.is_some();
    only(
        "action/--version/--key/--deferrals/--priority",
        os_update,
        "ScheduleOSUpdate",
    )?;
    only("queries", !a.queries.is_empty(), "DeviceInformation")?;
    only("file", a.file.is_some(), "InstallProfile")?;
    only("device-name", a.device_name.is_some(), "Settings")?;
    only("password", a.password.is_some(), "SetRecoveryLock")?;

    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            payload.insert(k.to_string(), v);
        }
    };
    set("PIN", a.pin.clone().map(Value::String));
    set("Message", a.message.clone().map(Value::String));
    set("PhoneNumber", a.phone_number.clone().map(Value::String));
    set("NewPassword", a.password.clone().map(Value::String));
    if !a.queries.is_empty() {
        set(
            "Queries",
            Some(Value::Array(
                a.queries
                    .iter()
                    .map(|q| Value::String(q.trim().to_string()))
                    .collect(),
            )),
        );
    }
    if let Some(path) = &a.file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        set(
            "Payload",
            Some(Value::String(fleetbus_mdm::value::encode_base64(&bytes))),
        );
    }
    if os_update {
        let mut item = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                item.insert(k.to_string(), v);
            }
        };
        put("InstallAction", a.action.clone().map(Value::String));
        put("ProductVersion", a.version.clone().map(Value::String));
        put("ProductKey", a.key.clone().map(Value::String));
        put("MaxUserDeferrals", a.deferrals.map(Value::from));
        put("Priority", a.priority.clone().map(Value::String));
        push_item(payload, "Updates", Value::Object(item));
    }
    if let Some(name) = &a.device_name {
        push_item(
            payload,
            "Settings",
            json!({"Item": "DeviceName", "DeviceName": name}),
        );
    }
    Ok(())
}

/// Appends to an array key, creating it when absent.
fn push_item(payload: &mut Map<String, Value>, key: &str, item: Value) {
    match payload.get_mut(key) {
        Some(Value::Array(items)) => items.push(item),
        _ => {
            payload.insert(key.to_string(), Value::Array(vec![item]));
        }
    }
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let bytes = if args.file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file))?
    };
    let message = fleetbus_mdm::parse_message(&bytes)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &message)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
