//! `kind: generic`: any JSON body, mapped to an event by `mapping`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::SourceParts;
use crate::load::Origin;
use crate::raw::RawMapping;
use crate::validate::{key, validate_mapping, Ctx};

/// The fields of a `generic` source.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeneric {
    /// How the body becomes an event.
    mapping: Option<RawMapping>,
}

pub(crate) fn validate(fields: Value, o: &Origin, cx: &mut Ctx<'_>) -> SourceParts {
    let raw: RawGeneric = crate::kinds::read(fields, o, cx);
    let mapping = match &raw.mapping {
        Some(m) => Some(validate_mapping(m, &o.child(key("mapping")), cx)),
        None => {
            cx.errors.push(o.error(
                &[],
                "a generic source needs a mapping (source, detail_type, resources...)",
            ));
            None
        }
    };
    SourceParts {
        mapping,
        ..SourceParts::default()
    }
}
