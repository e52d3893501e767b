//! What fleetbus knows about an event beyond the envelope. It travels beside the
//! event and never inside `detail`, so patterns see exactly what EventBridge would.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Event;

/// fleetbus's own metadata for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The bus the event was put on.
    pub bus: String,
    /// When fleetbus made it durable.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Where it came from: `api`, `source/<name>`, `scheduler`, `delivery`, `target/<rule>/<target>`.
    pub ingest_source: String,
    /// The event that caused this one, when a target or the engine emitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// How many rule hops separate this event from an externally ingested one.
    #[serde(default)]
    pub hop: u32,
    /// The externally ingested event this one descends from (its causation chain's
    /// root), when a target or the engine emitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    /// When part of the event was too large for it and is kept beside it
    /// (claim-check): what that part is and how large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentInfo>,
}

/// What a claim-check moved out of an event (its whole is read through the
/// archive's attachment of the event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// The part of `detail` it holds in full (`detail.command`), as a path.
    pub part: String,
    pub content_type: String,
    pub bytes: u64,
}

impl Meta {
    /// Metadata for an event that entered from outside.
    pub fn ingested(bus: impl Into<String>, ingest_source: impl Into<String>) -> Meta {
        Meta {
            bus: bus.into(),
            received_at: OffsetDateTime::now_utc(),
            ingest_source: ingest_source.into(),
            causation_id: None,
            hop: 0,
            root_id: None,
            attachment: None,
        }
    }

    /// Metadata for an event caused by `cause`, one hop further.
    pub fn caused_by(
        cause: &StoredEvent,
        bus: impl Into<String>,
        ingest_source: impl Into<String>,
    ) -> Meta {
        Meta {
            bus: bus.into(),
            received_at: OffsetDateTime::now_utc(),
            ingest_source: ingest_source.into(),
            causation_id: Some(cause.event.id.clone()),
            hop: cause.meta.hop.saturating_add(1),
            root_id: Some(cause.chain_root().to_owned()),
            attachment: None,
        }
    }
}

impl Meta {
    /// Metadata of an event `cause` set off that starts a chain of its own: linked
    /// to its cause (traces follow it), counted from hop 0 and against a budget of
    /// its own.
    pub fn started_by(
        cause: &StoredEvent,
        bus: impl Into<String>,
        ingest_source: impl Into<String>,
    ) -> Meta {
        Meta {
            hop: 0,
            root_id: None,
            ..Meta::caused_by(cause, bus, ingest_source)
        }
    }
}

/// An event with its metadata, as kept in the log and the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: Event,
    pub meta: Meta,
}

impl StoredEvent {
    /// The id of the event this one's causation chain starts at: its own for an
    /// ingested event (or one that starts a chain of its own, [`Meta::started_by`]).
    pub fn chain_root(&self) -> &str {
        self.meta.root_id.as_deref().unwrap_or(&self.event.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_starts_a_chain_keeps_its_cause() {
        let cause = StoredEvent {
            event: Event::new("s", "t", Default::default()),
            meta: Meta::caused_by(
                &StoredEvent {
                    event: Event::new("s", "root", Default::default()),
                    meta: Meta::ingested("default", "api"),
                },
                "default",
                "target/r/t",
            ),
        };
        let step = StoredEvent {
            event: Event::new("fleetbus.software-update", "x", Default::default()),
            meta: Meta::started_by(&cause, "other", "target/r/t"),
        };
        assert_eq!(
            step.meta.causation_id.as_deref(),
            Some(cause.event.id.as_str())
        );
        assert_eq!(step.meta.hop, 0);
        assert_eq!(step.meta.bus, "other");
        assert_eq!(step.chain_root(), step.event.id, "a chain of its own");
    }

    #[test]
    fn causation_links_and_counts_hops() {
        let first = StoredEvent {
            event: Event::new("s", "t", Default::default()),
            meta: Meta::ingested("default", "api"),
        };
        let second = StoredEvent {
            event: Event::new(
                "fleetbus.delivery",
                "Target Delivery Succeeded",
                Default::default(),
            ),
            meta: Meta::caused_by(&first, "default", "delivery"),
        };
        assert_eq!(
            second.meta.causation_id.as_deref(),
            Some(first.event.id.as_str())
        );
        assert_eq!(second.meta.hop, 1);
        // Every event of the chain names its root.
        assert_eq!(first.chain_root(), first.event.id);
        assert_eq!(second.chain_root(), first.event.id);
        let third = StoredEvent {
            event: Event::new("t", "u", Default::default()),
            meta: Meta::caused_by(&second, "default", "delivery"),
        };
        assert_eq!(third.meta.root_id.as_deref(), Some(first.event.id.as_str()));
        assert_eq!(third.meta.hop, 2);
        let json = serde_json::to_string(&second).unwrap();
        let back: StoredEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, second);
        assert!(!serde_json::to_value(&second.event).unwrap()["detail"]
            .as_object()
            .unwrap()
            .contains_key("causation_id"));
    }
}
