//! NanoMDM and MicroMDM webhook bodies turned into fleetbus event details.
//!
//! Both servers POST one JSON object per event: `{topic, event_id, created_at,
//! checkin_event | acknowledge_event}`, each `*_event` carrying `udid`, `enrollment_id`,
//! `url_params` and the device's request as base64 `raw_payload` (a plist). NanoMDM
//! adds `ids` (`{id, type, parent_id}`) and, for `mdm.TokenUpdate`,
//! `token_update_tally`; acknowledge events carry `status` and `command_uuid`.
//!
//! Actions: `mdm.Authenticate` -> `authenticate`; `mdm.TokenUpdate` -> `enroll` for the
//! first token update (tally 1, or `AwaitingConfiguration` true) else `token_update`;
//! `mdm.CheckOut` -> `unenroll`; `mdm.Connect` -> `command_result` (or `idle` for a
//! device polling with nothing to report, sent as a check-in); other topics ->
//! the topic's snake_case name (`user_authenticate`, `declarative_management`,
//! `set_bootstrap_token`, `get_bootstrap_token`, `get_token`).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::response::{CheckinMessage, CommandResponse};
use crate::value::decode_base64;
use crate::MdmError;

/// Detail-type of check-in events.
pub const DETAIL_TYPE_CHECKIN: &str = "MDM Check-in";
/// Detail-type of command-result events.
pub const DETAIL_TYPE_COMMAND_RESULT: &str = "MDM Command Result";

/// One event produced from a webhook body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `MDM Check-in` or `MDM Command Result`.
    pub detail_type: String,
    /// The detail object: `{scope, action, server, topic, device, command?, checkin?, ...}`.
    pub detail: Value,
    /// The webhook topic, e.g. `mdm.TokenUpdate`.
    pub topic: String,
    /// The sender's event id (for duplicate detection), when given.
    pub event_id: Option<String>,
    /// The sender's `created_at`, when given.
    pub created_at: Option<String>,
    /// The device's UDID, when known.
    pub udid: Option<String>,
    /// The device's serial number, when this message carries it.
    pub serial: Option<String>,
    /// The enrollment id (NanoMDM `ids.id`, else `enrollment_id`, else UDID).
    pub enrollment_id: Option<String>,
    /// The command UUID of a command result.
    pub command_uuid: Option<String>,
}

impl WebhookEvent {
    /// The event's resource: `device/<serial>`, or `device/<udid>` when no serial is
    /// known (the caller may map the UDID to a serial it learnt earlier).
    pub fn resource(&self) -> Option<String> {
        self.serial
            .as_deref()
            .or(self.udid.as_deref())
            .map(|id| format!("device/{id}"))
    }
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    topic: String,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    checkin_event: Option<RawInner>,
    #[serde(default)]
    acknowledge_event: Option<RawInner>,
}

#[derive(Debug, Deserialize)]
struct RawInner {
    #[serde(default)]
    udid: Option<String>,
    #[serde(default)]
    enrollment_id: Option<String>,
    #[serde(default)]
    ids: Option<RawIds>,
    #[serde(default)]
    url_params: Option<Map<String, Value>>,
    #[serde(default)]
    raw_payload: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    command_uuid: Option<String>,
    #[serde(default)]
    token_update_tally: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawIds {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    parent_id: Option<String>,
}

use crate::MdmServer as Server;

/// NanoMDM's webhook (`-webhook-url`).
pub mod nanomdm {
    use super::*;

    /// Parses one webhook body (a JSON event object, or an array of them).
    pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, MdmError> {
        parse_body(body, Server::NanoMdm)
    }
}

/// MicroMDM's webhook (`-command-webhook-url`).
pub mod micromdm {
    use super::*;

    /// Parses one webhook body (a JSON event object, or an array of them).
    pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, MdmError> {
        parse_body(body, Server::MicroMdm)
    }
}

pub(crate) fn parse_body(body: &[u8], server: Server) -> Result<Vec<WebhookEvent>, MdmError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| MdmError::Webhook(format!("not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let raw: RawEvent = serde_json::from_value(v)
                .map_err(|e| MdmError::Webhook(format!("event {i}: {e}")))?;
            convert(raw, server)
        })
        .collect()
}

fn decode_payload(inner: &RawInner, topic: &str) -> Result<Option<Vec<u8>>, MdmError> {
    match inner.raw_payload.as_deref() {
        None | Some("") => Ok(None),
        Some(b64) => decode_base64(b64)
            .map(Some)
            .ok_or_else(|| MdmError::Webhook(format!("{topic}: raw_payload is not valid base64"))),
    }
}

fn snake(topic_name: &str) -> String {
    let mut out = String::new();
    for (i, c) in topic_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
}

