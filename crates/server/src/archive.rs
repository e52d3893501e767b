//! `GET /v1/events` (a query over the archive, paged by an opaque cursor) and
//! `GET /v1/events/{id}/trace` (what caused an event and what it caused).
//! Every bad parameter is a 400 naming it.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use fleetbus_engine::store::{EventQuery, Millis};
use fleetbus_engine::QUERY_LIMIT;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::AppState;

/// The parameters `GET /v1/events` takes.
const PARAMS: &[&str] = &[
    "source",
    "detail-type",
    "resource",
    "since",
    "until",
    "pattern",
    "limit",
    "cursor",
    "order",
];

/// `GET /v1/events?source=&detail-type=&resource=&since=&until=&pattern=&limit=&cursor=&order=`
pub async fn query_events(
    State(state): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let parsed = parse(&params, now)?;
    let page = state
        .engine
        .query(parsed.query, parsed.pattern.as_ref())
        .await?;
    let order = if parsed.oldest_first { 'o' } else { 'n' };
    let events: Vec<Value> = page
        .events
        .into_iter()
        .map(|(_, e)| serde_json::to_value(e).unwrap_or_default())
        .collect();
    Ok(Json(json!({
        "events": events,
        "next": page.next.map(|n| format!("{order}{n}")),
    })))
}

/// `GET /v1/events/{id}/trace`
pub async fn trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.engine.trace(id.clone()).await? {
        Some(t) => Ok(Json(serde_json::to_value(t).unwrap_or_default())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("no event {id:?}"),
        )),
    }
}

/// `GET /v1/events/{id}/attachment`: the part of an event kept beside it
/// (claim-check), with its content type; 404 when the event has none.
pub async fn attachment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    match state.engine.attachment(id.clone()).await? {
        Some(a) => {
            Ok(([(axum::http::header::CONTENT_TYPE, a.content_type)], a.body).into_response())
        }
        None => Err(ApiError::not_found(format!(
            "event {id:?} has no attachment (or is not in the archive)"
        ))),
    }
}

/// The parameters `GET /v1/stats/counts` takes.
const COUNT_PARAMS: &[&str] = &["group_by", "bucket", "since", "until", "pattern"];

/// `GET /v1/stats/counts?group_by=detail-type|source|rule|target|outcome&bucket=1h&since=&until=&pattern=`
pub async fn counts(
    State(state): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = parse_counts(&params, OffsetDateTime::now_utc())?;
    let counts = state.engine.count_series(q).await?;
    Ok(Json(serde_json::to_value(counts).unwrap_or_default()))
}

/// Reads a counts request: `group_by` (default detail-type), `bucket` (a
/// duration of at least one minute, default 1h), `since` (default 24h ago),
/// `until` (default now), `pattern`.
pub(crate) fn parse_counts(
    params: &BTreeMap<String, String>,
    now: OffsetDateTime,
) -> Result<fleetbus_engine::CountQuery, ApiError> {
    known_only(params, COUNT_PARAMS)?;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let key = match get("group_by") {
        None => fleetbus_engine::CountKey::DetailType,
        Some(g) => fleetbus_engine::CountKey::parse(g).ok_or_else(|| {
            bad(
                "group_by",
                format!("{g:?} is not one of detail-type, source, rule, target, outcome"),
            )
        })?,
    };
    let bucket_ms = match get("bucket") {
        None => 3_600_000,
        Some(b) => match fleetbus_config::parse_duration(b) {
            Ok(d) if d.as_secs() >= 60 => d.as_millis() as Millis,
            _ => {
                return Err(bad(
                    "bucket",
                    format!("{b:?} is not a duration of at least a minute (1m, 1h, 1d)"),
                ))
            }
        },
    };
    let (since, until) = window(get("since"), get("until"), now)?;
    let buckets = (until - since) / bucket_ms + 1;
    if buckets as u64 > fleetbus_engine::COUNT_BUCKETS {
        return Err(bad(
            "bucket",
            format!(
                "gives {buckets} buckets (at most {}: a larger bucket or a shorter range)",
                fleetbus_engine::COUNT_BUCKETS
            ),
        ));
    }
    let pattern = get("pattern").map(pattern_param).transpose()?;
    Ok(fleetbus_engine::CountQuery {
        key,
        bucket_ms,
        since,
        until,
        pattern,
    })
}

