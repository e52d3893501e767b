//! Ingest endpoints. Each answers in PutEvents' shape, entry by entry, and only
//! once every accepted event is durable.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use fleetbus_engine::store::Attachment;
use fleetbus_engine::{Engine, PutError, PutOutcome};
use fleetbus_event::{Event, EventError, Meta, MAX_EVENT_BYTES};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::{sources, AppState};
use fleetbus_telemetry::{IngestEntriesFailed, InternalEvent};

/// One entry's result before the engine sees it.
type Prepared = Result<(Event, Meta, Option<Attachment>), (&'static str, String)>;

/// Most entries (events) one request may carry; a larger batch is refused whole, to
/// be split by the sender, so no single request can hold the writer or the backlog.
pub const MAX_ENTRIES_PER_REQUEST: usize = 10_000;

/// Puts prepared entries and answers `{"FailedEntryCount", "Entries"}`.
async fn answer(state: &AppState, entries: Vec<Prepared>) -> Result<Json<Value>, ApiError> {
    if entries.len() > MAX_ENTRIES_PER_REQUEST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TooManyEntries",
            format!(
                "the request has {} entries, more than {MAX_ENTRIES_PER_REQUEST}; send it in smaller batches",
                entries.len()
            ),
        ));
    }
    let mut slots = Vec::with_capacity(entries.len());
    let mut batch = Vec::new();
    for entry in entries {
        match entry {
            Ok(pair) => {
                slots.push(None);
                batch.push(pair);
            }
            Err(e) => slots.push(Some(e)),
        }
    }
    let results = if batch.is_empty() {
        Vec::new()
    } else {
        state.engine.put_attached(batch).await?
    };
    let mut results = results.into_iter();
    let mut failed = 0;
    let out: Vec<Value> = slots
        .into_iter()
        .map(|slot| {
            let outcome = match slot {
                Some(err) => Err(err),
                None => match results.next() {
                    Some(Ok(PutOutcome::Stored { id, .. })) => Ok((id, false)),
                    Some(Ok(PutOutcome::Duplicate { id })) => Ok((id, true)),
                    Some(Err(e @ PutError::UnknownBus(_))) => {
                        Err(("ResourceNotFoundException", e.to_string()))
                    }
                    Some(Err(e)) => Err(("InvalidArgument", e.to_string())),
                    None => Err(("InternalException", "no answer for this entry".to_owned())),
                },
            };
            match outcome {
                Ok((id, false)) => json!({"EventId": id}),
                // Accepted but dropped as a repeat of an event already taken in the
                // dedup window: the sender learns its event was not stored again
                // (SDKs ignore a member they do not know).
                Ok((id, true)) => json!({"EventId": id, "Duplicate": true}),
                Err((code, message)) => {
                    failed += 1;
                    json!({"ErrorCode": code, "ErrorMessage": message})
                }
            }
        })
        .collect();
    IngestEntriesFailed {
        failed,
        total: out.len(),
    }
    .emit();
    Ok(Json(json!({"FailedEntryCount": failed, "Entries": out})))
}

fn check_intake(state: &AppState) -> Result<(), ApiError> {
    if state.engine.is_shutting_down() {
        return Err(fleetbus_engine::EngineError::ShuttingDown.into());
    }
    state.engine.check_backpressure().map_err(ApiError::from)
}

/// `POST /v1/events`: the EventBridge PutEvents request.
pub async fn put_events(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_intake(&state)?;
    let entries = put_events_entries(&state, &body, None)?;
    answer(&state, entries).await
}

/// PutEvents through the AWS API, which takes at most `max` entries (EventBridge's
/// 10), checked on the one parse of the body.
pub(crate) async fn put_events_at_most(
    state: &AppState,
    body: &[u8],
    max: usize,
) -> Result<Json<Value>, ApiError> {
    check_intake(state)?;
    let entries = put_events_entries(state, body, Some(max))?;
    answer(state, entries).await
}

