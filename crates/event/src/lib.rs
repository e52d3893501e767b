//! The event model: the AWS EventBridge envelope, its validation, the metadata
//! fleetbus keeps beside it, and the CloudEvents 1.0 interchange form.
//!
//! Pure: no I/O and no async runtime. Every other crate speaks in these types.

mod cloudevents;
mod envelope;
mod error;
mod meta;

pub use cloudevents::{from_cloudevent, from_cloudevent_binary, to_cloudevent};
pub use envelope::{new_id, Defaults, Event, MAX_EVENT_BYTES};
pub use error::EventError;
pub use meta::{AttachmentInfo, Meta, StoredEvent};
