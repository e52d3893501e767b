//! Storage behind a contract split by role: the event log ([`EventLog`]), the
//! delivery queue with claims under a lease and fenced completion ([`JobQueue`]),
//! archive reads ([`Archive`]), the dead-letter queue ([`DeadLetters`]),
//! housekeeping ([`Maintenance`]), [`Leadership`] for work one process does
//! alone, [`Replays`] (re-delivery of archived events, resumable) and
//! [`ApiRules`] (rules made through the API). Every call is async and answers a [`StoreError`] that names no backend
//! type and says whether a retry may help. SQLite ([`sqlite`]) is the one backend
//! today; the conformance suite in `fleetbus-test-support` (feature `store`) says
//! what any backend must do.

pub mod sqlite;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use fleetbus_config::Storage;

use fleetbus_event::{Meta, StoredEvent};

/// Milliseconds since the Unix epoch: the store's one clock unit.
pub type Millis = i64;

/// Why storage failed, in terms any backend can give: each backend turns its own
/// errors into these (SQLite's in [`sqlite`]), saying whether a retry may help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend refused or failed an operation.
    #[error("{backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
        /// A busy or locked database, a lost connection: may succeed later.
        retryable: bool,
    },
    #[error("stored event {seq} is unreadable: {reason}")]
    Corrupt { seq: i64, reason: String },
    #[error("cannot open store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// True when trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::Closed => true,
            StoreError::Corrupt { .. } | StoreError::Open { .. } => false,
        }
    }
}

/// Opens the store `storage:` names; `data_dir` is where a store without a path of
/// its own lives.
pub fn open(
    storage: &Storage,
    data_dir: &Path,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    match storage {
        Storage::Sqlite { dir } => Ok(Arc::new(sqlite::SqliteStore::open(
            dir.as_deref().unwrap_or(data_dir),
            options,
        )?)),
    }
}

/// An event to append, with the delivery jobs its match produced, atomically.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Shared with the jobs that deliver it, so nothing copies the event.
    pub stored: Arc<StoredEvent>,
    /// `stored` as JSON, the form kept in the log: made once, off the writer
    /// thread, from the bytes the matcher already saw.
    pub body: String,
    /// (rule, target) pairs to deliver to.
    pub jobs: Vec<(String, String)>,
    /// Rules whose `exempt` pattern suppressed them for this event.
    pub suppressed: Vec<String>,
    /// A large part kept beside the event (claim-check), stored with it in the same
    /// transaction, or not at all when the event is a duplicate.
    pub attachment: Option<Arc<Attachment>>,
    /// Kept at least until then (ms), past the default retention: a named archive
    /// with a longer retention holds it.
    pub keep_until: Option<Millis>,
}

/// What a claim-check keeps beside an event: a part too large for the event
/// itself (the full answer to an MDM command), read with [`Archive::attachment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its MIME type (`application/json`, `application/x-plist`).
    pub content_type: String,
    pub body: Vec<u8>,
}

impl NewEvent {
    /// Builds the record from the event's compact JSON (as [`fleetbus_event::Event::to_json`]
    /// gives it) without serializing the event a second time.
    pub fn new(
        stored: StoredEvent,
        event_json: &[u8],
        jobs: Vec<(String, String)>,
        suppressed: Vec<String>,
    ) -> Result<NewEvent, StoreError> {
        let body = encode_body(event_json, &stored.meta)?;
        Ok(NewEvent {
            stored: Arc::new(stored),
            body,
            jobs,
            suppressed,
            attachment: None,
            keep_until: None,
        })
    }
}

/// `{"event":<event>,"meta":<meta>}`: byte for byte what serializing a
/// [`StoredEvent`] gives, around event JSON that is already made.
fn encode_body(event_json: &[u8], meta: &Meta) -> Result<String, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { seq: 0, reason };
    let event = std::str::from_utf8(event_json)
        .map_err(|e| corrupt(format!("event JSON is not UTF-8: {e}")))?;
    let meta = serde_json::to_string(meta).map_err(|e| corrupt(e.to_string()))?;
    let mut body = String::with_capacity(event.len() + meta.len() + 20);
    body.push_str("{\"event\":");
    body.push_str(event);
    body.push_str(",\"meta\":");
    body.push_str(&meta);
    body.push('}');
    Ok(body)
}

