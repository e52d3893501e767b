//! `kind: bus`: another declared bus.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use crate::raw::RawTarget;
use crate::validate::{key, require, Ctx};

/// Validates a target of this kind.
pub(crate) fn validate(t: &RawTarget, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
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
