//! The EventBridge envelope and its validation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::EventError;

/// Largest event accepted, serialized, in bytes: EventBridge's 256 KiB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

const FIELDS: &str = "version, id, detail-type, source, account, time, region, resources, detail";

/// An event in the AWS EventBridge envelope, exactly: nothing fleetbus-specific lives
/// here (see [`crate::Meta`] for that), so EventBridge patterns behave as on AWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct Event {
    pub version: String,
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub account: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub region: String,
    pub resources: Vec<String>,
    pub detail: Map<String, Value>,
    /// Set only on an event delivered by a replay, as EventBridge adds it: the
    /// replay's name. Never archived and never taken from a sender.
    #[serde(rename = "replay-name", skip_serializing_if = "Option::is_none")]
    pub replay_name: Option<String>,
}

/// What fills the envelope fields a sender left out.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `account` when absent (fleetbus uses a configured tenant name or 12 digits).
    pub account: String,
    /// `region` when absent.
    pub region: String,
    /// `time` when absent: the moment of receipt.
    pub now: OffsetDateTime,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            account: "000000000000".to_owned(),
            region: "local".to_owned(),
            now: OffsetDateTime::now_utc(),
        }
    }
}

impl TryFrom<Value> for Event {
    type Error = EventError;

    /// Strict form, used when reading back stored events: every field present.
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let Value::Object(map) = value else {
            return Err(EventError::field("event", "must be a JSON object"));
        };
        for required in ["id", "time", "account", "region"] {
            if !map.contains_key(required) {
                return Err(EventError::field(required, "is required"));
            }
        }
        Event::from_map(map, &Defaults::default())
    }
}

impl Event {
    /// Builds a new event with a fresh id and the current time.
    pub fn new(
        source: impl Into<String>,
        detail_type: impl Into<String>,
        detail: Map<String, Value>,
    ) -> Event {
        let defaults = Defaults::default();
        Event {
            version: "0".to_owned(),
            id: new_id(),
            detail_type: detail_type.into(),
            source: source.into(),
            account: defaults.account,
            time: now_seconds(defaults.now),
            region: defaults.region,
            resources: Vec::new(),
            detail,
            replay_name: None,
        }
    }

    /// Parses and validates an envelope from JSON bytes, filling absent optional
    /// fields (`version`, `id`, `account`, `time`, `region`, `resources`, `detail`)
    /// from `defaults`.
    pub fn parse(bytes: &[u8], defaults: &Defaults) -> Result<Event, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge {
                size: bytes.len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
        Event::from_value(value, defaults)
    }

    /// Validates an envelope already parsed as JSON; see [`Event::parse`].
    pub fn from_value(value: Value, defaults: &Defaults) -> Result<Event, EventError> {
        match value {
            Value::Object(map) => Event::from_map(map, defaults),
            other => Err(EventError::field(
                "event",
                format!("must be a JSON object, not {}", kind(&other)),
            )),
        }
    }

    fn from_map(mut map: Map<String, Value>, defaults: &Defaults) -> Result<Event, EventError> {
        if let Some(unknown) = map.keys().find(|k| !FIELDS.split(", ").any(|f| f == *k)) {
            return Err(EventError::field(
                unknown.clone(),
                format!("unknown field (expected one of {FIELDS})"),
            ));
        }
        let version = optional_string(&mut map, "version")?.unwrap_or_else(|| "0".to_owned());
        let id = match optional_string(&mut map, "id")? {
            Some(id) if id.is_empty() => return Err(EventError::field("id", "must not be empty")),
            Some(id) => id,
            None => new_id(),
        };
        let detail_type = required_string(&mut map, "detail-type")?;
        let source = required_string(&mut map, "source")?;
        let account =
            optional_string(&mut map, "account")?.unwrap_or_else(|| defaults.account.clone());
        let region =
            optional_string(&mut map, "region")?.unwrap_or_else(|| defaults.region.clone());
        let time = match optional_string(&mut map, "time")? {
            Some(text) => parse_time(&text).map_err(|msg| EventError::field("time", msg))?,
            None => now_seconds(defaults.now),
        };
        let resources = match map.remove("resources") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(EventError::field(
                        format!("resources[{i}]"),
                        format!("must be a string, not {}", kind(&other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(EventError::field(
                    "resources",
                    format!("must be an array of strings, not {}", kind(&other)),
                ))
            }
        };
        let detail = match map.remove("detail") {
            None => Map::new(),
            Some(Value::Object(detail)) => detail,
            Some(other) => {
                return Err(EventError::field(
                    "detail",
                    format!("must be a JSON object, not {}", kind(&other)),
                ))
            }
        };
        let event = Event {
            version,
            id,
            detail_type,
            source,
            account,
            time,
            region,
            resources,
            detail,
            replay_name: None,
        };
        event.check_size()?;
        Ok(event)
    }

    /// The event as compact JSON, the form stored, matched and delivered.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a tree of strings and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The event as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Refuses an event whose serialized form passes [`MAX_EVENT_BYTES`].
    pub fn check_size(&self) -> Result<(), EventError> {
        let size = self.to_json().len();
        if size > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge {
                size,
                limit: MAX_EVENT_BYTES,
            });
        }
        Ok(())
    }

    /// `time` as RFC 3339, e.g. `2026-11-23T10:00:00Z`.
    pub fn time_rfc3339(&self) -> String {
        format_time(self.time)
    }
}

