//! The rare internal events: each logs at its level and counts.

use crate::catalogue::*;
use crate::InternalEvent;

/// An event dropped as a repeat of the same (source, id) within the dedup window.
#[derive(Debug)]
pub struct EventDuplicate<'a> {
    pub source: &'a str,
    pub id: &'a str,
}

impl InternalEvent for EventDuplicate<'_> {
    fn emit(self) {
        EVENTS_DUPLICATE.get().increment(1);
        // Senders retry on purpose (Okta, EventBridge): a line for each would
        // drown the log, none would hide a sender whose ids repeat. One line per
        // interval says so, with how many it stands for.
        if let Some(more) = DUPLICATE_LOG.allow(since_start_ms()) {
            tracing::warn!(
                source = self.source,
                id = self.id,
                more_since_last_line = more,
                "duplicate event accepted and dropped: the same source and id arrived within the dedup window"
            );
        }
    }
}

/// At most one log line per interval; the lines held back are counted and told
/// with the next one.
#[derive(Debug)]
pub struct LogLimit {
    interval_ms: u64,
    /// Milliseconds since start of the last line, plus one (0: none yet).
    last: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

impl LogLimit {
    pub const fn new(interval_ms: u64) -> LogLimit {
        LogLimit {
            interval_ms,
            last: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written at
    /// `now_ms`, `None` when it is held back (and counted).
    pub fn allow(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last.load(Relaxed);
        let due = last == 0 || now_ms + 1 >= last.saturating_add(self.interval_ms);
        if due
            && self
                .last
                .compare_exchange(last, now_ms + 1, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Relaxed));
        }
        self.held.fetch_add(1, Relaxed);
        None
    }
}

/// Duplicate lines: one per 10 s at most.
static DUPLICATE_LOG: LogLimit = LogLimit::new(10_000);

fn since_start_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// A derived event dropped because its hop count passed the limit. Warns once per
/// causation chain (`first`), counts every time.
#[derive(Debug)]
pub struct EventHopLimited<'a> {
    pub id: &'a str,
    /// The chain's root event.
    pub root: &'a str,
    pub detail_type: &'a str,
    pub hop: u32,
    pub limit: u32,
    pub first: bool,
}

impl InternalEvent for EventHopLimited<'_> {
    fn emit(self) {
        if self.first {
            tracing::warn!(
                id = self.id,
                root = self.root,
                detail_type = self.detail_type,
                hop = self.hop,
                limit = self.limit,
                "derived event dropped at the hop limit (a rule loop?); further drops of this chain are counted in fleetbus_events_hop_limited_total, not logged"
            );
        } else {
            tracing::debug!(
                id = self.id,
                root = self.root,
                hop = self.hop,
                "derived event dropped at the hop limit"
            );
        }
        EVENTS_HOP_LIMITED.get().increment(1);
    }
}

/// A derived event dropped because its causation chain used its event budget.
/// Warns once per chain (`first`), counts every time.
#[derive(Debug)]
pub struct EventChainBudgetExceeded<'a> {
    pub id: &'a str,
    /// The chain's root event.
    pub root: &'a str,
    pub detail_type: &'a str,
    pub budget: u32,
    pub first: bool,
}

impl InternalEvent for EventChainBudgetExceeded<'_> {
    fn emit(self) {
        if self.first {
            tracing::warn!(
                id = self.id,
                root = self.root,
                detail_type = self.detail_type,
                budget = self.budget,
                "derived event dropped: its causation chain put chain_budget events on the buses (a rule loop's fan-out?); further drops of this chain are counted in fleetbus_events_chain_budget_dropped_total, not logged"
            );
        } else {
            tracing::debug!(
                id = self.id,
                root = self.root,
                "derived event dropped at the chain budget"
            );
        }
        EVENTS_CHAIN_BUDGET_DROPPED.get().increment(1);
    }
}

/// PutEvents entries refused in one request.
#[derive(Debug)]
pub struct IngestEntriesFailed {
    pub failed: usize,
    pub total: usize,
}

impl InternalEvent for IngestEntriesFailed {
    fn emit(self) {
        if self.failed > 0 {
            tracing::debug!(
                failed = self.failed,
                total = self.total,
                "PutEvents entries refused"
            );
            INGEST_ENTRIES_FAILED.get().increment(self.failed as u64);
        }
    }
}

/// One retention pass's removals.
#[derive(Debug)]
pub struct Pruned {
    pub events: usize,
    pub deliveries: usize,
}

impl InternalEvent for Pruned {
    fn emit(self) {
        if self.events + self.deliveries > 0 {
            tracing::info!(
                events = self.events,
                deliveries = self.deliveries,
                "retention pruned the store"
            );
        }
        STORE_PRUNED
            .with(["events".into()])
            .increment(self.events as u64);
        STORE_PRUNED
            .with(["deliveries".into()])
            .increment(self.deliveries as u64);
    }
}

/// One group commit of the store.
#[derive(Debug)]
pub struct StoreBatchCommitted {
    pub events: usize,
}

impl InternalEvent for StoreBatchCommitted {
    fn emit(self) {
        STORE_BATCH_EVENTS.get().record(self.events as f64);
    }
}

/// An event made from an MDM server's webhook.
#[derive(Debug)]
pub struct MdmWebhookEvent<'a> {
    /// The event source, `mdm.nanomdm` or `mdm.micromdm`.
    pub server: &'a str,
    pub detail_type: &'a str,
}

impl InternalEvent for MdmWebhookEvent<'_> {
    fn emit(self) {
        tracing::debug!(
            server = self.server,
            detail_type = self.detail_type,
            "mdm webhook event"
        );
        MDM_WEBHOOK_EVENTS
            .with([self.server.to_owned(), self.detail_type.to_owned()])
            .increment(1);
    }
}

/// A command enqueued on one device through an MDM server.
#[derive(Debug)]
pub struct MdmCommandEnqueued<'a> {
    /// `nanomdm` or `micromdm`.
    pub server: &'a str,
    pub request_type: &'a str,
    pub command_uuid: &'a str,
}

impl InternalEvent for MdmCommandEnqueued<'_> {
    fn emit(self) {
        tracing::info!(
            server = self.server,
            request_type = self.request_type,
            command_uuid = self.command_uuid,
            "mdm command enqueued"
        );
        MDM_COMMANDS_ENQUEUED
            .with([self.server.to_owned(), self.request_type.to_owned()])
            .increment(1);
    }
}

#[cfg(test)]
mod log_limit_tests {
    use super::LogLimit;

    #[test]
    fn one_line_per_interval_telling_how_many_were_held_back() {
        let l = LogLimit::new(10_000);
        assert_eq!(l.allow(0), Some(0));
        assert_eq!(l.allow(5), None);
        assert_eq!(l.allow(9_998), None);
        assert_eq!(l.allow(10_000), Some(2));
        assert_eq!(l.allow(10_001), None);
        assert_eq!(l.allow(25_000), Some(1));
    }
}
