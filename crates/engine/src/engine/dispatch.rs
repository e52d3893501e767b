//! The dispatcher: jobs handed over in memory, or found by scanning the store
//! (after a restart, a full hand-over queue, or a retry falling due), run within
//! each target's concurrency and rate limits.

use std::time::{Duration, Instant};

use fleetbus_targets::{transform, DeliveryContext, DeliveryError};
use tokio::sync::mpsc;

use std::sync::atomic::Ordering;

use super::{engine_backlog_set, Engine, Ready};
use crate::store::Job;
use crate::writer::now_ms;

/// Longest time between two scans of the store for due jobs.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

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

    /// Starts due jobs from the store; returns when to scan next: at once when the
    /// page was full, when the next retry falls due, or after [`SCAN_INTERVAL`].
    /// Jobs due now but in flight are not a reason to scan again: scanning runs on
    /// the writer thread, and every scan delays the commits queued behind it.
    pub(super) async fn scan(&self) -> tokio::time::Instant {
        let inner = self.inner.clone();
        let result = self
            .inner
            .writer
            .read(move |s| {
                let now = now_ms();
                let jobs = {
                    let inflight = inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
                    s.due_jobs(now, 1024, &|id| inflight.contains(&id))?
                };
                let next = s.next_due(now)?;
                // Idle: the store's count of pending jobs corrects the in-memory
                // backlog, so no drift (a lost decrement, a crash) can hold ingest at
                // 429 while nothing is pending.
                let pending = if jobs.is_empty() {
                    Some(s.pending_jobs()?)
                } else {
                    None
                };
                Ok((jobs, next, pending))
            })
            .await;
        let now = tokio::time::Instant::now();
        match result {
            Ok((jobs, next, pending)) => {
                if let Some(pending) = pending {
                    self.inner.backlog.store(pending, Ordering::Relaxed);
                    engine_backlog_set(&self.inner, pending);
                }
                let full = jobs.len() >= 1024;
                for job in jobs {
                    self.start_job(job);
                }
                if full {
                    return now;
                }
                match next {
                    Some(at) => {
                        let wait = Duration::from_millis(
                            (at - now_ms()).clamp(0, SCAN_INTERVAL.as_millis() as i64) as u64,
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

    /// Starts a job the scan found, unless this process already owns it (queued
    /// from ingest or running).
    pub(super) fn start_job(&self, job: Job) {
        let claimed = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id);
        if claimed {
            self.run_owned(job);
        }
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
            return;
        };
        entry.rate_slot().await;
        if self.inner.shutdown.is_cancelled() {
            // Left pending: delivered after restart.
            return;
        }
        let started = Instant::now();
        let attempt = job.attempts + 1;
        let key = format!("{}:{}:{}", job.event.event.id, job.rule, job.target);
        let result = match transform::apply(&entry.config.input, &job.event, &job.rule) {
            Err(e) => Err(DeliveryError::Permanent(format!("input transformer: {e}"))),
            Ok(payload) => {
                let ctx = DeliveryContext {
                    event: &job.event,
                    rule: &job.rule,
                    target: &job.target,
                    attempt,
                    idempotency_key: &key,
                    assets: self.inner.settings.assets.as_ref(),
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
