//! The http target, an EventBridge API destination: a URL, a method, headers,
//! and a connection's auth (basic, API key header, bearer token, or OAuth client
//! credentials).
//!
//! Every request carries `Idempotency-Key` (stable across retries of one
//! delivery) and `X-Fleetbus-Event-Id`; the body is the payload with its content
//! type (none for GET). Outcome: 2xx is success; 408, 429, 5xx, network errors
//! and timeouts are retryable (a `Retry-After` is quoted in the message); any
//! other status is permanent, with a bounded snippet of the response body.
//!
//! OAuth: the token is fetched with `grant_type=client_credentials` (client id
//! and secret in HTTP basic auth, as RFC 6749 prefers; `scope` when
//! configured), cached until shortly before `expires_in`, and fetched afresh
//! once when the API answers 401.

use super::{BuildContext, Deliver, DeliverFuture};
use fleetbus_config::{Target, TargetSpec};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleetbus_config::{Auth, Secret};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{snippet, BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

/// Most bytes of a response body read (for error messages).
const BODY_LIMIT: usize = 64 * 1024;
/// Most bytes of a response body quoted in an error.
const SNIPPET: usize = 512;
/// Token lifetime assumed when the token endpoint gives no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct HttpTarget {
    client: Client,
    method: Method,
    url: reqwest::Url,
    headers: HeaderMap,
    auth: Option<Authorizer>,
    clock: super::Clock,
}

/// How requests are authorized.
#[derive(Debug)]
enum Authorizer {
    Basic { username: String, password: Secret },
    Header { name: HeaderName, value: Secret },
    Bearer(Secret),
    Oauth(OauthClient),
}

#[derive(Debug)]
struct OauthClient {
    token_url: reqwest::Url,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    /// The cached token; the lock also makes concurrent deliveries share one fetch.
    cache: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedToken(<redacted>)")
    }
}

/// A shared HTTP client for a target: rustls, the target's timeout.
pub(crate) fn client(target: &str, timeout: Duration) -> Result<Client, BuildError> {
    crate::tls::ensure_provider();
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("fleetbus/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BuildError::Other {
            target: target.to_owned(),
            reason: format!("cannot build HTTP client: {e}"),
        })
}

pub(crate) fn parse_url(target: &str, url: &str) -> Result<reqwest::Url, BuildError> {
    reqwest::Url::parse(url).map_err(|e| BuildError::InvalidUrl {
        target: target.to_owned(),
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

impl HttpTarget {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: &str,
        url: &str,
        method: &str,
        headers: &BTreeMap<String, String>,
        connection: Option<&str>,
        timeout: Duration,
        cx: &BuildContext<'_>,
    ) -> Result<HttpTarget, BuildError> {
        let url = parse_url(id, url)?;
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|e| {
            BuildError::Other {
                target: id.to_owned(),
                reason: format!("{method:?} is not an HTTP method ({e})"),
            }
        })?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let bad = |reason: String| BuildError::InvalidHeader {
                target: id.to_owned(),
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let v = HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
            map.append(n, v);
        }
        let auth = match connection {
            None => None,
            Some(name) => {
                let auth =
                    cx.connections
                        .get(name)
                        .ok_or_else(|| BuildError::UnknownConnection {
                            target: id.to_owned(),
                            connection: name.to_owned(),
                        })?;
                Some(match auth {
                    Auth::Basic { username, password } => Authorizer::Basic {
                        username: username.clone(),
                        password: password.clone(),
                    },
                    Auth::ApiKey { header, value } => Authorizer::Header {
                        name: HeaderName::from_bytes(header.as_bytes()).map_err(|e| {
                            BuildError::InvalidHeader {
                                target: id.to_owned(),
                                name: header.clone(),
                                reason: e.to_string(),
                            }
                        })?,
                        value: value.clone(),
                    },
                    Auth::Bearer { token } => Authorizer::Bearer(token.clone()),
                    Auth::Oauth {
                        token_url,
                        client_id,
                        client_secret,
                        scope,
                    } => Authorizer::Oauth(OauthClient {
                        token_url: parse_url(id, token_url)?,
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        scope: scope.clone(),
                        cache: Mutex::new(None),
                    }),
                })
            }
        };
        Ok(HttpTarget {
            client: client(id, timeout)?,
            method,
            url,
            headers: map,
            auth,
            clock: cx.clock,
        })
    }

    pub(crate) async fn deliver(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let mut response = self.send(payload, ctx, false).await?;
        if response.status() == StatusCode::UNAUTHORIZED
            && matches!(self.auth, Some(Authorizer::Oauth(_)))
        {
            // The token may have been revoked or expired early: one fresh try.
            response = self.send(payload, ctx, true).await?;
        }
        classify(response, (self.clock)()).await
    }

    async fn send(
        &self,
        payload: &Payload,
        ctx: &DeliveryContext<'_>,
        fresh_token: bool,
    ) -> Result<reqwest::Response, DeliveryError> {
        let mut req = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if self.method != Method::GET {
            if !self.headers.contains_key(CONTENT_TYPE) {
                req = req.header(CONTENT_TYPE, payload.content_type());
            }
            req = req.body(payload.to_bytes());
        }
        req = req
            .header("Idempotency-Key", header_value(ctx.idempotency_key))
            .header("X-Fleetbus-Event-Id", header_value(&ctx.event.event.id));
        req = match &self.auth {
            None => req,
            Some(Authorizer::Basic { username, password }) => {
                req.basic_auth(username, Some(password.expose()))
            }
            Some(Authorizer::Header { name, value }) => {
                let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                    DeliveryError::Permanent(format!(
                        "the value of API key header {name} is not a valid header value"
                    ))
                })?;
                v.set_sensitive(true);
                req.header(name, v)
            }
            Some(Authorizer::Bearer(token)) => req.bearer_auth(token.expose()),
            Some(Authorizer::Oauth(oauth)) => {
                let token = oauth.token(&self.client, fresh_token).await?;
                req.bearer_auth(token.expose())
            }
        };
        req.send().await.map_err(|e| request_error(&e, false))
    }
}

