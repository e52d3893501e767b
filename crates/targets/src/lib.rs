//! Targets: where a matched event goes, and the EventBridge input transformer.
//! One module per kind; [`TargetImpl`] is the
//! enum the delivery workers call. A target never retries by itself: it reports
//! whether a failure is worth retrying, and the engine's retry policy decides.
//!
//! Use: [`transform::apply`] turns the matched event into a [`Payload`] per the
//! target's input; [`TargetImpl::build`] makes a target once per config load
//! (share it in an `Arc`); [`TargetImpl::deliver`] sends one payload.

pub mod transform;

mod assets;
mod bus;
mod email;
mod exec;
mod http;
mod log;
mod mdm;
mod slack;
mod tls;

use std::collections::BTreeMap;

use fleetbus_config::{Auth, Target, TargetSpec};
use fleetbus_event::{Event, StoredEvent};

pub use crate::mdm::{ENQUEUED as MDM_ENQUEUED, MDM_SOURCE};
pub use crate::transform::{apply, Payload, TransformError};

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
    /// The asset store, for the mdm and assets targets.
    pub assets: Option<&'a fleetbus_assets::AssetStore>,
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
            TargetImpl::build(t, &config.connections)
                .err()
                .map(|e| t.site.error(&e.field(), e.to_string()))
        })
        .collect()
}

/// A built target, ready to deliver. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub enum TargetImpl {
    Http(http::HttpTarget),
    Slack(slack::SlackTarget),
    Email(email::EmailTarget),
    Exec(exec::ExecTarget),
    Bus(bus::BusTarget),
    Log(log::LogTarget),
    Mdm(mdm::MdmTargetImpl),
    Assets(assets::AssetsTarget),
}

impl TargetImpl {
    /// Builds a target from its validated configuration; `connections` are the
    /// config's named auth settings for http targets.
    pub fn build(
        target: &Target,
        connections: &BTreeMap<String, Auth>,
    ) -> Result<TargetImpl, BuildError> {
        Ok(match &target.spec {
            TargetSpec::Http {
                url,
                method,
                headers,
                connection,
            } => TargetImpl::Http(http::HttpTarget::new(
                &target.id,
                url,
                method,
                headers,
                connection.as_deref(),
                target.timeout,
                connections,
            )?),
            TargetSpec::Slack { url } => TargetImpl::Slack(slack::SlackTarget::new(
                &target.id,
                url,
                target.input == fleetbus_config::Input::Event,
                target.timeout,
            )?),
            TargetSpec::Email {
                smtp,
                from,
                to,
                subject,
            } => TargetImpl::Email(email::EmailTarget::new(
                &target.id,
                smtp,
                from,
                to,
                subject,
                target.timeout,
            )?),
            TargetSpec::Exec {
                command,
                env,
                emit_events,
            } => TargetImpl::Exec(exec::ExecTarget::new(
                &target.id,
                command,
                env,
                *emit_events,
                target.timeout,
            )?),
            TargetSpec::Bus { bus } => TargetImpl::Bus(bus::BusTarget::new(bus)),
            TargetSpec::Log {
                path,
                max_bytes,
                keep,
            } => TargetImpl::Log(log::LogTarget::new(path.as_ref(), *max_bytes, *keep)),
            TargetSpec::Mdm(spec) => {
                TargetImpl::Mdm(mdm::MdmTargetImpl::new(&target.id, spec, target.timeout)?)
            }
            TargetSpec::Assets { device, user } => {
                TargetImpl::Assets(assets::AssetsTarget::new(device, user))
            }
        })
    }

    /// The kind, as written in config (`http`, `slack`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            TargetImpl::Http(_) => "http",
            TargetImpl::Slack(_) => "slack",
            TargetImpl::Email(_) => "email",
            TargetImpl::Exec(_) => "exec",
            TargetImpl::Bus(_) => "bus",
            TargetImpl::Log(_) => "log",
            TargetImpl::Mdm(_) => "mdm",
            TargetImpl::Assets(_) => "assets",
        }
    }

    /// Delivers one payload. Never retries: the error says whether to.
    pub async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        match self {
            TargetImpl::Http(t) => t.deliver(payload, ctx).await,
            TargetImpl::Slack(t) => t.deliver(payload, ctx).await,
            TargetImpl::Email(t) => t.deliver(payload, ctx).await,
            TargetImpl::Exec(t) => t.deliver(payload, ctx).await,
            TargetImpl::Bus(t) => t.deliver(payload, ctx),
            TargetImpl::Log(t) => t.deliver(payload).await,
            // Both read the event itself: their "input" is the command or the mapping.
            TargetImpl::Mdm(t) => t.deliver(ctx).await,
            TargetImpl::Assets(t) => t.deliver(ctx).await,
        }
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
