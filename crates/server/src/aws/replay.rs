//! The AWS API's archive and replay actions (DescribeArchive, ListArchives,
//! StartReplay, DescribeReplay, ListReplays, CancelReplay) over the engine's
//! replays, in EventBridge's shapes: archives and replays named by ARN, times as
//! epoch seconds. Archives are declared in the configuration (`archives:`).

use axum::http::StatusCode;
use fleetbus_engine::store::{Millis, Replay, ReplayState};
use fleetbus_engine::{EngineError, ReplayRequest};
use serde_json::{json, Value};

use super::{arn, paged, paging, required, string_param, AwsError};
use crate::AppState;

impl From<EngineError> for AwsError {
    fn from(e: EngineError) -> AwsError {
        match &e {
            EngineError::NotFound(m) => AwsError::not_found(m.clone()),
            EngineError::Exists(m) => AwsError::new(
                StatusCode::BAD_REQUEST,
                "ResourceAlreadyExistsException",
                m.clone(),
            ),
            EngineError::Invalid(m) => AwsError::validation(m.clone()),
            _ => AwsError::from(crate::error::ApiError::from(e)),
        }
    }
}

/// Epoch seconds, as AWS's JSON protocols write timestamps.
fn seconds(ms: Millis) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A timestamp as the AWS CLI and SDKs send it: epoch seconds (a number), or an
/// ISO 8601 / RFC 3339 string.
fn timestamp(req: &Value, name: &str) -> Result<Millis, AwsError> {
    let bad =
        |why: String| AwsError::validation(format!("Parameter {name} is not valid. Reason: {why}"));
    match req.get(name) {
        None | Some(Value::Null) => Err(AwsError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ))),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| (s * 1000.0) as Millis)
            .ok_or_else(|| bad(format!("{n} is not a time"))),
        Some(Value::String(s)) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as Millis)
                .map_err(|e| bad(format!("{s:?} is not a time: {e}")))
        }
        Some(other) => Err(bad(format!("{other} is not a time"))),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The last `/`-separated part of an ARN of `kind` (`archive`, `event-bus`, `rule`).
fn arn_name<'a>(text: &'a str, kind: &str, field: &str) -> Result<&'a str, AwsError> {
    let rest = text
        .strip_prefix("arn:")
        .and_then(|r| r.split(':').nth(4))
        .filter(|r| r.starts_with(&format!("{kind}/")));
    match rest.and_then(|r| r.rsplit('/').next()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(AwsError::validation(format!(
            "Parameter {field} is not valid. Reason: {text:?} is not an ARN of an {kind}"
        ))),
    }
}

fn archive_arn(state: &AppState, name: &str) -> String {
    arn(state, &format!("archive/{name}"))
}

fn replay_arn(state: &AppState, name: &str) -> String {
    arn(state, &format!("replay/{name}"))
}

fn bus_arn(state: &AppState, bus: &str) -> String {
    arn(state, &format!("event-bus/{bus}"))
}

/// An archive as DescribeArchive and ListArchives give it.
fn archive_value(state: &AppState, name: &str, full: bool) -> Option<Value> {
    let config = state.running_config();
    let (bus, description, pattern, retention) = if name == fleetbus_config::DEFAULT_ARCHIVE {
        (
            "default".to_owned(),
            Some("every event".to_owned()),
            None,
            config.retention.archive,
        )
    } else {
        let a = config.archives.iter().find(|a| a.name == name)?;
        (
            a.bus.clone(),
            a.description.clone(),
            a.event_pattern.clone(),
            a.retention,
        )
    };
    let mut v = json!({
        "ArchiveName": name,
        "EventSourceArn": bus_arn(state, &bus),
        "State": "ENABLED",
        "RetentionDays": retention.as_secs() / 86_400,
    });
    if full {
        v["ArchiveArn"] = json!(archive_arn(state, name));
        if let Some(d) = description {
            v["Description"] = json!(d);
        }
        if let Some(p) = pattern {
            v["EventPattern"] = json!(p.to_string());
        }
    }
    Some(v)
}

