//! The running engine: ingest (match, then commit events with their jobs in one
//! transaction), the dispatcher that delivers jobs with retries, the scheduler, and
//! reload and shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fleetbus_config::{Config, Schedule};
use fleetbus_event::{Event, Meta, StoredEvent};
use fleetbus_targets::{transform, DeliveryContext, DeliveryError};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rules::{Count, RuleSet, TargetEntry};
use crate::store::{
    Appended, Counts, DlqEntry, Job, JobUpdate, Millis, NewEvent, PruneCursor, Store,
};
use crate::writer::{now_ms, Writer};
use crate::{EngineError, PutError};

/// Source of delivery outcome events.
pub const DELIVERY_SOURCE: &str = "fleetbus.delivery";
/// Source of scheduled events.
pub const SCHEDULER_SOURCE: &str = "fleetbus.scheduler";

/// Settings the engine takes from `server:` in the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hop_limit: u32,
    pub max_backlog: u64,
    pub dedup_window: Duration,
    pub account: String,
    pub region: String,
    /// How long shutdown waits for deliveries in flight.
    pub shutdown_grace: Duration,
    /// The asset store the mdm and assets targets use.
    pub assets: Option<fleetbus_assets::AssetStore>,
    /// How long archived events and finished deliveries are kept.
    pub retention: fleetbus_config::Retention,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            hop_limit: config.server.hop_limit,
            max_backlog: config.server.max_backlog,
            dedup_window: config.server.dedup_window,
            account: config.server.account.clone(),
            region: config.server.region.clone(),
            shutdown_grace: Duration::from_secs(10),
            assets: None,
            retention: config.retention.clone(),
        }
    }
}

/// The answer for one event put on a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Durable; `jobs` deliveries were queued.
    Stored { id: String, jobs: usize },
    /// A repeat of an event already accepted within the dedup window.
    Duplicate { id: String },
}

impl PutOutcome {
    pub fn id(&self) -> &str {
        match self {
            PutOutcome::Stored { id, .. } | PutOutcome::Duplicate { id } => id,
        }
    }
}

/// A job handed from ingest to the dispatcher without a store round trip.
struct Ready {
    job: Job,
}

/// A finished attempt on its way to the store: the job's new state and the
/// outcome event, committed together with those of other attempts.
struct Finished {
    update: JobUpdate,
    outcome: Option<NewEvent>,
    /// Answered once committed; dropped when the commit failed.
    recorded: oneshot::Sender<()>,
}

/// Dispatcher wake-up queue size; beyond it, jobs are found by the store scan.
const READY_QUEUE: usize = 8192;
/// Finished attempts waiting to be recorded; beyond it, delivery tasks wait.
const FINISHED_QUEUE: usize = 4096;
/// How long the recorder gathers finished attempts before committing them. Every
/// commit is an fsync on the one writer, and an ingest commit queued behind an
/// outcome-only commit waits for both: fewer, larger outcome commits keep the
/// writer free for the requests someone is waiting on.
const RECORD_GATHER: Duration = Duration::from_millis(5);
/// Rows removed per pruning transaction: small enough that a commit waiting
/// behind one is not held up for long.
const PRUNE_CHUNK: usize = 1000;
/// Bounds on the time between two pruning passes.
const PRUNE_MIN: Duration = Duration::from_secs(1);
const PRUNE_MAX: Duration = Duration::from_secs(600);
/// Longest time between two scans of the store for due jobs.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

struct Inner {
    writer: Writer,
    rules: RwLock<Arc<RuleSet>>,
    settings: Settings,
    backlog: AtomicU64,
    inflight: Mutex<HashSet<i64>>,
    ready: mpsc::Sender<Ready>,
    finished: mpsc::Sender<Finished>,
    backlog_gauge: metrics::Gauge,
    wake: Notify,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    schedules: Mutex<CancellationToken>,
    started: OffsetDateTime,
}