/// A header value from text that may hold bytes headers refuse (event ids come
/// from senders): those are percent-encoded.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| {
        let safe: String = text
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        HeaderValue::from_str(&safe).unwrap_or(HeaderValue::from_static("invalid"))
    })
}

impl OauthClient {
    async fn token(&self, client: &Client, force: bool) -> Result<Secret, DeliveryError> {
        let mut cache = self.cache.lock().await;
        if !force {
            if let Some(cached) = cache.as_ref() {
                if Instant::now() < cached.refresh_at {
                    return Ok(cached.token.clone());
                }
            }
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = client
            .post(self.token_url.clone())
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                prefix(
                    request_error(&e, false),
                    "cannot fetch an OAuth token from the token URL",
                )
            })?;
        let status = response.status();
        let body = read_body(response).await;
        if !status.is_success() {
            let err = status_error(status, None, std::time::SystemTime::now(), &body);
            return Err(prefix(err, "token endpoint refused client credentials"));
        }
        let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
            DeliveryError::Retryable(format!("token endpoint answered invalid JSON: {e}"))
        })?;
        let Some(token) = parsed.get("access_token").and_then(Value::as_str) else {
            return Err(DeliveryError::Permanent(
                "token endpoint answer has no access_token".into(),
            ));
        };
        let lifetime = match parsed.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0 * 365.0)))
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Refresh a little early so a token never expires in flight.
        let margin = (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let token = Secret::from_value(token);
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }
}

fn prefix(err: DeliveryError, what: &str) -> DeliveryError {
    match err {
        DeliveryError::Retryable(m) => DeliveryError::Retryable(format!("{what}: {m}")),
        DeliveryError::Permanent(m) => DeliveryError::Permanent(format!("{what}: {m}")),
        DeliveryError::RetryAfter { message, after } => DeliveryError::RetryAfter {
            message: format!("{what}: {message}"),
            after,
        },
    }
}

