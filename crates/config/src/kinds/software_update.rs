//! `kind: software-update`: runs the `software_update:` section's policy on the
//! events it is given. Only the section makes it, in the two rules it runs as: its
//! deliveries read and write Macs' states, so they run one at a time in one target
//! (the schedule's rule hands its turn to that one as an event); a target written
//! by hand would run beside it.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use crate::validate::Ctx;

/// A `software-update` target takes no fields of its own: the policy is the
/// `software_update:` section, which makes it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSoftwareUpdateTarget {}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let _: RawSoftwareUpdateTarget = crate::kinds::read(fields, o, cx);
    let why = match env.software_update {
        Some(_) => "a software-update target is made by the software_update: section (its rules are software-update and software-update-deadlines), not written in a rule: route events to it by sending them to the bus its rules listen on",
        None => "a software-update target is made by the software_update: section, which this configuration does not have (or it has errors, reported at it)",
    };
    cx.errors
        .push(o.error(&[crate::validate::key("kind")], why));
    TargetSpec::Log {
        path: None,
        max_bytes: 0,
        keep: 0,
    }
}