/// Counts the bytes written through it: an entry's serialized size without
/// building the bytes.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn put_events_entries(
    state: &AppState,
    body: &[u8],
    max: Option<usize>,
) -> Result<Vec<Prepared>, ApiError> {
    let mut request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
    let Some(Value::Array(entries)) = request.get_mut("Entries").map(Value::take) else {
        return Err(ApiError::bad_request(
            "Entries: required, a list of PutEventsRequestEntry",
        ));
    };
    if entries.is_empty() {
        return Err(ApiError::bad_request(
            "Entries: must hold at least one entry",
        ));
    }
    if let Some(max) = max.filter(|m| entries.len() > *m) {
        return Err(ApiError::bad_request(format!(
            "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and {max} (it has {})",
            entries.len()
        )));
    }
    let defaults = state.engine.defaults();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let mut counter = ByteCount(0);
        let size = serde_json::to_writer(&mut counter, &entry).map_or(0, |()| counter.0);
        if size > MAX_EVENT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "EventTooLarge",
                format!("Entries[{i}]: entry is {size} bytes, more than the limit of {MAX_EVENT_BYTES} bytes"),
            ));
        }
        out.push(put_events_entry(entry, &defaults));
    }
    Ok(out)
}

fn put_events_entry(entry: Value, defaults: &fleetbus_event::Defaults) -> Prepared {
    let bad = |msg: String| Err(("InvalidArgument", msg));
    let Value::Object(fields) = entry else {
        return bad("entry must be a JSON object".into());
    };
    let mut envelope = Map::new();
    // PutEvents entries carry no id: fleetbus gives one.
    envelope.insert("id".into(), Engine::new_event_id().into());
    let mut bus = "default".to_owned();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("Source", value @ Value::String(_)) => {
                envelope.insert("source".into(), value);
            }
            ("DetailType", value @ Value::String(_)) => {
                envelope.insert("detail-type".into(), value);
            }
            ("Detail", Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                Ok(v @ Value::Object(_)) => {
                    envelope.insert("detail".into(), v);
                }
                Ok(_) => return Err(("MalformedDetail", "Detail: must be a JSON object".into())),
                Err(e) => return Err(("MalformedDetail", format!("Detail: is not valid JSON ({e})"))),
            },
            ("Resources", value @ Value::Array(_)) => {
                envelope.insert("resources".into(), value);
            }
            ("Time", value @ Value::String(_)) => {
                envelope.insert("time".into(), value);
            }
            // The AWS JSON protocol sends timestamps as epoch seconds.
            ("Time", Value::Number(n)) => {
                let secs = n.as_f64().unwrap_or(f64::NAN);
                let t = time::OffsetDateTime::from_unix_timestamp(secs.floor() as i64);
                match t.ok().filter(|_| secs.is_finite()).and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()) {
                    Some(text) => {
                        envelope.insert("time".into(), text.into());
                    }
                    None => return bad(format!("Time: {n} is not a valid epoch timestamp")),
                }
            }
            ("EventBusName", Value::String(s)) => {
                bus = s.rsplit_once("event-bus/").map_or(s.as_str(), |(_, name)| name).to_owned();
            }
            ("TraceHeader", Value::String(_)) => {}
            ("Source" | "DetailType" | "Detail" | "Time" | "EventBusName" | "TraceHeader", _) => {
                return bad(format!("{key}: must be a string"));
            }
            ("Resources", _) => return bad("Resources: must be a list of strings".into()),
            _ => return bad(format!("{key}: unknown field (expected Source, DetailType, Detail, Resources, Time, EventBusName, TraceHeader)")),
        }
    }
    if !envelope.contains_key("detail") {
        return Err(("MalformedDetail", "Detail: is required".into()));
    }
    match Event::from_value(Value::Object(envelope), defaults) {
        Ok(event) => Ok((event, Meta::ingested(bus, "api"), None)),
        Err(e) => bad(aws_field_names(&e)),
    }
}

/// Names fields as the PutEvents caller wrote them.
fn aws_field_names(e: &EventError) -> String {
    match e {
        EventError::Field { field, message } => {
            let name = match field.as_str() {
                "source" => "Source".to_owned(),
                "detail-type" => "DetailType".to_owned(),
                "detail" => "Detail".to_owned(),
                "time" => "Time".to_owned(),
                f if f.starts_with("resources") => f.replacen("resources", "Resources", 1),
                f => f.to_owned(),
            };
            format!("{name}: {message}")
        }
        other => other.to_string(),
    }
}

