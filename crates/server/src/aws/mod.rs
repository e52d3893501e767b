//! The AWS JSON 1.1 API at `POST /` (`X-Amz-Target: AWSEvents.<Action>`), so the
//! AWS CLI and SDKs work with `--endpoint-url`. Callers authenticate with SigV4
//! (an access key from `server.aws_access_keys`) or a management API token.
//! Errors are AWS's: `{"__type": "<Code>", "message": "..."}`.
//!
//! Actions: PutEvents, TestEventPattern, ListEventBuses, DescribeEventBus,
//! ListRules, DescribeRule, ListTargetsByRule. Rules and buses come from the
//! configuration, so the actions that change them answer that they are managed
//! there.

mod replay;
mod rules;
mod sigv4;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::AppState;

/// An error as AWS's JSON protocols send one.
#[derive(Debug)]
pub struct AwsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AwsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            status,
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> AwsError {
        AwsError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    fn not_found(message: impl Into<String>) -> AwsError {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            message,
        )
    }
}

impl From<ApiError> for AwsError {
    fn from(e: ApiError) -> AwsError {
        AwsError::new(e.status, e.code, e.message)
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.code, "message": self.message}).to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        resp
    }
}

/// The route layer: a management API token, or a SigV4 header naming a known key
/// with a fresh date and this endpoint's scope. The signature itself covers the
/// body, so the handler checks it once the (bounded) body is read.
pub(crate) async fn require_aws_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AwsError> {
    let config = state.config();
    let headers = request.headers();
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if value.starts_with("AWS4-HMAC-SHA256") {
        let auth = sigv4::parse(value).map_err(sig_error)?;
        let Some(key) = config
            .server
            .aws_access_keys
            .iter()
            .find(|k| k.id == auth.key_id)
        else {
            return Err(sig_error(sigv4::SigError::UnknownKey(
                "The security token included in the request is invalid.".into(),
            )));
        };
        // Temporary credentials: the key's session token, carried and signed.
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        let token_ok = match (&key.session_token, token) {
            (None, None) => true,
            (Some(want), Some(got)) => {
                sigv4::same(want.expose(), got)
                    && auth
                        .signed_headers
                        .iter()
                        .any(|h| h == "x-amz-security-token")
            }
            _ => false,
        };
        if !token_ok {
            return Err(sig_error(sigv4::SigError::UnknownKey(
                "The security token included in the request is invalid.".into(),
            )));
        }
        let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok());
        sigv4::precheck(
            &auth,
            amz_date,
            &config.server.region,
            OffsetDateTime::now_utc(),
        )
        .map_err(sig_error)?;
        // What the handler needs to check the signature once it has the body.
        let signed = Signed {
            amz_date: amz_date.unwrap_or_default().to_owned(),
            secret: key.secret.clone(),
            actions: key.actions.clone(),
            auth,
        };
        request.extensions_mut().insert(signed);
        return Ok(next.run(request).await);
    }
    if crate::auth::authorized(headers, &config.server.api_tokens) {
        return Ok(next.run(request).await);
    }
    Err(AwsError::new(
        StatusCode::FORBIDDEN,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token (sign the request with SigV4 using a key of server.aws_access_keys, or send a management API token)",
    ))
}

/// A SigV4 request the layer has prechecked: its parsed header, date and key.
#[derive(Clone)]
pub(crate) struct Signed {
    auth: sigv4::Authorization,
    amz_date: String,
    secret: fleetbus_config::Secret,
    /// The actions the key is limited to, if it is.
    actions: Option<Vec<String>>,
}

