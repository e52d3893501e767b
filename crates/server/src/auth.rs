//! Who may call what: one route layer for the management API's tokens and one for
//! each source's own tokens, both run before a handler extracts (and so reads) the
//! body. Tokens compare in constant time and are never logged.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use fleetbus_config::Secret;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// Lets the request through when it carries a management API token
/// (`server.api_tokens`), or a read token (`server.read_tokens`) and only reads.
pub(crate) async fn require_api_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let server = &state.config().server;
    if authorized(request.headers(), &server.api_tokens) {
        return Ok(next.run(request).await);
    }
    if authorized(request.headers(), &server.read_tokens) {
        let reads = matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        // A PIN reveal is a read that is recorded: not for read tokens.
        let reveals = request.uri().path().starts_with("/v1/assets/devices/");
        if reads && !reveals {
            return Ok(next.run(request).await);
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "a read token may only read: {} {} needs a token of server.api_tokens",
                request.method(),
                request.uri().path()
            ),
        ));
    }
    Err(ApiError::unauthorized())
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything the management API does.
    Full,
    /// Reading only.
    Read,
}

/// Lets the request through when it names a configured source and carries one of
/// that source's tokens. An unknown source is 404 before any token is looked at, as
/// there is no token that could be right.
pub(crate) async fn require_source_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = state.config();
    let Some(source) = config.sources.iter().find(|s| s.name == name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("unknown source {name:?}"),
        ));
    };
    // A signed source without tokens is checked by its signature, which needs the
    // body: the handler verifies it (the body is still bounded by max_body_bytes).
    if source.tokens.is_empty() && source.hmac.is_some() {
        return Ok(next.run(request).await);
    }
    // A device's own token, good for the serial it names only.
    let device_ok = source.device_key.as_ref().is_some_and(|key| {
        crate::sources::unified_log::request_serial(request.headers(), request.uri().query())
            .is_some_and(|serial| {
                let own =
                    Secret::from_value(crate::sources::unified_log::device_token(key, serial));
                authorized(request.headers(), std::slice::from_ref(&own))
            })
    });
    let ok = device_ok
        || match &source.token_header {
            Some(header) => header_token(request.headers(), header, &source.tokens),
            None => {
                authorized(request.headers(), &source.tokens)
                // Fleet's webhooks have no authentication setting: the token can
                // only travel in the URL the admin types.
                || (source.kind == fleetbus_config::SourceKind::Fleet
                    && query_token(request.uri().query(), &source.tokens))
            }
        };
    if ok {
        Ok(next.run(request).await)
    } else {
        // Say which scheme this source expects: a sender set up for one (Basic,
        // a header of the admin's choice) should not be told "bearer".
        let expected = match &source.token_header {
            Some(header) => format!("the source's token in the {header} header"),
            None if source.kind == fleetbus_config::SourceKind::Fleet => {
                "?token=<token> in the URL, or Authorization: Bearer <token>".into()
            }
            None if source.device_key.is_some() => {
                "Authorization: Bearer <the device's own token for the serial it names>".into()
            }
            None => "Authorization: Bearer <token>, or Basic with the token as password".into(),
        };
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("missing or wrong token for source {name:?} (expected {expected})"),
        ))
    }
}

/// True when the request carries one of `tokens` as a bearer token, or as the
/// password of HTTP Basic auth (MDM servers' webhooks can only send credentials
/// from the URL's userinfo, e.g. `http://fleetbus:TOKEN@host/v1/sources/nanomdm`).
/// True when header `name` holds one of `tokens` (as is, or after `Bearer `).
fn header_token(headers: &HeaderMap, name: &str, tokens: &[Secret]) -> bool {
    let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let given = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    matches_one(given, tokens)
}

/// What `token` may do: a management API token (`server.api_tokens`), a read
/// token (`server.read_tokens`), or nothing. The console's login asks this.
pub fn token_access(state: &AppState, token: &str) -> Option<Access> {
    let config = state.config();
    if matches_one(token, &config.server.api_tokens) {
        Some(Access::Full)
    } else if matches_one(token, &config.server.read_tokens) {
        Some(Access::Read)
    } else {
        None
    }
}

/// True when the query string's `token` parameter is one of `tokens`.
fn query_token(query: Option<&str>, tokens: &[Secret]) -> bool {
    let Some(query) = query else { return false };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "token")
        .any(|(_, v)| matches_one(&v, tokens))
}

/// Compares against every token; lengths differ in time only, the contents
/// compare in constant time.
fn matches_one(given: &str, tokens: &[Secret]) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for t in tokens {
        ok |= given.as_bytes().ct_eq(t.expose().as_bytes());
    }
    bool::from(ok)
}

pub(crate) fn authorized(headers: &HeaderMap, tokens: &[Secret]) -> bool {
    let Some(header) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let basic;
    let given = if let Some(b) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    {
        b
    } else if let Some(encoded) = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
    {
        use base64::Engine as _;
        let Some(decoded) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
        else {
            return false;
        };
        let Some((_, password)) = decoded.split_once(':') else {
            return false;
        };
        basic = password.to_owned();
        &basic
    } else {
        return false;
    };
    matches_one(given, tokens)
}