/// A fresh event id: a UUID, as EventBridge gives, of version 7.
pub fn new_id() -> String {
    // Time-ordered (UUID v7): the store's id and dedup indexes grow at their end
    // instead of dirtying a random page per event.
    uuid::Uuid::now_v7().to_string()
}

/// EventBridge timestamps carry whole seconds.
fn now_seconds(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(0).unwrap_or(now)
}

pub(crate) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("{text:?} is not an RFC 3339 timestamp ({e})"))
}

pub(crate) fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn optional_string(
    map: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, EventError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EventError::field(
            field,
            format!("must be a string, not {}", kind(&other)),
        )),
    }
}

fn required_string(map: &mut Map<String, Value>, field: &str) -> Result<String, EventError> {
    match optional_string(map, field)? {
        None => Err(EventError::field(field, "is required")),
        Some(s) if s.trim().is_empty() => Err(EventError::field(field, "must not be empty")),
        Some(s) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Defaults {
        Defaults {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            now: time::macros::datetime!(2026-11-23 10:00:00.5 UTC),
        }
    }

    fn parse(v: Value) -> Result<Event, EventError> {
        Event::from_value(v, &defaults())
    }

    #[test]
    fn fills_defaults_and_generates_an_id() {
        let e = parse(json!({"source": "mdm", "detail-type": "MDM Check-in"})).unwrap();
        assert_eq!(e.version, "0");
        assert_eq!(e.account, "123456789012");
        assert_eq!(e.region, "eu-west-1");
        assert_eq!(e.time_rfc3339(), "2026-11-23T10:00:00Z");
        assert!(uuid::Uuid::parse_str(&e.id).is_ok());
        assert!(e.detail.is_empty());
        let other = parse(json!({"source": "mdm", "detail-type": "x"})).unwrap();
        assert_ne!(e.id, other.id);
    }

    #[test]
    fn serializes_in_envelope_order_with_detail_type_dashed() {
        let e = parse(json!({
            "id": "1", "source": "s", "detail-type": "t", "time": "2026-01-02T03:04:05+01:00",
            "resources": ["device/C02XK1JDJG5J"], "detail": {"a": 1}
        }))
        .unwrap();
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"version":"0","id":"1","detail-type":"t","source":"s","account":"123456789012","time":"2026-01-02T02:04:05Z","region":"eu-west-1","resources":["device/C02XK1JDJG5J"],"detail":{"a":1}}"#
        );
        let back: Event = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn names_the_offending_field() {
        let cases = [
            (
                json!({"source": "s", "detail-type": "t", "detail": "x"}),
                "detail: must be a JSON object, not a string",
            ),
            (
                json!({"source": "s", "detail-type": "t", "detail": [1]}),
                "detail: must be a JSON object, not an array",
            ),
            (json!({"detail-type": "t"}), "source: is required"),
            (
                json!({"source": " ", "detail-type": "t"}),
                "source: must not be empty",
            ),
            (
                json!({"source": "s", "detail-type": ""}),
                "detail-type: must not be empty",
            ),
            (
                json!({"source": "s", "detail-type": "t", "time": "yesterday"}),
                "time: \"yesterday\" is not an RFC 3339 timestamp",
            ),
            (
                json!({"source": "s", "detail-type": "t", "resources": ["a", 2]}),
                "resources[1]: must be a string, not a number",
            ),
            (
                json!({"source": "s", "detail-type": "t", "resources": "a"}),
                "resources: must be an array of strings, not a string",
            ),
            (
                json!({"source": "s", "detail-type": "t", "Detail": {}}),
                "Detail: unknown field (expected one of version, id",
            ),
            (
                json!({"source": 1, "detail-type": "t"}),
                "source: must be a string, not a number",
            ),
            (
                json!({"source": "s", "detail-type": "t", "id": ""}),
                "id: must not be empty",
            ),
            (json!([1]), "event: must be a JSON object, not an array"),
        ];
        for (input, want) in cases {
            let err = parse(input.clone()).unwrap_err().to_string();
            assert!(err.starts_with(want), "{input}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn the_issue_example_message_is_exact() {
        let err = parse(json!({"source": "s", "detail-type": "t", "detail": 5})).unwrap_err();
        assert_eq!(
            err,
            EventError::Field {
                field: "detail".into(),
                message: "must be a JSON object, not a number".into()
            }
        );
    }

    #[test]
    fn refuses_events_over_256_kib() {
        let big = "x".repeat(MAX_EVENT_BYTES);
        let err =
            parse(json!({"source": "s", "detail-type": "t", "detail": {"b": big}})).unwrap_err();
        assert!(matches!(
            err,
            EventError::TooLarge {
                limit: MAX_EVENT_BYTES,
                ..
            }
        ));
        let fits = "x".repeat(MAX_EVENT_BYTES - 400);
        assert!(parse(json!({"source": "s", "detail-type": "t", "detail": {"b": fits}})).is_ok());
        let raw = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(
            Event::parse(&raw, &defaults()),
            Err(EventError::TooLarge { .. })
        ));
    }

    #[test]
    fn strict_deserialize_requires_every_stored_field() {
        let err = serde_json::from_str::<Event>(r#"{"source":"s","detail-type":"t"}"#).unwrap_err();
        assert!(err.to_string().contains("id: is required"), "{err}");
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        let err = Event::parse(b"{\"source\":", &defaults()).unwrap_err();
        assert!(err.to_string().starts_with("event is not valid JSON"));
    }
}
