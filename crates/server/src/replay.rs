//! Archives and replays over the management API (`/v1/archives`, `/v1/replays`),
//! and the JSON shape both this API and the AWS API's replay actions build on.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use fleetbus_engine::store::{Millis, Replay};
use fleetbus_engine::ReplayRequest;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::archive::time_param;
use crate::error::ApiError;
use crate::AppState;

/// A time in the store's unit as RFC 3339.
pub(crate) fn rfc3339(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A replay as the management API shows it.
pub(crate) fn replay_json(r: &Replay) -> Value {
    json!({
        "name": r.spec.name,
        "description": r.spec.description,
        "archive": r.spec.archive,
        "bus": r.spec.bus,
        "rules": r.spec.rules,
        "state": r.state.as_str(),
        "state_reason": r.reason,
        "event_start_time": rfc3339(r.spec.from),
        "event_end_time": rfc3339(r.spec.to),
        "event_last_replayed_time": r.last_replayed.map(rfc3339),
        "replay_start_time": rfc3339(r.started_at),
        "replay_end_time": r.ended_at.map(rfc3339),
        "events_replayed": r.events,
        "deliveries_queued": r.jobs,
    })
}

/// `GET /v1/archives`: the default archive and the named ones.
pub async fn archives(State(state): State<AppState>) -> Json<Value> {
    // The configuration's and those made through the AWS API.
    let config = state.running_config();
    let mut out = vec![json!({
        "name": fleetbus_config::DEFAULT_ARCHIVE,
        "description": "every event of every bus",
        "bus": Value::Null,
        "event_pattern": Value::Null,
        "retention_days": config.retention.archive.as_secs() / 86_400,
    })];
    out.extend(config.archives.iter().map(|a| {
        json!({
            "name": a.name,
            "description": a.description,
            "bus": a.bus,
            "event_pattern": a.event_pattern,
            "retention_days": a.retention.as_secs() / 86_400,
        })
    }));
    Json(json!({ "archives": out }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    name: Option<String>,
    description: Option<String>,
    archive: String,
    bus: Option<String>,
    since: String,
    until: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
}

/// `POST /v1/replays` `{"archive", "since", "until"?, "rules"?, "name"?, "bus"?,
/// "description"?}`: starts a replay (201). Times are RFC 3339 or a duration
/// before now (`7d`); `until` defaults to now; the name to one made from the time.
pub async fn start(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: StartBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body: {e} (expected {{\"archive\": \"default\", \"since\": \"24h\", \"rules\": [\"name\"]}})"
        ))
    })?;
    let now = OffsetDateTime::now_utc();
    let from = time_param("since", &req.since, now)?;
    let to = match &req.until {
        Some(t) => time_param("until", t, now)?,
        None => (now.unix_timestamp_nanos() / 1_000_000) as Millis,
    };
    let name = req.name.unwrap_or_else(|| {
        format!(
            "replay-{}",
            now.format(time::macros::format_description!(
                "[year][month][day]-[hour][minute][second]"
            ))
            .unwrap_or_default()
        )
    });
    let replay = state
        .engine
        .start_replay(ReplayRequest {
            name,
            description: req.description,
            archive: req.archive,
            bus: req.bus,
            from,
            to,
            rules: req.rules,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(replay_json(&replay))))
}

/// `GET /v1/replays`: every replay, most recent first.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.engine.replays().await?;
    Ok(Json(
        json!({ "replays": all.iter().map(replay_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/replays/{name}`.
pub async fn describe(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.engine.replay(name.clone()).await? {
        Some(r) => Ok(Json(replay_json(&r))),
        None => Err(ApiError::not_found(format!(
            "replay {name:?} does not exist"
        ))),
    }
}

/// `POST /v1/replays/{name}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = state.engine.cancel_replay(name).await?;
    Ok(Json(replay_json(&r)))
}