/// A handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Starts the engine on a store: the writer thread, the dispatcher and the
    /// scheduler. Pending jobs left by a previous run are delivered again.
    pub async fn start(
        config: &Config,
        store: Box<dyn Store>,
        settings: Settings,
    ) -> Result<Engine, EngineError> {
        let rules = Arc::new(RuleSet::build(config)?);
        let (writer, _thread) = Writer::spawn(store, millis(settings.dedup_window));
        let counts = writer.read(|s| s.counts()).await?;
        let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE);
        let (finished_tx, finished_rx) = mpsc::channel(FINISHED_QUEUE);
        let inner = Arc::new(Inner {
            writer,
            rules: RwLock::new(rules),
            settings,
            backlog: AtomicU64::new(counts.pending_jobs),
            inflight: Mutex::new(HashSet::new()),
            ready: ready_tx,
            finished: finished_tx,
            backlog_gauge: metrics::gauge!("fleetbus_delivery_backlog"),
            wake: Notify::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            schedules: Mutex::new(CancellationToken::new()),
            started: OffsetDateTime::now_utc(),
        });
        engine_backlog_set(&inner, counts.pending_jobs);
        let engine = Engine { inner };
        let dispatcher = engine.clone();
        engine
            .inner
            .tasks
            .spawn(async move { dispatcher.dispatch(ready_rx).await });
        // Not tracked: delivery tasks wait on it while shutdown waits on them.
        let recorder = engine.clone();
        tokio::spawn(async move { recorder.record(finished_rx).await });
        engine.start_schedules();
        let pruner = engine.clone();
        engine
            .inner
            .tasks
            .spawn(async move { pruner.prune_forever().await });
        tracing::info!(
            pending_jobs = counts.pending_jobs,
            dead_jobs = counts.dead_jobs,
            "engine started"
        );
        Ok(engine)
    }

    /// A fresh event id: a UUID (v7), so ids given in one period sort together and
    /// the store's id and dedup indexes grow at their end instead of at random pages.
    pub fn new_event_id() -> String {
        fleetbus_event::new_id()
    }

    /// Defaults for fields events leave out.
    pub fn defaults(&self) -> fleetbus_event::Defaults {
        fleetbus_event::Defaults {
            account: self.inner.settings.account.clone(),
            region: self.inner.settings.region.clone(),
            now: OffsetDateTime::now_utc(),
        }
    }

    /// Refuses new work when the delivery backlog is past its bound.
    pub fn check_backpressure(&self) -> Result<(), EngineError> {
        let pending = self.inner.backlog.load(Ordering::Relaxed);
        let limit = self.inner.settings.max_backlog;
        if pending >= limit {
            return Err(EngineError::Backpressure { pending, limit });
        }
        Ok(())
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub fn has_bus(&self, bus: &str) -> bool {
        self.rules().has_bus(bus)
    }

    fn rules(&self) -> Arc<RuleSet> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Matches and durably appends events; each answer is for the event at the same
    /// index. Resolves only once everything accepted is committed.
    pub async fn put(
        &self,
        events: Vec<(Event, Meta)>,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, EngineError> {
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let rules = self.rules();
        let mut answers: Vec<Option<Result<PutOutcome, PutError>>> =
            Vec::with_capacity(events.len());
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for (event, meta) in events {
            match self.prepare(&rules, event, meta) {
                Ok(new) => {
                    ids.push(answers.len());
                    answers.push(None);
                    batch.push(new);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            let committed = self.inner.writer.commit(batch, Vec::new()).await?;
            for (slot, (new, result)) in ids.into_iter().zip(committed) {
                answers[slot] = Some(Ok(self.accepted(&rules, new, result)));
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(PutError::Unmatchable("internal: no answer".into()))))
            .collect())
    }

    /// Counts a committed event and hands its jobs to the dispatcher.
    fn accepted(&self, rules: &RuleSet, new: NewEvent, result: Appended) -> PutOutcome {
        let id = new.stored.event.id.clone();
        match result {
            Appended::Duplicate => {
                metrics::counter!("fleetbus_events_duplicate_total").increment(1);
                PutOutcome::Duplicate { id }
            }
            Appended::Stored { job_ids, .. } => {
                rules.count_stored(&new.stored.meta.bus);
                let jobs = job_ids.len();
                self.enqueue(new, job_ids);
                PutOutcome::Stored { id, jobs }
            }
        }
    }

    fn prepare(&self, rules: &RuleSet, event: Event, meta: Meta) -> Result<NewEvent, PutError> {
        if !rules.has_bus(&meta.bus) {
            return Err(PutError::UnknownBus(meta.bus));
        }
        if meta.hop > self.inner.settings.hop_limit {
            let cause = meta.causation_id.clone().unwrap_or_default();
            tracing::warn!(event_id = %event.id, cause = %cause, hop = meta.hop, limit = self.inner.settings.hop_limit,
                "hop limit reached: event dropped to stop a rule loop");
            metrics::counter!("fleetbus_events_hop_limited_total").increment(1);
            return Err(PutError::HopLimit {
                limit: self.inner.settings.hop_limit,
                cause,
            });
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
                rule.metrics
                    .counter(Count::Retried, "fleetbus_rule_exempted_total")
                    .increment(1);
                suppressed.push(rule.name.clone());
                continue;
            }
            rule.metrics
                .counter(Count::Succeeded, "fleetbus_events_matched_total")
                .increment(1);
            jobs.extend(
                rule.targets
                    .iter()
                    .map(|t| (rule.name.clone(), t.config.id.clone())),
            );
        }
        // The bytes just matched are the ones stored: the event is serialized once.
        NewEvent::new(StoredEvent { event, meta }, &json, jobs, suppressed)
            .map_err(|e| PutError::Unmatchable(e.to_string()))
    }

    /// Appends an event with jobs for every target of one rule, bypassing matching
    /// (scheduled rules fire their own targets only, as on EventBridge).
    async fn put_for_rule(
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
        let committed = self.inner.writer.commit(vec![new], Vec::new()).await?;
        if let Some((new, Appended::Stored { job_ids, .. })) = committed.into_iter().next() {
            self.enqueue(new, job_ids);
        }
        Ok(())
    }

    fn enqueue(&self, new: NewEvent, job_ids: Vec<i64>) {
        if job_ids.is_empty() {
            return;
        }
        let n = job_ids.len() as u64;
        let pending = self.inner.backlog.fetch_add(n, Ordering::Relaxed) + n;
        engine_backlog_set(&self.inner, pending);
        let created_at = now_ms();
        for ((rule, target), id) in new.jobs.into_iter().zip(job_ids) {
            let job = Job {
                id,
                rule,
                target,
                attempts: 0,
                created_at,
                event: new.stored.clone(),
            };
            if self.inner.ready.try_send(Ready { job }).is_err() {
                // The scan will find it in the store.
                self.inner.wake.notify_one();
            }
        }
    }

    async fn dispatch(self, mut ready: mpsc::Receiver<Ready>) {
        let mut next_scan = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.inner.shutdown.cancelled() => break,
                Some(r) = ready.recv() => self.start_job(r.job),
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
    async fn scan(&self) -> tokio::time::Instant {
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
                Ok((jobs, next))
            })
            .await;
        let now = tokio::time::Instant::now();
        match result {
            Ok((jobs, next)) => {
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

    fn start_job(&self, job: Job) {
        {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !inflight.insert(job.id) {
                return;
            }
        }
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

    async fn run_job(&self, job: Job) {
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

    /// Records an attempt's outcome: the job's new state and the outcome event go
    /// to the recorder, which commits them with other attempts' in one transaction.
    /// Returns once committed (or failed: the job then stays pending, delivered again).
    async fn finish(
        &self,
        job: &Job,
        entry: Option<&TargetEntry>,
        result: Result<fleetbus_targets::Delivered, DeliveryError>,
        latency: Duration,
    ) {
        let attempts = job.attempts + 1;
        if let Some(entry) = entry {
            entry.metrics.latency().record(latency.as_secs_f64());
        } else {
            let labels = [("rule", job.rule.clone()), ("target", job.target.clone())];
            metrics::histogram!("fleetbus_delivery_latency_seconds", &labels)
                .record(latency.as_secs_f64());
        }
        let count = |slot: Count, name: &'static str| match entry {
            Some(entry) => entry.metrics.counter(slot, name).increment(1),
            None => {
                let labels = [("rule", job.rule.clone()), ("target", job.target.clone())];
                metrics::counter!(name, &labels).increment(1)
            }
        };
        let (update, outcome) = match result {
            Ok(delivered) => {
                count(Count::Succeeded, "fleetbus_deliveries_succeeded_total");
                tracing::debug!(rule = %job.rule, target = %job.target, event_id = %job.event.event.id, status = %delivered.status, "delivered");
                for (bus, event) in delivered.emitted {
                    let meta = Meta::caused_by(
                        &job.event,
                        bus,
                        format!("target/{}/{}", job.rule, job.target),
                    );
                    self.put_derived(event, meta).await;
                }
                (
                    JobUpdate::Done {
                        id: job.id,
                        attempts,
                        status: delivered.status.clone(),
                    },
                    Some((true, delivered.status, None)),
                )
            }
            Err(err) => {
                let retry = entry.map(|e| e.config.retry.clone()).unwrap_or_default();
                let age = OffsetDateTime::now_utc() - job.event.meta.received_at;
                // A clock stepped back gives a negative age: young, not ancient.
                let age_ms = age.whole_milliseconds().max(0) as u128;
                let too_old = age_ms >= retry.maximum_event_age.as_millis();
                // A receiver's Retry-After is honoured (never sooner than 1 s);
                // otherwise exponential backoff.
                let delay = err
                    .retry_after()
                    .map_or_else(|| backoff(attempts), |d| d.max(Duration::from_secs(1)));
                let past_age = age_ms + delay.as_millis() > retry.maximum_event_age.as_millis();
                let asked_too_late = err.retry_after().is_some() && past_age;
                let give_up = !err.is_retryable()
                    || attempts > retry.maximum_retry_attempts
                    || too_old
                    || asked_too_late;
                if give_up {
                    let why = if !err.is_retryable() {
                        format!("permanent failure: {err}")
                    } else if too_old {
                        format!(
                            "maximum event age {}s exceeded; last error: {err}",
                            retry.maximum_event_age.as_secs()
                        )
                    } else if asked_too_late {
                        format!(
                            "the receiver asked to wait {}s (Retry-After), past the maximum event age {}s; last error: {err}",
                            delay.as_secs(),
                            retry.maximum_event_age.as_secs()
                        )
                    } else {
                        format!("gave up after {attempts} attempts; last error: {err}")
                    };
                    count(Count::Dead, "fleetbus_deliveries_dead_lettered_total");
                    tracing::warn!(rule = %job.rule, target = %job.target, event_id = %job.event.event.id, attempts, error = %why, "delivery dead-lettered");
                    (
                        JobUpdate::Dead {
                            id: job.id,
                            attempts,
                            error: why.clone(),
                        },
                        Some((false, "dead-lettered".to_owned(), Some(why))),
                    )
                } else {
                    count(Count::Retried, "fleetbus_deliveries_retried_total");
                    tracing::info!(rule = %job.rule, target = %job.target, event_id = %job.event.event.id, attempts, retry_in_ms = delay.as_millis() as u64, error = %err, "delivery failed, will retry");
                    (
                        JobUpdate::Retry {
                            id: job.id,
                            attempts,
                            next_at: now_ms() + delay.as_millis() as Millis,
                            error: err.to_string(),
                        },
                        None,
                    )
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
    fn outcome_event(
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
            Err(e) => {
                tracing::warn!(event_id = %id, error = %e, "derived event not put on the bus");
                None
            }
        }
    }

    /// Commits finished attempts in batches: whatever finished while the previous
    /// batch was committing goes in one writer command. Ends once shutdown has
    /// closed the task tracker and every delivery task is done.
    async fn record(self, mut rx: mpsc::Receiver<Finished>) {
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
            let finished = updates
                .iter()
                .filter(|u| !matches!(u, JobUpdate::Retry { .. }))
                .count() as u64;
            let retried = finished < updates.len() as u64;
            match self.inner.writer.commit(events, updates).await {
                Ok(committed) => {
                    let pending = self
                        .inner
                        .backlog
                        .fetch_sub(finished, Ordering::Relaxed)
                        .saturating_sub(finished);
                    engine_backlog_set(&self.inner, pending);
                    if retried {
                        self.inner.wake.notify_one();
                    }
                    let rules = self.rules();
                    for (new, result) in committed {
                        self.accepted(&rules, new, result);
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

    /// Puts an event the engine or a target produced; failures are logged, since
    /// there is no caller to answer.
    async fn put_derived(&self, event: Event, meta: Meta) {
        let id = event.id.clone();
        match self.put(vec![(event, meta)]).await {
            Ok(answers) => {
                if let Some(Err(e)) = answers.into_iter().next() {
                    tracing::warn!(event_id = %id, error = %e, "derived event not put on the bus");
                }
            }
            Err(e) => {
                tracing::warn!(event_id = %id, error = %e, "derived event not put on the bus")
            }
        }
    }

    /// Enforces `retention:` for as long as the engine runs: at start, then every
    /// quarter of the shorter retention (at most every 10 minutes), in chunks that
    /// each hold the writer only briefly.
    async fn prune_forever(&self) {
        let r = &self.inner.settings.retention;
        let every = (r.archive.min(r.deliveries) / 4).clamp(PRUNE_MIN, PRUNE_MAX);
        loop {
            let (events, jobs) = match self.prune_once().await {
                Ok(counts) => counts,
                Err(EngineError::ShuttingDown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the store failed; trying again later");
                    (0, 0)
                }
            };
            if events + jobs > 0 {
                tracing::info!(events, jobs, "retention: pruned old events and deliveries");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over everything past retention; returns (events, jobs) removed.
    async fn prune_once(&self) -> Result<(usize, usize), EngineError> {
        let r = &self.inner.settings.retention;
        let now = now_ms();
        let events_before = now.saturating_sub(millis(r.archive));
        let jobs_before = now.saturating_sub(millis(r.deliveries));
        let (mut events, mut jobs) = (0, 0);
        let mut cursor = PruneCursor::default();
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(EngineError::ShuttingDown);
            }
            let (p, next) = self
                .inner
                .writer
                .read(move |s| {
                    let mut c = cursor;
                    s.prune(events_before, jobs_before, PRUNE_CHUNK, &mut c)
                        .map(|p| (p, c))
                })
                .await?;
            cursor = next;
            metrics::counter!("fleetbus_store_pruned_total", "kind" => "events")
                .increment(p.events as u64);
            metrics::counter!("fleetbus_store_pruned_total", "kind" => "deliveries")
                .increment(p.jobs as u64);
            events += p.events;
            jobs += p.jobs;
            if !p.more {
                return Ok((events, jobs));
            }
        }
    }

    fn start_schedules(&self) {
        let token = self.inner.shutdown.child_token();
        let old = std::mem::replace(
            &mut *self
                .inner
                .schedules
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            token.clone(),
        );
        old.cancel();
        let rules = self.rules();
        for rule in rules.rules.iter().filter(|r| r.enabled) {
            let Some(schedule) = rule.schedule.clone() else {
                continue;
            };
            let engine = self.clone();
            let name = rule.name.clone();
            let bus = rule.bus.clone();
            let token = token.clone();
            self.inner
                .tasks
                .spawn(async move { engine.run_schedule(name, bus, schedule, token).await });
        }
    }

    async fn run_schedule(
        &self,
        rule: String,
        bus: String,
        schedule: Schedule,
        token: CancellationToken,
    ) {
        let start = self.inner.started;
        let mut after = OffsetDateTime::now_utc();
        loop {
            let Some(at) = schedule.next_after(start, after) else {
                tracing::info!(rule = %rule, "schedule has no future firing");
                return;
            };
            let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            let wait = Duration::from_millis(wait.whole_milliseconds() as u64);
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let s = &self.inner.settings;
            let mut event = Event::new(SCHEDULER_SOURCE, "Scheduled Event", Map::new());
            event.id = Engine::new_event_id();
            event.time = at;
            event.account = s.account.clone();
            event.region = s.region.clone();
            event.resources = vec![format!(
                "arn:fleetbus:events:{}:{}:rule/{}",
                s.region, s.account, rule
            )];
            let meta = Meta::ingested(bus.clone(), "scheduler");
            if let Err(e) = self.put_for_rule(&rule, event, meta).await {
                tracing::error!(rule = %rule, error = %e, "scheduled event not stored");
            }
            after = at;
        }
    }

    /// Replaces the rules with those of `config`. Events committed before the swap
    /// keep the jobs they got; later events match the new rules; nothing is lost or
    /// delivered twice.
    pub fn reload(&self, config: &Config) -> Result<(), EngineError> {
        let rules = Arc::new(RuleSet::build(config)?);
        tracing::info!(rules = ?rules.summary(), "configuration reloaded");
        *self.inner.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        self.start_schedules();
        self.inner.wake.notify_one();
        Ok(())
    }

    pub async fn counts(&self) -> Result<Counts, EngineError> {
        self.inner.writer.read(|s| s.counts()).await
    }

    pub async fn dlq_list(&self, limit: usize) -> Result<Vec<DlqEntry>, EngineError> {
        self.inner.writer.read(move |s| s.dlq_list(limit)).await
    }

    /// Sends dead-lettered jobs (all, or the given ids) back for delivery.
    pub async fn dlq_redrive(&self, ids: Option<Vec<i64>>) -> Result<Vec<i64>, EngineError> {
        let moved = self
            .inner
            .writer
            .read(move |s| s.dlq_redrive(ids.as_deref(), now_ms()))
            .await?;
        let pending = self
            .inner
            .backlog
            .fetch_add(moved.len() as u64, Ordering::Relaxed)
            + moved.len() as u64;
        engine_backlog_set(&self.inner, pending);
        self.inner.wake.notify_one();
        Ok(moved)
    }

    pub async fn event(&self, id: String) -> Result<Option<StoredEvent>, EngineError> {
        self.inner.writer.read(move |s| s.event(&id)).await
    }

    pub async fn timeline(
        &self,
        resource: String,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        self.inner
            .writer
            .read(move |s| s.timeline(&resource, limit))
            .await
    }

    /// Stops intake and scheduling, lets deliveries in flight finish for the grace
    /// period, then returns. Unfinished jobs stay pending for the next start.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(self.inner.settings.shutdown_grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("deliveries still in flight at shutdown are left pending and will be retried on start");
        }
    }
}

/// Publishes the delivery backlog.
fn engine_backlog_set(inner: &Inner, pending: u64) {
    inner.backlog_gauge.set(pending as f64);
}

/// A duration in the store's unit, saturating: "keep for ever" written as a huge
/// duration must not wrap into the past.
fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Exponential backoff with full jitter: 1 s doubling per attempt, capped at 5 min,
/// drawn uniformly from the upper half so retries spread without collapsing to 0.
pub(crate) fn backoff(attempts: u32) -> Duration {
    let base_ms = 1000u64
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(300_000);
    Duration::from_millis(base_ms / 2 + fastrand::u64(0..=base_ms / 2))
}

/// The value used as an idempotency key and in logs for a job.
pub fn idempotency_key(event_id: &str, rule: &str, target: &str) -> String {
    format!("{event_id}:{rule}:{target}")
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
    let _ = Value::Null;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for attempt in 1..30 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (1000u64 << (attempt - 1).min(20)).min(300_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d}");
        }
    }
}
