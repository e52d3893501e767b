//! The live tail: events as they are committed, filtered by an EventBridge
//! pattern typed in the page, pushed to the browser as server-sent events.
//!
//! The stream reads the archive itself (positions after the last one sent), not an
//! in-process feed, so it shows exactly what is durable, whichever process of a
//! cluster committed it. It polls twice a second when idle, at once while behind,
//! and ends as soon as the server begins to shut down (it never holds up the drain).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use fleetbus_engine::store::EventQuery;
use fleetbus_event::StoredEvent;
use fleetbus_pattern::{Matcher, Pattern};
use maud::html;
use serde_json::json;

use crate::layout::{self, PageError};
use crate::session::Csrf;
use crate::Console;

/// How often an idle stream looks for new events.
const POLL: Duration = Duration::from_millis(500);
/// Events read from the archive per look.
const BATCH: usize = 200;

/// `GET /ui/tail?pattern=`.
pub async fn page(
    Extension(csrf): Extension<Csrf>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let pattern = params
        .get("pattern")
        .map(|p| p.trim().to_owned())
        .unwrap_or_default();
    let error = (!pattern.is_empty())
        .then(|| Pattern::parse(&pattern).err())
        .flatten();
    let stream = format!("/ui/tail/stream?pattern={}", layout::encode(&pattern));
    let body = html! {
        form.query method="get" action="/ui/tail" {
            label.wide { "Event pattern (JSON; empty for every event)"
                textarea name="pattern" rows="3" { (pattern) }
            }
            button type="submit" { "Apply" }
        }
        @if let Some(e) = &error {
            p.error role="alert" { "invalid pattern: " (e) }
        } @else {
            p.controls {
                button #tail-pause type="button" { "Pause" }
                button #tail-resume type="button" disabled { "Resume" }
                " " span #tail-status { "connecting" }
            }
            table.events #tail data-stream=(stream) {
                thead { tr { th { "Received" } th { "Source" } th { "Detail type" } th { "Resources" } th { "Event" } } }
                tbody {}
            }
        }
    };
    layout::page("Live tail", "/ui/tail", &csrf, body).into_response()
}

/// What a stream keeps between looks.
struct Tail {
    console: Console,
    matcher: Option<Matcher<u32>>,
    /// The last archive position read.
    after: Option<i64>,
    ready: VecDeque<StoredEvent>,
    /// The last look returned a full batch: look again at once.
    behind: bool,
}

impl Tail {
    /// The next event to send, or `None` when the server is shutting down.
    async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            let shutdown = &self.console.shutdown;
            if shutdown.is_cancelled() {
                return None;
            }
            if !self.behind {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            let query = EventQuery {
                oldest_first: true,
                after: self.after,
                limit: BATCH,
                ..EventQuery::default()
            };
            match self.console.app.engine.query(query, None).await {
                Ok(page) => {
                    self.behind = page.events.len() == BATCH;
                    if let Some((seq, _)) = page.events.last() {
                        self.after = Some(*seq);
                    }
                    let matcher = self.matcher.as_ref();
                    self.ready.extend(
                        page.events
                            .into_iter()
                            .map(|(_, e)| e)
                            .filter(|e| wanted(matcher, e)),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live tail: reading the archive failed; retrying");
                    self.behind = false;
                }
            }
        }
    }
}

/// True without a pattern, or when `e` matches it.
fn wanted(matcher: Option<&Matcher<u32>>, e: &StoredEvent) -> bool {
    matcher.is_none_or(|m| {
        m.matches_for_event(&e.event.to_json())
            .is_ok_and(|hits| !hits.is_empty())
    })
}

/// `GET /ui/tail/stream?pattern=`: `event: ev` messages, each the JSON of one row.
pub async fn stream(
    State(console): State<Console>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let matcher = match params
        .get("pattern")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(text) => {
            let p = Pattern::parse(text)
                .map_err(|e| PageError::bad_request(format!("invalid pattern: {e}")))?;
            let mut m = Matcher::new();
            m.add_pattern(0u32, &p)
                .map_err(|e| PageError::bad_request(format!("pattern: {e}")))?;
            Some(m)
        }
    };
    // Start after the newest event: the tail shows what arrives from now on.
    let newest = console
        .app
        .engine
        .query(
            EventQuery {
                limit: 1,
                ..EventQuery::default()
            },
            None,
        )
        .await?;
    let tail = Tail {
        console,
        matcher,
        after: newest.events.first().map(|(seq, _)| *seq),
        ready: VecDeque::new(),
        behind: false,
    };
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        let e = tail.next().await?;
        let row = json!({
            "id": e.event.id,
            "received": layout::received(&e),
            "source": e.event.source,
            "detail-type": e.event.detail_type,
            "resources": e.event.resources,
            "status": layout::status_class(&e),
        });
        Some((
            Ok::<_, Infallible>(Sse::default().event("ev").data(row.to_string())),
            tail,
        ))
    });
    Ok(axum::response::Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
