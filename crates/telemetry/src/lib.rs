//! Internal telemetry, in the spirit of Vector's internal events: what happens inside
//! fleetbus is a typed event that logs (tracing) and counts (metrics) together, so a
//! log line and its counter cannot drift apart, and every metric name lives in one
//! catalogue ([`catalogue`]) with fixed label keys.
//!
//! Two kinds of use:
//! - rare things (a duplicate dropped, a hop limit hit, a pruning pass) are an event
//!   struct with [`InternalEvent::emit`];
//! - hot per-rule and per-target counters are handles registered once per
//!   configuration ([`RuleMetrics`], [`TargetMetrics`], [`BusMetrics`]), each series
//!   registered on first use so series that never happen never appear.
//!
//! Labels are bounded by configuration (bus, rule, target, server, request or detail
//! type from Apple's catalogue); never a device, user or event id.

pub mod catalogue;
mod events;
mod handles;

pub use events::*;
pub use handles::{BusMetrics, RuleMetrics, TargetMetrics};

/// Something that happened inside fleetbus, reported once: a log line and its count.
pub trait InternalEvent {
    fn emit(self);
}

/// Registers every metric's description with the installed recorder (the Prometheus
/// exporter shows them as `# HELP`). Call once, after installing the recorder.
pub fn describe() {
    for m in catalogue::ALL {
        m.describe();
    }
}
