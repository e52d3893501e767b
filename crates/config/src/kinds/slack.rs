//! `kind: slack`: an incoming-webhook URL, a secret.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::secret::Secret;
use crate::validate::{key, require, Ctx};

/// The fields of a `slack` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    /// The incoming-webhook URL (a secret reference).
    url: Option<String>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawSlack = crate::kinds::read(fields, o, cx);
    require(cx, o, env.name, "url", t.url.is_some());
    let url = t
        .url
        .as_deref()
        .map(|u| cx.secret(o, &[key("url")], u))
        .unwrap_or_else(Secret::empty);
    TargetSpec::Slack { url }
}
