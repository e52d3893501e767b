//! `kind: unified-log`: NDJSON (or `log show --style json`) batches a device posts;
//! the built-in extraction rules turn notable lines into events on
//! `device/<serial>`. The serial comes from the `X-Fleetbus-Device` header or the
//! `serial` query parameter. With `device_key`, each device has a token of its own,
//! `hex(HMAC-SHA256(device_key, serial))` ([`device_token`]), accepted only for
//! that serial (checked by the route layer before the body is read).

use axum::http::HeaderMap;
use fleetbus_event::{Defaults, Event};
use std::io::Read;

use fleetbus_ulog::{extract_ndjson, Extractor};

use super::SourceError;

/// `kind: unified-log`.
#[derive(Debug)]
pub struct UnifiedLog;

impl super::Source for UnifiedLog {
    fn handle<'a>(
        &'a self,
        state: &'a crate::AppState,
        source: &'a fleetbus_config::Source,
        request: super::Request<'a>,
    ) -> super::HandleFuture<'a> {
        let events = process(
            request.headers,
            request.query,
            request.body,
            &state.engine.defaults(),
        );
        super::ready(source, events)
    }
}

/// The device a request is for: the `X-Fleetbus-Device` header or the `serial`
/// query parameter, letters, digits or '-', at most 64.
pub fn request_serial<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let from_query = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("serial=")));
    headers
        .get("x-fleetbus-device")
        .and_then(|v| v.to_str().ok())
        .or(from_query)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A device's own token for a source with `device_key`: the HMAC-SHA256 of its
/// serial under the key, in lowercase hex.
pub fn device_token(key: &fleetbus_config::Secret, serial: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose().as_bytes());
    hex::encode(ring::hmac::sign(&key, serial.as_bytes()).as_ref())
}

fn process(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    defaults: &Defaults,
) -> Result<Vec<Event>, SourceError> {
    let serial = request_serial(headers, query)
        .ok_or_else(|| SourceError::Invalid("device serial: required, letters, digits or '-', in the X-Fleetbus-Device header or the serial query parameter".into()))?;
    let decoded;
    let body = match content_encoding(headers)? {
        Encoding::Identity => body,
        Encoding::Gzip => {
            decoded = gunzip(body)?;
            &decoded[..]
        }
    };
    let (values, stats) = extract_ndjson(&Extractor::builtin(), body, serial);
    let junk = stats.junk_lines;
    if stats.entries == 0 {
        // Never a silent 200: a sender must learn its logs were not read.
        return Err(SourceError::Invalid(format!(
            "body holds no unified-log entries ({junk} line(s) were not log entries; expected NDJSON or `log show --style json`, gzip with Content-Encoding: gzip)"
        )));
    }
    if junk > 0 {
        tracing::debug!(
            serial,
            junk,
            "unified-log batch had lines that are not log entries"
        );
    }
    values
        .into_iter()
        .map(|v| Event::from_value(v, defaults).map_err(SourceError::from))
        .collect()
}

/// Most bytes a gzip body may decompress to: devices send hours of logs, but a
/// small body must not inflate without bound.
const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

enum Encoding {
    Identity,
    Gzip,
}

/// The body's `Content-Encoding`: none, `identity` or `gzip`; anything else is 415.
fn content_encoding(headers: &HeaderMap) -> Result<Encoding, SourceError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        other => Err(SourceError::UnsupportedEncoding(format!(
            "Content-Encoding {other:?} is not supported (expected gzip or none)"
        ))),
    }
}

/// The gzip body decompressed, up to [`MAX_DECODED_BYTES`].
fn gunzip(body: &[u8]) -> Result<Vec<u8>, SourceError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| SourceError::Invalid(format!("body is not valid gzip: {e}")))?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        return Err(SourceError::TooLarge(format!(
            "gzip body decompresses to more than {MAX_DECODED_BYTES} bytes"
        )));
    }
    Ok(out)
}
