//! Recording outcomes: each attempt's new job state and its outcome event go to the
//! recorder, which commits those of many attempts in one transaction.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetbus_event::{Event, Meta};
use fleetbus_targets::DeliveryError;
use serde_json::{json, Map};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::retry::{self, Decision};
use super::{engine_backlog_set, Engine, Finished, DELIVERY_SOURCE, FINISHED_QUEUE};
use fleetbus_telemetry::TargetMetrics;

use crate::rules::TargetEntry;
use crate::store::{now_ms, Job, JobUpdate, Millis, NewEvent};
use crate::PutError;

/// How long the recorder gathers finished attempts before committing them. Every
/// commit is an fsync on the one writer, and an ingest commit queued behind an
/// outcome-only commit waits for both: fewer, larger outcome commits keep the
/// writer free for the requests someone is waiting on.
const RECORD_GATHER: Duration = Duration::from_millis(5);

impl Engine {
    /// Records an attempt's outcome: the job's new state and the outcome event go
    /// to the recorder, which commits them with other attempts' in one transaction.
    /// Returns once committed (or failed: the job then stays pending, delivered again).
    pub(super) async fn finish(
        &self,
        job: &Job,
        entry: Option<&TargetEntry>,
        result: Result<fleetbus_targets::Delivered, DeliveryError>,
        latency: Duration,
    ) {
        let attempts = job.attempts + 1;
        // The latest claim's fence: a scan may have renewed the claim meanwhile.
        let fence = self.fence_of(job);
        // A target gone with a reload still counts under its old labels.
        let gone;
        let metrics = match entry {
            Some(entry) => &entry.metrics,
            None => {
                gone = TargetMetrics::new(&job.rule, &job.target);
                &gone
            }
        };
        metrics.latency(latency.as_secs_f64());
        let (update, outcome) = match result {
            Ok(delivered) => {
                metrics.succeeded();
                tracing::debug!(rule = %job.rule, target = %job.target, event_id = %job.event.event.id, status = %delivered.status, "delivered");
                let roots = entry.is_some_and(|e| e.target.starts_chains());
                for (bus, event) in delivered.emitted {
                    let from = format!("target/{}/{}", job.rule, job.target);
                    let meta = if roots {
                        Meta::started_by(&job.event, bus, from)
                    } else {
                        Meta::caused_by(&job.event, bus, from)
                    };
                    self.put_derived(event, meta).await;
                }
                (
                    JobUpdate::Done {
                        id: job.id,
                        fence,
                        attempts,
                        status: delivered.status.clone(),
                    },
                    Some((true, delivered.status, None)),
                )
            }
            Err(err) => {
                let retry = entry.map(|e| e.config.retry.clone()).unwrap_or_default();
                let age = OffsetDateTime::now_utc() - job.event.meta.received_at;
                let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
                let decision = retry::decide(&err, attempts, age, &retry, retry::backoff);
                match decision {
                    Decision::Dead(why) => {
                        metrics.dead_lettered();
                        tracing::warn!(rule = %job.rule, target = %job.target, event_id = %job.event.event.id, attempts, error = %why, "delivery dead-lettered");
                        (
                            JobUpdate::Dead {
                                id: job.id,
                                fence,
                                attempts,
                                error: why.clone(),
                            },
                            Some((false, "dead-lettered".to_owned(), Some(why))),
                        )
                    }
                    Decision::RetryAfter(delay) => {
                        metrics.retried();
                        tracing::info!(rule = %job.rule, target = %job.target, event_id = %job.event.event.id, attempts, retry_in_ms = delay.as_millis() as u64, error = %err, "delivery failed, will retry");
                        (
                            JobUpdate::Retry {
                                id: job.id,
                                fence,
                                attempts,
                                next_at: now_ms() + delay.as_millis() as Millis,
                                error: err.to_string(),
                            },
                            None,
                        )
                    }
                }
            }
        };
        // Outcomes of outcome events would never end: they are not reported.
        let outcome = match (outcome, job.event.event.source == DELIVERY_SOURCE) {
            (Some((ok, status, error)), false) => {
                self.outcome_event(job, attempts, latency, ok, status, error)
            }
            _ => None,
        };
        let (recorded, done) = oneshot::channel();
        let finished = Finished {
            update,
            outcome,
            recorded,
        };
        if self.inner.finished.send(finished).await.is_err() || done.await.is_err() {
            tracing::error!(
                job = job.id,
                "recording a delivery failed; it will be delivered again"
            );
        }
    }