fn sig_error(e: sigv4::SigError) -> AwsError {
    let status = match e {
        sigv4::SigError::Incomplete(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    AwsError::new(status, e.code(), e.message().to_owned())
}

/// Verifies a SigV4 signature, prechecked by the layer, over the request as received.
fn verify_signature(
    signed: &Signed,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AwsError> {
    let Signed {
        auth,
        amz_date,
        secret,
        ..
    } = signed;
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let canonical = sigv4::canonical_request(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        &pairs,
        &auth.signed_headers,
        body,
    );
    let expected = sigv4::signature(secret.expose(), auth, amz_date, &canonical);
    if sigv4::same(&expected, &auth.signature) {
        Ok(())
    } else {
        Err(AwsError::new(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ))
    }
}

/// `POST /`: one AWS JSON 1.1 action.
pub(crate) async fn handle(
    State(state): State<AppState>,
    signed: Option<axum::Extension<Signed>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AwsError> {
    // Without it the layer let a management token through.
    if let Some(axum::Extension(signed)) = &signed {
        verify_signature(signed, &method, &uri, &headers, &body)?;
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(action) = target.strip_prefix("AWSEvents.") else {
        return Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not an AWSEvents operation"),
        ));
    };
    // A key limited to some actions (a dashboard's read-only key) calls those only.
    if let Some(axum::Extension(Signed {
        actions: Some(allowed),
        auth,
        ..
    })) = &signed
    {
        if !allowed.iter().any(|a| a == action) {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                format!(
                    "access key {} is not authorized to perform: events:{action} (it may: {})",
                    auth.key_id,
                    allowed.join(", ")
                ),
            ));
        }
    }
    if action == "PutEvents" {
        // EventBridge's PutEvents takes 1 to 10 entries (the HTTP API takes more).
        let answer = crate::ingest::put_events_at_most(&state, &body, MAX_PUT_ENTRIES).await?;
        return Ok(aws_json(answer.0));
    }
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AwsError::new(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                format!("body is not valid JSON: {e}"),
            )
        })?
    };
    let answer = match action {
        "TestEventPattern" => test_event_pattern(&request)?,
        "ListEventBuses" => list_event_buses(&state, &request)?,
        "DescribeEventBus" => describe_event_bus(&state, &request)?,
        "ListRules" => rules::list_rules(&state, &request)?,
        "DescribeRule" => rules::describe_rule(&state, &request)?,
        "ListTargetsByRule" => rules::list_targets_by_rule(&state, &request)?,
        "ListRuleNamesByTarget" => rules::list_rule_names_by_target(&state, &request)?,
        "PutRule" => rules::put_rule(&state, &request).await?,
        "DeleteRule" => rules::delete_rule(&state, &request).await?,
        "EnableRule" => rules::set_enabled(&state, &request, true).await?,
        "DisableRule" => rules::set_enabled(&state, &request, false).await?,
        "PutTargets" => rules::put_targets(&state, &request).await?,
        "RemoveTargets" => rules::remove_targets(&state, &request).await?,
        "DescribeArchive" => replay::describe_archive(&state, &request)?,
        "ListArchives" => replay::list_archives(&state, &request)?,
        "StartReplay" => replay::start_replay(&state, &request).await?,
        "DescribeReplay" => replay::describe_replay(&state, &request).await?,
        "ListReplays" => replay::list_replays(&state, &request).await?,
        "CancelReplay" => replay::cancel_replay(&state, &request).await?,
        "CreateArchive" => replay::put_archive(&state, &request, true).await?,
        "UpdateArchive" => replay::put_archive(&state, &request, false).await?,
        "DeleteArchive" => replay::delete_archive(&state, &request).await?,
        "CreateEventBus" | "DeleteEventBus" | "UpdateEventBus" => {
            return Err(AwsError::validation(format!(
                "{action}: event buses are declared in fleetbus's configuration (buses:, then POST /v1/admin/reload)"
            )))
        }
        other => {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("operation {other:?} is not supported (supported: {})", supported()),
            ))
        }
    };
    Ok(aws_json(answer))
}

/// Entries per PutEvents, as EventBridge.
const MAX_PUT_ENTRIES: usize = 10;

/// Every action this API answers (the list keys' `actions` are checked against).
fn supported() -> String {
    fleetbus_config::AWS_ACTIONS.join(", ")
}

fn aws_json(v: Value) -> Response {
    let mut resp = (StatusCode::OK, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    resp
}

fn string_param<'a>(req: &'a Value, name: &str) -> Result<Option<&'a str>, AwsError> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AwsError::validation(format!("{name}: must be a string"))),
    }
}

fn required<'a>(req: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    string_param(req, name)?.ok_or_else(|| {
        AwsError::validation(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"))
    })
}