fn enrollment(inner: &RawInner) -> Option<Value> {
    let mut e = Map::new();
    if let Some(ids) = &inner.ids {
        put(&mut e, "id", Some(&ids.id));
        put(&mut e, "type", ids.kind.as_deref());
        put(&mut e, "parent_id", ids.parent_id.as_deref());
        // NanoMDM's user-channel enrollments have a parent (the device channel).
        let channel = if ids.parent_id.is_some() || ids.kind.as_deref() == Some("User") {
            "user"
        } else {
            "device"
        };
        put(&mut e, "channel", Some(channel));
    }
    put(&mut e, "enrollment_id", inner.enrollment_id.as_deref());
    (!e.is_empty()).then_some(Value::Object(e))
}

fn convert(raw: RawEvent, server: Server) -> Result<WebhookEvent, MdmError> {
    let topic = raw.topic.clone();
    let topic_name = topic.strip_prefix("mdm.").unwrap_or(&topic).to_string();
    if let Some(ack) = &raw.acknowledge_event {
        return acknowledge(&raw, ack, server, &topic);
    }
    let Some(inner) = &raw.checkin_event else {
        return Err(MdmError::Webhook(format!(
            "{topic}: neither checkin_event nor acknowledge_event is present"
        )));
    };
    let message = match decode_payload(inner, &topic)? {
        Some(bytes) => Some(crate::parse_checkin(&bytes).map_err(|e| {
            MdmError::Webhook(format!(
                "{topic}: raw_payload is not a check-in message: {e}"
            ))
        })?),
        None => None,
    };
    let m = message.as_ref();
    let awaiting = m.and_then(|m| m.awaiting_configuration) == Some(true);
    let action = match topic_name.as_str() {
        "Authenticate" => "authenticate".to_string(),
        "TokenUpdate" if inner.token_update_tally == Some(1) || awaiting => "enroll".into(),
        "TokenUpdate" => "token_update".into(),
        "CheckOut" => "unenroll".into(),
        other => snake(other),
    };
    let udid = inner
        .udid
        .clone()
        .or_else(|| m.and_then(|m| m.udid.clone()));
    let serial = m.and_then(|m| m.serial_number.clone());
    let mut device = Map::new();
    put(&mut device, "udid", udid.as_deref());
    put(&mut device, "serial", serial.as_deref());
    if let Some(m) = m {
        put(&mut device, "model", m.model.as_deref());
        put(&mut device, "model_name", m.model_name.as_deref());
        put(&mut device, "product_name", m.product_name.as_deref());
        put(&mut device, "os_version", m.os_version.as_deref());
        put(&mut device, "build_version", m.build_version.as_deref());
        put(&mut device, "device_name", m.device_name.as_deref());
        put(&mut device, "enrollment_id", m.enrollment_id.as_deref());
    }
    let mut detail = base_detail(server, &topic, &action, device, inner);
    if user_channel(inner, m.and_then(|m| m.user_id.as_deref())) {
        detail.insert("scope".into(), json!("user"));
    }
    if let Some(user) = m.and_then(user_of) {
        detail.insert("user".into(), user);
    }
    if let Some(t) = inner.token_update_tally {
        detail.insert("token_update_tally".into(), json!(t));
    }
    if let Some(m) = m {
        detail.insert("checkin".into(), checkin_detail(m));
    }
    Ok(WebhookEvent {
        detail_type: DETAIL_TYPE_CHECKIN.to_string(),
        detail: Value::Object(detail),
        topic,
        event_id: event_id(&raw),
        created_at: raw.created_at.clone(),
        enrollment_id: enrollment_id_of(inner).or_else(|| udid.clone()),
        udid,
        serial,
        command_uuid: None,
    })
}

