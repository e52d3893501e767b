//! `kind: nanomdm` and `kind: micromdm`: the MDM server's webhook.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::SourceParts;
use crate::load::Origin;
use crate::validate::Ctx;

/// The fields of an MDM webhook source.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMdmSource {
    /// Put idle polls (Connect with status Idle and no command) on the bus too; off
    /// by default, since every device polls.
    idle_polls: Option<bool>,
}

pub(crate) fn validate(fields: Value, o: &Origin, cx: &mut Ctx<'_>) -> SourceParts {
    let raw: RawMdmSource = crate::kinds::read(fields, o, cx);
    SourceParts {
        idle_polls: raw.idle_polls.unwrap_or(false),
        ..SourceParts::default()
    }
}
