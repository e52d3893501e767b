//! `kind: exec`: a program and its arguments (never a shell).

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{key, Ctx};

/// The fields of an `exec` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExec {
    /// Program and arguments, never through a shell.
    command: Option<Vec<String>>,
    /// Extra environment variables.
    env: Option<BTreeMap<String, String>>,
    /// Put JSON lines printed on stdout on the bus as events.
    emit_events: Option<bool>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, _env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawExec = crate::kinds::read(fields, o, cx);
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
