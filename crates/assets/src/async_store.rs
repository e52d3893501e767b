//! The asset store for async callers: every call runs on tokio's blocking pool, at
//! most [`MAX_BLOCKING`] at a time per store, and a task that panics or is cancelled
//! becomes an [`AssetError::Task`] (retryable) instead of a join error each caller
//! maps its own way.
//!
//! Why a facade rather than async SQLite: the store is one connection behind a mutex
//! that may wait out its busy timeout for another process's write lock. Holding that
//! wait on an async worker would stall every request and delivery scheduled on it;
//! running more than a few blocking tasks would only queue them on the same mutex
//! while exhausting the blocking pool.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::{AssetError, AssetStore};

/// Most asset calls running on the blocking pool at once, per store. They share one
/// connection, so more would only wait on its mutex.
pub const MAX_BLOCKING: usize = 4;

/// An [`AssetStore`] for async code. Clones share the store and the concurrency bound.
#[derive(Clone, Debug)]
pub struct AsyncAssetStore {
    store: AssetStore,
    permits: Arc<Semaphore>,
}

impl AssetStore {
    /// This store behind the async facade. Make it once and clone it: the bound on
    /// concurrent calls is per facade.
    pub fn to_async(&self) -> AsyncAssetStore {
        AsyncAssetStore {
            store: self.clone(),
            permits: Arc::new(Semaphore::new(MAX_BLOCKING)),
        }
    }
}

impl AsyncAssetStore {
    /// The synchronous store, for callers already off the async workers.
    pub fn blocking(&self) -> &AssetStore {
        &self.store
    }

    /// Runs `f` with the store on the blocking pool. `op` names the call in the error
    /// when the task itself fails. `f` may return any error an [`AssetError`] converts
    /// into, so a caller keeps one mapping from asset errors to its own.
    pub async fn run<T, E>(
        &self,
        op: &'static str,
        f: impl FnOnce(&AssetStore) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<AssetError> + Send + 'static,
    {
        // The semaphore is never closed, so acquire fails only if it were.
        let _permit = self.permits.acquire().await.map_err(|_| AssetError::Task {
            op,
            cancelled: true,
        })?;
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(out) => out,
            Err(e) => Err(AssetError::Task {
                op,
                cancelled: e.is_cancelled(),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceUpdate;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::OffsetDateTime;

    fn store() -> AsyncAssetStore {
        AssetStore::open_in_memory().unwrap().to_async()
    }

    #[tokio::test]
    async fn runs_calls_and_returns_their_results() {
        let s = store();
        let update = DeviceUpdate {
            serial: "C02XK1JQJG5H".into(),
            ..Default::default()
        };
        s.run("upsert device", move |a| {
            a.upsert_device(&update, OffsetDateTime::UNIX_EPOCH)
        })
        .await
        .unwrap();
        let found = s.run("device", |a| a.device("C02XK1JQJG5H")).await.unwrap();
        assert_eq!(found.unwrap().serial, "C02XK1JQJG5H");
    }

    #[tokio::test]
    async fn a_call_error_comes_back_unchanged() {
        let s = store();
        let err = s
            .run("upsert device", |a| {
                a.upsert_device(&DeviceUpdate::default(), OffsetDateTime::UNIX_EPOCH)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AssetError::Invalid { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_panicking_call_is_a_retryable_task_error_naming_the_op() {
        let s = store();
        let err = s
            .run::<(), AssetError>("list devices", |_| panic!("boom"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AssetError::Task {
                    op: "list devices",
                    cancelled: false
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(
            err.to_string(),
            "asset store list devices task failed (panicked); retryable"
        );
        // The store still answers after a call panicked.
        assert!(s.run("list users", |a| a.list_users()).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_max_blocking_calls_run_at_once() {
        let s = store();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        // Calls go on only in groups of MAX_BLOCKING: the bound must let that many run
        // together (or this deadlocks), and the peak shows it lets no more.
        let together = Arc::new(std::sync::Barrier::new(MAX_BLOCKING));
        let calls = (0..MAX_BLOCKING * 3).map(|_| {
            let (s, running, peak, together) =
                (s.clone(), running.clone(), peak.clone(), together.clone());
            async move {
                s.run::<_, AssetError>("probe", move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    together.wait();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }
        });
        for r in futures_join_all(calls).await {
            r.unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert_eq!(peak, MAX_BLOCKING);
    }

    /// Runs futures concurrently on the runtime without another dependency.
    async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
