//! The listener: HTTP/1.1 connections up to a cap, each with a deadline for its
//! request head (which also closes a keep-alive connection left idle) and every
//! request with a deadline for reading its body and being answered; on shutdown,
//! connections are asked to finish their request in flight and those still open
//! at the drain deadline are closed.
//!
//! Why not `axum::serve`: it has no connection cap and no timeouts, so idle or
//! slow clients (unauthenticated ones included) could hold every file descriptor
//! and a half-sent request could keep shutdown waiting forever.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ApiError;

/// Bounds on what clients may hold open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; a connection beyond is closed as soon as accepted.
    pub max_connections: usize,
    /// From a connection's start, or the end of its previous response, to the end of
    /// the next request head. Also the idle timeout of keep-alive connections.
    pub header_timeout: Duration,
    /// From a request head to its answer, reading the body included; beyond, 408.
    pub request_timeout: Duration,
    /// How long shutdown lets requests in flight finish before closing them.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The limits `server:` sets.
    pub fn from_server(s: &fleetbus_config::Server) -> Limits {
        Limits {
            max_connections: s.max_connections as usize,
            header_timeout: s.header_timeout,
            request_timeout: s.request_timeout,
            drain_timeout: s.drain_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| request_deadline(limits.request_timeout, req, next),
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let drain = CancellationToken::new();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: wait
                // a moment rather than spin, then go on accepting.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                limit = limits.max_connections,
                "connection refused: at the connection limit"
            );
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let drain = drain.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => r,
                _ = drain.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain.cancel();
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            deadline = ?limits.drain_timeout,
            "requests still in flight at the drain deadline; closing them unanswered"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// Answers 408 when a request (its body read included) takes longer than `limit`.
/// A request cut short was not answered 2xx, so its sender still owns its events.
async fn request_deadline(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!("the request was not complete within {limit:?}"),
        )
        .into_response(),
    }
}
