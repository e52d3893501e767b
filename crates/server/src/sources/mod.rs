//! Source processors: one request to a configured source becomes zero or more
//! events. One module per kind.

mod generic;
mod unified_log;

use axum::http::HeaderMap;
use fleetbus_config::{Source, SourceKind};
use fleetbus_event::{Defaults, Event};

use crate::error::ApiError;

/// Turns a request body into events for `source`.
pub fn process(
    source: &Source,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    defaults: &Defaults,
) -> Result<Vec<Event>, ApiError> {
    match source.kind {
        SourceKind::Generic => generic::process(source, body, defaults),
        SourceKind::UnifiedLog => unified_log::process(headers, query, body, defaults),
        other => Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("source kind {other:?} has no processor in this build"),
        )),
    }
}
