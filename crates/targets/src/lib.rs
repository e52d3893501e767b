//! Targets: where a matched event goes, and the EventBridge input transformer.
//! One module per kind; [`TargetImpl`] is the
//! enum the delivery workers call. A target never retries by itself: it reports
//! whether a failure is worth retrying, and the engine's retry policy decides.
//!
//! Use: [`transform::apply`] turns the matched event into a [`Payload`] per the
//! target's input; [`TargetImpl::build`] makes a target once per config load
//! (share it in an `Arc`); [`TargetImpl::deliver`] sends one payload.

pub mod kinds;
pub mod transform;

mod tls;

use fleetbus_config::Target;
use fleetbus_event::{Event, StoredEvent};

pub use crate::kinds::mdm::{ENQUEUED as MDM_ENQUEUED, MDM_SOURCE};
pub use crate::kinds::software_update::SERIES as SOFTWARE_UPDATE_SERIES;
pub use crate::kinds::{BuildContext, Clock, Deliver};
pub use crate::tls::ensure_provider as ensure_tls_provider;
pub use crate::transform::{apply, apply_escaped, Escape, Payload, TransformError};

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
    /// Worth another attempt, but not before the receiver's `Retry-After`.
    #[error("{message}")]
    RetryAfter {
        message: String,
        after: std::time::Duration,
    },
    /// Will fail the same way again (4xx, bad template, program not found): straight
    /// to the dead-letter queue.
    #[error("{0}")]
    Permanent(String),
}

/// An asset-store failure in a delivery: a busy store or a failed task is worth
/// another attempt, anything else fails the same way again.
impl From<fleetbus_assets::AssetError> for DeliveryError {
    fn from(e: fleetbus_assets::AssetError) -> DeliveryError {
        if e.is_retryable() {
            DeliveryError::Retryable(format!("asset store: {e}"))
        } else {
            DeliveryError::Permanent(format!("asset store: {e}"))
        }
    }
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Retryable(_) | DeliveryError::RetryAfter { .. }
        )
    }

    /// How long the receiver asked to be left alone, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DeliveryError::RetryAfter { after, .. } => Some(*after),
            _ => None,
        }
    }
}

impl From<TransformError> for DeliveryError {
    /// A template that fails once fails every time.
    fn from(e: TransformError) -> Self {
        DeliveryError::Permanent(e.to_string())
    }
}

/// Why a target could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("target {target:?}: unknown connection {connection:?}")]
    UnknownConnection { target: String, connection: String },
    #[error("target {target:?}: {url:?} is not a valid URL ({reason})")]
    InvalidUrl {
        target: String,
        url: String,
        reason: String,
    },
    #[error("target {target:?}: invalid header {name:?} ({reason})")]
    InvalidHeader {
        target: String,
        name: String,
        reason: String,
    },
    #[error("target {target:?}: invalid address {address:?} ({reason})")]
    InvalidAddress {
        target: String,
        address: String,
        reason: String,
    },
    #[error("target {target:?}: {reason}")]
    Other { target: String, reason: String },
}

impl BuildError {
    /// The config keys (below the target) the error is about, for locating it.
    pub fn field(&self) -> Vec<String> {
        match self {
            BuildError::UnknownConnection { .. } => vec!["connection".into()],
            BuildError::InvalidUrl { .. } => vec!["url".into()],
            BuildError::InvalidHeader { name, .. } => vec!["headers".into(), name.clone()],
            BuildError::InvalidAddress { .. } | BuildError::Other { .. } => Vec::new(),
        }
    }
}

/// Builds every target of `config` as `serve` would, and returns each failure at the
/// target's place in the files (`fleetbus validate` reports them with load errors).
pub fn check_builds(config: &fleetbus_config::Config) -> Vec<fleetbus_config::ConfigError> {
    config
        .rules
        .iter()
        .flat_map(|r| &r.targets)
        .filter_map(|t| {
            TargetImpl::build(t, &BuildContext::new(&config.connections))
                .err()
                .map(|e| t.site.error(&e.field(), e.to_string()))
        })
        .collect()
}

/// A built target, ready to deliver. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct TargetImpl {
    kind: &'static str,
    inner: Box<dyn Deliver>,
}

impl TargetImpl {
    /// Builds a target from its validated configuration, through its kind's entry in
    /// [`kinds::KINDS`].
    pub fn build(target: &Target, ctx: &BuildContext<'_>) -> Result<TargetImpl, BuildError> {
        let kind = target.spec.kind();
        let name = fleetbus_config::kinds::spec(kind).name;
        let build = kinds::KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, build)| build)
            .ok_or_else(|| BuildError::Other {
                target: target.id.clone(),
                reason: format!("internal: no build for kind {name}"),
            })?;
        let inner = build(target, ctx)?;
        Ok(TargetImpl { kind: name, inner })
    }

    /// How text from the event is escaped for this target's output.
    pub fn text_escape(&self) -> Option<Escape> {
        self.inner.text_escape()
    }

    /// Whether each event it emits starts a causation chain of its own (see
    /// [`Deliver::starts_chains`]).
    pub fn starts_chains(&self) -> bool {
        self.inner.starts_chains()
    }

    /// The kind, as written in config (`http`, `slack`, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Delivers one payload. Never retries: the error says whether to.
    pub async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        self.inner.deliver(payload, ctx).await
    }
}

/// At most `max` bytes of `bytes` as lossy UTF-8, marked when cut.
pub(crate) fn snippet(bytes: &[u8], max: usize) -> String {
    let cut = bytes.len() > max;
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if cut {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn target_impl_is_send_and_sync() {
        assert_send_sync::<TargetImpl>();
        assert_send_sync::<std::sync::Arc<TargetImpl>>();
    }

    #[test]
    fn snippets_are_bounded() {
        assert_eq!(snippet(b"hello", 10), "hello");
        assert_eq!(snippet(b"hello", 3), "hel…");
        assert_eq!(snippet(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}