/// The answer for one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Durable, with its log sequence number and its jobs' ids (in `jobs` order).
    Stored { seq: i64, job_ids: Vec<i64> },
    /// The same (source, id) arrived within the dedup window: accepted, dropped.
    Duplicate,
}

/// A pending delivery job with the event it delivers.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub rule: String,
    pub target: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The fence of the claim this job was handed out under: its completion must
    /// carry it.
    pub fence: u64,
    pub created_at: Millis,
    /// For a replay's job, the event carries the replay's name (`replay-name`).
    pub event: Arc<StoredEvent>,
}

/// What happened to a job, under the claim with `fence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobUpdate {
    Done {
        id: i64,
        fence: u64,
        attempts: u32,
        status: String,
    },
    Retry {
        id: i64,
        fence: u64,
        attempts: u32,
        next_at: Millis,
        error: String,
    },
    Dead {
        id: i64,
        fence: u64,
        attempts: u32,
        error: String,
    },
}

impl JobUpdate {
    pub fn id(&self) -> i64 {
        match self {
            JobUpdate::Done { id, .. }
            | JobUpdate::Retry { id, .. }
            | JobUpdate::Dead { id, .. } => *id,
        }
    }

    pub fn fence(&self) -> u64 {
        match self {
            JobUpdate::Done { fence, .. }
            | JobUpdate::Retry { fence, .. }
            | JobUpdate::Dead { fence, .. } => *fence,
        }
    }
}

/// Which archived events a query asks for. Every filter is optional; positions
/// are the store's own (`seq`, in commit order), opaque to callers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub source: Option<String>,
    pub detail_type: Option<String>,
    /// Events naming this resource.
    pub resource: Option<String>,
    /// Received at or after (ms).
    pub since: Option<Millis>,
    /// Received before (ms).
    pub until: Option<Millis>,
    /// Oldest first (default newest first).
    pub oldest_first: bool,
    /// Go on after this position (exclusive): a previous page's `next`.
    pub after: Option<i64>,
    /// Events at most in the page.
    pub limit: usize,
}

/// One page of a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPage {
    /// Matching events with their positions, in the query's order.
    pub events: Vec<(i64, StoredEvent)>,
    /// Where the next page starts, or `None` when the range is exhausted. A page
    /// may hold fewer than `limit` events and still have a `next`: each call looks
    /// at a bounded window of positions.
    pub next: Option<i64>,
    /// Positions this page covered (at most the window asked for).
    pub scanned: u64,
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DlqEntry {
    pub job_id: i64,
    pub event_id: String,
    pub rule: String,
    pub target: String,
    pub attempts: u32,
    pub error: String,
    pub failed_at: Millis,
}

/// Counts for health, metrics and backpressure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub events: u64,
    pub pending_jobs: u64,
    pub dead_jobs: u64,
}

/// A boxed future answering a store call: the role traits are object safe, so the
/// engine holds any backend as one `Arc<dyn Store>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a batch of completions did.
#[derive(Debug, Default)]
pub struct Completed {
    /// The outcome events appended with the completions, with their answers.
    pub appended: Vec<(NewEvent, Appended)>,
    /// Jobs whose completion was refused because their fence is stale: the job was
    /// claimed again (its lease ran out) since this attempt started. The newer
    /// claim decides what happens to it.
    pub fenced: Vec<i64>,
}

/// The event log: appending events with the delivery jobs their match produced.
pub trait EventLog: Send + Sync {
    /// Appends `events`, in order, each with its jobs, atomically and durably. An
    /// event whose (source, id) was received less than the dedup window before it
    /// (by `meta.received_at`) is a [`Appended::Duplicate`] and adds nothing. The
    /// new jobs are claimed by the caller at once (fence [`FIRST_FENCE`], leased
    /// until `now` plus the lease): the appender delivers them without a claim of
    /// its own, and nobody else can take them while the lease holds. The events
    /// come back with their answers, in order.
    fn append(
        &self,
        events: Vec<NewEvent>,
        now: Millis,
    ) -> StoreFuture<'_, Vec<(NewEvent, Appended)>>;
}

/// The delivery queue: jobs are claimed under a lease and completed with the fence
/// of their claim.
pub trait JobQueue: Send + Sync {
    /// Claims up to `limit` pending jobs due at `now` and not leased, oldest first:
    /// each comes back with a new fence, leased until `now` plus the lease.
    fn claim(&self, now: Millis, limit: usize) -> StoreFuture<'_, Vec<Job>>;