/// An EventBridge pattern from a request, or AWS's InvalidEventPatternException.
fn parse_pattern(text: &str) -> Result<fleetbus_pattern::Pattern, AwsError> {
    fleetbus_pattern::Pattern::parse(text).map_err(|e| {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidEventPatternException",
            format!("Event pattern is not valid. Reason: {e}"),
        )
    })
}

/// `TestEventPattern`: `{"Result": bool}`.
fn test_event_pattern(req: &Value) -> Result<Value, AwsError> {
    let pattern = required(req, "EventPattern")?;
    let event = required(req, "Event")?;
    let pattern = parse_pattern(pattern)?;
    let doc: Value = serde_json::from_str(event)
        .map_err(|e| AwsError::validation(format!("Parameter Event is not valid. Reason: {e}")))?;
    // As EventBridge: the event must carry the envelope's mandatory fields.
    for field in ["id", "account", "source", "time", "region", "detail-type"] {
        if doc.get(field).is_none() {
            return Err(AwsError::validation(format!(
                "Parameter Event is not valid. Reason: Provided Event must have mandatory field '{field}'"
            )));
        }
    }
    let mut m = fleetbus_pattern::Matcher::new();
    m.add_pattern(0u32, &pattern)
        .map_err(|e| AwsError::validation(format!("EventPattern: {e}")))?;
    let hit = m
        .matches_for_event(event.as_bytes())
        .map_err(|e| AwsError::validation(format!("Parameter Event is not valid. Reason: {e}")))?;
    Ok(json!({"Result": !hit.is_empty()}))
}

fn arn(state: &AppState, resource: &str) -> String {
    let c = state.config();
    format!(
        "arn:aws:events:{}:{}:{resource}",
        c.server.region, c.server.account
    )
}

fn bus_name(req: &Value, field: &str) -> Result<String, AwsError> {
    // A bus may be named by its ARN too.
    Ok(string_param(req, field)?
        .map(|b| b.rsplit('/').next().unwrap_or(b).to_owned())
        .unwrap_or_else(|| "default".into()))
}

/// `Limit` (1 to 100) and `NextToken` (an offset this endpoint gave).
fn paging(req: &Value) -> Result<(usize, usize), AwsError> {
    let limit = match req.get("Limit") {
        None | Some(Value::Null) => 100,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value {v} at 'limit' failed to satisfy constraint: Member must have value between 1 and 100"
                )))
            }
        },
    };
    let start = match string_param(req, "NextToken")? {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            AwsError::validation(format!("NextToken {t:?} is not one this endpoint gave"))
        })?,
    };
    Ok((start, limit))
}

/// `{key: [one page of items], "NextToken": ...}`, the token only when more remain.
fn paged(key: &str, items: &[Value], start: usize, limit: usize) -> Value {
    let (items, next) = page(items, start, limit);
    let mut out = json!({ key: items });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    out
}

fn page<T: Clone>(items: &[T], start: usize, limit: usize) -> (Vec<T>, Option<String>) {
    let end = (start + limit).min(items.len());
    let out = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    let next = (end < items.len()).then(|| end.to_string());
    (out, next)
}

fn list_event_buses(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let prefix = string_param(req, "NamePrefix")?.unwrap_or("");
    let (start, limit) = paging(req)?;
    let config = state.config();
    let buses: Vec<Value> = config
        .buses
        .iter()
        .filter(|b| b.starts_with(prefix))
        .map(|b| bus_value(state, b))
        .collect();
    Ok(paged("EventBuses", &buses, start, limit))
}

fn bus_value(state: &AppState, name: &str) -> Value {
    let mut v = json!({"Name": name, "Arn": arn(state, &format!("event-bus/{name}"))});
    if let Some(d) = state.config().bus_descriptions.get(name) {
        v["Description"] = json!(d);
    }
    v
}

fn describe_event_bus(state: &AppState, req: &Value) -> Result<Value, AwsError> {
    let name = bus_name(req, "Name")?;
    if !state.config().buses.contains(&name) {
        return Err(AwsError::not_found(format!(
            "Event bus {name} does not exist."
        )));
    }
    Ok(bus_value(state, &name))
}
