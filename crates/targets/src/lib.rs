//! Targets: where a matched event goes, and the EventBridge input transformer.
//! One module per kind; [`TargetImpl`] is the
//! enum the delivery workers call. A target never retries by itself: it reports
//! whether a failure is worth retrying, and the engine's retry policy decides.

pub mod transform;

use fleetbus_event::{Event, StoredEvent};

use crate::transform::Payload;

/// What a delivery needs to know beside the payload.
#[derive(Debug, Clone)]
pub struct DeliveryContext<'a> {
    /// The event that matched, with its metadata.
    pub event: &'a StoredEvent,
    /// Rule name.
    pub rule: &'a str,
    /// Target id within the rule.
    pub target: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across retries of the same (event, rule, target): `<event id>:<rule>:<target>`.
    pub idempotency_key: &'a str,
}

/// A successful delivery.
#[derive(Debug, Default)]
pub struct Delivered {
    /// A short status for the outcome event and logs (`200`, `exit 0`, `written`).
    pub status: String,
    /// Events the target asks to put on a bus (exec's stdout lines, the bus target),
    /// as (bus name, event). The engine links them to their cause and counts the hop.
    pub emitted: Vec<(String, Event)>,
}

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another attempt (network error, 5xx, 408, 429, timeout).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way again (4xx, bad template, program not found): straight
    /// to the dead-letter queue.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable(_))
    }
}