    /// Applies attempts' outcomes and appends their outcome events in one
    /// transaction. An update whose fence is not the job's latest is not applied
    /// (see [`Completed::fenced`]); the events are appended regardless, as
    /// [`EventLog::append`] does.
    fn complete(
        &self,
        updates: Vec<JobUpdate>,
        events: Vec<NewEvent>,
        now: Millis,
    ) -> StoreFuture<'_, Completed>;

    /// Ends the given claims (job id, fence) early: the jobs are due at `now` for
    /// anyone to claim. A claim that is no longer the job's latest is left alone.
    fn release(&self, jobs: Vec<(i64, u64)>, now: Millis) -> StoreFuture<'_, ()>;

    /// The earliest time after `now` at which a pending job falls due (a retry's
    /// time, or a lease running out).
    fn next_due(&self, now: Millis) -> StoreFuture<'_, Option<Millis>>;

    /// Jobs waiting for delivery (due or not, claimed or not): the backlog.
    fn pending_jobs(&self) -> StoreFuture<'_, u64>;
}

/// Reading the archive.
pub trait Archive: Send + Sync {
    /// The latest event with `id`.
    fn event(&self, id: String) -> StoreFuture<'_, Option<StoredEvent>>;

    /// A node's timeline: events naming `resource`, newest first.
    fn timeline(&self, resource: String, limit: usize) -> StoreFuture<'_, Vec<StoredEvent>>;

    /// Events received in `[from, to)`, oldest first, for replay and trends.
    fn events_between(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredEvent>>;

    /// One page of `query`, looking at no more than `window` positions: stable
    /// under concurrent appends (positions grow in commit order, so following
    /// `next` never skips or repeats an event).
    fn query(&self, query: EventQuery, window: u64) -> StoreFuture<'_, EventPage>;

    /// The events `id` caused directly (whose `meta.causation_id` is `id`),
    /// oldest first, at most `limit`.
    fn effects(&self, id: String, limit: usize) -> StoreFuture<'_, Vec<StoredEvent>>;

    /// The attachment kept beside the latest event with `id`, if it has one. It
    /// is pruned with its event.
    fn attachment(&self, id: String) -> StoreFuture<'_, Option<Attachment>>;

    /// Events received in `[from, to)` counted per `field` and per bucket of
    /// `bucket_ms` counted from `origin` (at or before `from`): (bucket index,
    /// value, count), in no particular order. The backend counts (no event is
    /// read out).
    fn count_grouped(
        &self,
        field: GroupField,
        origin: Millis,
        from: Millis,
        to: Millis,
        bucket_ms: Millis,
    ) -> StoreFuture<'_, Vec<(u64, String, u64)>>;
}

/// An envelope field the archive counts by without reading events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupField {
    DetailType,
    Source,
}

/// The dead-letter queue.
pub trait DeadLetters: Send + Sync {
    /// Dead jobs, oldest failure first.
    fn dlq_list(&self, limit: usize) -> StoreFuture<'_, Vec<DlqEntry>>;

    /// Moves dead jobs (all, or the given ids) back to pending and due at `now`,
    /// with a fresh attempt count; returns the ids moved.
    fn dlq_redrive(&self, ids: Option<Vec<i64>>, now: Millis) -> StoreFuture<'_, Vec<i64>>;
}

/// Housekeeping.
pub trait Maintenance: Send + Sync {
    /// Counts for health, metrics and backpressure.
    fn counts(&self) -> StoreFuture<'_, Counts>;

    /// One chunk of a pruning pass, in one short transaction: looks at up to
    /// `limit` archived events received before `events_before`, after `cursor`,
    /// and drops those without a pending or dead job and not kept past `now`
    /// ([`NewEvent::keep_until`]); drops up to `limit` finished or dead jobs last
    /// updated before `jobs_before`. A pass starts with a default cursor and goes
    /// on, with the cursor returned, while [`Pruned::more`].
    fn prune(
        &self,
        now: Millis,
        events_before: Millis,
        jobs_before: Millis,
        limit: usize,
        cursor: PruneCursor,
    ) -> StoreFuture<'_, (Pruned, PruneCursor)>;
}