/// `CreateArchive` / `UpdateArchive`: an archive of a bus's events matching a
/// pattern, kept for RetentionDays (0: for ever), in effect at once.
pub(super) async fn put_archive(
    state: &AppState,
    req: &Value,
    create: bool,
) -> Result<Value, AwsError> {
    let name = required(req, "ArchiveName")?;
    let valid = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'archiveName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have length between 1 and 48"
        )));
    }
    let config = state.config();
    if name == fleetbus_config::DEFAULT_ARCHIVE || config.archives.iter().any(|a| a.name == name) {
        return Err(AwsError::validation(format!(
            "Archive {name} is declared in fleetbus's configuration (archives:); change it there and reload"
        )));
    }
    let existing = state
        .engine
        .api_archives()
        .iter()
        .find(|a| a.name == name)
        .cloned();
    let (bus, created_at) = match (&existing, create) {
        (Some(_), true) => {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "ResourceAlreadyExistsException",
                format!("Archive {name} already exists."),
            ))
        }
        (None, false) => {
            return Err(AwsError::not_found(format!(
                "Archive {name} does not exist."
            )))
        }
        (Some(a), false) => (a.bus.clone(), a.created_at),
        (None, true) => {
            let source = required(req, "EventSourceArn")?;
            (
                arn_name(source, "event-bus", "EventSourceArn")?.to_owned(),
                fleetbus_engine::store::now_ms(),
            )
        }
    };
    let pattern = match string_param(req, "EventPattern")? {
        Some(p) => {
            super::parse_pattern(p)?;
            Some(p.to_owned())
        }
        None => existing.as_ref().and_then(|a| a.event_pattern.clone()),
    };
    let retention_days = match req.get("RetentionDays") {
        None | Some(Value::Null) => existing.as_ref().map_or(0, |a| a.retention_days),
        Some(v) => v
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| {
                AwsError::validation(format!("RetentionDays {v} is not a number of days"))
            })?,
    };
    let archive = fleetbus_config::ApiArchive {
        name: name.to_owned(),
        bus,
        description: string_param(req, "Description")?
            .map(str::to_owned)
            .or_else(|| existing.as_ref().and_then(|a| a.description.clone())),
        event_pattern: pattern,
        retention_days,
        created_at,
    };
    archive
        .to_archive(&config)
        .map_err(|e| AwsError::validation(format!("Archive {name}: {e}")))?;
    state.engine.put_api_archive(&config, archive).await?;
    Ok(json!({
        "ArchiveArn": archive_arn(state, name),
        "State": "ENABLED",
        "CreationTime": seconds(created_at),
    }))
}

/// `DeleteArchive`.
pub(super) async fn delete_archive(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "ArchiveName")?;
    let config = state.config();
    if name == fleetbus_config::DEFAULT_ARCHIVE || config.archives.iter().any(|a| a.name == name) {
        return Err(AwsError::validation(format!(
            "Archive {name} is declared in fleetbus's configuration (archives:); remove it there and reload"
        )));
    }
    if !state.engine.delete_api_archive(&config, name).await? {
        return Err(AwsError::not_found(format!(
            "Archive {name} does not exist."
        )));
    }
    Ok(json!({}))
}

pub(super) fn describe_archive(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "ArchiveName")?;
    archive_value(state, name, true)
        .ok_or_else(|| AwsError::not_found(format!("Archive {name} does not exist.")))
}

pub(super) fn list_archives(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let prefix = string_param(req, "NamePrefix")?.unwrap_or("");
    let source = string_param(req, "EventSourceArn")?;
    let (start, limit) = paging(req)?;
    let config = state.running_config();
    let names = std::iter::once(fleetbus_config::DEFAULT_ARCHIVE.to_owned())
        .chain(config.archives.iter().map(|a| a.name.clone()));
    let all: Vec<Value> = names
        .filter(|n| n.starts_with(prefix))
        .filter_map(|n| archive_value(state, &n, false))
        .filter(|v| source.is_none_or(|s| v["EventSourceArn"] == s))
        .collect();
    Ok(paged("Archives", &all, start, limit))
}

