//! `kind: http`: a URL, a method, headers and an optional named connection.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{key, require, Ctx};

/// The fields of an `http` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    /// The endpoint.
    url: Option<String>,
    /// Method (default POST).
    method: Option<String>,
    /// Extra headers.
    headers: Option<BTreeMap<String, String>>,
    /// The connection whose credentials are used.
    connection: Option<String>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawHttp = crate::kinds::read(fields, o, cx);
    require(cx, o, env.name, "url", t.url.is_some());
    let url = t.url.clone().unwrap_or_default();
    if t.url.is_some() && !(url.starts_with("http://") || url.starts_with("https://")) {
        cx.errors.push(o.error(
            &[key("url")],
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    if let Some(c) = &t.connection {
        if !env.connections.contains_key(c) {
            let known: Vec<&str> = env.connections.keys().map(String::as_str).collect();
            cx.errors.push(o.error(
                &[key("connection")],
                format!(
                    "unknown connection {c:?} (declared: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let method = t
        .method
        .clone()
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        cx.errors.push(o.error(
            &[key("method")],
            format!("{method:?} is not supported (expected GET, POST, PUT, PATCH or DELETE)"),
        ));
    }
    TargetSpec::Http {
        url,
        method,
        headers: t.headers.clone().unwrap_or_default(),
        connection: t.connection.clone(),
    }
}