/// A `GET /v1/events` request read: the store's query, the pattern, the order.
#[derive(Debug)]
pub struct Parsed {
    pub query: EventQuery,
    pub pattern: Option<fleetbus_pattern::Pattern>,
    pub oldest_first: bool,
}

/// Refuses a parameter that is not in `known`, naming it and the known ones.
pub(crate) fn known_only(
    params: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(bad(
            unknown,
            format!("unknown parameter (expected one of {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// The `pattern` parameter: an EventBridge pattern as JSON.
fn pattern_param(text: &str) -> Result<fleetbus_pattern::Pattern, ApiError> {
    fleetbus_pattern::Pattern::parse(text)
        .map_err(|e| bad("pattern", format!("invalid pattern: {e}")))
}

pub(crate) fn bad(param: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!("parameter {param}: {what}"),
    )
}

/// Reads the parameters; `now` anchors relative times (`since=24h` is 24 hours ago).
/// The console's event search reads its form with this too.
pub fn parse(params: &BTreeMap<String, String>, now: OffsetDateTime) -> Result<Parsed, ApiError> {
    known_only(params, PARAMS)?;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let oldest_first = match get("order") {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(other) => return Err(bad("order", format!("{other:?} is not newest or oldest"))),
    };
    let limit = match get("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=QUERY_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad(
                    "limit",
                    format!("{l:?} is not a number from 1 to {QUERY_LIMIT}"),
                ))
            }
        },
    };
    let since = get("since")
        .map(|t| time_param("since", t, now))
        .transpose()?;
    let until = get("until")
        .map(|t| time_param("until", t, now))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(bad("until", "is not after since"));
        }
    }
    let after = match get("cursor") {
        None => None,
        Some(c) => {
            let (order, pos) = c.split_at(c.chars().next().map_or(0, char::len_utf8));
            let pos: i64 = pos
                .parse()
                .map_err(|_| bad("cursor", format!("{c:?} is not a cursor this server gave")))?;
            let expected = if oldest_first { "o" } else { "n" };
            if order != expected {
                return Err(bad(
                    "cursor",
                    format!("{c:?} belongs to a query in the other order"),
                ));
            }
            Some(pos)
        }
    };
    let pattern = get("pattern").map(pattern_param).transpose()?;
    Ok(Parsed {
        query: EventQuery {
            source: get("source").map(str::to_owned),
            detail_type: get("detail-type").map(str::to_owned),
            resource: get("resource").map(str::to_owned),
            since,
            until,
            oldest_first,
            after,
            limit,
        },
        pattern,
        oldest_first,
    })
}

/// `since` and `until` of a counts or series request: `until` default now,
/// `since` default a day before it; `since` must come first.
pub(crate) fn window(
    since: Option<&str>,
    until: Option<&str>,
    now: OffsetDateTime,
) -> Result<(Millis, Millis), ApiError> {
    let until = match until {
        Some(t) => time_param("until", t, now)?,
        None => (now.unix_timestamp_nanos() / 1_000_000) as Millis,
    };
    let since = match since {
        Some(t) => time_param("since", t, now)?,
        None => until - 86_400_000,
    };
    if since >= until {
        return Err(bad("until", "is not after since"));
    }
    Ok((since, until))
}

