//! Ingest: an event is matched against its bus's rules, then committed with one
//! job per matched (rule, target) in one transaction; only then is it acknowledged,
//! and its jobs are handed to the dispatcher in memory.

use std::sync::atomic::Ordering;

use fleetbus_event::{Event, Meta, StoredEvent};

use super::chain::Admit;
use super::{engine_backlog_set, Engine, PutOutcome, Ready};
use fleetbus_telemetry::{
    EventChainBudgetExceeded, EventDuplicate, EventHopLimited, InternalEvent,
};

use crate::rules::RuleSet;
use crate::store::{now_ms, Appended, Attachment, Job, NewEvent, FIRST_FENCE};
use crate::{EngineError, PutError};

impl Engine {
    /// Refuses new work when the delivery backlog is past its bound.
    pub fn check_backpressure(&self) -> Result<(), EngineError> {
        let pending = self.inner.backlog.load(Ordering::Relaxed);
        let limit = self.inner.settings.max_backlog;
        if pending >= limit {
            return Err(EngineError::Backpressure { pending, limit });
        }
        Ok(())
    }

    /// Matches and durably appends events; each answer is for the event at the same
    /// index. Resolves only once everything accepted is committed. Room in the
    /// delivery backlog is reserved for all the request's deliveries before anything
    /// is committed: a request that does not fit is refused whole
    /// ([`EngineError::Backpressure`]), so one large request cannot overshoot
    /// `max_backlog`.
    pub async fn put(
        &self,
        events: Vec<(Event, Meta)>,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, EngineError> {
        self.put_attached(events.into_iter().map(|(e, m)| (e, m, None)).collect())
            .await
    }

    /// [`Engine::put`], each event with the attachment kept beside it, if any
    /// (a claim-check: see [`crate::store::Attachment`]).
    pub async fn put_attached(
        &self,
        events: Vec<(Event, Meta, Option<Attachment>)>,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, EngineError> {
        self.put_inner(events, true).await
    }

    /// [`Engine::put_attached`], with or without a backlog reservation (events the
    /// engine derives are not refused: their cause was accepted already).
    pub(super) async fn put_inner(
        &self,
        events: Vec<(Event, Meta, Option<Attachment>)>,
        reserve: bool,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, EngineError> {
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let rules = self.rules();
        let mut answers: Vec<Option<Result<PutOutcome, PutError>>> =
            Vec::with_capacity(events.len());
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for (event, meta, attachment) in events {
            match self.prepare(&rules, event, meta) {
                Ok(mut new) => {
                    new.attachment = attachment.map(std::sync::Arc::new);
                    ids.push(answers.len());
                    answers.push(None);
                    batch.push(new);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            let jobs: u64 = batch.iter().map(|n| n.jobs.len() as u64).sum();
            if reserve {
                self.reserve(jobs)?;
            }
            let committed = match self.inner.store.append(batch, now_ms()).await {
                Ok(c) => c,
                Err(e) => {
                    if reserve {
                        self.release(jobs);
                    }
                    return Err(e.into());
                }
            };
            for (slot, (new, result)) in ids.into_iter().zip(committed) {
                answers[slot] = Some(Ok(self.accepted(&rules, new, result, reserve)));
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(PutError::Unmatchable("internal: no answer".into()))))
            .collect())
    }

    /// Takes room for `jobs` deliveries in the backlog, or refuses: the count never
    /// goes past `max_backlog` (a request needing more than it holds is refused too).
    fn reserve(&self, jobs: u64) -> Result<(), EngineError> {
        let limit = self.inner.settings.max_backlog;
        self.inner
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                let after = b.saturating_add(jobs);
                (after <= limit).then_some(after)
            })
            .map(|before| engine_backlog_set(&self.inner, before + jobs))
            .map_err(|pending| EngineError::Backpressure { pending, limit })
    }

    /// Gives back room reserved for deliveries that were not queued.
    fn release(&self, jobs: u64) {
        if jobs == 0 {
            return;
        }
        let before = self
            .inner
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(jobs))
            })
            .unwrap_or(0);
        engine_backlog_set(&self.inner, before.saturating_sub(jobs));
    }

    /// Counts a committed event and hands its jobs to the dispatcher; `reserved`:
    /// the backlog already counts its jobs.
    pub(super) fn accepted(
        &self,
        rules: &RuleSet,
        new: NewEvent,
        result: Appended,
        reserved: bool,
    ) -> PutOutcome {
        let id = new.stored.event.id.clone();
        match result {
            Appended::Duplicate => {
                if reserved {
                    self.release(new.jobs.len() as u64);
                }
                EventDuplicate {
                    source: &new.stored.event.source,
                    id: &id,
                }
                .emit();
                PutOutcome::Duplicate { id }
            }
            Appended::Stored { job_ids, .. } => {
                rules.count_stored(&new.stored.meta.bus);
                let jobs = job_ids.len();
                self.enqueue(new, job_ids, reserved);
                PutOutcome::Stored { id, jobs }
            }
        }
    }

    pub(super) fn prepare(
        &self,
        rules: &RuleSet,
        event: Event,
        meta: Meta,
    ) -> Result<NewEvent, PutError> {
        if !rules.has_bus(&meta.bus) {
            return Err(PutError::UnknownBus(meta.bus));
        }
        let now = std::time::Instant::now();
        if meta.hop > self.inner.settings.hop_limit {
            let cause = meta.causation_id.clone().unwrap_or_default();
            let root = meta.root_id.as_deref().unwrap_or(&cause);
            EventHopLimited {
                id: &event.id,
                root,
                detail_type: &event.detail_type,
                hop: meta.hop,
                limit: self.inner.settings.hop_limit,
                first: self.inner.chains.first_hop_warning(root, now),
            }
            .emit();
            return Err(PutError::HopLimit {
                limit: self.inner.settings.hop_limit,
                cause,
            });
        }
        if let Some(root) = meta.root_id.as_deref() {
            if let Admit::OverBudget { first } = self.inner.chains.admit(root, now) {
                let budget = self.inner.chains.budget();
                EventChainBudgetExceeded {
                    id: &event.id,
                    root,
                    detail_type: &event.detail_type,
                    budget,
                    first,
                }
                .emit();
                return Err(PutError::ChainBudget {
                    budget,
                    root: root.to_owned(),
                });
            }
        }
        let json = event.to_json();
        let hits = rules
            .matching(&meta.bus, &json)
            .map_err(PutError::Unmatchable)?;
        let mut jobs = Vec::new();
        let mut suppressed = Vec::new();
        for i in hits {
            let Some(rule) = rules.rules.get(i as usize) else {
                continue;
            };
            if rule.exempted(&json) {
                tracing::info!(rule = %rule.name, event_id = %event.id, "rule suppressed by its exempt pattern");
                rule.metrics.exempted();
                suppressed.push(rule.name.clone());
                continue;
            }
            rule.metrics.matched();
            jobs.extend(
                rule.targets
                    .iter()
                    .map(|t| (rule.name.clone(), t.config.id.clone())),
            );
        }
        let keep_until = rules.keep_for(&meta.bus, &json).map(|keep| {
            let received = (meta.received_at.unix_timestamp_nanos() / 1_000_000) as i64;
            received.saturating_add(super::millis(keep))
        });
        // The bytes just matched are the ones stored: the event is serialized once.
        let mut new = NewEvent::new(StoredEvent { event, meta }, &json, jobs, suppressed)
            .map_err(|e| PutError::Unmatchable(e.to_string()))?;
        new.keep_until = keep_until;
        Ok(new)
    }

    /// Appends an event with jobs for every target of one rule, bypassing matching
    /// (scheduled rules fire their own targets only, as on EventBridge).
    pub(super) async fn put_for_rule(
        &self,
        rule_name: &str,
        event: Event,
        meta: Meta,
    ) -> Result<(), EngineError> {
        let rules = self.rules();
        let Some(rule) = rules.rules.iter().find(|r| r.name == rule_name) else {
            return Ok(());
        };
        let jobs = rule
            .targets
            .iter()
            .map(|t| (rule.name.clone(), t.config.id.clone()))
            .collect();
        let json = event.to_json();
        let new =
            NewEvent::new(StoredEvent { event, meta }, &json, jobs, Vec::new()).map_err(|e| {
                EngineError::Store {
                    message: e.to_string(),
                    retryable: false,
                }
            })?;
        let committed = self.inner.store.append(vec![new], now_ms()).await?;
        if let Some((new, Appended::Stored { job_ids, .. })) = committed.into_iter().next() {
            self.enqueue(new, job_ids, false);
        }
        Ok(())
    }

    /// Hands a committed event's jobs to the dispatcher. The append claimed them
    /// for this process, and each is marked owned before it is queued: a job
    /// queued here and also started from a scan would run twice, and count twice
    /// off the backlog.
    pub(super) fn enqueue(&self, new: NewEvent, job_ids: Vec<i64>, reserved: bool) {
        if job_ids.is_empty() {
            return;
        }
        if !reserved {
            let n = job_ids.len() as u64;
            let pending = self.inner.backlog.fetch_add(n, Ordering::Relaxed) + n;
            engine_backlog_set(&self.inner, pending);
        }
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(job_ids.iter().map(|&id| (id, FIRST_FENCE)));
        let created_at = now_ms();
        let mut overflow = Vec::new();
        for ((rule, target), id) in new.jobs.into_iter().zip(job_ids) {
            let job = Job {
                id,
                rule,
                target,
                attempts: 0,
                fence: FIRST_FENCE,
                created_at,
                event: new.stored.clone(),
            };
            if self.inner.ready.try_send(Ready { job }).is_err() {
                // Not queued: given back to the store for a scan to claim.
                self.inner
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                overflow.push((id, FIRST_FENCE));
            }
        }
        self.release_jobs(overflow);
    }

    /// Puts an event the engine or a target produced; failures are logged, since
    /// there is no caller to answer.
    pub(super) async fn put_derived(&self, event: Event, meta: Meta) {
        let id = event.id.clone();
        match self.put_inner(vec![(event, meta, None)], false).await {
            Ok(answers) => match answers.into_iter().next() {
                // The loop guards log once per chain themselves.
                Some(Err(PutError::HopLimit { .. } | PutError::ChainBudget { .. })) => {}
                Some(Err(e)) => {
                    tracing::warn!(event_id = %id, error = %e, "derived event not put on the bus");
                }
                _ => {}
            },
            Err(e) => {
                tracing::warn!(event_id = %id, error = %e, "derived event not put on the bus")
            }
        }
    }
}
