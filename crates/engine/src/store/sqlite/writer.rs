//! The one writer: a dedicated thread that owns the database and commits whatever
//! has queued up in one transaction (group commit), so one fsync serves many
//! requests. Appends and completions queue here alike; reads and maintenance run
//! on the same thread between commits, so nothing races the writer.

use std::collections::HashSet;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::db::Db;
use crate::store::{Appended, JobUpdate, Millis, NewEvent, StoreError, StoreOptions};
use fleetbus_telemetry::{InternalEvent, StoreBatchCommitted};

/// Commands queued beyond this block their senders: bounded memory under load.
const QUEUE: usize = 4096;
/// Most events in one transaction.
const MAX_BATCH_EVENTS: usize = 8192;

type RunFn = Box<dyn FnOnce(&mut Db) + Send>;

/// What one commit hands back: the events with each one's answer, in order, and
/// the updates refused for a stale fence.
pub(super) type Committed = Result<(Vec<(NewEvent, Appended)>, Vec<i64>), StoreError>;

enum Cmd {
    /// Events to append and job updates to apply, both in the next transaction.
    Commit {
        events: Vec<NewEvent>,
        updates: Vec<JobUpdate>,
        now: Millis,
        reply: oneshot::Sender<Committed>,
    },
    Run(RunFn),
}

/// A handle to the writer thread; the thread ends once every handle is gone.
#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Cmd>,
}

/// One caller's share of a group commit.
struct Share {
    events: usize,
    updates: Vec<i64>,
    reply: oneshot::Sender<Committed>,
}

impl Writer {
    /// Starts the thread; it owns `db` and `lock` and lets both go when it ends.
    pub(super) fn spawn(
        mut db: Db,
        options: StoreOptions,
        lock: std::fs::File,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::channel::<Cmd>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("fleetbus-store".into())
            .spawn(move || {
                let _lock = lock;
                while let Some(first) = rx.blocking_recv() {
                    let mut shares = Vec::new();
                    let mut events = Vec::new();
                    let mut updates = Vec::new();
                    let mut runs = Vec::new();
                    let mut now = Millis::MIN;
                    let mut next = Some(first);
                    while let Some(cmd) = next.take() {
                        match cmd {
                            Cmd::Commit {
                                events: batch,
                                updates: more,
                                now: at,
                                reply,
                            } => {
                                shares.push(Share {
                                    events: batch.len(),
                                    updates: more.iter().map(JobUpdate::id).collect(),
                                    reply,
                                });
                                events.extend(batch);
                                updates.extend(more);
                                // One transaction, one time: the latest of its callers'.
                                now = now.max(at);
                            }
                            Cmd::Run(f) => runs.push(f),
                        }
                        if events.len() < MAX_BATCH_EVENTS && updates.len() < MAX_BATCH_EVENTS {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !shares.is_empty() {
                        let result = db.commit(
                            &events,
                            &updates,
                            now,
                            options.dedup_window_ms,
                            options.lease_ms,
                        );
                        StoreBatchCommitted {
                            events: events.len(),
                        }
                        .emit();
                        match result {
                            Ok((appended, fenced)) => {
                                // Hand each caller its own events back with their answers, in order.
                                let fenced: HashSet<i64> = fenced.into_iter().collect();
                                let mut rest = events.into_iter().zip(appended);
                                for share in shares {
                                    let mine = rest.by_ref().take(share.events).collect();
                                    let refused = share
                                        .updates
                                        .into_iter()
                                        .filter(|id| fenced.contains(id))
                                        .collect();
                                    let _ = share.reply.send(Ok((mine, refused)));
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, events = events.len(), "store commit failed; nothing in this batch was acknowledged");
                                for share in shares {
                                    let _ = share.reply.send(Err(e.clone()));
                                }
                            }
                        }
                    }
                    for run in runs {
                        run(&mut db);
                    }
                }
            })?;
        Ok((Writer { tx }, handle))
    }

    /// Appends events and applies job updates durably, in one transaction;
    /// resolves once committed.
    pub(super) async fn commit(
        &self,
        events: Vec<NewEvent>,
        updates: Vec<JobUpdate>,
        now: Millis,
    ) -> Committed {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Commit {
                events,
                updates,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the thread go: it finishes what is queued and ends.
    pub(super) fn close(&mut self) {
        self.tx = mpsc::channel(1).0;
    }

    /// Runs `f` on the writer thread between commits.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job: RunFn = Box::new(move |db| {
            let _ = reply.send(f(db));
        });
        self.tx
            .send(Cmd::Run(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}
