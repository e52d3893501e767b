//! The running engine: the handle, its state and its settings, start, reload,
//! queries and shutdown. Each concern of the running engine is a module of its own:
//! - `ingest`: matching events and committing them with their jobs;
//! - `dispatch`: finding due jobs and running deliveries;
//! - `retry`: whether and when a failed delivery is tried again (a pure decision);
//! - `record`: committing outcomes and outcome events in batches;
//! - `prune`: retention;
//! - `schedule`: `rate`/`cron` rules;
//! - `replay`: archived events delivered again (EventBridge's replays);
//! - `series`: the metrics targets' time series, counted in the store.

mod archive;
pub use archive::{
    CountKey, CountQuery, CountSeries, Trace, TraceNode, COUNT_BUCKETS, QUERY_LIMIT, QUERY_SCAN,
};
mod chain;
mod dispatch;
mod ingest;
mod prune;
mod record;
mod replay;
pub use replay::{ReplayRequest, REPLAY_LIST_LIMIT};
mod retry;
mod schedule;
mod series;
pub use series::{Dimensions, SERIES_BUCKET_MS};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fleetbus_config::{ApiArchive, ApiRule, Config};
use fleetbus_event::StoredEvent;
use fleetbus_targets::kinds::metrics::SeriesSink;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rules::RuleSet;
use crate::store::{now_ms, Counts, DlqEntry, Job, JobUpdate, Millis, NewEvent, Store};
use crate::EngineError;

/// Source of delivery outcome events.
pub const DELIVERY_SOURCE: &str = "fleetbus.delivery";
/// Source of scheduled events.
pub const SCHEDULER_SOURCE: &str = "fleetbus.scheduler";

/// Settings the engine takes from `server:` in the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hop_limit: u32,
    /// Events one causation chain may put on the buses.
    pub chain_budget: u32,
    pub max_backlog: u64,
    pub account: String,
    pub region: String,
    /// How long shutdown waits for deliveries in flight.
    pub shutdown_grace: Duration,
    /// The asset store the mdm and assets targets use.
    pub assets: Option<fleetbus_assets::AsyncAssetStore>,
    /// How long archived events and finished deliveries are kept.
    pub retention: fleetbus_config::Retention,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            hop_limit: config.server.hop_limit,
            chain_budget: config.server.chain_budget,
            max_backlog: config.server.max_backlog,
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

