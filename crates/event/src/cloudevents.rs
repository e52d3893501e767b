//! CloudEvents 1.0 as an interchange form, structured JSON and HTTP binary mode.
//!
//! The mapping, both ways:
//!
//! | EventBridge envelope | CloudEvents 1.0 |
//! | --- | --- |
//! | `id` | `id` |
//! | `source` | `source` |
//! | `detail-type` | `type` |
//! | `time` | `time` (absent on input: the time of receipt) |
//! | `detail` (object) | `data`, with `datacontenttype: application/json` |
//! | `resources` | extension `resources`: the JSON array as text; `subject`: the first resource |
//! | `account` | extension `account` |
//! | `region` | extension `region` |
//! | `version` | always `"0"`, not carried |
//!
//! On input, `resources` comes from the `resources` extension when present, else from
//! `subject` alone. `data` must be a JSON object (EventBridge's `detail` is one); absent
//! `data` gives an empty `detail`. `data_base64` and non-JSON content types are refused
//! with a message naming them. Other extension attributes (e.g. `traceparent`) have no
//! place in the envelope and are not kept.

use serde_json::{Map, Value};

use crate::envelope::{format_time, kind, parse_time};
use crate::{Defaults, Event, EventError};

const CE_ATTRS: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// The event as a structured-mode CloudEvent (`application/cloudevents+json`).
pub fn to_cloudevent(event: &Event) -> Value {
    let mut ce = Map::new();
    ce.insert("specversion".into(), "1.0".into());
    ce.insert("id".into(), event.id.clone().into());
    ce.insert("source".into(), event.source.clone().into());
    ce.insert("type".into(), event.detail_type.clone().into());
    ce.insert("time".into(), format_time(event.time).into());
    if let Some(first) = event.resources.first() {
        ce.insert("subject".into(), first.clone().into());
        let list = serde_json::to_string(&event.resources).unwrap_or_default();
        ce.insert("resources".into(), list.into());
    }
    ce.insert("account".into(), event.account.clone().into());
    ce.insert("region".into(), event.region.clone().into());
    ce.insert("datacontenttype".into(), "application/json".into());
    ce.insert("data".into(), Value::Object(event.detail.clone()));
    Value::Object(ce)
}

/// Converts a structured-mode CloudEvent into an event.
pub fn from_cloudevent(value: Value, defaults: &Defaults) -> Result<Event, EventError> {
    let Value::Object(mut ce) = value else {
        return Err(EventError::field(
            "cloudevent",
            format!("must be a JSON object, not {}", kind(&value)),
        ));
    };
    if ce.contains_key("data_base64") {
        return Err(EventError::field(
            "data_base64",
            "is not supported: send data as a JSON object",
        ));
    }
    let data = ce.remove("data");
    let mut attrs = Vec::with_capacity(ce.len());
    for (name, value) in ce {
        match value {
            Value::String(s) => attrs.push((name, s)),
            Value::Null => {}
            // Extension attributes may be booleans or integers; the envelope keeps none of those.
            Value::Bool(_) | Value::Number(_) if !CE_ATTRS.contains(&name.as_str()) => {}
            other => {
                return Err(EventError::field(
                    name,
                    format!("must be a string, not {}", kind(&other)),
                ))
            }
        }
    }
    build(attrs, data, defaults)
}

/// Converts a binary-mode CloudEvent: `headers` are the HTTP headers (any case; the
/// `ce-` ones carry attributes), `body` is the data.
pub fn from_cloudevent_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
    defaults: &Defaults,
) -> Result<Event, EventError> {
    let mut attrs = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower == "content-type" {
            attrs.push(("datacontenttype".to_owned(), value.to_owned()));
        } else if let Some(attr) = lower.strip_prefix("ce-") {
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| EventError::field(name, "is not UTF-8 once percent-decoded"))?;
            attrs.push((attr.to_owned(), decoded.into_owned()));
        }
    }
    let data = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        if let Some((_, ct)) = attrs.iter().find(|(n, _)| n == "datacontenttype") {
            if !is_json_content_type(ct) {
                return Err(EventError::field(
                    "content-type",
                    format!("{ct:?} is not JSON (expected application/json)"),
                ));
            }
        }
        Some(
            serde_json::from_slice(body)
                .map_err(|e| EventError::field("data", format!("is not valid JSON: {e}")))?,
        )
    };
    build(attrs, data, defaults)
}

fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
}

