//! `kind: software-update`: runs the `software_update:` section's policy on the
//! events it is given. The section makes its own rules with this target; writing it
//! in a rule of one's own feeds the policy more events (another MDM's results, an
//! inventory's versions).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use crate::validate::Ctx;

/// A `software-update` target takes no fields of its own: the policy is the
/// `software_update:` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSoftwareUpdateTarget {}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let _: RawSoftwareUpdateTarget = crate::kinds::read(fields, o, cx);
    match env.software_update {
        Some(policy) => TargetSpec::SoftwareUpdate(policy.clone()),
        None => {
            cx.errors.push(o.error(
                &[crate::validate::key("kind")],
                "a software-update target runs the software_update: section, which this configuration does not have (or it has errors, reported at it)",
            ));
            TargetSpec::Log {
                path: None,
                max_bytes: 0,
                keep: 0,
            }
        }
    }
}
