//! The HTTP API: ingest endpoints (PutEvents, envelopes, CloudEvents, configured
//! sources), the management API (reload, dead-letter queue, events, timelines),
//! Prometheus `/metrics`, `/healthz` and `/readyz`.
//!
//! Every endpoint but health is authenticated with bearer tokens, compared in
//! constant time; tokens are never logged. Bodies are bounded; an answer is 2xx only
//! once the events are durable.

pub mod archive;
mod assets;
mod auth;
pub mod aws;
mod error;
mod ingest;
mod listen;
mod manage;
pub mod replay;
mod series;
mod signature;
pub mod software_update;
pub mod sources;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use fleetbus_config::Config;
use fleetbus_engine::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

pub use assets::reveal_pins;
pub use auth::{token_access, Access};
pub use error::ApiError;
pub use listen::{serve_with, Limits};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    config: Arc<RwLock<Arc<Config>>>,
    config_path: Option<PathBuf>,
    metrics: Option<PrometheusHandle>,
    /// Devices, users, the MDM command ledger; `None` serves no asset endpoints.
    pub assets: Option<fleetbus_assets::AsyncAssetStore>,
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
    pub fn with_assets(mut self, assets: fleetbus_assets::AsyncAssetStore) -> AppState {
        self.assets = Some(assets);
        self
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration the engine runs: the file's, with the rules and archives
    /// made through the AWS API.
    pub fn running_config(&self) -> Arc<Config> {
        let base = self.config();
        let (rules, archives) = (self.engine.api_rules(), self.engine.api_archives());
        if rules.is_empty() && archives.is_empty() {
            return base;
        }
        base.with_api_archives(&archives)
            .and_then(|c| c.with_api_rules(&rules))
            .map(Arc::new)
            .unwrap_or(base)
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

/// The application's routes. Authentication is a route layer, so it runs before any
/// body is read: an unauthenticated caller gets 401 whatever it sends, and never
/// makes the server buffer a body.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (the console's) merged in before the body limit
/// and the error layer, so they are bounded the same way. `extra` has no fallback.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let limit = state.config().server.max_body_bytes as usize;
    // Everything here needs a management API token (`server.api_tokens`).
    let api = Router::new()
        .route(
            "/v1/events",
            post(ingest::put_events).get(archive::query_events),
        )
        .route("/v1/buses/{bus}/events", post(ingest::bus_events))
        .route("/v1/admin/reload", post(manage::reload))
        .route("/v1/rules", get(manage::rules))
        .route("/v1/dlq", get(manage::dlq_list))
        .route("/v1/dlq/redrive", post(manage::dlq_redrive))
        .route("/v1/events/{id}", get(manage::event))
        .route("/v1/events/{id}/trace", get(archive::trace))
        .route("/v1/events/{id}/attachment", get(archive::attachment))
        .route("/v1/stats/counts", get(archive::counts))
        .route("/v1/stats/series/{name}", get(series::read))
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
        .route("/v1/software-update/status", get(software_update::status))
        .route(
            "/v1/software-update/evaluate",
            post(software_update::evaluate),
        )
        .route("/v1/archives", get(replay::archives))
        .route("/v1/replays", get(replay::list).post(replay::start))
        .route("/v1/replays/{name}", get(replay::describe))
        .route("/v1/replays/{name}/cancel", post(replay::cancel))
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_token));
    // The AWS JSON API: SigV4 (server.aws_access_keys) or a management token.
    let aws = Router::new()
        .route("/", post(aws::handle))
        .route_layer(from_fn_with_state(state.clone(), aws::require_aws_auth));
    // A source takes its own tokens (`sources[].tokens`).
    let sources = Router::new()
        .route(
            "/v1/sources/{name}",
            post(ingest::source).get(ingest::source_get),
        )
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::require_source_token,
        ));
    // Open: scrapers and probes carry no token.
    let open = Router::new()
        .route("/metrics", get(manage::metrics))
        .route("/healthz", get(manage::healthz))
        .route("/readyz", get(manage::readyz));
    api.merge(aws)
        .merge(sources)
        .merge(open)
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                json_errors(req, next, limit)
            },
        ))
        .with_state(state)
}

/// `404` for a path no route has, in the API's error shape.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint {:?}", uri.path()))
}

/// Every error answer is JSON with a code and a message: the framework's own
/// refusals (a body over `server.max_body_bytes`, a malformed query, a method a
/// route does not take) come as plain text and are rewritten here; answers that
/// are JSON already pass untouched.
async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    max_body: usize,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let answered = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // The console's pages answer their own errors as HTML.
        .is_some_and(|t| t.contains("json") || t.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || answered {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's messages are short; more is not read.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "RequestTooLarge",
            format!("the request body is larger than server.max_body_bytes ({max_body} bytes)"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "MethodNotAllowed",
            match parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
            {
                Some(allow) => format!("{method} is not allowed at {path} (allowed: {allow})"),
                None => format!("{method} is not allowed at {path}"),
            },
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UnsupportedMediaType", text),
        StatusCode::REQUEST_TIMEOUT => ("RequestTimeout", text),
        s if s.is_client_error() => ("ValidationException", text),
        _ => ("InternalError", text),
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    // Keep what the framework said beside the body (Allow, Retry-After...).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Serves until `shutdown` is cancelled, within the [`Limits`] of `server:`; then
/// stops accepting, lets requests in flight finish until the drain deadline and
/// closes the rest.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state.clone()), state, shutdown).await
}

/// [`serve`] with an application built elsewhere (the router with the console).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = Limits::from_server(&state.config().server);
    serve_with(listener, app, shutdown, limits).await
}
