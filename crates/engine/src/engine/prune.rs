//! Retention: events past `retention.archive` and finished deliveries past
//! `retention.deliveries` are removed in small chunks, at start and periodically.

use std::time::Duration;

use fleetbus_telemetry::{InternalEvent, Pruned};

use super::{millis, Engine, LEADERSHIP_TTL};
use crate::store::{now_ms, PruneCursor};
use crate::EngineError;

/// Rows removed per pruning transaction: small enough that a commit waiting
/// behind one is not held up for long.
const PRUNE_CHUNK: usize = 1000;
/// Bounds on the time between two pruning passes.
const PRUNE_MIN: Duration = Duration::from_secs(1);
const PRUNE_MAX: Duration = Duration::from_secs(600);

impl Engine {
    /// Enforces `retention:` for as long as the engine runs: at start, then every
    /// quarter of the shorter retention (at most every 10 minutes), in chunks that
    /// each hold the writer only briefly.
    pub(super) async fn prune_forever(&self) {
        let r = &self.inner.settings.retention;
        let every = (r.archive.min(r.deliveries) / 4).clamp(PRUNE_MIN, PRUNE_MAX);
        loop {
            let (events, jobs) = match self.prune_once().await {
                Ok(counts) => counts,
                Err(EngineError::ShuttingDown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the store failed; trying again later");
                    (0, 0)
                }
            };
            if events + jobs > 0 {
                tracing::info!(events, jobs, "retention: pruned old events and deliveries");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over everything past retention, when this process leads pruning;
    /// returns (events, jobs) removed.
    pub(super) async fn prune_once(&self) -> Result<(usize, usize), EngineError> {
        let r = &self.inner.settings.retention;
        let now = now_ms();
        if !self
            .lead(
                "prune",
                now,
                millis(r.archive.min(r.deliveries) / 4).max(LEADERSHIP_TTL),
            )
            .await?
        {
            return Ok((0, 0));
        }
        let events_before = now.saturating_sub(millis(r.archive));
        let jobs_before = now.saturating_sub(millis(r.deliveries));
        let (mut events, mut jobs) = (0, 0);
        let mut cursor = PruneCursor::default();
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(EngineError::ShuttingDown);
            }
            let (p, next) = self
                .inner
                .store
                .prune(now, events_before, jobs_before, PRUNE_CHUNK, cursor)
                .await?;
            cursor = next;
            Pruned {
                events: p.events,
                deliveries: p.jobs,
            }
            .emit();
            events += p.events;
            jobs += p.jobs;
            if !p.more {
                return Ok((events, jobs));
            }
        }
    }
}