    /// The outcome event of an attempt, matched and ready to commit; `None` (with
    /// a log line) when it cannot go on the bus, as for any derived event.
    pub(super) fn outcome_event(
        &self,
        job: &Job,
        attempts: u32,
        latency: Duration,
        ok: bool,
        status: String,
        error: Option<String>,
    ) -> Option<NewEvent> {
        let mut detail = Map::new();
        detail.insert("rule".into(), json!(job.rule));
        detail.insert("target".into(), json!(job.target));
        detail.insert("event-id".into(), json!(job.event.event.id));
        detail.insert("attempts".into(), json!(attempts));
        detail.insert("status".into(), json!(status));
        detail.insert("latency-ms".into(), json!(latency.as_secs_f64() * 1000.0));
        if let Some(error) = error {
            detail.insert("error".into(), json!(error));
        }
        let detail_type = if ok {
            "Target Delivery Succeeded"
        } else {
            "Target Delivery Failed"
        };
        let mut event = Event::new(DELIVERY_SOURCE, detail_type, detail);
        event.id = Engine::new_event_id();
        event.account = job.event.event.account.clone();
        event.region = job.event.event.region.clone();
        event.resources = job.event.event.resources.clone();
        let meta = Meta::caused_by(&job.event, job.event.meta.bus.clone(), "delivery");
        let id = event.id.clone();
        match self.prepare(&self.rules(), event, meta) {
            Ok(new) => Some(new),
            // The loop guards log once per chain themselves.
            Err(PutError::HopLimit { .. } | PutError::ChainBudget { .. }) => None,
            Err(e) => {
                tracing::warn!(event_id = %id, error = %e, "derived event not put on the bus");
                None
            }
        }
    }

    /// Commits finished attempts in batches: whatever finished while the previous
    /// batch was committing goes in one completion. Ends once shutdown has
    /// closed the task tracker and every delivery task is done.
    pub(super) async fn record(self, mut rx: mpsc::Receiver<Finished>) {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, FINISHED_QUEUE) => if n == 0 { return },
                _ = self.inner.tasks.wait(), if self.inner.shutdown.is_cancelled() => return,
            }
            if batch.len() < FINISHED_QUEUE && !self.inner.shutdown.is_cancelled() {
                tokio::time::sleep(RECORD_GATHER).await;
                while batch.len() < FINISHED_QUEUE {
                    match rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
            }
            let mut updates = Vec::with_capacity(batch.len());
            let mut events = Vec::new();
            let mut replies = Vec::with_capacity(batch.len());
            for f in batch.drain(..) {
                updates.push(f.update);
                events.extend(f.outcome);
                replies.push(f.recorded);
            }
            let ends: Vec<(i64, bool)> = updates
                .iter()
                .map(|u| (u.id(), !matches!(u, JobUpdate::Retry { .. })))
                .collect();
            let retried = ends.iter().any(|&(_, ends)| !ends);
            match self.inner.store.complete(updates, events, now_ms()).await {
                Ok(completed) => {
                    for id in &completed.fenced {
                        tracing::warn!(job = id, "delivery outcome not recorded: the job was claimed again after its lease ran out, and that claim decides");
                    }
                    // Only applied completions leave the backlog.
                    let finished = ends
                        .iter()
                        .filter(|(id, ends)| *ends && !completed.fenced.contains(id))
                        .count() as u64;
                    // Saturating: a count can never wrap below zero into a backlog
                    // that refuses every request.
                    let pending = self
                        .inner
                        .backlog
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                            Some(b.saturating_sub(finished))
                        })
                        .unwrap_or(0)
                        .saturating_sub(finished);
                    engine_backlog_set(&self.inner, pending);
                    if retried {
                        self.inner.wake.notify_one();
                    }
                    let rules = self.rules();
                    for (new, result) in completed.appended {
                        self.accepted(&rules, new, result, false);
                    }
                    for reply in replies {
                        let _ = reply.send(());
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, attempts = replies.len(), "recording delivery outcomes failed; they will be delivered again");
                }
            }
        }
    }
}
