//! The asset API: devices (with their escrowed DeviceLock PINs and MDM commands),
//! users with their devices, CSV import, the command ledger. Every route needs the
//! management API token; PINs are readable only here.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use fleetbus_assets::{AssetError, AssetStore, DeviceFilter, DeviceUpdate, UserUpdate};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::AppState;

/// Runs `f` with the asset store on the blocking pool (the route layer has already
/// checked the token).
async fn with_store<T: Send + 'static>(
    state: &AppState,
    op: &'static str,
    f: impl FnOnce(&AssetStore) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.assets.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "this server has no asset store",
        )
    })?;
    store.run(op, f).await
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

/// 503 for a busy store or a failed task (retry), 500 otherwise.
impl From<AssetError> for ApiError {
    fn from(e: AssetError) -> ApiError {
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
    Query(q): Query<DeviceQuery>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, "list devices", move |s| {
        let filter = DeviceFilter {
            user_id: q.user,
            tag: q.tag,
            os_below: q.os_below,
            enrolled_only: q.enrolled_only,
        };
        let devices = s.list_devices(&filter)?;
        Ok(Json(json!({"devices": devices})))
    })
    .await
}

/// `GET /v1/assets/devices/{serial}`: the record, its escrowed PINs and its commands.
/// Showing PINs is recorded first as a `DeviceLock PIN Revealed` event on the
/// device's timeline (naming the commands, never a PIN): no record, no PINs.
pub async fn device(
    State(state): State<AppState>,
    Path(serial): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = serial.clone();
    let (device, commands) = with_store(&state, "device", move |s| {
        let device = s
            .device(&key)?
            .ok_or_else(|| ApiError::not_found(format!("unknown device {key:?}")))?;
        Ok((device, s.commands_for_device(&key)?))
    })
    .await?;
    let pins = reveal_pins(&state, &serial, "GET /v1/assets/devices/{serial}").await?;
    let mut out = serde_json::to_value(&device).map_err(|e| ApiError::internal(e.to_string()))?;
    out["escrowed_pins"] = json!(pins);
    out["commands"] = json!(commands);
    Ok(Json(out))
}

/// The device's escrowed DeviceLock PINs, once their reveal is recorded as a
/// `DeviceLock PIN Revealed` event (`via` says through what); none recorded, none
/// shown.
pub async fn reveal_pins(
    state: &AppState,
    serial: &str,
    via: &str,
) -> Result<Vec<fleetbus_assets::EscrowedPin>, ApiError> {
    let key = serial.to_owned();
    let pins = with_store(state, "escrowed pins", move |s| Ok(s.escrowed_pins(&key)?)).await?;
    if !pins.is_empty() {
        let uuids: Vec<&str> = pins.iter().map(|p| p.command_uuid.as_str()).collect();
        record_reveal(state, serial, &uuids, via).await?;
    }
    Ok(pins)
}

/// Puts the `DeviceLock PIN Revealed` event and waits until it is durable.
async fn record_reveal(
    state: &AppState,
    serial: &str,
    uuids: &[&str],
    via: &str,
) -> Result<(), ApiError> {
    let envelope = json!({
        "source": REVEAL_SOURCE,
        "detail-type": "DeviceLock PIN Revealed",
        "resources": [format!("device/{serial}")],
        "detail": {
            "serial": serial,
            "command_uuids": uuids,
            "via": via,
        },
    });
    let event = fleetbus_event::Event::from_value(envelope, &state.engine.defaults())
        .map_err(|e| ApiError::internal(format!("pin reveal event: {e}")))?;
    let meta = fleetbus_event::Meta::ingested("default", "assets-api");
    match state.engine.put(vec![(event, meta)]).await?.pop() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(ApiError::internal(format!(
            "pin reveal not recorded, pins withheld: {e}"
        ))),
        None => Err(ApiError::internal("pin reveal not recorded, pins withheld")),
    }
}

/// The source of events the asset API records.
const REVEAL_SOURCE: &str = "fleetbus.assets";

/// `PUT /v1/assets/devices/{serial}`: merge fields into the record.
pub async fn put_device(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // The route layer checked the token before the body was read: 401 before 400.
    with_store(&state, "upsert device", move |s| {
        let update: DeviceUpdate =
            keyed_update(&body, "device", "serial", serial, |u: &mut DeviceUpdate| {
                &mut u.serial
            })?;
        let d = s.upsert_device(&update, OffsetDateTime::now_utc())?;
        Ok(Json(json!(d)))
    })
    .await
}

/// `GET /v1/assets/users`.
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    with_store(&state, "list users", move |s| {
        Ok(Json(json!({"users": s.list_users()?})))
    })
    .await
}

/// `GET /v1/assets/users/{id}`: the user with their devices.
pub async fn user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, "user", move |s| {
        let u = s
            .user(&id)?
            .ok_or_else(|| ApiError::not_found(format!("unknown user {id:?}")))?;
        Ok(Json(json!(u)))
    })
    .await
}

/// `PUT /v1/assets/users/{id}`: merge fields into the record.
pub async fn put_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, "upsert user", move |s| {
        let update: UserUpdate =
            keyed_update(&body, "user", "id", id, |u: &mut UserUpdate| &mut u.id)?;
        let u = s.upsert_user(&update, OffsetDateTime::now_utc())?;
        Ok(Json(json!(u)))
    })
    .await
}

/// `POST /v1/assets/import` with a CSV body: all rows or none.
pub async fn import(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    with_store(&state, "import csv", move |s| {
        match s.import_csv(&body[..], OffsetDateTime::now_utc()) {
            Ok(report) => Ok(Json(json!(report))),
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => Err(ApiError::bad_request(e.to_string())),
        }
    })
    .await
}

/// `GET /v1/mdm/commands/{uuid}`: a command ledger entry.
pub async fn command(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_store(&state, "command", move |s| {
        let c = s
            .command(&uuid)?
            .ok_or_else(|| ApiError::not_found(format!("unknown command {uuid:?}")))?;
        Ok(Json(json!(c)))
    })
    .await
}
