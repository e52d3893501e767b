//! Storage behind one trait: the event log and archive, the delivery queue and the
//! dead-letter queue. The engine drives a store from one writer thread (see
//! `crate::writer`), so implementations are plain synchronous code. SQLite
//! ([`sqlite`]) is the one backend; [`StoreError`] names no backend type, and the
//! conformance suite in `fleetbus-test-support` (feature `store`) says what any
//! backend must do.

pub mod sqlite;

use std::path::Path;

use fleetbus_config::Storage;

use std::sync::Arc;

use fleetbus_event::{Meta, StoredEvent};

/// Milliseconds since the Unix epoch: the store's one clock unit.
pub type Millis = i64;

/// Why storage failed, in terms any backend can give: each backend turns its own
/// errors into these (SQLite's in [`sqlite`]), saying whether a retry may help.
#[derive(Debug, thiserror::Error)]
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
pub fn open(storage: &Storage, data_dir: &Path) -> Result<Box<dyn Store>, StoreError> {
    match storage {
        Storage::Sqlite { dir } => Ok(Box::new(sqlite::SqliteStore::open(
            dir.as_deref().unwrap_or(data_dir),
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
    pub created_at: Millis,
    pub event: Arc<StoredEvent>,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobUpdate {
    Done {
        id: i64,
        attempts: u32,
        status: String,
    },
    Retry {
        id: i64,
        attempts: u32,
        next_at: Millis,
        error: String,
    },
    Dead {
        id: i64,
        attempts: u32,
        error: String,
    },
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

/// The storage contract. One writer calls it; every method is a transaction.
/// Appended events are stored as [`NewEvent::body`] and read back as `StoredEvent`.
pub trait Store: Send + 'static {
    /// Appends events and applies job updates in one transaction (group commit).
    /// An event whose (source, id) was received less than `dedup_window_ms` before
    /// it (by `meta.received_at`) is a duplicate and dropped.
    fn commit(
        &mut self,
        events: &[NewEvent],
        updates: &[JobUpdate],
        now: Millis,
        dedup_window_ms: Millis,
    ) -> Result<Vec<Appended>, StoreError>;

    /// Pending jobs due at `now`, oldest first, skipping `exclude` (in flight).
    fn due_jobs(
        &mut self,
        now: Millis,
        limit: usize,
        exclude: &dyn Fn(i64) -> bool,
    ) -> Result<Vec<Job>, StoreError>;

    /// The earliest `next_at` after `now` among pending jobs: when a retry falls
    /// due. (Jobs due already are in flight or returned by [`Store::due_jobs`].)
    fn next_due(&mut self, now: Millis) -> Result<Option<Millis>, StoreError>;

    fn counts(&mut self) -> Result<Counts, StoreError>;

    /// Jobs waiting for delivery (due or not, in flight included): the backlog.
    fn pending_jobs(&mut self) -> Result<u64, StoreError>;

    fn dlq_list(&mut self, limit: usize) -> Result<Vec<DlqEntry>, StoreError>;

    /// Moves dead jobs (all, or the given ids) back to pending with a fresh attempt
    /// count; returns the ids moved.
    fn dlq_redrive(&mut self, ids: Option<&[i64]>, now: Millis) -> Result<Vec<i64>, StoreError>;

    /// An event by id.
    fn event(&mut self, id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// A node's timeline: events naming `resource`, newest first.
    fn timeline(&mut self, resource: &str, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events received in `[from, to)`, oldest first, for replay and trends.
    fn events_between(
        &mut self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// One chunk of a pruning pass, in one short transaction: looks at up to
    /// `limit` archived events received before `events_before`, after `cursor`,
    /// and drops those without a pending or dead job; drops up to `limit` finished
    /// or dead jobs last updated before `jobs_before`. A pass starts with a
    /// default cursor and goes on while [`Pruned::more`].
    fn prune(
        &mut self,
        events_before: Millis,
        jobs_before: Millis,
        limit: usize,
        cursor: &mut PruneCursor,
    ) -> Result<Pruned, StoreError>;
}

/// Where a pruning pass has got to: the last event looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCursor {
    /// (received_at, seq) of the last event examined.
    pub after: Option<(Millis, i64)>,
}

/// What one [`Store::prune`] call removed.
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
