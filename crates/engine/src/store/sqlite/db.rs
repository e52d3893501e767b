//! The database itself, synchronous: one SQLite file in the store's directory,
//! WAL mode with full synchronous commits, so a committed batch survives `kill -9`
//! and power loss. Only the writer thread (`super::writer`) touches it.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync of
//! it) run on a thread of their own with a read-only role: they change no data,
//! and left to SQLite they would run inside whichever commit crossed the
//! threshold, stalling every request waiting on that commit. Under sustained
//! load the WAL cannot restart while commits keep landing during checkpoints, so
//! past [`WAL_RESTART_FRAMES`] the writer finishes the (by then short) checkpoint
//! itself between two commits.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    Appended, Counts, DlqEntry, Job, JobUpdate, Millis, NewEvent, PruneCursor, Pruned, StoreError,
    FIRST_FENCE,
};
use fleetbus_event::StoredEvent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    detail_type TEXT NOT NULL,
    bus TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
DROP INDEX IF EXISTS events_id;
CREATE INDEX IF NOT EXISTS events_id_source ON events(id, source);
DROP INDEX IF EXISTS events_received;
CREATE INDEX IF NOT EXISTS events_received_type ON events(received_at, detail_type, source);
CREATE TABLE IF NOT EXISTS resources (
    resource TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (resource, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resources_seq ON resources(seq);
DROP TABLE IF EXISTS dedup;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    event_seq INTEGER NOT NULL,
    rule TEXT NOT NULL,
    target TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    status TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS leaders (
    role TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs(next_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(updated_at) WHERE state = 2;
CREATE TABLE IF NOT EXISTS suppressions (
    event_seq INTEGER NOT NULL,
    rule TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS suppressions_event ON suppressions(event_seq);
CREATE TABLE IF NOT EXISTS causes (
    cause TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (cause, seq)
) WITHOUT ROWID;
DROP INDEX IF EXISTS causes_seq;
CREATE TABLE IF NOT EXISTS attachments (
    event_seq INTEGER PRIMARY KEY,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kept (
    seq INTEGER PRIMARY KEY,
    until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    name TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    dims TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, bucket, dims)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_totals (
    name TEXT NOT NULL,
    dims TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, dims)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_archives (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_rules (
    bus TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (bus, name)
);
CREATE TABLE IF NOT EXISTS replays (
    name TEXT PRIMARY KEY,
    description TEXT,
    archive TEXT NOT NULL,
    bus TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    rules TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    cursor INTEGER,
    last_replayed INTEGER,
    events INTEGER NOT NULL DEFAULT 0,
    jobs INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    ended_at INTEGER
);
";

/// Per connection: WAL with an fsync per commit (FULL) is the durability promise;
/// a 64 MiB page cache keeps the hot index pages off `pread`.
const PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;
    PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 0;
    PRAGMA journal_size_limit = 67108864;";

// Job states: 0 pending (the literal in queries, where the partial index needs it), 1 done, 2 dead.
const DONE: i64 = 1;
const DEAD: i64 = 2;

/// Shortest pause between two background checkpoints: lets commits accumulate so
/// a hot page is copied once, not once per commit.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);
/// WAL length (in 4 KiB frames, so 64 MiB) past which the writer completes a
/// checkpoint itself so that the log restarts from its beginning.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// Columns added to `jobs` after its first release: added to older files at open.
/// `fence` counts claims; `lease_until` is set while a claim holds the job (whose
/// `next_at` is then the lease's end, so the due-jobs index skips claimed jobs).
/// `replay` names the replay a job re-delivers for (its event then carries
/// `replay-name`).
const JOB_COLUMNS: [(&str, &str); 3] = [
    ("fence", "INTEGER NOT NULL DEFAULT 0"),
    ("lease_until", "INTEGER"),
    ("replay", "TEXT"),
];

/// The SQLite database and its checkpointer.
pub(super) struct Db {
    conn: Connection,
    checkpointer: Option<Checkpointer>,
    /// Events with a pending or dead job, read once per pruning pass (at its first
    /// chunk): no job of an old event turns pending or dead later in the pass.
    protected: HashSet<i64>,
}

/// The background checkpoint thread and what the writer shares with it.
struct Checkpointer {
    /// A commit happened (capacity 1: signals coalesce).
    kick: Option<SyncSender<()>>,
    /// Set when the WAL is long enough that the writer should finish a checkpoint.
    restart: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Db {
    /// Opens (creating if needed) `dir/fleetbus.db`.
    pub(super) fn open(dir: &Path) -> Result<Db, StoreError> {
        Self::open_tuned(dir, CHECKPOINT_PAUSE, WAL_RESTART_FRAMES)
    }

    /// [`Db::open`] with the checkpoint pause and WAL bound given (tests use small
    /// ones to see the WAL restart without writing 64 MiB).
    pub(super) fn open_tuned(
        dir: &Path,
        pause: Duration,
        restart_frames: i64,
    ) -> Result<Db, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let file = dir.join("fleetbus.db");
        let conn = Connection::open(&file).map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(PRAGMAS)?;
        migrate(&conn).map_err(|e| match e {
            Migration::Newer(found) => open_err(format!(
                "schema version {found} is newer than this build's ({SCHEMA_VERSION}); not retryable: run the fleetbus that wrote it, or a newer one"
            )),
            Migration::Sqlite(e) => e.into(),
        })?;
        let checkpoint_conn = Connection::open(&file).map_err(|e| open_err(e.to_string()))?;
        checkpoint_conn.execute_batch(PRAGMAS)?;
        let checkpointer = Checkpointer::spawn(checkpoint_conn, pause, restart_frames)
            .map_err(|e| open_err(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Db {
            conn,
            checkpointer: Some(checkpointer),
            protected: HashSet::new(),
        })
    }

    /// Runs a query selecting `(seq, body)` rows and decodes each stored event.
    pub(super) fn collect_events(
        stmt: &mut rusqlite::CachedStatement<'_>,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = stmt.query_map(params, |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            out.push(Self::parse_event(seq, &body)?);
        }
        Ok(out)
    }

    /// Runs `f` in one write transaction and commits it.
    pub(super) fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        self.after_commit();
        Ok(out)
    }

    /// The connection, for reads.
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn parse_event(seq: i64, body: &str) -> Result<StoredEvent, StoreError> {
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
            seq,
            reason: e.to_string(),
        })
    }

    /// After a commit: wakes the checkpointer, and completes a checkpoint here when
    /// the WAL has grown past its bound.
    fn after_commit(&mut self) {
        let Some(c) = &self.checkpointer else { return };
        if let Some(kick) = &c.kick {
            let _ = kick.try_send(());
        }
        if c.restart.swap(false, Ordering::Relaxed) {
            // Busy means the checkpointer is at it; the flag comes back if needed.
            if let Err(e) = checkpoint(&self.conn) {
                tracing::warn!(error = %e, "checkpoint on the writer failed");
            }
        }
    }
}

/// The schema this build writes, kept in the file's `PRAGMA user_version`:
/// 0 a file from before versions were kept (the first releases), 1 with the jobs'
/// fence and lease, 2 with the cause index, 3 with attachments, 4 with named
/// archives' retention (`kept`), replays, rules made through the API and the
/// metrics targets' series.
pub(super) const SCHEMA_VERSION: i64 = 4;

pub(super) enum Migration {
    /// The file was written by a newer build: opening it could lose what it knows.
    Newer(i64),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Migration {
    fn from(e: rusqlite::Error) -> Migration {
        Migration::Sqlite(e)
    }
}

/// Brings a file of any earlier version to [`SCHEMA_VERSION`], in one transaction:
/// every step is additive (new tables, indexes and columns; nothing an older
/// version wrote is rewritten), so each is idempotent and a file interrupted
/// mid-upgrade finishes the next time it opens.
pub(super) fn migrate(conn: &Connection) -> Result<(), Migration> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Migration::Newer(found));
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let steps = (|| {
        conn.execute_batch(SCHEMA)?;
        add_job_columns(conn)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
    })();
    match steps {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    if found < SCHEMA_VERSION {
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "event store schema upgraded"
        );
    }
    Ok(())
}

/// Adds the columns of [`JOB_COLUMNS`] a file made by an older release lacks.
fn add_job_columns(conn: &Connection) -> Result<(), rusqlite::Error> {
    let have: HashSet<String> = conn
        .prepare("SELECT name FROM pragma_table_info('jobs')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, decl) in JOB_COLUMNS {
        if !have.contains(name) {
            conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {name} {decl}"))?;
        }
    }
    Ok(())
}

/// The id of the first job created at or after `at` (or one past the last job),
/// by binary search over the ids: a few dozen point reads for any table size.
/// Creation times follow ids except for redriven jobs (their time is reset): a
/// probe landing on one can put the bound too low, which delays pruning of the
/// jobs above it until that job itself ages out; nothing newer is ever deleted,
/// since the delete still checks each job's own time.
fn first_job_created(conn: &Connection, at: Millis) -> Result<i64, rusqlite::Error> {
    let Some(max) = conn.query_row("SELECT MAX(id) FROM jobs", [], |r| {
        r.get::<_, Option<i64>>(0)
    })?
    else {
        return Ok(0);
    };
    let mut next =
        conn.prepare_cached("SELECT id, created_at FROM jobs WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    let (mut lo, mut hi) = (0, max + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match next
            .query_row([mid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Millis>(1)?)))
            .optional()?
        {
            Some((id, created)) if created < at => lo = id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// A passive checkpoint: copies what it can without blocking the writer.
/// Returns the WAL's length in frames.
fn checkpoint(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
}

impl Checkpointer {
    fn spawn(
        conn: Connection,
        pause: Duration,
        restart_frames: i64,
    ) -> std::io::Result<Checkpointer> {
        let (kick, rx) = mpsc::sync_channel::<()>(1);
        let restart = Arc::new(AtomicBool::new(false));
        let flag = restart.clone();
        let thread = std::thread::Builder::new()
            .name("fleetbus-checkpoint".into())
            .spawn(move || loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                std::thread::sleep(pause);
                match checkpoint(&conn) {
                    Ok(frames) if frames >= restart_frames => flag.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
                }
            })?;
        Ok(Checkpointer {
            kick: Some(kick),
            restart,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after at most one more checkpoint.
        self.kick = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one transaction of [`Db::commit`] did: an answer per event, and the
/// updates refused for a stale fence.
pub(super) type Commit = (Vec<Appended>, Vec<i64>);

impl Db {
    /// Appends events with their jobs (claimed by the appender until `now +
    /// lease_ms`) and applies fenced job updates, in one transaction.
    pub(super) fn commit(
        &mut self,
        events: &[NewEvent],
        updates: &[JobUpdate],
        now: Millis,
        dedup_window_ms: Millis,
        lease_ms: Millis,
    ) -> Result<Commit, StoreError> {
        let tx = self.conn.transaction()?;
        let lease_until = now.saturating_add(lease_ms);
        let mut out = Vec::with_capacity(events.len());
        let mut fenced = Vec::new();
        {
            // Duplicates are found through the id index the log keeps anyway (one
            // read, usually of hot pages) rather than a table of their own, which
            // cost every event another B-tree write.
            // The latest event with this (source, id) decides: the id index walked
            // backwards finds it first, however often a client reuses an id.
            let mut seen = tx.prepare_cached(
                "SELECT received_at FROM events WHERE id = ?1 AND source = ?2 ORDER BY seq DESC LIMIT 1",
            )?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO events (id, source, detail_type, bus, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut res = tx.prepare_cached(
                "INSERT OR IGNORE INTO resources (resource, seq) VALUES (?1, ?2)",
            )?;
            let mut job = tx.prepare_cached(
                "INSERT INTO jobs (event_seq, rule, target, next_at, created_at, updated_at, fence, lease_until)
                 VALUES (?1, ?2, ?3, ?5, ?4, ?4, ?6, ?5)",
            )?;
            let mut sup =
                tx.prepare_cached("INSERT INTO suppressions (event_seq, rule) VALUES (?1, ?2)")?;
            // Only derived events have a cause: what ingest takes from outside
            // writes nothing here.
            let mut cause =
                tx.prepare_cached("INSERT OR IGNORE INTO causes (cause, seq) VALUES (?1, ?2)")?;
            let mut attach = tx.prepare_cached(
                "INSERT INTO attachments (event_seq, content_type, body) VALUES (?1, ?2, ?3)",
            )?;
            let mut kept =
                tx.prepare_cached("INSERT OR REPLACE INTO kept (seq, until) VALUES (?1, ?2)")?;
            for new in events {
                let e = &new.stored.event;
                let received =
                    (new.stored.meta.received_at.unix_timestamp_nanos() / 1_000_000) as Millis;
                let last: Option<Millis> = seen
                    .query_row(params![e.id, e.source], |r| r.get(0))
                    .optional()?;
                if last.is_some_and(|at| at > received.saturating_sub(dedup_window_ms)) {
                    out.push(Appended::Duplicate);
                    continue;
                }
                ins.execute(params![
                    e.id,
                    e.source,
                    e.detail_type,
                    new.stored.meta.bus,
                    received,
                    new.body
                ])?;
                let seq = tx.last_insert_rowid();
                for r in &e.resources {
                    res.execute(params![r, seq])?;
                }
                if let Some(c) = &new.stored.meta.causation_id {
                    cause.execute(params![c, seq])?;
                }
                if let Some(a) = &new.attachment {
                    attach.execute(params![seq, a.content_type, a.body])?;
                }
                if let Some(until) = new.keep_until {
                    kept.execute(params![seq, until])?;
                }
                let mut job_ids = Vec::with_capacity(new.jobs.len());
                for (rule, target) in &new.jobs {
                    job.execute(params![seq, rule, target, now, lease_until, FIRST_FENCE])?;
                    job_ids.push(tx.last_insert_rowid());
                }
                for rule in &new.suppressed {
                    sup.execute(params![seq, rule])?;
                }
                out.push(Appended::Stored { seq, job_ids });
            }
            // Fenced: only the latest claim of a pending job may finish it.
            let mut done = tx.prepare_cached("UPDATE jobs SET state = ?2, attempts = ?3, status = ?4, updated_at = ?5, lease_until = NULL WHERE id = ?1 AND fence = ?6 AND state = 0")?;
            let mut retry = tx.prepare_cached("UPDATE jobs SET attempts = ?2, next_at = ?3, last_error = ?4, updated_at = ?5, lease_until = NULL WHERE id = ?1 AND fence = ?6 AND state = 0")?;
            let mut dead = tx.prepare_cached("UPDATE jobs SET state = ?2, attempts = ?3, last_error = ?4, updated_at = ?5, lease_until = NULL WHERE id = ?1 AND fence = ?6 AND state = 0")?;
            for u in updates {
                let changed = match u {
                    JobUpdate::Done {
                        id,
                        fence,
                        attempts,
                        status,
                    } => done.execute(params![id, DONE, attempts, status, now, fence])?,
                    JobUpdate::Retry {
                        id,
                        fence,
                        attempts,
                        next_at,
                        error,
                    } => retry.execute(params![id, attempts, next_at, error, now, fence])?,
                    JobUpdate::Dead {
                        id,
                        fence,
                        attempts,
                        error,
                    } => dead.execute(params![id, DEAD, attempts, error, now, fence])?,
                };
                if changed == 0 {
                    fenced.push(u.id());
                }
            }
        }
        tx.commit()?;
        self.after_commit();
        Ok((out, fenced))
    }

    /// Claims up to `limit` due jobs (not leased: a claimed job's `next_at` is its
    /// lease's end) under a new fence each, leased until `now + lease_ms`.
    pub(super) fn claim(
        &mut self,
        now: Millis,
        limit: usize,
        lease_ms: Millis,
    ) -> Result<Vec<Job>, StoreError> {
        let lease_until = now.saturating_add(lease_ms);
        let tx = self.conn.transaction()?;
        let mut jobs = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT j.id, j.rule, j.target, j.attempts, j.created_at, e.seq, e.body, j.fence, j.replay FROM jobs j JOIN events e ON e.seq = j.event_seq
                 WHERE j.state = 0 AND j.next_at <= ?1 ORDER BY j.next_at, j.id LIMIT ?2",
            )?;
            let mut take = tx.prepare_cached(
                "UPDATE jobs SET fence = fence + 1, next_at = ?2, lease_until = ?2 WHERE id = ?1",
            )?;
            let mut rows = stmt.query(params![now, limit as i64])?;
            // Jobs of one event are usually adjacent: decode it once for all of them.
            let mut last: Option<(i64, Option<String>, Arc<StoredEvent>)> = None;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let seq: i64 = row.get(5)?;
                let replay: Option<String> = row.get(8)?;
                let event = match &last {
                    Some((s, r, e)) if *s == seq && *r == replay => e.clone(),
                    _ => {
                        let body: String = row.get(6)?;
                        let mut e = Self::parse_event(seq, &body)?;
                        e.event.replay_name = replay.clone();
                        let e = Arc::new(e);
                        last = Some((seq, replay, e.clone()));
                        e
                    }
                };
                let fence: u64 = row.get(7)?;
                jobs.push(Job {
                    id,
                    rule: row.get(1)?,
                    target: row.get(2)?,
                    attempts: row.get(3)?,
                    fence: fence + 1,
                    created_at: row.get(4)?,
                    event,
                });
            }
            drop(rows);
            // Taken once the read is done: a row changed under a running SELECT
            // can come round again in the index it is read through.
            for job in &jobs {
                take.execute(params![job.id, lease_until])?;
            }
        }
        tx.commit()?;
        if !jobs.is_empty() {
            self.after_commit();
        }
        Ok(jobs)
    }

    /// Ends the given claims where they are still the latest: due at `now`.
    pub(super) fn release(&mut self, jobs: &[(i64, u64)], now: Millis) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE jobs SET next_at = ?3, lease_until = NULL WHERE id = ?1 AND fence = ?2 AND state = 0",
            )?;
            for (id, fence) in jobs {
                stmt.execute(params![id, fence, now])?;
            }
        }
        tx.commit()?;
        self.after_commit();
        Ok(())
    }

    /// Ends every claim: with one process per store (the directory lock), a lease
    /// found at open is one a process that is gone held, and its jobs are due now.
    /// Leadership is released alike.
    pub(super) fn release_leases(&mut self, now: Millis) -> Result<usize, StoreError> {
        let n = self.conn.execute(
            "UPDATE jobs SET next_at = ?1, lease_until = NULL WHERE state = 0 AND lease_until IS NOT NULL",
            params![now],
        )?;
        self.conn.execute("DELETE FROM leaders", [])?;
        Ok(n)
    }

    /// Takes or renews `role` for `holder` until `now + ttl_ms`, unless another
    /// holder's lease is still running.
    pub(super) fn lead(
        &mut self,
        role: &str,
        holder: &str,
        now: Millis,
        ttl_ms: Millis,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "INSERT INTO leaders (role, holder, until) VALUES (?1, ?2, ?4)
             ON CONFLICT(role) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leaders.holder = excluded.holder OR leaders.until <= ?3",
            params![role, holder, now, now.saturating_add(ttl_ms)],
        )?;
        Ok(changed == 1)
    }

    pub(super) fn next_due(&mut self, now: Millis) -> Result<Option<Millis>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT MIN(next_at) FROM jobs WHERE state = 0 AND next_at > ?1",
            params![now],
            |r| r.get(0),
        )?)
    }

    pub(super) fn pending_jobs(&mut self) -> Result<u64, StoreError> {
        let pending: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM jobs WHERE state = 0", [], |r| {
                    r.get(0)
                })?;
        Ok(pending as u64)
    }

    pub(super) fn counts(&mut self) -> Result<Counts, StoreError> {
        let events: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let pending: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM jobs WHERE state = 0", [], |r| {
                    r.get(0)
                })?;
        let dead: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM jobs WHERE state = 2", [], |r| {
                    r.get(0)
                })?;
        Ok(Counts {
            events: events as u64,
            pending_jobs: pending as u64,
            dead_jobs: dead as u64,
        })
    }

    pub(super) fn dlq_list(&mut self, limit: usize) -> Result<Vec<DlqEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT j.id, e.id, j.rule, j.target, j.attempts, COALESCE(j.last_error, ''), j.updated_at
             FROM jobs j JOIN events e ON e.seq = j.event_seq WHERE j.state = 2 ORDER BY j.updated_at, j.id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok(DlqEntry {
                job_id: r.get(0)?,
                event_id: r.get(1)?,
                rule: r.get(2)?,
                target: r.get(3)?,
                attempts: r.get(4)?,
                error: r.get(5)?,
                failed_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn dlq_redrive(
        &mut self,
        ids: Option<&[i64]>,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let dead: Vec<i64> = {
            let mut stmt = tx.prepare("SELECT id FROM jobs WHERE state = 2 ORDER BY id")?;
            let all = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            match ids {
                None => all,
                Some(ids) => all.into_iter().filter(|id| ids.contains(id)).collect(),
            }
        };
        {
            let mut upd = tx.prepare("UPDATE jobs SET state = 0, attempts = 0, next_at = ?2, created_at = ?2, updated_at = ?2, lease_until = NULL WHERE id = ?1")?;
            for id in &dead {
                upd.execute(params![id, now])?;
            }
        }
        tx.commit()?;
        self.after_commit();
        Ok(dead)
    }

    pub(super) fn event(&mut self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, body FROM events WHERE id = ?1 ORDER BY seq DESC LIMIT 1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(seq, body)| Self::parse_event(seq, &body))
            .transpose()
    }

    pub(super) fn timeline(
        &mut self,
        resource: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.seq, e.body FROM resources r JOIN events e ON e.seq = r.seq WHERE r.resource = ?1 ORDER BY r.seq DESC LIMIT ?2",
        )?;
        Self::collect_events(&mut stmt, params![resource, limit as i64])
    }

    pub(super) fn events_between(
        &mut self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, body FROM events WHERE received_at >= ?1 AND received_at < ?2 ORDER BY seq LIMIT ?3",
        )?;
        Self::collect_events(&mut stmt, params![from, to, limit as i64])
    }

    pub(super) fn prune(
        &mut self,
        now: Millis,
        events_before: Millis,
        jobs_before: Millis,
        limit: usize,
        cursor: &mut PruneCursor,
    ) -> Result<Pruned, StoreError> {
        let tx = self.conn.transaction()?;
        // Jobs are numbered in creation order and none is updated before it is
        // created, so only ids below the first one created after the cutoff can
        // qualify: the scan stops there instead of reading the whole table.
        let bound = first_job_created(&tx, jobs_before)?;
        let jobs = tx.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
               WHERE id < ?3 AND state != 0 AND updated_at < ?1 ORDER BY id LIMIT ?2)",
            params![jobs_before, limit as i64, bound],
        )?;
        // An event with a pending or dead job stays until the job is finished.
        if cursor.after.is_none() {
            let mut stmt = tx.prepare_cached(
                "SELECT event_seq FROM jobs WHERE state = 0 UNION ALL SELECT event_seq FROM jobs WHERE state = 2",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
            self.protected = rows.collect::<Result<_, _>>()?;
        }
        // Each chunk goes on from the last event the previous one looked at, so
        // protected events are walked past once per pass, not once per chunk.
        let (from_at, from_seq) = cursor.after.unwrap_or((Millis::MIN, i64::MIN));
        // A named archive's longer retention keeps its events (`kept`).
        let examined: Vec<(i64, Millis, String, bool)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT e.seq, e.received_at, e.id, k.until FROM events e LEFT JOIN kept k ON k.seq = e.seq
                 WHERE e.received_at < ?1 AND (e.received_at, e.seq) > (?2, ?3)
                 ORDER BY e.received_at, e.seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![events_before, from_at, from_seq, limit as i64],
                |r| {
                    let until: Option<Millis> = r.get(3)?;
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        until.is_some_and(|u| u > now),
                    ))
                },
            )?;
            rows.collect::<Result<_, _>>()?
        };
        let mut events = 0;
        {
            let mut res = tx.prepare_cached("DELETE FROM resources WHERE seq = ?1")?;
            let mut sup = tx.prepare_cached("DELETE FROM suppressions WHERE event_seq = ?1")?;
            // A pruned event's links to what it caused go with it (found by the
            // table's key, so the table needs no second index for this); an effect
            // is younger than its cause, so its own link went with the cause.
            let mut cause = tx.prepare_cached("DELETE FROM causes WHERE cause = ?1")?;
            let mut ev = tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
            let mut attach = tx.prepare_cached("DELETE FROM attachments WHERE event_seq = ?1")?;
            let mut kept = tx.prepare_cached("DELETE FROM kept WHERE seq = ?1")?;
            for (seq, _, id, _) in examined
                .iter()
                .filter(|(s, _, _, keep)| !keep && !self.protected.contains(s))
            {
                res.execute([seq])?;
                kept.execute([seq])?;
                sup.execute([seq])?;
                attach.execute([seq])?;
                cause.execute([id])?;
                ev.execute([seq])?;
                events += 1;
            }
        }
        // Series buckets go with the archive's retention (totals stay).
        tx.execute("DELETE FROM series WHERE bucket < ?1", [events_before])?;
        tx.commit()?;
        self.after_commit();
        cursor.after = examined
            .last()
            .map(|(seq, at, _, _)| (*at, *seq))
            .or(cursor.after);
        Ok(Pruned {
            events,
            jobs,
            more: jobs == limit || examined.len() == limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first releases' schema (user_version 0): jobs without fence and lease,
    /// no cause index, no attachments.
    const FIRST_SCHEMA: &str = "
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
            source TEXT NOT NULL, detail_type TEXT NOT NULL, bus TEXT NOT NULL,
            received_at INTEGER NOT NULL, body TEXT NOT NULL);
        CREATE INDEX events_id ON events(id);
        CREATE TABLE resources (resource TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (resource, seq)) WITHOUT ROWID;
        CREATE TABLE dedup (source TEXT NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL);
        CREATE TABLE jobs (id INTEGER PRIMARY KEY, event_seq INTEGER NOT NULL,
            rule TEXT NOT NULL, target TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, status TEXT,
            last_error TEXT);
        CREATE TABLE leaders (role TEXT PRIMARY KEY, holder TEXT NOT NULL, until INTEGER NOT NULL);
        CREATE TABLE suppressions (event_seq INTEGER NOT NULL, rule TEXT NOT NULL);
    ";

    #[test]
    fn a_file_of_the_first_schema_is_upgraded_with_its_data_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("fleetbus.db")).unwrap();
            conn.execute_batch(FIRST_SCHEMA).unwrap();
            let e = new_event("old-1", &["device/OLD"], &[]);
            conn.execute(
                "INSERT INTO events (id, source, detail_type, bus, received_at, body) VALUES (?1, 's', 'd', 'default', 1000, ?2)",
                params!["old-1", e.body],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO resources (resource, seq) VALUES ('device/OLD', 1)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO jobs (event_seq, rule, target, next_at, created_at, updated_at) VALUES (1, 'r', 't', 0, 0, 0)",
                [],
            )
            .unwrap();
        }
        let mut db = Db::open(dir.path()).unwrap();
        let version: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // The old event and its pending job are there, and the job can be claimed.
        assert_eq!(db.event("old-1").unwrap().unwrap().event.id, "old-1");
        assert_eq!(db.timeline("device/OLD", 10).unwrap().len(), 1);
        assert_eq!(db.claim(10, 5, 60_000).unwrap().len(), 1);
        // What later versions added works on the upgraded file.
        let mut with = new_event("new-1", &["device/OLD"], &[]);
        with.attachment = Some(std::sync::Arc::new(crate::store::Attachment {
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        }));
        db.commit(&[with], &[], 10, 0, 60_000).unwrap();
        drop(db);
        // Opening again changes nothing; a file from a newer build is refused.
        Db::open(dir.path()).unwrap();
        Connection::open(dir.path().join("fleetbus.db"))
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        let err = Db::open(dir.path())
            .err()
            .expect("a newer schema is refused");
        assert!(err.to_string().contains("newer than this build"), "{err}");
        assert!(!err.is_retryable());
    }
    use fleetbus_event::{Event, Meta};

    fn new_event(id: &str, resources: &[&str], jobs: &[(&str, &str)]) -> NewEvent {
        new_event_at(id, resources, jobs, 0)
    }

    /// An event received `offset_ms` after a fixed instant (2026-01-01).
    fn new_event_at(
        id: &str,
        resources: &[&str],
        jobs: &[(&str, &str)],
        offset_ms: i64,
    ) -> NewEvent {
        let mut event = Event::new("test", "Thing Happened", Default::default());
        event.id = id.to_owned();
        event.resources = resources.iter().map(|s| s.to_string()).collect();
        let json = event.to_json();
        let mut meta = Meta::ingested("default", "api");
        meta.received_at = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap()
            + time::Duration::milliseconds(offset_ms);
        let stored = StoredEvent { event, meta };
        let jobs = jobs
            .iter()
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .collect();
        NewEvent::new(stored, &json, jobs, vec![]).unwrap()
    }

    #[test]
    fn appends_dedups_and_tracks_jobs_through_the_dlq() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Db::open(dir.path()).unwrap();
        let out = s
            .commit(
                &[
                    new_event("a", &["device/X"], &[("r", "t1"), ("r", "t2")]),
                    new_event("a", &[], &[]),
                ],
                &[],
                1000,
                60_000,
                0,
            )
            .unwrap()
            .0;
        let Appended::Stored { job_ids, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(job_ids.len(), 2);
        assert_eq!(out[1], Appended::Duplicate);
        // Inside the window (by receipt time) still a duplicate, outside it new again;
        // the same id from another source is another event.
        let again = s
            .commit(&[new_event_at("a", &[], &[], 59_999)], &[], 1000, 60_000, 0)
            .unwrap()
            .0;
        assert_eq!(again[0], Appended::Duplicate);
        let later = s
            .commit(&[new_event_at("a", &[], &[], 60_000)], &[], 1000, 60_000, 0)
            .unwrap()
            .0;
        assert!(matches!(later[0], Appended::Stored { .. }));
        // The latest event with the id decides: received at 60,000, so one at
        // 60,001 is a repeat of it.
        let repeat = s
            .commit(&[new_event_at("a", &[], &[], 60_001)], &[], 1000, 60_000, 0)
            .unwrap()
            .0;
        assert_eq!(repeat[0], Appended::Duplicate);
        let mut other = new_event("a", &[], &[]);
        Arc::make_mut(&mut other.stored).event.source = "elsewhere".into();
        let other = s.commit(&[other], &[], 1000, 60_000, 0).unwrap().0;
        assert!(matches!(other[0], Appended::Stored { .. }));

        let due = s.claim(1000, 10, 0).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event.event.id, "a");

        s.commit(
            &[],
            &[
                JobUpdate::Done {
                    id: job_ids[0],
                    fence: 2,
                    attempts: 1,
                    status: "200".into(),
                },
                JobUpdate::Retry {
                    id: job_ids[1],
                    fence: 2,
                    attempts: 1,
                    next_at: 5000,
                    error: "503".into(),
                },
            ],
            1001,
            60_000,
            0,
        )
        .unwrap();
        assert!(s.claim(1001, 10, 0).unwrap().is_empty());
        assert_eq!(s.next_due(1001).unwrap(), Some(5000));
        assert_eq!(s.next_due(5000).unwrap(), None);
        s.commit(
            &[],
            &[JobUpdate::Dead {
                id: job_ids[1],
                fence: 2,
                attempts: 2,
                error: "gone".into(),
            }],
            5001,
            60_000,
            0,
        )
        .unwrap();
        let dlq = s.dlq_list(10).unwrap();
        assert_eq!(
            (dlq[0].job_id, dlq[0].attempts, dlq[0].error.as_str()),
            (job_ids[1], 2, "gone")
        );
        assert_eq!(
            s.counts().unwrap(),
            Counts {
                events: 3,
                pending_jobs: 0,
                dead_jobs: 1
            }
        );
        assert_eq!(s.dlq_redrive(None, 6000).unwrap(), vec![job_ids[1]]);
        let again = s.claim(6000, 10, 0).unwrap();
        assert_eq!((again[0].id, again[0].attempts), (job_ids[1], 0));

        assert_eq!(s.timeline("device/X", 10).unwrap().len(), 1);
        assert!(s.event("a").unwrap().is_some());
    }

    #[test]
    fn prunes_in_chunks_keeping_events_with_pending_or_dead_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Db::open(dir.path()).unwrap();
        let day = 86_400_000;
        let base = 1_767_225_600_000;
        let old: Vec<NewEvent> = (0..5)
            .map(|i| new_event_at(&format!("old-{i}"), &["device/X"], &[], i))
            .collect();
        s.commit(&old, &[], base, 0, 0).unwrap();
        let out = s
            .commit(
                &[
                    new_event_at("pending", &["device/X"], &[("r", "t")], 10),
                    new_event_at("dead", &["device/X"], &[("r", "t")], 11),
                    new_event_at("done", &["device/X"], &[("r", "t")], 12),
                    new_event_at("new", &["device/X"], &[], 2 * day),
                ],
                &[],
                base,
                0,
                0,
            )
            .unwrap()
            .0;
        let job = |i: usize| match &out[i] {
            Appended::Stored { job_ids, .. } => job_ids[0],
            other => panic!("{other:?}"),
        };
        s.commit(
            &[],
            &[
                JobUpdate::Dead {
                    id: job(1),
                    fence: FIRST_FENCE,
                    attempts: 3,
                    error: "gone".into(),
                },
                JobUpdate::Done {
                    id: job(2),
                    fence: FIRST_FENCE,
                    attempts: 1,
                    status: "200".into(),
                },
            ],
            base,
            0,
            0,
        )
        .unwrap();
        let cutoff = base + day;
        // Chunks of 4 events looked at; the jobs' own retention keeps them for now.
        let prune = |s: &mut Db, jobs_before, limit, pass: &mut PruneCursor| {
            let p = s.prune(cutoff, cutoff, jobs_before, limit, pass).unwrap();
            (p.events, p.jobs, p.more)
        };
        let mut pass = PruneCursor::default();
        assert_eq!(prune(&mut s, base, 4, &mut pass), (4, 0, true));
        // old-4, pending (kept), dead (kept), done.
        assert_eq!(prune(&mut s, base, 4, &mut pass), (2, 0, true));
        assert_eq!(prune(&mut s, base, 4, &mut pass), (0, 0, false));
        let resources: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM resources", [], |r| r.get(0))
            .unwrap();
        assert_eq!(resources, 3, "resource rows of pruned events are gone");
        let ids: Vec<String> = s
            .timeline("device/X", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(ids, ["new", "dead", "pending"]);
        assert!(s.event("old-0").unwrap().is_none());
        // Finished and dead jobs go with their own retention (and the dead job's
        // event with it); pending ones never.
        let mut pass = PruneCursor::default();
        assert_eq!(prune(&mut s, base + 1, 10, &mut pass), (1, 2, false));
        assert_eq!(s.counts().unwrap().pending_jobs, 1);
        assert!(s.event("pending").unwrap().is_some());
        assert!(s.event("dead").unwrap().is_none());
    }

    #[test]
    fn the_wal_restarts_under_sustained_commits() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("fleetbus.db-wal");
        let mut s = Db::open_tuned(dir.path(), Duration::from_millis(1), 64).unwrap();
        let mut largest = 0;
        let mut n = 0;
        // About 12 MB of events, in commits that never stop for long.
        for batch in 0..400 {
            let events: Vec<NewEvent> = (0..30)
                .map(|i| {
                    n += 1;
                    let mut e = new_event(&format!("e-{n}"), &["device/X"], &[("r", "t")]);
                    e.body.push_str(&" ".repeat(1000 + i));
                    e
                })
                .collect();
            s.commit(&events, &[], batch, 0, 0).unwrap();
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            if batch % 20 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Without restarts the WAL would hold every page written: well over 12 MB.
        assert!(largest < 8 << 20, "the WAL grew to {largest} bytes");
        drop(s);
        let mut s = Db::open(dir.path()).unwrap();
        assert_eq!(s.counts().unwrap().events, n);
        assert!(s.event("e-1").unwrap().is_some());
        assert!(s.event(&format!("e-{n}")).unwrap().is_some());
    }

    #[test]
    fn the_first_job_created_after_a_time_is_found_across_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Db::open(dir.path()).unwrap();
        assert_eq!(first_job_created(&s.conn, 5).unwrap(), 0);
        // Jobs 1..=40 created at times 0..40, then half of them deleted.
        for t in 0..40 {
            s.commit(
                &[new_event(&format!("e{t}"), &[], &[("r", "t")])],
                &[],
                t,
                0,
                0,
            )
            .unwrap();
        }
        s.conn
            .execute("DELETE FROM jobs WHERE id % 2 = 0", [])
            .unwrap();
        for (at, want) in [
            (0, 0),
            (1, 2),
            (2, 2),
            (13, 14),
            (39, 40),
            (40, 41),
            (99, 41),
        ] {
            let bound = first_job_created(&s.conn, at).unwrap();
            // Every remaining job below the bound is older, every one at or above it is not.
            let mut stmt = s.conn.prepare("SELECT id, created_at FROM jobs").unwrap();
            let rows: Vec<(i64, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                rows.iter().all(|&(id, c)| (id < bound) == (c < at)),
                "at {at}: bound {bound}"
            );
            assert!(bound <= want, "at {at}: bound {bound} > {want}");
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Db::open(dir.path()).unwrap();
            s.commit(&[new_event("keep", &[], &[("r", "t")])], &[], 1, 1000, 0)
                .unwrap();
        }
        let mut s = Db::open(dir.path()).unwrap();
        assert_eq!(s.claim(10, 10, 0).unwrap().len(), 1);
        assert!(s.event("keep").unwrap().is_some());
    }
}