fn build(
    attrs: Vec<(String, String)>,
    data: Option<Value>,
    defaults: &Defaults,
) -> Result<Event, EventError> {
    let get = |name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match get("specversion") {
        Some("1.0") => {}
        Some(other) => {
            return Err(EventError::field(
                "specversion",
                format!("{other:?} is not supported (expected \"1.0\")"),
            ))
        }
        None => return Err(EventError::field("specversion", "is required")),
    }
    let required = |name: &str| match get(name) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        Some(_) => Err(EventError::field(name, "must not be empty")),
        None => Err(EventError::field(name, "is required")),
    };
    let id = required("id")?;
    let source = required("source")?;
    let detail_type = required("type")?;
    if let Some(ct) = get("datacontenttype") {
        if !is_json_content_type(ct) {
            return Err(EventError::field(
                "datacontenttype",
                format!("{ct:?} is not JSON (expected application/json)"),
            ));
        }
    }
    let time = match get("time") {
        Some(t) => parse_time(t).map_err(|m| EventError::field("time", m))?,
        None => defaults.now.replace_nanosecond(0).unwrap_or(defaults.now),
    };
    let resources = match (get("resources"), get("subject")) {
        (Some(list), _) => serde_json::from_str::<Vec<String>>(list).map_err(|_| {
            EventError::field(
                "resources",
                format!("{list:?} is not a JSON array of strings"),
            )
        })?,
        (None, Some(subject)) => vec![subject.to_owned()],
        (None, None) => Vec::new(),
    };
    let detail = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(EventError::field(
                "data",
                format!("must be a JSON object, not {}", kind(&other)),
            ))
        }
    };
    let event = Event {
        version: "0".to_owned(),
        id,
        detail_type,
        source,
        account: get("account").map_or_else(|| defaults.account.clone(), str::to_owned),
        time,
        region: get("region").map_or_else(|| defaults.region.clone(), str::to_owned),
        resources,
        detail,
        replay_name: None,
    };
    event.check_size()?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Defaults {
        Defaults {
            account: "123456789012".into(),
            region: "local".into(),
            now: time::macros::datetime!(2026-11-23 10:00:00 UTC),
        }
    }

    fn sample() -> Event {
        Event::from_value(
            json!({
                "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                "source": "com.example.mdm",
                "detail-type": "MDM Check-in",
                "time": "2026-11-23T09:30:00Z",
                "account": "111122223333",
                "region": "eu-central-1",
                "resources": ["device/C02XK1JDJG5J", "user/jdoe@example.com"],
                "detail": {"scope": "device", "action": "enroll", "device": {"serial": "C02XK1JDJG5J"}}
            }),
            &defaults(),
        )
        .unwrap()
    }

    #[test]
    fn round_trips_through_structured_mode() {
        let event = sample();
        let ce = to_cloudevent(&event);
        insta::assert_json_snapshot!(ce);
        let back = from_cloudevent(ce, &defaults()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn round_trips_through_binary_mode() {
        let event = sample();
        let ce = to_cloudevent(&event);
        let mut headers: Vec<(String, String)> = Vec::new();
        for (k, v) in ce.as_object().unwrap() {
            match k.as_str() {
                "data" => {}
                "datacontenttype" => {
                    headers.push(("Content-Type".into(), v.as_str().unwrap().into()))
                }
                _ => headers.push((
                    format!("ce-{k}"),
                    v.as_str().unwrap().replace('%', "%25").replace('"', "%22"),
                )),
            }
        }
        let body = serde_json::to_vec(&ce["data"]).unwrap();
        let back = from_cloudevent_binary(
            headers.iter().map(|(a, b)| (a.as_str(), b.as_str())),
            &body,
            &defaults(),
        )
        .unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn subject_alone_becomes_the_one_resource_and_defaults_fill_in() {
        let e = from_cloudevent(
            json!({"specversion": "1.0", "id": "1", "source": "/okta", "type": "user.lifecycle.deactivate",
                   "subject": "user/jdoe@example.com", "traceparent": "00-ab", "sampled": true}),
            &defaults(),
        )
        .unwrap();
        assert_eq!(e.resources, vec!["user/jdoe@example.com"]);
        assert_eq!(e.account, "123456789012");
        assert_eq!(e.time_rfc3339(), "2026-11-23T10:00:00Z");
        assert!(e.detail.is_empty());
    }

    #[test]
    fn precise_errors() {
        let cases = [
            (
                json!({"id": "1", "source": "s", "type": "t"}),
                "specversion: is required",
            ),
            (
                json!({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}),
                "specversion: \"0.3\" is not supported",
            ),
            (
                json!({"specversion": "1.0", "source": "s", "type": "t"}),
                "id: is required",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s"}),
                "type: is required",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": "hi"}),
                "data: must be a JSON object, not a string",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "aGk="}),
                "data_base64: is not supported",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "datacontenttype": "text/plain"}),
                "datacontenttype: \"text/plain\" is not JSON",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "noon"}),
                "time: \"noon\" is not an RFC 3339",
            ),
            (
                json!({"specversion": "1.0", "id": 1, "source": "s", "type": "t"}),
                "id: must be a string, not a number",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "resources": "[1]"}),
                "resources: \"[1]\" is not a JSON array of strings",
            ),
        ];
        for (input, want) in cases {
            let err = from_cloudevent(input.clone(), &defaults())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{input}: got {err:?}, want {want:?}");
        }
        let err = from_cloudevent_binary(
            [
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            b"{",
            &defaults(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("data: is not valid JSON"), "{err}");
    }
}
