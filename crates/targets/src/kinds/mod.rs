//! The target kinds, one module each: its build from the validated config and its
//! delivery, behind one [`Deliver`] trait. [`KINDS`] is the registry: adding a kind
//! is a module here and one line there (plus its config: `fleetbus_config::kinds`).

pub(crate) mod assets;
pub(crate) mod bus;
pub(crate) mod email;
pub(crate) mod exec;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod mdm;
pub(crate) mod slack;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use fleetbus_config::{Auth, Target, TargetKind};

use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

/// What building a target may use beside its own config.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// Named credentials (`connections:`).
    pub connections: &'a BTreeMap<String, Auth>,
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
    (TargetKind::Mdm, mdm::build),
    (TargetKind::Assets, assets::build),
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
