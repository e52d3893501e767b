//! Source kinds: one module each, behind one [`Source`] trait. A source answers
//! requests to `POST /v1/sources/{name}` ([`Source::handle`]) and may run a task for
//! as long as the server serves ([`Source::run`]: a feed to poll, a stream to
//! follow), stopped by cancellation. [`KINDS`] is the registry: a new kind is a
//! module here and one line there. [`SourceError`] becomes an HTTP answer in one
//! place.

mod eventbridge;
mod fleet;
mod generic;
mod jamf;
mod mdm;
mod okta;
mod os_feed;
pub mod unified_log;

use std::future::Future;
use std::pin::Pin;

use axum::http::HeaderMap;
use fleetbus_config::SourceKind;
use fleetbus_engine::store::Attachment;
use fleetbus_event::{Event, EventError, Meta};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::AppState;

/// One request to a source.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// The events one request makes, each with its metadata and, where a part was too
/// large for the event, the attachment kept beside it (claim-check).
pub type Events = Vec<(Event, Meta, Option<Attachment>)>;
/// The future of [`Source::handle`].
pub type HandleFuture<'a> = Pin<Box<dyn Future<Output = Result<Events, SourceError>> + Send + 'a>>;
/// A source's task (see [`Source::run`]).
pub type RunFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A kind of source.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Turns one request into events (refusing it whole when it is bad).
    fn handle<'a>(
        &'a self,
        state: &'a AppState,
        source: &'a fleetbus_config::Source,
        request: Request<'a>,
    ) -> HandleFuture<'a>;

    /// The answer to a `GET` of the source's URL (a sender's one-time verification,
    /// such as Okta's); `None` (the default) when the kind answers no `GET`.
    fn verify(&self, _request: Request<'_>) -> Option<Result<serde_json::Value, SourceError>> {
        None
    }

    /// A task to run beside the server for this configured source, ending when
    /// `cancel` fires; `None` (the default) for kinds that only answer requests.
    fn run(
        &self,
        _state: AppState,
        _source: fleetbus_config::Source,
        _cancel: CancellationToken,
    ) -> Option<RunFuture> {
        None
    }
}

/// Why a source refused a request.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The request is wrong and will be wrong again (400).
    #[error("{0}")]
    Invalid(String),
    /// An event it makes is not a valid event; `at` says which part of the body.
    #[error("{at}: {error}")]
    Event { at: String, error: EventError },
    /// The body's encoding is not one the source reads (415).
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// The body is larger than the source accepts once decoded (413).
    #[error("{0}")]
    TooLarge(String),
    /// The asset store failed (busy: retry; otherwise 500).
    #[error(transparent)]
    Assets(#[from] fleetbus_assets::AssetError),
}

impl SourceError {
    /// True when the sender may try the same request again.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Invalid(_)
            | SourceError::Event { .. }
            | SourceError::UnsupportedEncoding(_)
            | SourceError::TooLarge(_) => false,
            SourceError::Assets(e) => e.is_retryable(),
        }
    }
}

impl From<EventError> for SourceError {
    fn from(error: EventError) -> SourceError {
        SourceError::Event {
            at: String::new(),
            error,
        }
    }
}

/// The one mapping from a source's refusal to an HTTP answer.
impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> ApiError {
        match e {
            SourceError::Invalid(message) => ApiError::bad_request(message),
            SourceError::UnsupportedEncoding(message) => ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedEncoding",
                message,
            ),
            SourceError::TooLarge(message) => ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                message,
            ),
            SourceError::Event { at, error } => {
                let mut answer = ApiError::from(error);
                if !at.is_empty() {
                    answer.message = format!("{at}: {}", answer.message);
                }
                answer
            }
            SourceError::Assets(e) => ApiError::from(e),
        }
    }
}

/// Every source kind, by kind.
pub static KINDS: &[(SourceKind, &dyn Source)] = &[
    (SourceKind::Generic, &generic::Generic),
    (SourceKind::UnifiedLog, &unified_log::UnifiedLog),
    (SourceKind::Jamf, &jamf::Jamf),
    (SourceKind::Okta, &okta::Okta),
    (SourceKind::Fleet, &fleet::Fleet),
    (SourceKind::Eventbridge, &eventbridge::EventBridge),
    (SourceKind::OsFeed, &os_feed::OsFeedSource),
    (
        SourceKind::Nanomdm,
        &mdm::Mdm(fleetbus_mdm::MdmServer::NanoMdm),
    ),
    (
        SourceKind::Micromdm,
        &mdm::Mdm(fleetbus_mdm::MdmServer::MicroMdm),
    ),
];

fn kind(kind: SourceKind) -> Option<&'static dyn Source> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s)
}

/// Turns a request into events for `source`.
pub async fn process(
    state: &AppState,
    source: &fleetbus_config::Source,
    request: Request<'_>,
) -> Result<Events, ApiError> {
    let handler = kind(source.kind).ok_or_else(|| {
        ApiError::internal(format!("no handler for source kind {:?}", source.kind))
    })?;
    Ok(handler.handle(state, source, request).await?)
}

