//! `kind: unified-log`: log batches a device posts.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::SourceParts;
use crate::load::Origin;
use crate::validate::{key, Ctx};

/// The fields of a `unified-log` source.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUnifiedLog {
    /// A secret from which each device's own token is derived
    /// (`fleetbus ulog token SERIAL`): a device's token is accepted only for the
    /// serial it names, so one leaked token cannot post logs for another Mac. With
    /// it, `tokens` may be empty; shared `tokens`, when also set, are still accepted
    /// for any serial.
    device_key: Option<String>,
}

pub(crate) fn validate(fields: Value, o: &Origin, cx: &mut Ctx<'_>) -> SourceParts {
    let raw: RawUnifiedLog = crate::kinds::read(fields, o, cx);
    SourceParts {
        device_key: raw
            .device_key
            .as_deref()
            .map(|k| cx.secret(o, &[key("device_key")], k)),
        ..SourceParts::default()
    }
}