/// Work that one process of several sharing a store must do alone (pruning,
/// firing schedules).
pub trait Leadership: Send + Sync {
    /// Takes or renews `role` for `holder` until `now + ttl_ms`; true when `holder`
    /// holds it. Another holder gets it only once the lease has run out unrenewed.
    fn lead(
        &self,
        role: &'static str,
        holder: String,
        now: Millis,
        ttl_ms: Millis,
    ) -> StoreFuture<'_, bool>;
}

/// Replays: archived events delivered again to chosen rules. A replay is created
/// once by name, advances in steps that each queue one page's jobs and move its
/// cursor in the same transaction (so a replay resumes after a crash without
/// skipping or repeating a page), and ends in a final state.
pub trait Replays: Send + Sync {
    /// Creates `spec` in [`ReplayState::Starting`]; false when the name is taken.
    fn replay_create(&self, spec: ReplaySpec, now: Millis) -> StoreFuture<'_, bool>;

    fn replay(&self, name: String) -> StoreFuture<'_, Option<Replay>>;

    /// Replays, most recently started first, at most `limit`.
    fn replays(&self, limit: usize) -> StoreFuture<'_, Vec<Replay>>;

    /// Moves `name` to `to` when it is in one of `from`; true when it moved. A
    /// final state sets the end time.
    fn replay_state(
        &self,
        name: String,
        from: Vec<ReplayState>,
        to: ReplayState,
        reason: Option<String>,
        now: Millis,
    ) -> StoreFuture<'_, bool>;

    /// One step of a running replay: queues `jobs` (pending, due at `now`, marked
    /// with the replay's name), sets the cursor to `cursor` and adds `events` and
    /// the jobs to its counts, atomically. Answers the jobs' ids, or `None` (and
    /// changes nothing) when the replay is no longer [`ReplayState::Running`].
    fn replay_advance(&self, step: ReplayStep, now: Millis) -> StoreFuture<'_, Option<Vec<i64>>>;
}

/// A replay's state, as EventBridge's `ReplayState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayState {
    Starting,
    Running,
    Cancelling,
    Completed,
    Cancelled,
    Failed,
}

impl ReplayState {
    pub const ALL: [ReplayState; 6] = [
        ReplayState::Starting,
        ReplayState::Running,
        ReplayState::Cancelling,
        ReplayState::Completed,
        ReplayState::Cancelled,
        ReplayState::Failed,
    ];

    /// EventBridge's spelling: `STARTING`, `RUNNING`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayState::Starting => "STARTING",
            ReplayState::Running => "RUNNING",
            ReplayState::Cancelling => "CANCELLING",
            ReplayState::Completed => "COMPLETED",
            ReplayState::Cancelled => "CANCELLED",
            ReplayState::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<ReplayState> {
        ReplayState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Completed, cancelled or failed: nothing more happens.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReplayState::Completed | ReplayState::Cancelled | ReplayState::Failed
        )
    }
}

/// What a replay re-delivers: the events of `archive` received in `[from, to)`,
/// to `rules` of `bus` (every rule of the bus when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySpec {
    pub name: String,
    pub description: Option<String>,
    pub archive: String,
    pub bus: String,
    pub from: Millis,
    pub to: Millis,
    pub rules: Vec<String>,
}

/// A replay as stored: its spec and where it has got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub spec: ReplaySpec,
    pub state: ReplayState,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// The store position of the last event looked at (opaque), `None` before
    /// the first step.
    pub cursor: Option<i64>,
    /// Receipt time of the last event replayed (EventBridge's
    /// `EventLastReplayedTime`).
    pub last_replayed: Option<Millis>,
    /// Events replayed (matched one of the chosen rules) and jobs queued so far.
    pub events: u64,
    pub jobs: u64,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

/// One step of a replay ([`Replays::replay_advance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayStep {
    pub name: String,
    /// (event position, rule, target) to deliver.
    pub jobs: Vec<(i64, String, String)>,
    pub cursor: i64,
    pub last_replayed: Option<Millis>,
    /// Events of this step that were replayed.
    pub events: u64,
}

/// Rules made through the API, kept as documents (JSON) by bus and name, so
/// they survive restarts beside the configuration's.
pub trait ApiRules: Send + Sync {
    /// Every API rule's document, by (bus, name).
    fn api_rules(&self) -> StoreFuture<'_, Vec<String>>;

