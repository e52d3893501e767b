//! The target kinds, one module each: its build from the validated config and its
//! delivery, behind one [`Deliver`] trait. [`KINDS`] is the registry: adding a kind
//! is a module here and one line there (plus its config: `fleetbus_config::kinds`).

pub(crate) mod assets;
pub(crate) mod bus;
pub(crate) mod email;
pub(crate) mod exec;
pub(crate) mod gelf;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod mdm;
pub mod metrics;
pub(crate) mod slack;
pub mod software_update;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use fleetbus_config::{Auth, Target, TargetKind};

use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

/// What building a target may use beside its own config: what a kind needs from
/// outside is handed to it here once, not looked up per delivery.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// Named credentials (`connections:`).
    pub connections: &'a BTreeMap<String, Auth>,
    /// The asset store, for the kinds that read or write device and user records
    /// (mdm, assets); `None` where there is none (`fleetbus validate`).
    pub assets: Option<&'a fleetbus_assets::AsyncAssetStore>,
    /// Where metrics targets count; `None` where there is none (`fleetbus validate`).
    pub series: Option<&'a std::sync::Arc<dyn metrics::SeriesSink>>,
    /// The wall clock (an injected one in tests).
    pub clock: Clock,
}

/// A wall clock.
pub type Clock = fn() -> std::time::SystemTime;

impl<'a> BuildContext<'a> {
    /// A context with `connections`, no asset store and the system clock.
    pub fn new(connections: &'a BTreeMap<String, Auth>) -> BuildContext<'a> {
        BuildContext {
            connections,
            assets: None,
            series: None,
            clock: std::time::SystemTime::now,
        }
    }

    /// The same context with a series store.
    pub fn with_series(self, series: Option<&'a std::sync::Arc<dyn metrics::SeriesSink>>) -> Self {
        BuildContext { series, ..self }
    }

    /// The same context with an asset store.
    pub fn with_assets(self, assets: Option<&'a fleetbus_assets::AsyncAssetStore>) -> Self {
        BuildContext { assets, ..self }
    }
}

/// The future of one delivery.
pub type DeliverFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Delivered, DeliveryError>> + Send + 'a>>;

/// One delivery, the same for every kind. A target never retries by itself: the
/// error says whether another attempt may help.
pub trait Deliver: Send + Sync + std::fmt::Debug {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a>;

    /// How text from the event is escaped for this kind's output (`None`: as is).
    fn text_escape(&self) -> Option<crate::transform::Escape> {
        None
    }

    /// Whether each event this kind emits starts a causation chain of its own
    /// (keeping its link to its cause): for a workflow over a fleet whose steps
    /// wait on each device, where one chain per release would soon use the chain
    /// budget up. Its loops are bounded by its own state, not the hop limit.
    fn starts_chains(&self) -> bool {
        false
    }
}

/// Builds one kind's target from its validated config.
pub(crate) type BuildFn = fn(&Target, &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError>;

/// Every kind's build, by kind.
pub(crate) static KINDS: &[(TargetKind, BuildFn)] = &[
    (TargetKind::Http, http::build),
    (TargetKind::Slack, slack::build),
    (TargetKind::Email, email::build),
    (TargetKind::Exec, exec::build),
    (TargetKind::Bus, bus::build),
    (TargetKind::Log, log::build),
    (TargetKind::Gelf, gelf::build),
    (TargetKind::Mdm, mdm::build),
    (TargetKind::Assets, assets::build),
    (TargetKind::Metrics, metrics::build),
    (TargetKind::SoftwareUpdate, software_update::build),
];

/// A kind's build handed a spec of another kind: a registry line points at the
/// wrong module.
pub(crate) fn wrong_spec(t: &Target, expected: &str) -> BuildError {
    BuildError::Other {
        target: t.id.clone(),
        reason: format!(
            "internal: the {expected} build was given a {} target",
            fleetbus_config::kinds::spec(t.spec.kind()).name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_kind_has_one_build() {
        for spec in fleetbus_config::kinds::TARGET_KINDS {
            let n = KINDS.iter().filter(|(k, _)| *k == spec.kind).count();
            assert_eq!(n, 1, "kind {}", spec.name);
        }
        assert_eq!(KINDS.len(), fleetbus_config::kinds::TARGET_KINDS.len());
    }
}
