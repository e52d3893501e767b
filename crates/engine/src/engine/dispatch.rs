//! The dispatcher: jobs handed over in memory, or claimed from the store (after a
//! restart, a full hand-over queue, a retry or a lease falling due), run within
//! each target's concurrency and rate limits.

use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use fleetbus_targets::{transform, DeliveryContext, DeliveryError};
use tokio::sync::mpsc;

use std::sync::atomic::Ordering;

use super::{engine_backlog_set, Engine, Ready};
use crate::store::{now_ms, Job, Millis, StoreError};

/// Longest time between two scans of the store for due jobs.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Most jobs claimed per scan.
const SCAN_PAGE: usize = 1024;

impl Engine {
    pub(super) async fn dispatch(self, mut ready: mpsc::Receiver<Ready>) {
        let mut next_scan = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.inner.shutdown.cancelled() => break,
                Some(r) = ready.recv() => self.run_owned(r.job),
                _ = self.inner.wake.notified() => next_scan = tokio::time::Instant::now(),
                _ = tokio::time::sleep_until(next_scan) => {
                    next_scan = self.scan().await;
                }
            }
        }
    }

    /// Claims due jobs from the store and starts them; returns when to scan next:
    /// at once when the page was full, when the next retry or lease falls due, or
    /// after [`SCAN_INTERVAL`].
    pub(super) async fn scan(&self) -> tokio::time::Instant {
        let result: Result<_, StoreError> = async {
            let store = &self.inner.store;
            let now = now_ms();
            let jobs = store.claim(now, SCAN_PAGE).await?;
            let next = store.next_due(now).await?;
            // Idle: the store's count of pending jobs corrects the in-memory
            // backlog, so no drift (a lost decrement, a crash) can hold ingest at
            // 429 while nothing is pending.
            let pending = if jobs.is_empty() {
                Some(store.pending_jobs().await?)
            } else {
                None
            };
            Ok((jobs, next, pending))
        }
        .await;
        let now = tokio::time::Instant::now();
        match result {
            Ok((jobs, next, pending)) => {
                if let Some(pending) = pending {
                    self.inner.backlog.store(pending, Ordering::Relaxed);
                    engine_backlog_set(&self.inner, pending);
                }
                let full = jobs.len() >= SCAN_PAGE;
                for job in jobs {
                    self.start_job(job);
                }
                if full {
                    return now;
                }
                match next {
                    Some(at) => {
                        let wait = Duration::from_millis(
                            (at - now_ms()).clamp(0, SCAN_INTERVAL.as_millis() as Millis) as u64,
                        );
                        now + wait.max(Duration::from_millis(5))
                    }
                    None => now + SCAN_INTERVAL,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "scanning for due jobs failed");
                now + SCAN_INTERVAL
            }
        }
    }

    /// Starts a job the scan claimed, unless this process already owns it (queued
    /// or running, its lease run out): then the new claim's fence is what its
    /// completion will carry, and the claim has renewed the lease.
    pub(super) fn start_job(&self, job: Job) {
        let start = match self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.id)
        {
            Entry::Occupied(mut owned) => {
                *owned.get_mut() = job.fence;
                false
            }
            Entry::Vacant(free) => {
                free.insert(job.fence);
                true
            }
        };
        if start {
            self.run_owned(job);
        }
    }

    /// The fence of this process's latest claim of `job`.
    pub(super) fn fence_of(&self, job: &Job) -> u64 {
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.id)
            .copied()
            .unwrap_or(job.fence)
    }

    /// Gives owned jobs back to the queue, due now, for a scan (here or in another
    /// process) to claim: they could not be handed over or run.
    pub(super) fn release_jobs(&self, jobs: Vec<(i64, u64)>) {
        if jobs.is_empty() {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.inner.store.release(jobs, now_ms()).await {
                tracing::warn!(error = %e, "releasing claimed deliveries failed; they are delivered once their lease runs out");
            }
            engine.inner.wake.notify_one();
        });
    }

    /// Runs a job already marked in flight, and releases it once its outcome is
    /// recorded (or left pending, to be found again).
    pub(super) fn run_owned(&self, job: Job) {
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            let id = job.id;
            engine.run_job(job).await;
            engine
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    pub(super) async fn run_job(&self, job: Job) {
        let Some(entry) = self.rules().target(&job.rule, &job.target) else {
            let error = format!(
                "rule {:?} or its target {:?} no longer exists (configuration reloaded)",
                job.rule, job.target
            );
            self.finish(
                &job,
                None,
                Err(DeliveryError::Permanent(error)),
                Duration::ZERO,
            )
            .await;
            return;
        };
        let Ok(permit) = entry.concurrency.acquire().await else {
            self.release_jobs(vec![(job.id, self.fence_of(&job))]);
            return;
        };
        entry.rate_slot().await;
        if self.inner.shutdown.is_cancelled() {
            // Left pending: delivered after restart.
            return;
        }
        let started = Instant::now();
        let attempt = job.attempts + 1;
        // A replay is a deliberate second delivery: its key differs from the first's.
        let key = match &job.event.event.replay_name {
            None => format!("{}:{}:{}", job.event.event.id, job.rule, job.target),
            Some(replay) => format!(
                "{}:{}:{}:replay:{replay}",
                job.event.event.id, job.rule, job.target
            ),
        };
        let escape = entry.target.text_escape();
        let result =
            match transform::apply_escaped(&entry.config.input, &job.event, &job.rule, escape) {
                Err(e) => Err(DeliveryError::Permanent(format!("input transformer: {e}"))),
                Ok(payload) => {
                    let ctx = DeliveryContext {
                        event: &job.event,
                        rule: &job.rule,
                        target: &job.target,
                        attempt,
                        idempotency_key: &key,
                    };
                    entry.target.deliver(&payload, &ctx).await
                }
            };
        // The target is free for the next delivery while this outcome is recorded.
        drop(permit);
        self.finish(&job, Some(&entry), result, started.elapsed())
            .await;
    }
}
