//! AWS Signature Version 4, verified as AWS does for the AWS JSON API: the
//! `Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
//! SignedHeaders=..., Signature=...` header over the canonical request (method,
//! path, query, the signed headers, the body's SHA-256), with `X-Amz-Date` no more
//! than 15 minutes from now and the credential scoped to this endpoint's region and
//! the `events` service. Facts from AWS's SigV4 documentation; the code is ours.

use ring::{digest, hmac};
use time::OffsetDateTime;

/// How far `X-Amz-Date` may be from now, either way (AWS's 15 minutes).
pub(crate) const MAX_SKEW_SECS: i64 = 15 * 60;

/// Why a signature was refused, as AWS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigError {
    /// No or malformed `Authorization` (AWS: IncompleteSignatureException).
    Incomplete(String),
    /// The key id is not one this endpoint knows (UnrecognizedClientException).
    UnknownKey(String),
    /// Wrong scope, stale date or a signature that does not match (InvalidSignatureException).
    Invalid(String),
}

impl SigError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::UnknownKey(_) => "UnrecognizedClientException",
            SigError::Invalid(_) => "InvalidSignatureException",
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            SigError::Incomplete(m) | SigError::UnknownKey(m) | SigError::Invalid(m) => m,
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) key_id: String,
    /// `yyyymmdd`.
    pub(crate) date: String,
    pub(crate) region: String,
    pub(crate) service: String,
    /// Lower-case, as listed.
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

/// Reads the header.
pub(crate) fn parse(value: &str) -> Result<Authorization, SigError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
        SigError::Incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm".into())
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let missing = |what: &str| {
        SigError::Incomplete(format!("Authorization header requires '{what}' parameter"))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = parts[..] else {
        return Err(SigError::Incomplete(format!(
            "Credential {credential:?} is not <key>/<yyyymmdd>/<region>/<service>/aws4_request"
        )));
    };
    if terminator != "aws4_request" || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SigError::Incomplete(format!(
            "Credential {credential:?} is not <key>/<yyyymmdd>/<region>/<service>/aws4_request"
        )));
    }
    Ok(Authorization {
        key_id: key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// `yyyymmddThhmmssZ` (`X-Amz-Date`).
pub(crate) fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, f)
        .ok()
        .map(|t| t.assume_utc())
}

/// Checks what can be checked before the body is read: the scope, the date's
/// age. Returns the parsed header.
pub(crate) fn precheck(
    auth: &Authorization,
    amz_date: Option<&str>,
    region: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, SigError> {
    if auth.service != "events" {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to correct service: 'events', not {:?}",
            auth.service
        )));
    }
    if auth.region != region {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to a valid region: this endpoint's region is {region:?}, not {:?}",
            auth.region
        )));
    }
    let amz_date = amz_date.ok_or_else(|| {
        SigError::Incomplete("Authorization requires the X-Amz-Date header".into())
    })?;
    let at = parse_amz_date(amz_date).ok_or_else(|| {
        SigError::Incomplete(format!("X-Amz-Date {amz_date:?} is not yyyymmddThhmmssZ"))
    })?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to the date of X-Amz-Date ({}), not {}",
            &amz_date[..8],
            auth.date
        )));
    }
    let skew = (now - at).whole_seconds();
    if skew.abs() > MAX_SKEW_SECS {
        return Err(SigError::Invalid(format!(
            "Signature expired: {amz_date} is more than 15 minutes from the server's time ({})",
            now.format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default()
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::Invalid("the host header must be signed".into()));
    }
    Ok(at)
}

/// The canonical request AWS signs.
pub(crate) fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    signed_headers: &[String],
    body: &[u8],
) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{method}\n{}\n{query}\n{canonical_headers}\n{}\n{}",
        if path.is_empty() { "/" } else { path },
        signed_headers.join(";"),
        hex::encode(digest::digest(&digest::SHA256, body))
    )
}

/// The signature of `canonical` by `secret`, as lower-case hex.
pub(crate) fn signature(
    secret: &str,
    auth: &Authorization,
    amz_date: &str,
    canonical: &str,
) -> String {
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    );
    let sign = |key: &[u8], data: &[u8]| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
            .as_ref()
            .to_vec()
    };
    let k_date = sign(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = sign(&k_date, auth.region.as_bytes());
    let k_service = sign(&k_region, auth.service.as_bytes());
    let k_signing = sign(&k_service, b"aws4_request");
    hex::encode(sign(&k_signing, to_sign.as_bytes()))
}

/// Compares signatures in constant time.
pub(crate) fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 example (the `iam` ListUsers GET in "Signature
    /// Version 4 signing process", secret `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`):
    /// its canonical request hash and final signature.
    #[test]
    fn awss_documented_example_signs_the_same() {
        let headers = vec![
            ("Host".to_owned(), "iam.amazonaws.com".to_owned()),
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("X-Amz-Date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let signed: Vec<String> = ["content-type", "host", "x-amz-date"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let canonical = canonical_request(
            "GET",
            "/",
            "Action=ListUsers&Version=2010-05-08",
            &headers,
            &signed,
            b"",
        );
        assert_eq!(
            hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let auth = Authorization {
            key_id: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
            signed_headers: signed,
            signature: String::new(),
        };
        assert_eq!(
            signature(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                &auth,
                "20150830T123600Z",
                &canonical
            ),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn headers_and_scopes_are_checked_with_awss_codes() {
        let a = parse("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/local/events/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=ABC").unwrap();
        assert_eq!(
            (a.key_id.as_str(), a.region.as_str(), a.signature.as_str()),
            ("AKIDEXAMPLE", "local", "abc")
        );
        assert_eq!(a.signed_headers, ["host", "x-amz-date", "x-amz-target"]);
        assert_eq!(
            parse("Bearer x").unwrap_err().code(),
            "IncompleteSignatureException"
        );
        assert!(parse("AWS4-HMAC-SHA256 Credential=K/2026/local/events/aws4_request, SignedHeaders=host, Signature=a").is_err());
        assert!(parse("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=a")
            .unwrap_err()
            .message()
            .contains("'Credential'"));
        let now = parse_amz_date("20261204T101500Z").unwrap();
        assert!(precheck(&a, Some("20261204T100100Z"), "local", now).is_ok());
        let stale = precheck(&a, Some("20261204T095959Z"), "local", now).unwrap_err();
        assert_eq!(stale.code(), "InvalidSignatureException");
        assert!(
            stale.message().starts_with("Signature expired"),
            "{stale:?}"
        );
        assert!(precheck(&a, Some("20261204T100100Z"), "eu-west-1", now)
            .unwrap_err()
            .message()
            .contains("valid region"));
        assert!(precheck(&a, None, "local", now).is_err());
        assert!(precheck(&a, Some("20261205T000000Z"), "local", now).is_err());
    }
}