    /// Creates or replaces the rule `(bus, name)`.
    fn api_rule_put(
        &self,
        bus: String,
        name: String,
        doc: String,
        now: Millis,
    ) -> StoreFuture<'_, ()>;

    /// Removes the rule; false when there was none.
    fn api_rule_delete(&self, bus: String, name: String) -> StoreFuture<'_, bool>;

    /// Every archive made through the API (its document), by name.
    fn api_archives(&self) -> StoreFuture<'_, Vec<String>>;

    /// Creates or replaces the archive `name`.
    fn api_archive_put(&self, name: String, doc: String, now: Millis) -> StoreFuture<'_, ()>;

    /// Removes the archive; false when there was none.
    fn api_archive_delete(&self, name: String) -> StoreFuture<'_, bool>;
}

/// Time series the metrics targets count into: per series, hourly buckets of
/// counts per dimension set (a JSON object of strings), and running totals.
pub trait Series: Send + Sync {
    /// Counts `count` events of `series` in the bucket starting at `bucket` (ms)
    /// under `dims`; a dimension set the series does not have yet, once it has
    /// `max_series`, is counted under `{"_overflow": "true"}` instead.
    fn series_add(
        &self,
        series: String,
        bucket: Millis,
        dims: String,
        count: u64,
        max_series: u32,
    ) -> StoreFuture<'_, ()>;

    /// (bucket start, dimension set, count) of `series` in `[from, to)`.
    fn series_read(
        &self,
        series: String,
        from: Millis,
        to: Millis,
    ) -> StoreFuture<'_, Vec<(Millis, String, u64)>>;

    /// (dimension set, count) of `series` since it began.
    fn series_totals(&self, series: String) -> StoreFuture<'_, Vec<(String, u64)>>;
}

/// The dimension set counted when a series has all it may keep.
pub const SERIES_OVERFLOW: &str = "{\"_overflow\":\"true\"}";

/// A whole backend: every role.
pub trait Store:
    EventLog + JobQueue + Archive + DeadLetters + Maintenance + Leadership + Replays + ApiRules + Series
{
}

impl<
        T: EventLog
            + JobQueue
            + Archive
            + DeadLetters
            + Maintenance
            + Leadership
            + Replays
            + ApiRules
            + Series,
    > Store for T
{
}

/// The fence of a job's first claim, the one its appender holds.
pub const FIRST_FENCE: u64 = 1;

/// Settings every backend honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A repeat of (source, id) received within this long is a duplicate.
    pub dedup_window_ms: Millis,
    /// How long a claim holds a job before another may take it.
    pub lease_ms: Millis,
}

impl StoreOptions {
    /// Claims last five minutes: longer than any delivery's timeout, and an owner
    /// still working on a job renews its claim by claiming it again.
    pub const DEFAULT_LEASE_MS: Millis = 5 * 60_000;

    /// The options `server:` sets.
    pub fn from_config(config: &fleetbus_config::Config) -> StoreOptions {
        StoreOptions::new(config.server.dedup_window)
    }

    pub fn new(dedup_window: std::time::Duration) -> StoreOptions {
        StoreOptions {
            dedup_window_ms: Millis::try_from(dedup_window.as_millis()).unwrap_or(Millis::MAX),
            lease_ms: Self::DEFAULT_LEASE_MS,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> Millis {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Where a pruning pass has got to: the last event looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCursor {
    /// (received_at, seq) of the last event examined.
    pub after: Option<(Millis, i64)>,
}

/// What one [`Maintenance::prune`] call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: usize,
    pub jobs: usize,
    /// The pass is not finished: call again with the same cursor.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::Event;

    #[test]
    fn body_is_what_serde_makes_of_the_stored_event() {
        let mut event = Event::new("s", "t \"quoted\"", Default::default());
        event.resources = vec!["device/é".into()];
        let stored = StoredEvent {
            meta: Meta::caused_by(
                &StoredEvent {
                    event: event.clone(),
                    meta: Meta::ingested("default", "api"),
                },
                "default",
                "delivery",
            ),
            event,
        };
        let new = NewEvent::new(stored.clone(), &stored.event.to_json(), vec![], vec![]).unwrap();
        assert_eq!(new.body, serde_json::to_string(&stored).unwrap());
        let back: StoredEvent = serde_json::from_str(&new.body).unwrap();
        assert_eq!(back, stored);
    }
}
