//! `kind: log`: a file (or stdout), rotated by size.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::Ctx;

/// The fields of a `log` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    /// File path, or `stdout`.
    path: Option<String>,
    /// Rotate when the file passes this many bytes.
    max_bytes: Option<u64>,
    /// Rotated files kept.
    keep: Option<u32>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, _env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawLog = crate::kinds::read(fields, o, cx);
    TargetSpec::Log {
        path: t
            .path
            .as_deref()
            .filter(|p| *p != "stdout")
            .map(|p| cx.base_dir.join(p)),
        max_bytes: t.max_bytes.unwrap_or(64 * 1024 * 1024),
        keep: t.keep.unwrap_or(5),
    }
}
