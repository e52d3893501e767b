//! `kind: okta`: Okta Event Hooks.
//!
//! Okta first proves the endpoint with a one-time `GET` carrying
//! `X-Okta-Verification-Challenge`, answered `{"verification": "<value>"}`. Then it
//! posts `{"eventType": "com.okta.event_hook", ..., "data": {"events": [...]}}`,
//! each item a System Log event. Each becomes an event with source `okta`,
//! detail-type the System Log `eventType` (`user.lifecycle.deactivate`), id the
//! item's `uuid` (so an event Okta delivers again is a duplicate, stored once),
//! time its `published`, `detail` the item as Okta sent it, and resources
//! `user/<alternateId>` for every target of type `User`. A batch holding one
//! malformed item is refused whole (400 naming the index and the field): Okta
//! retries a failed delivery, and half a batch must not be taken twice.

use fleetbus_event::{Defaults, Event};
use serde_json::{json, Map, Value};

use super::SourceError;

/// The source of the events Okta's hooks make.
pub const SOURCE: &str = "okta";

/// The header of Okta's one-time verification request.
pub const CHALLENGE: &str = "x-okta-verification-challenge";

/// `kind: okta`.
#[derive(Debug)]
pub struct Okta;

impl super::Source for Okta {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let events = process(request.body, &state.engine.defaults());
        super::ready(source, events)
    }

    fn verify(&self, request: super::Request<'_>) -> Option<Result<Value, SourceError>> {
        let challenge = request
            .headers
            .get(CHALLENGE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        Some(match challenge {
            Some(value) => Ok(json!({ "verification": value })),
            None => Err(SourceError::Invalid(
                "missing X-Okta-Verification-Challenge header (Okta's one-time verification request)".into(),
            )),
        })
    }
}

/// Turns one delivery into its events, all or none.
pub fn process(body: &[u8], defaults: &Defaults) -> Result<Vec<Event>, SourceError> {
    let invalid = |m: String| SourceError::Invalid(m);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("body is not valid JSON: {e}")))?;
    let items = value
        .get("data")
        .and_then(|d| d.get("events"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            invalid("data.events: missing (expected an Okta event hook delivery)".into())
        })?;
    if items.is_empty() {
        return Err(invalid(
            "data.events: empty (a delivery carries at least one event)".into(),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| one(i, item, defaults))
        .collect()
}

fn one(i: usize, item: &Value, defaults: &Defaults) -> Result<Event, SourceError> {
    let at = |field: &str| format!("data.events[{i}].{field}");
    let invalid = |m: String| SourceError::Invalid(m);
    let Some(obj) = item.as_object() else {
        return Err(invalid(format!("data.events[{i}]: must be an object")));
    };
    let text = |field: &str| -> Result<&str, SourceError> {
        match obj.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(invalid(format!("{}: must not be empty", at(field)))),
            None | Some(Value::Null) => Err(invalid(format!("{}: missing", at(field)))),
            Some(other) => Err(invalid(format!(
                "{}: must be a string, found {other}",
                at(field)
            ))),
        }
    };
    let uuid = text("uuid")?;
    let event_type = text("eventType")?;
    let published = text("published")?;
    let mut resources = Vec::new();
    match obj.get("target") {
        None | Some(Value::Null) => {}
        Some(Value::Array(targets)) => {
            for (j, t) in targets.iter().enumerate() {
                let Some(t) = t.as_object() else {
                    return Err(invalid(format!("{}[{j}]: must be an object", at("target"))));
                };
                if t.get("type").and_then(Value::as_str) != Some("User") {
                    continue;
                }
                match t.get("alternateId").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => {
                        let r = format!("user/{id}");
                        if !resources.contains(&r) {
                            resources.push(r);
                        }
                    }
                    _ => {
                        return Err(invalid(format!(
                            "{}[{j}].alternateId: missing (a User target names its login)",
                            at("target")
                        )))
                    }
                }
            }
        }
        Some(other) => {
            return Err(invalid(format!(
                "{}: must be an array, found {other}",
                at("target")
            )))
        }
    }
    let mut envelope = Map::new();
    envelope.insert("id".into(), json!(uuid));
    envelope.insert("source".into(), json!(SOURCE));
    envelope.insert("detail-type".into(), json!(event_type));
    envelope.insert("time".into(), json!(published));
    envelope.insert("resources".into(), json!(resources));
    envelope.insert("detail".into(), item.clone());
    Event::from_value(Value::Object(envelope), defaults).map_err(|error| SourceError::Event {
        at: format!("data.events[{i}]"),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(uuid: Value, targets: Value) -> Value {
        json!({"uuid": uuid, "published": "2026-12-03T10:15:30.123Z", "eventType": "user.lifecycle.deactivate", "target": targets})
    }

    fn run(items: Vec<Value>) -> Result<Vec<Event>, SourceError> {
        process(
            json!({"data": {"events": items}}).to_string().as_bytes(),
            &Defaults::default(),
        )
    }

    #[test]
    fn every_user_target_is_a_resource_and_bad_items_are_named() {
        let events = run(vec![item(
            json!("u-1"),
            json!([{"type": "User", "alternateId": "a@example.com"}, {"type": "Group", "alternateId": "Eng"},
                   {"type": "User", "alternateId": "b@example.com"}]),
        )])
        .unwrap();
        assert_eq!(
            events[0].resources,
            ["user/a@example.com", "user/b@example.com"]
        );
        let err = |items| run(items).unwrap_err().to_string();
        assert_eq!(
            err(vec![item(json!(7), json!([]))]),
            "data.events[0].uuid: must be a string, found 7"
        );
        assert_eq!(
            err(vec![item(json!("u"), json!([{"type": "User"}]))]),
            "data.events[0].target[0].alternateId: missing (a User target names its login)"
        );
        assert_eq!(
            err(vec![]),
            "data.events: empty (a delivery carries at least one event)"
        );
        assert_eq!(
            process(b"{}", &Defaults::default())
                .unwrap_err()
                .to_string(),
            "data.events: missing (expected an Okta event hook delivery)"
        );
    }

    proptest! {
        /// No body makes the parser panic.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                        s in ".{0,20}", n in any::<i64>()) {
            let _ = process(&bytes, &Defaults::default());
            let _ = run(vec![item(json!(s.clone()), json!([{"type": "User", "alternateId": s.clone()}]))]);
            let _ = run(vec![json!({"uuid": s, "published": n, "eventType": n, "target": n})]);
        }
    }
}
