//! `kind: exec`: a program and its arguments (never a shell).

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use crate::raw::RawTarget;
use crate::validate::{key, Ctx};

/// Validates a target of this kind.
pub(crate) fn validate(t: &RawTarget, o: &Origin, _env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let command = t.command.clone().unwrap_or_default();
    if command.is_empty() || command[0].is_empty() {
        cx.errors.push(o.error(&[key("command")], "missing required program (expected an argv list, e.g. [/usr/local/bin/handler, --flag])"));
    }
    TargetSpec::Exec {
        command,
        env: t.env.clone().unwrap_or_default(),
        emit_events: t.emit_events.unwrap_or(false),
    }
}
