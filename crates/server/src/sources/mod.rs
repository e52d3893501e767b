//! Source processors: one request to a configured source becomes zero or more
//! events, each with its metadata. One module per kind.

mod generic;
mod mdm;
mod unified_log;

use axum::http::HeaderMap;
use fleetbus_config::{Source, SourceKind};
use fleetbus_event::{Event, Meta};

use crate::error::ApiError;
use crate::AppState;

/// Turns a request body into events for `source`.
pub async fn process(
    state: &AppState,
    source: &Source,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<(Event, Meta)>, ApiError> {
    let defaults = state.engine.defaults();
    let ingest = format!("source/{}", source.name);
    let plain = |events: Vec<Event>| {
        events
            .into_iter()
            .map(|e| (e, Meta::ingested(source.bus.clone(), ingest.clone())))
            .collect()
    };
    match source.kind {
        SourceKind::Generic => Ok(plain(generic::process(source, body, &defaults)?)),
        SourceKind::UnifiedLog => Ok(plain(unified_log::process(
            headers, query, body, &defaults,
        )?)),
        SourceKind::Nanomdm => {
            mdm::process(state, mdm::Server::NanoMdm, body, &source.bus, &ingest).await
        }
        SourceKind::Micromdm => {
            mdm::process(state, mdm::Server::MicroMdm, body, &source.bus, &ingest).await
        }
    }
}
