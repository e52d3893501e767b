//! `kind: gelf`: events as GELF 1.1 messages to a log platform (Graylog and the
//! others that take GELF), over UDP, TCP or HTTP.

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::{GelfTransport, TargetSpec};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{key, require, Ctx};

/// The fields of a `gelf` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGelf {
    /// Where the GELF input listens: `udp://graylog.example.com:12201`,
    /// `tcp://graylog.example.com:12201` or `http://graylog.example.com:12201/gelf`.
    url: Option<String>,
    /// The message's `host` (default `fleetbus`).
    host: Option<String>,
    /// The message's `short_message`, a text template with `<detail-type>`,
    /// `<source>`, `<$.detail.path>`... (default `<detail-type> <resources>`).
    short_message: Option<String>,
    /// Syslog severity, 0 (emergency) to 7 (debug); default 6 (informational).
    level: Option<u8>,
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawGelf = crate::kinds::read(fields, o, cx);
    require(cx, o, env.name, "url", t.url.is_some());
    let url = t.url.clone().unwrap_or_default();
    let transport = if let Some(addr) = url.strip_prefix("udp://") {
        Some(GelfTransport::Udp(addr.trim_end_matches('/').to_owned()))
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        Some(GelfTransport::Tcp(addr.trim_end_matches('/').to_owned()))
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Some(GelfTransport::Http(url.clone()))
    } else {
        None
    };
    match &transport {
        Some(GelfTransport::Udp(a) | GelfTransport::Tcp(a))
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) =>
        {
            cx.errors.push(o.error(
                &[key("url")],
                format!("{url:?} has no host:port (e.g. udp://graylog.example.com:12201)"),
            ));
        }
        None if t.url.is_some() => cx.errors.push(o.error(
            &[key("url")],
            format!("{url:?} is not a udp://, tcp://, http:// or https:// URL"),
        )),
        _ => {}
    }
    if let Some(l) = t.level.filter(|l| *l > 7) {
        cx.errors.push(o.error(
            &[key("level")],
            format!("{l} is not a syslog severity (0 to 7)"),
        ));
    }
    TargetSpec::Gelf {
        transport: transport.unwrap_or(GelfTransport::Udp(String::new())),
        host: t.host.unwrap_or_else(|| "fleetbus".into()),
        short_message: t
            .short_message
            .unwrap_or_else(|| "<detail-type> <resources>".into()),
        level: t.level.unwrap_or(6).min(7),
    }
}
