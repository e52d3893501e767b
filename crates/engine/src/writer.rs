//! The one writer: a dedicated thread that owns the store and commits whatever has
//! queued up in one transaction (group commit), so one fsync serves many requests.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Appended, JobUpdate, Millis, NewEvent, Store};
use crate::EngineError;
use fleetbus_telemetry::{InternalEvent, StoreBatchCommitted};

/// Commands queued beyond this block their senders: bounded memory under load.
const QUEUE: usize = 4096;
/// Most events in one transaction.
const MAX_BATCH_EVENTS: usize = 8192;

type ReadFn = Box<dyn FnOnce(&mut dyn Store) + Send>;

/// What one commit hands back: the events (for the caller to enqueue their jobs)
/// with each one's answer, in order.
pub(crate) type Committed = Result<Vec<(NewEvent, Appended)>, EngineError>;

pub(crate) enum Cmd {
    /// Events to append and job updates to apply, both in the next transaction.
    Commit {
        events: Vec<NewEvent>,
        updates: Vec<JobUpdate>,
        reply: oneshot::Sender<Committed>,
    },
    Read(ReadFn),
}

/// A handle to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Cmd>,
}

pub(crate) fn now_ms() -> Millis {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

impl Writer {
    pub(crate) fn spawn(
        mut store: Box<dyn Store>,
        dedup_window_ms: Millis,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Cmd>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("fleetbus-store".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut commits = Vec::new();
                    let mut events = Vec::new();
                    let mut updates = Vec::new();
                    let mut reads = Vec::new();
                    let mut next = Some(first);
                    while let Some(cmd) = next.take() {
                        match cmd {
                            Cmd::Commit {
                                events: batch,
                                updates: more,
                                reply,
                            } => {
                                commits.push((batch.len(), reply));
                                events.extend(batch);
                                updates.extend(more);
                            }
                            Cmd::Read(f) => reads.push(f),
                        }
                        if events.len() < MAX_BATCH_EVENTS && updates.len() < MAX_BATCH_EVENTS {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !commits.is_empty() {
                        let result = store.commit(&events, &updates, now_ms(), dedup_window_ms);
                        StoreBatchCommitted {
                            events: events.len(),
                        }
                        .emit();
                        match result {
                            Ok(appended) => {
                                // Hand each caller its own events back with their answers, in order.
                                let mut rest = events.into_iter().zip(appended);
                                for (n, reply) in commits {
                                    let _ = reply.send(Ok(rest.by_ref().take(n).collect()));
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, events = events.len(), "store commit failed; nothing in this batch was acknowledged");
                                let err = EngineError::Store { message: e.to_string(), retryable: e.is_retryable() };
                                for (_, reply) in commits {
                                    let _ = reply.send(Err(err.clone()));
                                }
                            }
                        }
                    }
                    for read in reads {
                        read(store.as_mut());
                    }
                }
            })
            .expect("spawning the store thread");
        (Writer { tx }, handle)
    }

    /// Appends events and applies job updates durably, in one transaction;
    /// resolves once committed.
    pub(crate) async fn commit(&self, events: Vec<NewEvent>, updates: Vec<JobUpdate>) -> Committed {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Commit {
                events,
                updates,
                reply,
            })
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        rx.await.map_err(|_| EngineError::ShuttingDown)?
    }

    /// Runs `f` on the store thread between commits: reads, and maintenance
    /// such as pruning, which must not race the writer.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |s| {
            let _ = reply.send(f(s));
        });
        self.tx
            .send(Cmd::Read(job))
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        rx.await
            .map_err(|_| EngineError::ShuttingDown)?
            .map_err(|e| EngineError::Store {
                message: e.to_string(),
                retryable: e.is_retryable(),
            })
    }
}