struct Inner {
    store: Arc<dyn Store>,
    /// This process among any sharing the store: who holds leadership.
    holder: String,
    rules: RwLock<Arc<RuleSet>>,
    /// Rules made through the API, run beside the configuration's.
    api: RwLock<Arc<Vec<ApiRule>>>,
    /// Archives made through the API, kept beside the configuration's.
    api_archives: RwLock<Arc<Vec<ApiArchive>>>,
    /// Held while an API rule change is checked, stored and swapped in, so two
    /// changes cannot lose one another.
    api_change: tokio::sync::Mutex<()>,
    /// Where metrics targets count (the store).
    series: Arc<dyn SeriesSink>,
    settings: Settings,
    backlog: AtomicU64,
    /// Events per causation chain (the loop guard for fan-out).
    chains: chain::Chains,
    /// Jobs this process owns (queued or running), with the fence of their latest
    /// claim: a job is started at most once per process while it is here, and its
    /// completion carries the newest fence (a re-claim of an owned job renews it).
    inflight: Mutex<HashMap<i64, u64>>,
    ready: mpsc::Sender<Ready>,
    /// `fleetbus_delivery_backlog`, looked up once: it is set on every enqueue.
    backlog_gauge: metrics::Gauge,
    finished: mpsc::Sender<Finished>,
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
    /// Starts the engine on a store: the dispatcher, the recorder, the scheduler
    /// and the pruner. Pending jobs left by a previous run are delivered again.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        settings: Settings,
    ) -> Result<Engine, EngineError> {
        let archives = load_api_archives(&*store, config).await?;
        let with_archives = config
            .with_api_archives(&archives)
            .map_err(|(rule, message)| EngineError::Rule { rule, message })?;
        let api = load_api_rules(&*store, &with_archives).await?;
        let merged = with_archives
            .with_api_rules(&api)
            .map_err(|(rule, message)| EngineError::Rule { rule, message })?;
        let series: Arc<dyn SeriesSink> = Arc::new(series::StoreSeries(store.clone()));
        let rules = Arc::new(RuleSet::build(
            &merged,
            settings.assets.as_ref(),
            Some(&series),
        )?);
        let counts = store.counts().await?;
        let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE);
        let (finished_tx, finished_rx) = mpsc::channel(FINISHED_QUEUE);
        let inner = Arc::new(Inner {
            store,
            holder: uuid::Uuid::new_v4().to_string(),
            rules: RwLock::new(rules),
            api: RwLock::new(Arc::new(api)),
            api_archives: RwLock::new(Arc::new(archives)),
            api_change: tokio::sync::Mutex::new(()),
            series,
            chains: chain::Chains::new(settings.chain_budget),
            settings,
            backlog: AtomicU64::new(counts.pending_jobs),
            inflight: Mutex::new(HashMap::new()),
            ready: ready_tx,
            backlog_gauge: fleetbus_telemetry::catalogue::DELIVERY_BACKLOG.get(),
            finished: finished_tx,
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
        engine.resume_replays();
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

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub fn has_bus(&self, bus: &str) -> bool {
        self.rules().has_bus(bus)
    }

    pub(super) fn rules(&self) -> Arc<RuleSet> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the rules with those of `config`. Events committed before the swap
    /// keep the jobs they got; later events match the new rules; nothing is lost or
    /// delivered twice.
    pub fn reload(&self, config: &Config) -> Result<(), EngineError> {
        let merged =
            merge(config, &self.api_rules(), &self.api_archives()).map_err(|(rule, message)| {
                EngineError::Rule {
                    rule,
                    message: format!("made through the API: {message}"),
                }
            })?;
        let rules = Arc::new(RuleSet::build(
            &merged,
            self.inner.settings.assets.as_ref(),
            Some(&self.inner.series),
        )?);
        tracing::info!(rules = ?rules.summary(), "configuration reloaded");
        *self.inner.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        self.start_schedules();
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The rules made through the API.
    pub fn api_rules(&self) -> Arc<Vec<ApiRule>> {
        self.inner
            .api
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates or replaces an API rule (keeping nothing of an earlier one: the
    /// caller gives the whole rule) on top of `config`: checked, built, stored,
    /// then in effect for the next event.
    pub async fn put_api_rule(&self, config: &Config, rule: ApiRule) -> Result<(), EngineError> {
        let _one = self.inner.api_change.lock().await;
        let mut next: Vec<ApiRule> = self.api_rules().as_ref().clone();
        next.retain(|r| !(r.name == rule.name && r.bus == rule.bus));
        next.push(rule.clone());
        let doc = serde_json::to_string(&rule).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let rules = self.build_with(config, &next, &self.api_archives())?;
        self.inner
            .store
            .api_rule_put(rule.bus.clone(), rule.name.clone(), doc, now_ms())
            .await?;
        self.swap_api(next, rules);
        tracing::info!(rule = %rule.name, bus = %rule.bus, "rule put through the API");
        Ok(())
    }

    /// Deletes an API rule; false when there was none.
    pub async fn delete_api_rule(
        &self,
        config: &Config,
        bus: &str,
        name: &str,
    ) -> Result<bool, EngineError> {
        let _one = self.inner.api_change.lock().await;
        let mut next: Vec<ApiRule> = self.api_rules().as_ref().clone();
        let before = next.len();
        next.retain(|r| !(r.name == name && r.bus == bus));
        if next.len() == before {
            return Ok(false);
        }
        let rules = self.build_with(config, &next, &self.api_archives())?;
        self.inner
            .store
            .api_rule_delete(bus.to_owned(), name.to_owned())
            .await?;
        self.swap_api(next, rules);
        tracing::info!(rule = %name, bus = %bus, "rule deleted through the API");
        Ok(true)
    }

    fn build_with(
        &self,
        config: &Config,
        api: &[ApiRule],
        archives: &[ApiArchive],
    ) -> Result<Arc<RuleSet>, EngineError> {
        let merged = merge(config, api, archives)
            .map_err(|(name, message)| EngineError::Invalid(format!("{name:?}: {message}")))?;
        Ok(Arc::new(RuleSet::build(
            &merged,
            self.inner.settings.assets.as_ref(),
            Some(&self.inner.series),
        )?))
    }

    /// The archives made through the API.
    pub fn api_archives(&self) -> Arc<Vec<ApiArchive>> {
        self.inner
            .api_archives
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates or replaces an API archive on top of `config`: checked, stored,
    /// then in effect for the next event (and for replays).
    pub async fn put_api_archive(
        &self,
        config: &Config,
        archive: ApiArchive,
    ) -> Result<(), EngineError> {
        let _one = self.inner.api_change.lock().await;
        let mut next: Vec<ApiArchive> = self.api_archives().as_ref().clone();
        next.retain(|a| a.name != archive.name);
        next.push(archive.clone());
        let doc =
            serde_json::to_string(&archive).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let rules = self.build_with(config, &self.api_rules(), &next)?;
        self.inner
            .store
            .api_archive_put(archive.name.clone(), doc, now_ms())
            .await?;
        *self
            .inner
            .api_archives
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.swap_api(self.api_rules().as_ref().clone(), rules);
        tracing::info!(archive = %archive.name, "archive put through the API");
        Ok(())
    }

    /// Deletes an API archive; false when there was none.
    pub async fn delete_api_archive(
        &self,
        config: &Config,
        name: &str,
    ) -> Result<bool, EngineError> {
        let _one = self.inner.api_change.lock().await;
        let mut next: Vec<ApiArchive> = self.api_archives().as_ref().clone();
        let before = next.len();
        next.retain(|a| a.name != name);
        if next.len() == before {
            return Ok(false);
        }
        let rules = self.build_with(config, &self.api_rules(), &next)?;
        self.inner.store.api_archive_delete(name.to_owned()).await?;
        *self
            .inner
            .api_archives
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.swap_api(self.api_rules().as_ref().clone(), rules);
        Ok(true)
    }

    fn swap_api(&self, api: Vec<ApiRule>, rules: Arc<RuleSet>) {
        *self.inner.api.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(api);
        *self.inner.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        self.start_schedules();
        self.inner.wake.notify_one();
    }

    pub async fn counts(&self) -> Result<Counts, EngineError> {
        Ok(self.inner.store.counts().await?)
    }

    pub async fn dlq_list(&self, limit: usize) -> Result<Vec<DlqEntry>, EngineError> {
        Ok(self.inner.store.dlq_list(limit).await?)
    }

    /// Sends dead-lettered jobs (all, or the given ids) back for delivery.
    pub async fn dlq_redrive(&self, ids: Option<Vec<i64>>) -> Result<Vec<i64>, EngineError> {
        let moved = self.inner.store.dlq_redrive(ids, now_ms()).await?;
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
        Ok(self.inner.store.event(id).await?)
    }

    /// The attachment kept beside the event `id` (claim-check), if it has one.
    pub async fn attachment(
        &self,
        id: String,
    ) -> Result<Option<crate::store::Attachment>, EngineError> {
        Ok(self.inner.store.attachment(id).await?)
    }

    pub async fn timeline(
        &self,
        resource: String,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        Ok(self.inner.store.timeline(resource, limit).await?)
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

/// Shortest hold on a leadership role: a leader renews it each time it acts.
const LEADERSHIP_TTL: Millis = 60_000;

impl Engine {
    /// Takes or renews `role` for this process until `now + ttl_ms`.
    async fn lead(
        &self,
        role: &'static str,
        now: Millis,
        ttl_ms: Millis,
    ) -> Result<bool, EngineError> {
        Ok(self
            .inner
            .store
            .lead(role, self.inner.holder.clone(), now, ttl_ms)
            .await?)
    }
}

/// `config` with the API's archives and rules.
fn merge(
    config: &Config,
    rules: &[ApiRule],
    archives: &[ApiArchive],
) -> Result<Config, (String, String)> {
    config.with_api_archives(archives)?.with_api_rules(rules)
}

/// The API archives the store keeps that still fit `config` (others are left
/// out, saying why).
async fn load_api_archives(
    store: &dyn Store,
    config: &Config,
) -> Result<Vec<ApiArchive>, EngineError> {
    let mut out: Vec<ApiArchive> = Vec::new();
    for doc in store.api_archives().await? {
        match serde_json::from_str::<ApiArchive>(&doc) {
            Ok(a) => match a.to_archive(config) {
                Ok(_) if !config.archives.iter().any(|c| c.name == a.name) => out.push(a),
                Ok(_) => {
                    tracing::error!(archive = %a.name, "an archive made through the API has a name the configuration now declares; left out")
                }
                Err(why) => {
                    tracing::error!(archive = %a.name, error = %why, "an archive made through the API no longer fits the configuration; left out")
                }
            },
            Err(e) => {
                tracing::error!(error = %e, doc = %doc, "a stored API archive is unreadable; left out")
            }
        }
    }
    Ok(out)
}

/// The API rules the store keeps that still fit `config`; one that does not (its
/// name now taken by the configuration, its target gone) is left out, saying why.
async fn load_api_rules(store: &dyn Store, config: &Config) -> Result<Vec<ApiRule>, EngineError> {
    let mut out: Vec<ApiRule> = Vec::new();
    for doc in store.api_rules().await? {
        let rule: ApiRule = match serde_json::from_str(&doc) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, doc = %doc, "a stored API rule is unreadable; left out");
                continue;
            }
        };
        // Each rule on its own against the configuration (as `with_api_rules` checks
        // it), without building the whole merged configuration once per rule.
        let fits = if config.rules.iter().any(|r| r.name == rule.name) {
            Err("the configuration now declares a rule of this name".to_owned())
        } else {
            rule.to_rule(config).map(drop)
        };
        match fits {
            Ok(()) => out.push(rule),
            Err(why) => {
                tracing::error!(rule = %rule.name, error = %why, "a rule made through the API no longer fits the configuration; left out until it is put again")
            }
        }
    }
    Ok(out)
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

/// The value used as an idempotency key and in logs for a job.
pub fn idempotency_key(event_id: &str, rule: &str, target: &str) -> String {
    format!("{event_id}:{rule}:{target}")
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::StoreOptions;
    use fleetbus_event::{Event, Meta};

    const CONFIG: &str = "rules:
  - name: all
    event_pattern: {source: [test]}
    targets:
      - {id: file, kind: log, path: out.log}
";

    async fn engine(dir: &std::path::Path) -> Engine {
        let config = fleetbus_config::load_str("c.yaml", CONFIG, dir).unwrap();
        let store =
            SqliteStore::open(&dir.join("data"), StoreOptions::from_config(&config)).unwrap();
        Engine::start(&config, Arc::new(store), Settings::from_config(&config))
            .await
            .unwrap()
    }

    fn event(n: usize) -> (Event, Meta) {
        let mut e = Event::new("test", "Ping", serde_json::Map::new());
        e.id = format!("e-{n}");
        (e, Meta::ingested("default", "test"))
    }

    /// A job handed over in memory is owned before the put returns, so a store scan
    /// racing the hand-over cannot start it a second time (each start counted off the
    /// backlog, which once wrapped below zero and refused all ingest).
    #[tokio::test]
    async fn a_handed_over_job_is_owned_before_the_scan_can_see_it_and_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let answers = engine.put((0..20).map(event).collect()).await.unwrap();
        assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
        let owned = engine.inner.inflight.lock().unwrap().len();
        assert_eq!(owned, 20, "jobs not owned when the put returned");
        // Scans right away, while the hand-over queue may still hold the jobs.
        for _ in 0..5 {
            engine.scan().await;
        }
        let log = dir.path().join("out.log");
        for _ in 0..400 {
            let pending = engine.counts().await.unwrap().pending_jobs;
            if pending == 0 && engine.inner.inflight.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(lines.lines().count(), 20, "each job delivered exactly once");
        engine.scan().await;
        assert_eq!(engine.inner.backlog.load(Ordering::Relaxed), 0);
        engine.shutdown().await;
    }

    /// The backlog can never wrap below zero, and an idle scan sets it to what the
    /// store holds, whatever drift came before.
    #[tokio::test]
    async fn an_idle_scan_corrects_a_drifted_backlog_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        engine.inner.backlog.store(u64::MAX - 11, Ordering::Relaxed);
        assert!(engine.check_backpressure().is_err());
        engine.scan().await;
        assert_eq!(engine.inner.backlog.load(Ordering::Relaxed), 0);
        assert!(engine.check_backpressure().is_ok());
        engine.shutdown().await;
    }
}
