//! `kind: slack`: an incoming-webhook URL, a secret.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use crate::raw::RawTarget;
use crate::secret::Secret;
use crate::validate::{key, require, Ctx};

/// Validates a target of this kind.
pub(crate) fn validate(t: &RawTarget, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    require(cx, o, env.name, "url", t.url.is_some());
    let url = t
        .url
        .as_deref()
        .map(|u| cx.secret(o, &[key("url")], u))
        .unwrap_or_else(Secret::empty);
    TargetSpec::Slack { url }
}