/// A transport error: timeouts and connection failures are worth another try;
/// a request that cannot even be built is not. `redact` drops the URL (Slack's
/// webhook URL is a secret).
pub(crate) fn request_error(e: &reqwest::Error, redact: bool) -> DeliveryError {
    let mut msg = if e.is_timeout() {
        "request timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    if !redact {
        if let Some(url) = e.url() {
            msg.push_str(&format!(" to {}", url.as_str()));
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_builder() {
        DeliveryError::Permanent(msg)
    } else {
        DeliveryError::Retryable(msg)
    }
}

/// Reads at most [`BODY_LIMIT`] bytes of a response body.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    body
}

/// The error for a non-2xx status: 408, 429 and 5xx are retryable.
pub(crate) fn status_error(
    status: StatusCode,
    retry_after: Option<&str>,
    now: std::time::SystemTime,
    body: &[u8],
) -> DeliveryError {
    let mut msg = format!("http {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        msg.push_str(&format!(" {reason}"));
    }
    if let Some(after) = retry_after {
        msg.push_str(&format!(" (retry after {after})"));
    }
    let text = snippet(body, SNIPPET);
    let text = text.trim();
    if !text.is_empty() {
        msg.push_str(&format!(": {text}"));
    }
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    match retry_after.and_then(|v| parse_retry_after(v, now)) {
        Some(after) if retryable => DeliveryError::RetryAfter {
            message: msg,
            after,
        },
        _ if retryable => DeliveryError::Retryable(msg),
        _ => DeliveryError::Permanent(msg),
    }
}

/// A `Retry-After` value (RFC 9110 10.2.3): delay seconds or an HTTP date, as the
/// time left from `now` (zero for a date in the past); `None` when it is neither.
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurd number of seconds still means "a long time", not "garbage".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Success for 2xx, else the status's error (`now` dates a `Retry-After` date).
pub(crate) async fn classify(
    response: reqwest::Response,
    now: std::time::SystemTime,
) -> Result<Delivered, DeliveryError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|s| snippet(s.as_bytes(), 64));
    let body = read_body(response).await;
    if status.is_success() {
        return Ok(Delivered {
            status: status.as_u16().to_string(),
            emitted: Vec::new(),
        });
    }
    Err(status_error(status, retry_after.as_deref(), now, &body))
}

/// `kind: http`.
pub(crate) fn build(t: &Target, cx: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Http {
        url,
        method,
        headers,
        connection,
    } = &t.spec
    else {
        return Err(super::wrong_spec(t, "http"));
    };
    Ok(Box::new(HttpTarget::new(
        &t.id,
        url,
        method,
        headers,
        connection.as_deref(),
        t.timeout,
        cx,
    )?))
}

impl Deliver for HttpTarget {
    fn deliver<'a>(
        &'a self,
        payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(HttpTarget::deliver(self, payload, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    proptest::proptest! {
        /// Any header value is a delay or nothing, never a panic.
        #[test]
        fn any_retry_after_value_is_a_delay_or_none(v in "\\PC{0,40}") {
            let _ = parse_retry_after(&v, std::time::SystemTime::now());
        }
    }

    #[test]
    fn retry_after_seconds_or_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 GMT
        let parse = |v| parse_retry_after(v, now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(
            parse("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_classification() {
        for (code, retryable) in [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (409, false),
            (422, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (301, false),
        ] {
            let err = status_error(
                StatusCode::from_u16(code).unwrap(),
                None,
                SystemTime::now(),
                b"body",
            );
            assert_eq!(err.is_retryable(), retryable, "{code}: {err}");
            assert!(err.to_string().starts_with(&format!("http {code}")));
        }
        let err = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some("30"),
            SystemTime::now(),
            &vec![b'x'; 5000],
        );
        let msg = err.to_string();
        assert!(msg.contains("retry after 30"), "{msg}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        // A Retry-After on a permanent status does not make it retryable; one that
        // cannot be read leaves an ordinary retryable error.
        let err = status_error(StatusCode::BAD_REQUEST, Some("30"), SystemTime::now(), b"");
        assert!(!err.is_retryable());
        let err = status_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("soon"),
            SystemTime::now(),
            b"",
        );
        assert_eq!((err.is_retryable(), err.retry_after()), (true, None));
        assert!(msg.len() < 700, "{}", msg.len());
    }

    #[test]
    fn odd_ids_still_make_header_values() {
        assert_eq!(header_value("abc:r:t").to_str().unwrap(), "abc:r:t");
        assert_eq!(header_value("é\n").to_str().unwrap(), "%C3%A9%0A");
    }

    #[test]
    fn bad_config_is_a_build_error() {
        let none = BTreeMap::new();
        let t = |url: &str, headers: &BTreeMap<String, String>, conn: Option<&str>| {
            HttpTarget::new(
                "t",
                url,
                "POST",
                headers,
                conn,
                Duration::from_secs(1),
                &BuildContext::new(&none),
            )
        };
        assert!(matches!(
            t("not a url", &none_headers(), None),
            Err(BuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            t("http://127.0.0.1/", &none_headers(), Some("nope")),
            Err(BuildError::UnknownConnection { .. })
        ));
        let mut bad = BTreeMap::new();
        bad.insert("bad header".to_owned(), "v".to_owned());
        assert!(matches!(
            t("http://127.0.0.1/", &bad, None),
            Err(BuildError::InvalidHeader { .. })
        ));
        assert!(t("http://127.0.0.1/", &none_headers(), None).is_ok());
    }

    fn none_headers() -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}
