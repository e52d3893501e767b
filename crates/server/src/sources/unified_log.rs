//! `kind: unified-log`: NDJSON (or `log show --style json`) batches a device posts;
//! the built-in extraction rules turn notable lines into events on
//! `device/<serial>`. The serial comes from the `X-Fleetbus-Device` header or the
//! `serial` query parameter.

use axum::http::HeaderMap;
use fleetbus_event::{Defaults, Event};
use fleetbus_ulog::{events_from_ndjson, Extractor};

use super::SourceError;

/// `kind: unified-log`.
#[derive(Debug)]
pub struct UnifiedLog;

impl super::Source for UnifiedLog {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let events = process(
            request.headers,
            request.query,
            request.body,
            &state.engine.defaults(),
        );
        Box::pin(std::future::ready(
            events.map(|e| super::ingested(source, e)),
        ))
    }
}

fn process(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    defaults: &Defaults,
) -> Result<Vec<Event>, SourceError> {
    let from_query = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("serial=")));
    let serial = headers
        .get("x-fleetbus-device")
        .and_then(|v| v.to_str().ok())
        .or(from_query)
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .ok_or_else(|| SourceError::Invalid("device serial: required, letters, digits or '-', in the X-Fleetbus-Device header or the serial query parameter".into()))?;
    let (values, junk) = events_from_ndjson(&Extractor::builtin(), body, serial);
    if junk > 0 {
        tracing::debug!(
            serial,
            junk,
            "unified-log batch had lines that are not log entries"
        );
    }
    values
        .into_iter()
        .map(|v| Event::from_value(v, defaults).map_err(SourceError::from))
        .collect()
}
