//! Signed webhooks: a source with an `hmac:` block takes a request only when its
//! signature header holds the HMAC of the configured message (the body, and the
//! signing time where the sender signs it) under the shared secret. The time is
//! checked against the tolerance, so a captured request cannot be replayed later;
//! the comparison is constant-time (ring's `verify`).

use axum::http::HeaderMap;
use base64::Engine as _;
use fleetbus_config::{Hmac, HmacAlgorithm, HmacEncoding};

/// Why a signature was refused: every reason is a 401, each names what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    Missing(String),
    #[error("signature header {header} does not start with {prefix:?}")]
    Prefix { header: String, prefix: String },
    #[error("signature in {header} is not valid {encoding}")]
    Encoding {
        header: String,
        encoding: &'static str,
    },
    #[error("missing timestamp header {0}")]
    MissingTimestamp(String),
    #[error("timestamp header {header} holds {value:?}, not Unix seconds")]
    BadTimestamp { header: String, value: String },
    #[error("signed timestamp {at} is {age}s from now, beyond the tolerance of {tolerance}s (a replay, or a clock off)")]
    Stale { at: i64, age: i64, tolerance: u64 },
    #[error("signature does not match the body (wrong secret, or the body was changed)")]
    Mismatch,
}

/// Checks `body` against `hmac` at `now` (Unix seconds).
pub fn verify(
    hmac: &Hmac,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let given = headers
        .get(&hmac.header)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SignatureError::Missing(hmac.header.clone()))?
        .trim();
    let encoded =
        given
            .strip_prefix(hmac.prefix.as_str())
            .ok_or_else(|| SignatureError::Prefix {
                header: hmac.header.clone(),
                prefix: hmac.prefix.clone(),
            })?;
    let signature = match hmac.encoding {
        HmacEncoding::Hex => hex::decode(encoded).ok(),
        HmacEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok(),
    }
    .ok_or_else(|| SignatureError::Encoding {
        header: hmac.header.clone(),
        encoding: match hmac.encoding {
            HmacEncoding::Hex => "hex",
            HmacEncoding::Base64 => "base64",
        },
    })?;
    let timestamp = match &hmac.timestamp_header {
        None => None,
        Some(name) => {
            let value = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| SignatureError::MissingTimestamp(name.clone()))?
                .trim();
            let at: i64 = value.parse().map_err(|_| SignatureError::BadTimestamp {
                header: name.clone(),
                value: value.to_owned(),
            })?;
            let age = now.saturating_sub(at).saturating_abs();
            let tolerance = hmac.tolerance.as_secs();
            if u64::try_from(age).map_or(true, |a| a > tolerance) {
                return Err(SignatureError::Stale { at, age, tolerance });
            }
            Some(value.to_owned())
        }
    };
    let message = signed_message(&hmac.message, timestamp.as_deref(), body);
    let algorithm = match hmac.algorithm {
        HmacAlgorithm::Sha256 => ring::hmac::HMAC_SHA256,
        HmacAlgorithm::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
    };
    let key = ring::hmac::Key::new(algorithm, hmac.secret.expose().as_bytes());
    ring::hmac::verify(&key, &message, &signature).map_err(|_| SignatureError::Mismatch)
}

/// The bytes signed: the template with `{timestamp}` and `{body}` in place.
fn signed_message(template: &str, timestamp: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + body.len());
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{body}") {
            out.extend_from_slice(body);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{timestamp}") {
            out.extend_from_slice(timestamp.unwrap_or_default().as_bytes());
            rest = after;
        } else {
            let c = rest.chars().next().unwrap_or_default();
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn hmac(message: &str, timestamp: Option<&str>, encoding: HmacEncoding, prefix: &str) -> Hmac {
        Hmac {
            secret: fleetbus_config::Secret::from_value("s3cret"),
            header: "x-signature".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding,
            prefix: prefix.into(),
            message: message.into(),
            timestamp_header: timestamp.map(str::to_owned),
            tolerance: Duration::from_secs(300),
        }
    }

    fn sign(h: &Hmac, message: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, h.secret.expose().as_bytes());
        ring::hmac::sign(&key, message).as_ref().to_vec()
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_body_signature_in_hex_with_a_prefix() {
        let h = hmac("{body}", None, HmacEncoding::Hex, "sha256=");
        let body = br#"{"a":1}"#;
        let good = format!("sha256={}", hex::encode(sign(&h, body)));
        assert_eq!(
            verify(&h, &headers(&[("x-signature", good.clone())]), body, 0),
            Ok(())
        );
        assert_eq!(
            verify(
                &h,
                &headers(&[("x-signature", good.clone())]),
                br#"{"a":2}"#,
                0
            ),
            Err(SignatureError::Mismatch),
            "a tampered body"
        );
        assert_eq!(
            verify(
                &h,
                &headers(&[("x-signature", good[7..].to_owned())]),
                body,
                0
            ),
            Err(SignatureError::Prefix {
                header: "x-signature".into(),
                prefix: "sha256=".into()
            })
        );
        assert_eq!(
            verify(&h, &HeaderMap::new(), body, 0),
            Err(SignatureError::Missing("x-signature".into()))
        );
        let wrong = Hmac {
            secret: fleetbus_config::Secret::from_value("other"),
            ..h.clone()
        };
        assert_eq!(
            verify(&wrong, &headers(&[("x-signature", good)]), body, 0),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_timestamped_signature_is_refused_once_stale() {
        let h = hmac(
            "v0:{timestamp}:{body}",
            Some("x-timestamp"),
            HmacEncoding::Base64,
            "",
        );
        let body = b"payload";
        let at = 1_764_806_400_i64;
        let sig = base64::engine::general_purpose::STANDARD
            .encode(sign(&h, format!("v0:{at}:payload").as_bytes()));
        let hs = headers(&[("x-signature", sig), ("x-timestamp", at.to_string())]);
        assert_eq!(verify(&h, &hs, body, at + 299), Ok(()));
        assert_eq!(
            verify(&h, &hs, body, at + 301),
            Err(SignatureError::Stale {
                at,
                age: 301,
                tolerance: 300
            })
        );
    }

    proptest! {
        /// No header or body makes verification panic, and only the right
        /// signature passes.
        #[test]
        fn never_panics(sig in ".{0,80}", ts in ".{0,20}", body in proptest::collection::vec(any::<u8>(), 0..64), now in any::<i64>()) {
            let h = hmac("{timestamp}.{body}", Some("x-timestamp"), HmacEncoding::Hex, "v1=");
            let mut hs = HeaderMap::new();
            if let Ok(v) = sig.parse() { hs.insert("x-signature", v); }
            if let Ok(v) = ts.parse() { hs.insert("x-timestamp", v); }
            let _ = verify(&h, &hs, &body, now);
        }
    }
}