/// An RFC 3339 time, or a duration before `now` (`30m`, `24h`, `7d`).
pub(crate) fn time_param(name: &str, text: &str, now: OffsetDateTime) -> Result<Millis, ApiError> {
    let at = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => t,
        Err(_) => match fleetbus_config::parse_duration(text) {
            Ok(d) => now - d,
            Err(_) => {
                return Err(bad(
                    name,
                    format!(
                        "{text:?} is neither an RFC 3339 time nor a duration such as 24h or 7d"
                    ),
                ))
            }
        },
    };
    Ok((at.unix_timestamp_nanos() / 1_000_000) as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Result<Parsed, String> {
        let params = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(
            &params,
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        )
        .map_err(|e| e.message)
    }

    #[test]
    fn each_bad_parameter_is_named() {
        for (pairs, want) in [
            (
                vec![("colour", "red")],
                "parameter colour: unknown parameter",
            ),
            (
                vec![("limit", "0")],
                "parameter limit: \"0\" is not a number from 1 to 1000",
            ),
            (vec![("limit", "lots")], "parameter limit:"),
            (
                vec![("since", "yesterday")],
                "parameter since: \"yesterday\" is neither",
            ),
            (
                vec![("since", "1h"), ("until", "2h")],
                "parameter until: is not after since",
            ),
            (
                vec![("cursor", "x12")],
                "parameter cursor: \"x12\" belongs to a query in the other order",
            ),
            (
                vec![("cursor", "n")],
                "parameter cursor: \"n\" is not a cursor this server gave",
            ),
            (
                vec![("cursor", "n12"), ("order", "oldest")],
                "belongs to a query in the other order",
            ),
            (vec![("order", "sideways")], "parameter order:"),
            (
                vec![("pattern", "{\"source\": \"x\"}")],
                "parameter pattern: invalid pattern",
            ),
        ] {
            let err = p(&pairs).unwrap_err();
            assert!(
                err.starts_with(want) || err.contains(want),
                "{pairs:?}: {err}"
            );
        }
    }

    #[test]
    fn counts_parameters_have_defaults_and_named_errors() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = |pairs: &[(&str, &str)]| {
            let params = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            parse_counts(&params, now).map_err(|e| e.message)
        };
        let q = c(&[]).unwrap();
        assert_eq!(q.key, fleetbus_engine::CountKey::DetailType);
        assert_eq!((q.bucket_ms, q.until - q.since), (3_600_000, 86_400_000));
        assert_eq!(
            c(&[("group_by", "outcome"), ("bucket", "1d"), ("since", "7d")])
                .unwrap()
                .bucket_ms,
            86_400_000
        );
        for (pairs, want) in [
            (
                vec![("group_by", "colour")],
                "parameter group_by: \"colour\" is not one of",
            ),
            (
                vec![("bucket", "5s")],
                "parameter bucket: \"5s\" is not a duration of at least a minute",
            ),
            (
                vec![("bucket", "1m"), ("since", "30d")],
                "parameter bucket: gives 43201 buckets",
            ),
            (vec![("since", "soon")], "parameter since:"),
            (
                vec![("pattern", "[]")],
                "parameter pattern: invalid pattern",
            ),
            (vec![("limit", "3")], "parameter limit: unknown parameter"),
        ] {
            let err = c(&pairs).unwrap_err();
            assert!(err.starts_with(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_durations_before_now() {
        let q = p(&[("since", "1h"), ("until", "2027-01-15T08:00:00Z")])
            .unwrap()
            .query;
        assert_eq!(q.since, Some(1_800_000_000_000 - 3_600_000));
        assert_eq!(q.until, Some(1_800_000_000_000));
        let q = p(&[("cursor", "o42"), ("order", "oldest"), ("detail-type", "X")]).unwrap();
        assert_eq!((q.query.after, q.oldest_first), (Some(42), true));
        assert_eq!(q.query.detail_type.as_deref(), Some("X"));
        assert!(p(&[("pattern", "{\"source\": [\"x\"]}")])
            .unwrap()
            .pattern
            .is_some());
    }
}
