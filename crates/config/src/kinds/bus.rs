//! `kind: bus`: another declared bus.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{key, require, Ctx};

/// The fields of a `bus` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBusTarget {
    /// Destination bus.
    bus: Option<String>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawBusTarget = crate::kinds::read(fields, o, cx);
    require(cx, o, env.name, "bus", t.bus.is_some());
    let bus = t.bus.clone().unwrap_or_default();
    if t.bus.is_some() && !env.buses.contains(&bus) {
        cx.errors.push(o.error(
            &[key("bus")],
            format!("unknown bus {bus:?} (declared: {})", env.buses.join(", ")),
        ));
    }
    TargetSpec::Bus { bus }
}
