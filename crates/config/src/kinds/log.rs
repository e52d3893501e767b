//! `kind: log`: a file (or stdout), rotated by size.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use crate::raw::RawTarget;
use crate::validate::Ctx;

/// Validates a target of this kind.
pub(crate) fn validate(t: &RawTarget, _o: &Origin, _env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
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
