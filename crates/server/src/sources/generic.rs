//! `kind: generic`: any JSON body (an object, or an array of objects, one event
//! each), mapped to events by constants and JSONPaths from the config.

use fleetbus_config::{Field, Mapping, Source};
use fleetbus_event::{Defaults, Event};
use serde_json::{Map, Value};

use super::SourceError;

/// `kind: generic`.
#[derive(Debug)]
pub struct Generic;

impl super::Source for Generic {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let events = process(source, request.body, &state.engine.defaults());
        super::ready(source, events)
    }
}

fn process(source: &Source, body: &[u8], defaults: &Defaults) -> Result<Vec<Event>, SourceError> {
    let Some(mapping) = &source.mapping else {
        return Err(SourceError::Invalid(format!(
            "source {:?} has no mapping",
            source.name
        )));
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SourceError::Invalid(format!("body is not valid JSON: {e}")))?;
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| map_one(mapping, item, defaults, &format!("[{i}]")))
            .collect(),
        other => Ok(vec![map_one(mapping, &other, defaults, "")?]),
    }
}

fn text(field: &Field, body: &Value, name: &str, at: &str) -> Result<Option<String>, SourceError> {
    match field {
        Field::Const(c) => Ok(Some(c.clone())),
        Field::Template(t) => t
            .render(body)
            .map_err(|e| SourceError::Invalid(format!("body{at}: mapping.{name} {e}"))),
        Field::Path(p) => match p.first(body) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(_) => Err(SourceError::Invalid(format!(
                "body{at}: mapping.{name} {p} must select a string, not an object or array"
            ))),
        },
    }
}

fn map_one(m: &Mapping, body: &Value, defaults: &Defaults, at: &str) -> Result<Event, SourceError> {
    let required = |field: &Field, name: &str| -> Result<String, SourceError> {
        text(field, body, name, at)?.ok_or_else(|| {
            let what = field.as_written();
            SourceError::Invalid(format!("body{at}: mapping.{name} {what} matched nothing"))
        })
    };
    let mut envelope = Map::new();
    envelope.insert("source".into(), required(&m.source, "source")?.into());
    envelope.insert(
        "detail-type".into(),
        required(&m.detail_type, "detail_type")?.into(),
    );
    let mut resources = Vec::new();
    for field in &m.resources {
        match field {
            Field::Const(c) => resources.push(Value::String(c.clone())),
            Field::Template(t) => {
                if let Some(r) = t
                    .render(body)
                    .map_err(|e| SourceError::Invalid(format!("body{at}: mapping.resources {e}")))?
                {
                    resources.push(Value::String(r));
                }
            }
            Field::Path(p) => match p.first(body) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    resources.extend(items.iter().filter(|v| v.is_string()).cloned())
                }
                Some(Value::String(s)) => resources.push(Value::String(s.clone())),
                Some(v) => resources.push(Value::String(v.to_string())),
            },
        }
    }
    envelope.insert("resources".into(), Value::Array(resources));
    if let Some(f) = &m.id {
        if let Some(id) = text(f, body, "id", at)? {
            envelope.insert("id".into(), id.into());
        }
    }
    if let Some(f) = &m.time {
        if let Some(t) = text(f, body, "time", at)? {
            envelope.insert("time".into(), t.into());
        }
    }
    let detail = match &m.detail {
        None => body.clone(),
        Some(p) => p.first(body).cloned().unwrap_or(Value::Object(Map::new())),
    };
    let detail = match detail {
        Value::Object(_) => detail,
        other => {
            let mut wrapped = Map::new();
            wrapped.insert("value".into(), other);
            Value::Object(wrapped)
        }
    };
    envelope.insert("detail".into(), detail);
    Event::from_value(Value::Object(envelope), defaults).map_err(|error| SourceError::Event {
        at: if at.is_empty() {
            String::new()
        } else {
            format!("body{at}")
        },
        error,
    })
}