/// Answers a `GET` of `source`'s URL, or says the kind takes none.
pub fn verify(
    source: &fleetbus_config::Source,
    request: Request<'_>,
) -> Result<serde_json::Value, ApiError> {
    let handler = kind(source.kind).ok_or_else(|| {
        ApiError::internal(format!("no handler for source kind {:?}", source.kind))
    })?;
    match handler.verify(request) {
        Some(answer) => Ok(answer?),
        None => Err(ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("source {:?} takes POST only", source.name),
        )),
    }
}

/// The answer of a kind that makes its events without waiting on anything.
fn ready<'a>(
    source: &fleetbus_config::Source,
    events: Result<Vec<Event>, SourceError>,
) -> HandleFuture<'a> {
    Box::pin(std::future::ready(events.map(|e| ingested(source, e))))
}

/// Events made by a source, as put by it (bus and ingest source from its config).
fn ingested(source: &fleetbus_config::Source, events: Vec<Event>) -> Events {
    let ingest = format!("source/{}", source.name);
    events
        .into_iter()
        .map(|e| (e, Meta::ingested(source.bus.clone(), ingest.clone()), None))
        .collect()
}

/// Starts the tasks of the configured sources whose kind has one; each ends when
/// `cancel` fires. The handles say when they have.
pub fn start(state: &AppState, cancel: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    start_with(KINDS, state, cancel)
}

fn start_with(
    registry: &[(SourceKind, &dyn Source)],
    state: &AppState,
    cancel: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = state.config();
    config
        .sources
        .iter()
        .filter_map(|source| {
            let (_, handler) = registry.iter().find(|(k, _)| *k == source.kind)?;
            let task = handler.run(state.clone(), source.clone(), cancel.child_token())?;
            tracing::info!(source = %source.name, "source task started");
            Some(tokio::spawn(task))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A kind whose task counts its starts and stops.
    #[derive(Debug, Default)]
    struct Polling {
        started: Arc<AtomicUsize>,
        stopped: Arc<AtomicUsize>,
    }

    impl Source for Polling {
        fn handle<'a>(
            &'a self,
            _: &'a AppState,
            _: &'a fleetbus_config::Source,
            _: Request<'a>,
        ) -> HandleFuture<'a> {
            Box::pin(std::future::ready(Ok(Vec::new())))
        }

        fn run(
            &self,
            _: AppState,
            source: fleetbus_config::Source,
            cancel: CancellationToken,
        ) -> Option<RunFuture> {
            let (started, stopped) = (self.started.clone(), self.stopped.clone());
            Some(Box::pin(async move {
                assert_eq!(source.name, "feed");
                started.fetch_add(1, Ordering::SeqCst);
                cancel.cancelled().await;
                stopped.fetch_add(1, Ordering::SeqCst);
            }))
        }
    }

    #[tokio::test]
    async fn a_source_task_starts_with_the_server_and_stops_on_cancellation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "t").unwrap();
        let yaml = "sources:\n  - name: feed\n    kind: generic\n    tokens: ['${file:tok}']\n    mapping: {source: $.s, detail_type: $.t}\n";
        let config = fleetbus_config::load_str("c.yaml", yaml, dir.path()).unwrap();
        let store = fleetbus_engine::store::open(
            &config.storage,
            dir.path(),
            fleetbus_engine::store::StoreOptions::from_config(&config),
        )
        .unwrap();
        let settings = fleetbus_engine::Settings::from_config(&config);
        let engine = fleetbus_engine::Engine::start(&config, store, settings)
            .await
            .unwrap();
        let state = AppState::new(engine.clone(), config, None, None);
        let polling: &'static Polling = Box::leak(Box::default());
        let registry: [(SourceKind, &dyn Source); 1] = [(SourceKind::Generic, polling)];
        let cancel = CancellationToken::new();
        let tasks = start_with(&registry, &state, &cancel);
        assert_eq!(tasks.len(), 1);
        // Push-only kinds (the real registry's) start nothing.
        assert!(start(&state, &cancel).is_empty());
        for _ in 0..100 {
            if polling.started.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(polling.started.load(Ordering::SeqCst), 1);
        assert_eq!(polling.stopped.load(Ordering::SeqCst), 0);
        cancel.cancel();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(polling.stopped.load(Ordering::SeqCst), 1);
        engine.shutdown().await;
    }

    #[test]
    fn every_source_kind_has_one_handler() {
        for k in [
            SourceKind::Generic,
            SourceKind::UnifiedLog,
            SourceKind::Nanomdm,
            SourceKind::Micromdm,
        ] {
            assert_eq!(KINDS.iter().filter(|(x, _)| *x == k).count(), 1, "{k:?}");
        }
    }
}
