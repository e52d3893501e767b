//! `kind: assets`: device and user record updates mapped from the event.

use std::collections::BTreeMap;

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::{TargetSpec, ASSET_DEVICE_FIELDS, ASSET_USER_FIELDS};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{field, key, Ctx};

/// The fields of an `assets` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssets {
    /// Device fields to set, each a constant or a JSONPath into the event.
    device: Option<BTreeMap<String, String>>,
    /// User fields to set, each a constant or a JSONPath into the event.
    user: Option<BTreeMap<String, String>>,
}

/// Field mappings for the device and/or the user record.
pub(crate) fn validate(fields: Value, o: &Origin, _env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawAssets = crate::kinds::read(fields, o, cx);
    if t.device.is_none() && t.user.is_none() {
        cx.errors.push(o.error(
            &[],
            "missing required field device or user (kind assets needs at least one)",
        ));
    }
    let mapped = |section: &str,
                  fields: &Option<BTreeMap<String, String>>,
                  allowed: &[&str],
                  required: &str,
                  cx: &mut Ctx<'_>| {
        let mut out = BTreeMap::new();
        let Some(fields) = fields else {
            return out;
        };
        for (name, text) in fields {
            if !allowed.contains(&name.as_str()) {
                cx.errors.push(o.key_error(
                    &[key(section), key(name)],
                    format!(
                        "unknown {section} field (expected one of: {})",
                        allowed.join(", ")
                    ),
                ));
                continue;
            }
            out.insert(name.clone(), field(text, o, &[key(section), key(name)], cx));
        }
        if !fields.contains_key(required) {
            cx.errors.push(o.error(
                &[key(section)],
                format!("missing required field {required} (it says which record to update)"),
            ));
        }
        out
    };
    let device = mapped("device", &t.device, &ASSET_DEVICE_FIELDS, "serial", cx);
    let user = mapped("user", &t.user, &ASSET_USER_FIELDS, "id", cx);
    TargetSpec::Assets { device, user }
}