/// `POST /v1/buses/{bus}/events`: full envelopes (object, array or NDJSON), or
/// CloudEvents in structured or binary mode.
pub async fn bus_events(
    State(state): State<AppState>,
    Path(bus): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_intake(&state)?;
    if !state.engine.has_bus(&bus) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("unknown bus {bus:?}"),
        ));
    }
    let defaults = state.engine.defaults();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let meta = || Meta::ingested(bus.clone(), "api");
    let one = |r: Result<Event, EventError>| -> Result<Prepared, ApiError> {
        match r {
            Ok(e) => Ok(Ok((e, meta(), None))),
            Err(e @ EventError::TooLarge { .. }) => Err(e.into()),
            Err(e) => Ok(Err(("InvalidArgument", e.to_string()))),
        }
    };
    // One event on its own (a binary CloudEvent, or one JSON object) is a webhook's
    // delivery: refused, it is a 400, since a 200 would tell the sender it was taken.
    let mut single = true;
    let entries: Vec<Prepared> = if headers.contains_key("ce-specversion") {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect();
        let r = fleetbus_event::from_cloudevent_binary(pairs, &body, &defaults);
        match r {
            Err(e @ EventError::TooLarge { .. }) => return Err(e.into()),
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
            Ok(e) => vec![Ok((e, meta(), None))],
        }
    } else {
        let values = parse_values(&body)?;
        single = values.len() == 1
            && body.trim_ascii_start().first() == Some(&b'{')
            && body.trim_ascii().last() == Some(&b'}');
        let cloudevents = content_type == "application/cloudevents+json"
            || content_type == "application/cloudevents-batch+json";
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let r = if cloudevents {
                fleetbus_event::from_cloudevent(v, &defaults)
            } else {
                let mut v = v;
                if let Value::Object(map) = &mut v {
                    map.entry("id")
                        .or_insert_with(|| Engine::new_event_id().into());
                }
                Event::from_value(v, &defaults)
            };
            out.push(one(r)?);
        }
        out
    };
    if entries.is_empty() {
        return Err(ApiError::bad_request("body holds no event"));
    }
    if single {
        if let [Err((_, message))] = entries.as_slice() {
            return Err(ApiError::bad_request(message.clone()));
        }
    }
    answer(&state, entries).await
}

/// A JSON object, a JSON array of them, or NDJSON. A syntax error refuses the whole
/// body, so nothing of it is half-written.
fn parse_values(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for item in stream {
        match item {
            Ok(Value::Array(items)) => out.extend(items),
            Ok(v) => out.push(v),
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "body is not valid JSON or NDJSON: {e}"
                )))
            }
        }
    }
    Ok(out)
}

/// `POST /v1/sources/{name}`: a configured source.
/// `GET /v1/sources/{name}`: a sender's verification request (Okta's one-time
/// challenge), answered by the source's kind.
pub async fn source_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let config = state.config();
    let Some(source) = config.sources.iter().find(|s| s.name == name) else {
        return Err(ApiError::not_found(format!("unknown source {name:?}")));
    };
    let request = sources::Request {
        headers: &headers,
        query: uri.query(),
        body: &[],
    };
    Ok(Json(sources::verify(source, request)?))
}

pub async fn source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let config = state.config();
    // The auth layer found it; a reload since may have removed it.
    let Some(source) = config.sources.iter().find(|s| s.name == name) else {
        return Err(ApiError::not_found(format!("unknown source {name:?}")));
    };
    if let Some(hmac) = &source.hmac {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        crate::signature::verify(hmac, &headers, &body, now).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "InvalidSignatureException",
                format!("source {name:?}: {e}"),
            )
        })?;
    }
    check_intake(&state)?;
    let request = sources::Request {
        headers: &headers,
        query: uri.query(),
        body: &body,
    };
    let entries = sources::process(&state, source, request)
        .await?
        .into_iter()
        .map(Ok)
        .collect();
    answer(&state, entries).await
}
