//! The management API, metrics and health.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// `POST /v1/admin/reload`.
pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.reload() {
        Ok(rules) => Ok(Json(json!({"reloaded": true, "rules": rules}))),
        Err(errors) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidConfiguration",
            errors,
        )),
    }
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<usize>,
}

/// `GET /v1/dlq`.
pub async fn dlq_list(
    State(state): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let entries = state
        .engine
        .dlq_list(q.limit.unwrap_or(100).min(10_000))
        .await?;
    Ok(Json(json!({"entries": entries})))
}

/// `POST /v1/dlq/redrive` with `{"ids": [...]}`, or no body for all.
pub async fn dlq_redrive(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Req {
            ids: Option<Vec<i64>>,
        }
        let req: Req = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("body: {e} (expected {{\"ids\": [1, 2]}})"))
        })?;
        req.ids
    };
    let moved = state.engine.dlq_redrive(ids).await?;
    Ok(Json(json!({"redriven": moved})))
}

/// `GET /v1/events/{id}`: the event with its metadata.
pub async fn event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.engine.event(id.clone()).await? {
        Some(e) => Ok(Json(serde_json::to_value(e).unwrap_or_default())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("no event {id:?}"),
        )),
    }
}

#[derive(Deserialize)]
pub struct TimelineQuery {
    resource: String,
    limit: Option<usize>,
}

/// `GET /v1/timeline?resource=device/SERIAL`: a node's events, newest first.
pub async fn timeline(
    State(state): State<AppState>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Value>, ApiError> {
    let events = state
        .engine
        .timeline(q.resource, q.limit.unwrap_or(100).min(10_000))
        .await?;
    Ok(Json(json!({"events": events})))
}

/// `GET /metrics`: Prometheus text format. Counts only, no secrets and no
/// per-device labels, so it is readable without a token like most exporters.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    text.push_str(&crate::series::exposition(&state).await);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready while taking events: not during shutdown, not while the backlog is full.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if state.engine.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    }
    match state.engine.check_backpressure() {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /v1/rules`: the running rules as configured: name, bus, state, pattern or
/// schedule, exemption, and each target's id, kind and input (what `fleetbus
/// simulate` compares a candidate configuration with).
pub async fn rules(State(state): State<AppState>) -> Json<Value> {
    let base = state.config();
    // The running rules: the configuration's and those made through the AWS API.
    let config = state.running_config();
    let rules: Vec<Value> = config
        .rules
        .iter()
        .map(|r| {
            let origin = if base.rules.iter().any(|c| c.name == r.name) {
                "configuration"
            } else {
                "api"
            };
            let targets: Vec<Value> = r
                .targets
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id,
                        "kind": fleetbus_config::kinds::spec(t.spec.kind()).name,
                    })
                })
                .collect();
            serde_json::json!({
                "name": r.name,
                "bus": r.bus,
                "enabled": r.enabled,
                "description": r.description,
                "event_pattern": r.event_pattern,
                "schedule": r.schedule.as_ref().map(|s| s.to_string()),
                "exempt": r.exempt,
                "targets": targets,
                "origin": origin,
            })
        })
        .collect();
    Json(serde_json::json!({ "rules": rules }))
}