fn replay_value(state: &AppState, r: &Replay, full: bool) -> Value {
    let mut v = json!({
        "ReplayName": r.spec.name,
        "EventSourceArn": archive_arn(state, &r.spec.archive),
        "State": r.state.as_str(),
        "EventStartTime": seconds(r.spec.from),
        "EventEndTime": seconds(r.spec.to),
        "ReplayStartTime": seconds(r.started_at),
    });
    if let Some(reason) = &r.reason {
        v["StateReason"] = json!(reason);
    }
    if let Some(t) = r.last_replayed {
        v["EventLastReplayedTime"] = seconds(t);
    }
    if let Some(t) = r.ended_at {
        v["ReplayEndTime"] = seconds(t);
    }
    if full {
        v["ReplayArn"] = json!(replay_arn(state, &r.spec.name));
        if let Some(d) = &r.spec.description {
            v["Description"] = json!(d);
        }
        let mut dest = json!({ "Arn": bus_arn(state, &r.spec.bus) });
        if !r.spec.rules.is_empty() {
            let rules: Vec<String> = r
                .spec
                .rules
                .iter()
                .map(|rule| super::rules::rule_arn(state, &r.spec.bus, rule))
                .collect();
            dest["FilterArns"] = json!(rules);
        }
        v["Destination"] = dest;
    }
    v
}

pub(super) async fn start_replay(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "ReplayName")?.to_owned();
    let source = required(req, "EventSourceArn")?;
    let archive = arn_name(source, "archive", "EventSourceArn")?.to_owned();
    let from = timestamp(req, "EventStartTime")?;
    let to = timestamp(req, "EventEndTime")?;
    let Some(dest) = req.get("Destination").filter(|d| d.is_object()) else {
        return Err(AwsError::validation(
            "1 validation error detected: Value null at 'destination' failed to satisfy constraint: Member must not be null",
        ));
    };
    let bus_text = required(dest, "Arn")?;
    let bus = arn_name(bus_text, "event-bus", "Destination.Arn")?.to_owned();
    let rules = match dest.get("FilterArns") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(arns)) => arns
            .iter()
            .map(|a| {
                let text = a.as_str().unwrap_or_default();
                arn_name(text, "rule", "Destination.FilterArns").map(str::to_owned)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(AwsError::validation(
            "Parameter Destination.FilterArns is not valid. Reason: must be a list of rule ARNs",
        )),
    };
    let replay = state
        .engine
        .start_replay(ReplayRequest {
            name,
            description: string_param(req, "Description")?.map(str::to_owned),
            archive,
            bus: Some(bus),
            from,
            to,
            rules,
        })
        .await?;
    Ok(json!({
        "ReplayArn": replay_arn(state, &replay.spec.name),
        "State": replay.state.as_str(),
        "ReplayStartTime": seconds(replay.started_at),
    }))
}

pub(super) async fn describe_replay(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "ReplayName")?;
    match state.engine.replay(name.to_owned()).await? {
        Some(r) => Ok(replay_value(state, &r, true)),
        None => Err(AwsError::not_found(format!(
            "Replay {name} does not exist."
        ))),
    }
}

pub(super) async fn list_replays(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let prefix = string_param(req, "NamePrefix")?.unwrap_or("");
    let source = string_param(req, "EventSourceArn")?;
    let wanted = match string_param(req, "State")? {
        None => None,
        Some(s) => Some(ReplayState::parse(s).ok_or_else(|| {
            AwsError::validation(format!(
                "1 validation error detected: Value '{s}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [STARTING, RUNNING, CANCELLING, COMPLETED, CANCELLED, FAILED]"
            ))
        })?),
    };
    let (start, limit) = paging(req)?;
    let all: Vec<Value> = state
        .engine
        .replays()
        .await?
        .iter()
        .filter(|r| r.spec.name.starts_with(prefix))
        .filter(|r| wanted.is_none_or(|s| r.state == s))
        .map(|r| replay_value(state, r, false))
        .filter(|v| source.is_none_or(|s| v["EventSourceArn"] == s))
        .collect();
    Ok(paged("Replays", &all, start, limit))
}

pub(super) async fn cancel_replay(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = required(req, "ReplayName")?;
    let Some(current) = state.engine.replay(name.to_owned()).await? else {
        return Err(AwsError::not_found(format!(
            "Replay {name} does not exist."
        )));
    };
    if current.state.is_final() {
        return Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "IllegalStatusException",
            format!(
                "Replay {name} is {}: only a STARTING or RUNNING replay can be cancelled.",
                current.state.as_str()
            ),
        ));
    }
    let r = state.engine.cancel_replay(name.to_owned()).await?;
    let mut out = json!({
        "ReplayArn": replay_arn(state, name),
        "State": r.state.as_str(),
    });
    if let Some(reason) = &r.reason {
        out["StateReason"] = json!(reason);
    }
    Ok(out)
}
