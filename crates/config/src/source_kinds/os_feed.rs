//! `kind: os-feed`: a release feed polled on a schedule.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::SourceParts;
use crate::load::Origin;
use crate::model::{FeedFormat, OsFeed};
use crate::validate::{key, Ctx};

/// The fields of an `os-feed` source.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOsFeed {
    /// The feed's URL (SOFA's `.../v1/macos_data_feed.json`, or
    /// `https://gdmf.apple.com/v2/pmv`).
    url: Option<String>,
    /// `sofa` (default) or `gdmf`.
    feed: Option<String>,
    /// How often the feed is polled (default 1h, at least 1s).
    interval: Option<String>,
    /// PEM file of the CA certificates trusted for the feed's server instead of
    /// the platform's (gdmf.apple.com chains to Apple's own root).
    ca_file: Option<String>,
}

pub(crate) fn validate(fields: Value, o: &Origin, cx: &mut Ctx<'_>) -> SourceParts {
    let v: RawOsFeed = crate::kinds::read(fields, o, cx);
    let Some(url) = v.url.clone() else {
        cx.errors.push(o.error(
            &[],
            "missing required field url (kind os-feed needs it, e.g. https://sofafeed.macadmins.io/v1/macos_data_feed.json)",
        ));
        return SourceParts::default();
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        cx.errors.push(o.error(
            &[key("url")],
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    let format = match v.feed.as_deref() {
        None | Some("sofa") => FeedFormat::Sofa,
        Some("gdmf") => FeedFormat::Gdmf,
        Some(other) => {
            cx.errors.push(o.error(
                &[key("feed")],
                format!("unknown feed {other:?} (expected sofa or gdmf)"),
            ));
            FeedFormat::Sofa
        }
    };
    let interval = cx.duration(
        o,
        &[key("interval")],
        v.interval.as_deref(),
        Duration::from_secs(3600),
    );
    if interval < Duration::from_secs(1) {
        cx.errors
            .push(o.error(&[key("interval")], "must be at least 1s"));
    }
    let ca = v
        .ca_file
        .as_deref()
        .and_then(|f| match crate::CaCerts::read(&cx.base_dir.join(f)) {
            Ok(ca) => Some(ca),
            Err(msg) => {
                cx.errors.push(o.error(&[key("ca_file")], msg));
                None
            }
        });
    SourceParts {
        os_feed: Some(OsFeed {
            url,
            format,
            interval,
            ca,
        }),
        ..SourceParts::default()
    }
}
