//! The asset API: devices (with their escrowed DeviceLock PINs and MDM commands),
//! users with their devices, CSV import, the command ledger. Every route needs the
//! management API token; PINs are readable only here.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use fleetbus_assets::{AssetError, AssetStore, DeviceFilter, DeviceUpdate, UserUpdate};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::{api_auth, AppState};

/// Runs `f` on the store off the async workers, after checking the token.
async fn with_store<T: Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    f: impl FnOnce(&AssetStore) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    api_auth(state, headers)?;
    let store = state.assets.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "this server has no asset store",
        )
    })?;
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(format!("asset task failed: {e}")))?
}

/// A PUT body: the record's fields as JSON, keyed by the path; a body naming
/// another key is refused rather than silently writing a different record.
fn keyed_update<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
    key_name: &str,
    path_key: String,
    key: impl FnOnce(&mut T) -> &mut String,
) -> Result<T, ApiError> {
    let mut update: T = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("{what} fields: {e}")))?;
    let k = key(&mut update);
    if !k.is_empty() && *k != path_key {
        return Err(ApiError::bad_request(format!(
            "{key_name} {k:?} in the body differs from {path_key:?} in the path"
        )));
    }
    *k = path_key;
    Ok(update)
}

/// 503 for a busy store (retry), 500 otherwise.
pub(crate) fn store_error(e: AssetError) -> ApiError {
    if e.is_retryable() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "AssetStoreBusy",
            e.to_string(),
        )
    } else {
        ApiError::internal(format!("asset store: {e}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    user: Option<String>,
    tag: Option<String>,
    os_below: Option<String>,
    #[serde(default)]
    enrolled_only: bool,
}

/// `GET /v1/assets/devices?user=&tag=&os_below=&enrolled_only=`.
pub async fn list_devices(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        let filter = DeviceFilter {
            user_id: q.user,
            tag: q.tag,
            os_below: q.os_below,
            enrolled_only: q.enrolled_only,
        };
        let devices = s.list_devices(&filter).map_err(store_error)?;
        Ok(Json(json!({"devices": devices})))
    })
    .await
}

/// `GET /v1/assets/devices/{serial}`: the record, its escrowed PINs and its commands.
pub async fn device(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        let device = s
            .device(&serial)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("unknown device {serial:?}")))?;
        let pins = s.escrowed_pins(&serial).map_err(store_error)?;
        let commands = s.commands_for_device(&serial).map_err(store_error)?;
        let mut out =
            serde_json::to_value(&device).map_err(|e| ApiError::internal(e.to_string()))?;
        out["escrowed_pins"] = json!(pins);
        out["commands"] = json!(commands);
        Ok(Json(out))
    })
    .await
}

/// `PUT /v1/assets/devices/{serial}`: merge fields into the record.
pub async fn put_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // Parsed after with_store's token check: 401 before 400.
    with_store(&state, &headers, move |s| {
        let update: DeviceUpdate =
            keyed_update(&body, "device", "serial", serial, |u: &mut DeviceUpdate| {
                &mut u.serial
            })?;
        let d = s
            .upsert_device(&update, OffsetDateTime::now_utc())
            .map_err(store_error)?;
        Ok(Json(json!(d)))
    })
    .await
}

/// `GET /v1/assets/users`.
pub async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        Ok(Json(json!({"users": s.list_users().map_err(store_error)?})))
    })
    .await
}

/// `GET /v1/assets/users/{id}`: the user with their devices.
pub async fn user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        let u = s
            .user(&id)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("unknown user {id:?}")))?;
        Ok(Json(json!(u)))
    })
    .await
}

/// `PUT /v1/assets/users/{id}`: merge fields into the record.
pub async fn put_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        let update: UserUpdate =
            keyed_update(&body, "user", "id", id, |u: &mut UserUpdate| &mut u.id)?;
        let u = s
            .upsert_user(&update, OffsetDateTime::now_utc())
            .map_err(store_error)?;
        Ok(Json(json!(u)))
    })
    .await
}

/// `POST /v1/assets/import` with a CSV body: all rows or none.
pub async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        match s.import_csv(&body[..], OffsetDateTime::now_utc()) {
            Ok(report) => Ok(Json(json!(report))),
            Err(e) if e.is_retryable() => Err(store_error(e)),
            Err(e) => Err(ApiError::bad_request(e.to_string())),
        }
    })
    .await
}

/// `GET /v1/mdm/commands/{uuid}`: a command ledger entry.
pub async fn command(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, &headers, move |s| {
        let c = s
            .command(&uuid)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("unknown command {uuid:?}")))?;
        Ok(Json(json!(c)))
    })
    .await
}