/// The event's id; NanoMDM up to v0.8.0 sends `"event_id": ""` on every event,
/// which is no id at all (the event gets a fresh one).
fn event_id(raw: &RawEvent) -> Option<String> {
    raw.event_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// True for a message on a user's channel: NanoMDM's `ids.type` is `User`, or the
/// message names a `UserID`.
fn user_channel(inner: &RawInner, user_id: Option<&str>) -> bool {
    let by_ids = inner
        .ids
        .as_ref()
        .and_then(|i| i.kind.as_deref())
        .is_some_and(|k| k.eq_ignore_ascii_case("user"));
    by_ids || user_id.is_some_and(|u| !u.is_empty())
}

fn enrollment_id_of(inner: &RawInner) -> Option<String> {
    inner
        .ids
        .as_ref()
        .map(|i| i.id.clone())
        .or_else(|| inner.enrollment_id.clone())
}

fn base_detail(
    server: Server,
    topic: &str,
    action: &str,
    device: Map<String, Value>,
    inner: &RawInner,
) -> Map<String, Value> {
    let mut detail = Map::new();
    detail.insert("scope".into(), json!("device"));
    detail.insert("action".into(), json!(action));
    detail.insert("server".into(), json!(server.as_str()));
    detail.insert("topic".into(), json!(topic));
    detail.insert("device".into(), Value::Object(device));
    if let Some(e) = enrollment(inner) {
        detail.insert("enrollment".into(), e);
    }
    if let Some(p) = inner.url_params.as_ref().filter(|p| !p.is_empty()) {
        detail.insert("url_params".into(), Value::Object(p.clone()));
    }
    detail
}

fn user_of(m: &CheckinMessage) -> Option<Value> {
    let mut u = Map::new();
    put(&mut u, "id", m.user_id.as_deref());
    put(&mut u, "short_name", m.user_short_name.as_deref());
    put(&mut u, "long_name", m.user_long_name.as_deref());
    (!u.is_empty()).then_some(Value::Object(u))
}

/// The check-in message's keys, without secrets the event archive should not keep
/// (push token, unlock token, bootstrap token, challenge).
fn checkin_detail(m: &CheckinMessage) -> Value {
    const SECRET: [&str; 6] = [
        "Token",
        "UnlockToken",
        "BootstrapToken",
        "Challenge",
        "PushMagic",
        "UserConfiguration",
    ];
    let mut fields = m.fields.clone();
    for k in SECRET {
        if fields.remove(k).is_some() && k != "UserConfiguration" {
            fields.insert(format!("{k}Present"), Value::Bool(true));
        }
    }
    if let Some(d) = &m.declarative_data {
        fields.insert("Data".into(), d.clone());
    }
    Value::Object(fields)
}

fn acknowledge(
    raw: &RawEvent,
    inner: &RawInner,
    server: Server,
    topic: &str,
) -> Result<WebhookEvent, MdmError> {
    let report: Option<CommandResponse> = match decode_payload(inner, topic)? {
        Some(bytes) => Some(crate::parse_response(&bytes).map_err(|e| {
            MdmError::Webhook(format!("{topic}: raw_payload is not a command report: {e}"))
        })?),
        None => None,
    };
    let r = report.as_ref();
    let status = inner
        .status
        .clone()
        .or_else(|| r.map(|r| r.status.to_string()))
        .ok_or_else(|| MdmError::Webhook(format!("{topic}: acknowledge_event has no status")))?;
    let command_uuid = inner
        .command_uuid
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| r.and_then(|r| r.command_uuid.clone()));
    let udid = inner
        .udid
        .clone()
        .or_else(|| r.and_then(|r| r.udid.clone()));
    let qr = r.and_then(|r| r.query_responses.as_ref());
    let q = |k: &str| qr.and_then(|q| q.get(k)).and_then(Value::as_str);
    let serial = q("SerialNumber").map(str::to_string);
    let mut device = Map::new();
    put(&mut device, "udid", udid.as_deref());
    put(&mut device, "serial", serial.as_deref());
    put(&mut device, "model", q("Model"));
    put(&mut device, "model_name", q("ModelName"));
    put(&mut device, "product_name", q("ProductName"));
    put(&mut device, "os_version", q("OSVersion"));
    put(&mut device, "build_version", q("BuildVersion"));
    put(&mut device, "device_name", q("DeviceName"));
    let idle = status == "Idle";
    let action = if idle { "idle" } else { "command_result" };
    let mut detail = base_detail(server, topic, action, device, inner);
    if user_channel(inner, r.and_then(|r| r.user_id.as_deref())) {
        detail.insert("scope".into(), json!("user"));
    }
    if !idle {
        let mut command = Map::new();
        put(
            &mut command,
            "request_type",
            r.and_then(|r| r.request_type.as_deref()),
        );
        put(&mut command, "command_uuid", command_uuid.as_deref());
        command.insert("status".into(), json!(status));
        if let Some(r) = r {
            if !r.error_chain.is_empty() {
                command.insert("error_chain".into(), json!(r.error_chain));
            }
            if let Some(q) = &r.query_responses {
                command.insert("query_responses".into(), q.clone());
            }
            if !r.fields.is_empty() {
                command.insert("response".into(), Value::Object(r.fields.clone()));
            }
        }
        detail.insert("command".into(), Value::Object(command));
    }
    if let Some(r) = r {
        let mut u = Map::new();
        put(&mut u, "id", r.user_id.as_deref());
        put(&mut u, "short_name", r.user_short_name.as_deref());
        put(&mut u, "long_name", r.user_long_name.as_deref());
        if !u.is_empty() {
            detail.insert("user".into(), Value::Object(u));
        }
    }
    Ok(WebhookEvent {
        detail_type: if idle {
            DETAIL_TYPE_CHECKIN
        } else {
            DETAIL_TYPE_COMMAND_RESULT
        }
        .to_string(),
        detail: Value::Object(detail),
        topic: topic.to_string(),
        event_id: event_id(raw),
        created_at: raw.created_at.clone(),
        enrollment_id: enrollment_id_of(inner).or_else(|| udid.clone()),
        udid,
        serial,
        command_uuid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_topics() {
        assert_eq!(snake("UserAuthenticate"), "user_authenticate");
        assert_eq!(snake("GetBootstrapToken"), "get_bootstrap_token");
    }

    #[test]
    fn rejects_bodies_without_event() {
        let err = nanomdm::parse(br#"{"topic":"mdm.Authenticate"}"#).unwrap_err();
        assert!(err.to_string().contains("neither checkin_event"));
        assert!(micromdm::parse(b"{").is_err());
        assert!(micromdm::parse(
            br#"{"topic":"mdm.Connect","acknowledge_event":{"raw_payload":"%%%"}}"#
        )
        .is_err());
    }
}
