//! The HTTP API: ingest endpoints (PutEvents, envelopes, CloudEvents, configured
//! sources), the management API (reload, dead-letter queue, events, timelines),
//! Prometheus `/metrics`, `/healthz` and `/readyz`.
//!
//! Every endpoint but health is authenticated with bearer tokens, compared in
//! constant time; tokens are never logged. Bodies are bounded; an answer is 2xx only
//! once the events are durable.

mod assets;
mod error;
mod ingest;
mod manage;
mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use fleetbus_config::{Config, Secret};
use fleetbus_engine::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    config: Arc<RwLock<Arc<Config>>>,
    config_path: Option<PathBuf>,
    metrics: Option<PrometheusHandle>,
    /// Devices, users, the MDM command ledger; `None` serves no asset endpoints.
    pub assets: Option<fleetbus_assets::AssetStore>,
}

impl AppState {
    pub fn new(
        engine: Engine,
        config: Config,
        config_path: Option<PathBuf>,
        metrics: Option<PrometheusHandle>,
    ) -> AppState {
        AppState {
            engine,
            config: Arc::new(RwLock::new(Arc::new(config))),
            config_path,
            metrics,
            assets: None,
        }
    }

    /// Serves the asset API and links MDM webhooks through this store.
    pub fn with_assets(mut self, assets: fleetbus_assets::AssetStore) -> AppState {
        self.assets = Some(assets);
        self
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the configuration file and swaps rules and sources. A config with
    /// errors is refused whole and the running one stays.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.config_path else {
            return Err("no configuration file to reload".into());
        };
        let config = fleetbus_config::load(path).map_err(|e| e.to_string())?;
        self.engine.reload(&config).map_err(|e| e.to_string())?;
        let rules = config.rules.len();
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(rules)
    }
}

/// True when the request carries one of `tokens` as a bearer token, or as the
/// password of HTTP Basic auth (MDM servers' webhooks can only send credentials
/// from the URL's userinfo, e.g. `http://fleetbus:TOKEN@host/v1/sources/nanomdm`).
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
    let mut ok = subtle::Choice::from(0u8);
    for t in tokens {
        let t = t.expose().as_bytes();
        // Lengths differ in time only; the contents compare in constant time.
        ok |= given.as_bytes().ct_eq(t);
    }
    bool::from(ok)
}

/// Checks the management API's bearer token (`server.api_tokens`).
pub(crate) fn api_auth(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if authorized(headers, &state.config().server.api_tokens) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.config().server.max_body_bytes as usize;
    Router::new()
        .route("/v1/events", post(ingest::put_events))
        .route("/", post(ingest::aws_json))
        .route("/v1/buses/{bus}/events", post(ingest::bus_events))
        .route("/v1/sources/{name}", post(ingest::source))
        .route("/v1/admin/reload", post(manage::reload))
        .route("/v1/dlq", get(manage::dlq_list))
        .route("/v1/dlq/redrive", post(manage::dlq_redrive))
        .route("/v1/events/{id}", get(manage::event))
        .route("/v1/timeline", get(manage::timeline))
        .route("/v1/assets/devices", get(assets::list_devices))
        .route(
            "/v1/assets/devices/{serial}",
            get(assets::device).put(assets::put_device),
        )
        .route("/v1/assets/users", get(assets::list_users))
        .route(
            "/v1/assets/users/{id}",
            get(assets::user).put(assets::put_user),
        )
        .route("/v1/assets/import", post(assets::import))
        .route("/v1/mdm/commands/{uuid}", get(assets::command))
        .route("/metrics", get(manage::metrics))
        .route("/healthz", get(manage::healthz))
        .route("/readyz", get(manage::readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets requests in
/// progress finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
