//! The embedded backend: one SQLite file in the store's directory, owned by one
//! writer thread that commits whatever has queued up in one transaction. The
//! directory is locked (`fleetbus.db.lock`), so one process at a time uses a
//! store: leases found at open are a dead process's and are released, and
//! leadership is always this process's (the `leaders` table still enforces the
//! contract). Checkpoints run on a thread of their own (see `db`).

mod db;
mod error;
mod read;
mod replay;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use fleetbus_event::StoredEvent;

use self::db::Db;
use self::writer::Writer;
use crate::store::{
    now_ms, ApiRules, Appended, Archive, Attachment, Completed, Counts, DeadLetters, DlqEntry,
    EventLog, EventPage, EventQuery, GroupField, Job, JobQueue, JobUpdate, Leadership, Maintenance,
    Millis, NewEvent, PruneCursor, Pruned, Replay, ReplaySpec, ReplayState, ReplayStep, Replays,
    Series, StoreError, StoreFuture, StoreOptions,
};

/// The SQLite store: a handle to its writer thread.
pub struct SqliteStore {
    writer: Writer,
    /// Connections for archive queries, beside the writer's.
    readers: Arc<read::Readers>,
    options: StoreOptions,
    /// The writer thread, joined on drop: the database is closed and the
    /// directory unlocked once the store is gone.
    thread: Option<JoinHandle<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/fleetbus.db`, taking the directory's lock.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let lock = lock(dir)?;
        Self::start(dir, Db::open(dir)?, options, lock)
    }

    fn start(
        dir: &Path,
        mut db: Db,
        options: StoreOptions,
        lock: File,
    ) -> Result<SqliteStore, StoreError> {
        let released = db.release_leases(now_ms())?;
        if released > 0 {
            tracing::info!(
                jobs = released,
                "deliveries claimed by a previous run are due again"
            );
        }
        let (writer, thread) = Writer::spawn(db, options, lock).map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            reason: format!("cannot start the writer thread: {e}"),
        })?;
        Ok(SqliteStore {
            writer,
            readers: Arc::new(read::Readers::new(dir.join("fleetbus.db"))),
            options,
            thread: Some(thread),
        })
    }
}

/// Takes the exclusive lock on `dir/fleetbus.db.lock` (creating the directory).
/// The store's file in `dir`.
pub const FILE: &str = "fleetbus.db";

/// Copies the store in `dir` to `dest` (which must not exist) as one consistent
/// snapshot, while a server may be writing to it: `VACUUM INTO` reads inside one
/// transaction of a read-only connection (WAL readers never block the writer), so
/// the copy is the store as of one commit. Returns the copy's size in bytes.
pub fn backup(dir: &Path, dest: &Path) -> Result<u64, StoreError> {
    let src = dir.join(FILE);
    let fail = |reason: String| StoreError::Open {
        path: src.display().to_string(),
        reason,
    };
    if !src.exists() {
        return Err(fail("no store here".into()));
    }
    let conn = rusqlite::Connection::open_with_flags(
        &src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(e.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let dest_text = dest
        .to_str()
        .ok_or_else(|| fail(format!("{} is not UTF-8", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_text])?;
    let copy = rusqlite::Connection::open(dest)?;
    let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(fail(format!("the copy fails its check: {check}")));
    }
    Ok(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0))
}

fn lock(dir: &Path) -> Result<File, StoreError> {
    let open_err = |reason: String| StoreError::Open {
        path: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
    let path = dir.join("fleetbus.db.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| open_err(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(open_err(format!(
            "{} is locked: another process is using this store",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(open_err(format!("locking {}: {e}", path.display())))
        }
    }
}

impl EventLog for SqliteStore {
    fn append(
        &self,
        events: Vec<NewEvent>,
        now: Millis,
    ) -> StoreFuture<'_, Vec<(NewEvent, Appended)>> {
        Box::pin(async move { Ok(self.writer.commit(events, Vec::new(), now).await?.0) })
    }
}

impl JobQueue for SqliteStore {
    fn claim(&self, now: Millis, limit: usize) -> StoreFuture<'_, Vec<Job>> {
        let lease = self.options.lease_ms;
        Box::pin(self.writer.run(move |db| db.claim(now, limit, lease)))
    }

    fn complete(
        &self,
        updates: Vec<JobUpdate>,
        events: Vec<NewEvent>,
        now: Millis,
    ) -> StoreFuture<'_, Completed> {
        Box::pin(async move {
            let (appended, fenced) = self.writer.commit(events, updates, now).await?;
            Ok(Completed { appended, fenced })
        })
    }

    fn release(&self, jobs: Vec<(i64, u64)>, now: Millis) -> StoreFuture<'_, ()> {
        Box::pin(self.writer.run(move |db| db.release(&jobs, now)))
    }

    fn next_due(&self, now: Millis) -> StoreFuture<'_, Option<Millis>> {
        Box::pin(self.writer.run(move |db| db.next_due(now)))
    }

    fn pending_jobs(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.writer.run(|db| db.pending_jobs()))
    }
}

impl Archive for SqliteStore {
    fn event(&self, id: String) -> StoreFuture<'_, Option<StoredEvent>> {
        Box::pin(self.writer.run(move |db| db.event(&id)))
    }

    fn timeline(&self, resource: String, limit: usize) -> StoreFuture<'_, Vec<StoredEvent>> {
        Box::pin(self.writer.run(move |db| db.timeline(&resource, limit)))
    }

    fn events_between(
        &self,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredEvent>> {
        Box::pin(
            self.writer
                .run(move |db| db.events_between(from, to, limit)),
        )
    }

    fn query(&self, query: EventQuery, window: u64) -> StoreFuture<'_, EventPage> {
        Box::pin(
            self.readers
                .run(move |conn| read::query(conn, &query, window)),
        )
    }

    fn effects(&self, id: String, limit: usize) -> StoreFuture<'_, Vec<StoredEvent>> {
        Box::pin(
            self.readers
                .run(move |conn| read::effects(conn, &id, limit)),
        )
    }

    fn attachment(&self, id: String) -> StoreFuture<'_, Option<Attachment>> {
        Box::pin(self.readers.run(move |conn| read::attachment(conn, &id)))
    }

    fn count_grouped(
        &self,
        field: GroupField,
        origin: Millis,
        from: Millis,
        to: Millis,
        bucket_ms: Millis,
    ) -> StoreFuture<'_, Vec<(u64, String, u64)>> {
        Box::pin(
            self.readers
                .run(move |conn| read::count_grouped(conn, field, origin, from, to, bucket_ms)),
        )
    }
}

impl DeadLetters for SqliteStore {
    fn dlq_list(&self, limit: usize) -> StoreFuture<'_, Vec<DlqEntry>> {
        Box::pin(self.writer.run(move |db| db.dlq_list(limit)))
    }

    fn dlq_redrive(&self, ids: Option<Vec<i64>>, now: Millis) -> StoreFuture<'_, Vec<i64>> {
        Box::pin(
            self.writer
                .run(move |db| db.dlq_redrive(ids.as_deref(), now)),
        )
    }
}

impl Maintenance for SqliteStore {
    fn counts(&self) -> StoreFuture<'_, Counts> {
        Box::pin(self.writer.run(|db| db.counts()))
    }

    fn prune(
        &self,
        now: Millis,
        events_before: Millis,
        jobs_before: Millis,
        limit: usize,
        cursor: PruneCursor,
    ) -> StoreFuture<'_, (Pruned, PruneCursor)> {
        Box::pin(self.writer.run(move |db| {
            let mut cursor = cursor;
            let pruned = db.prune(now, events_before, jobs_before, limit, &mut cursor)?;
            Ok((pruned, cursor))
        }))
    }
}

impl Leadership for SqliteStore {
    fn lead(
        &self,
        role: &'static str,
        holder: String,
        now: Millis,
        ttl_ms: Millis,
    ) -> StoreFuture<'_, bool> {
        Box::pin(
            self.writer
                .run(move |db| db.lead(role, &holder, now, ttl_ms)),
        )
    }
}

impl ApiRules for SqliteStore {
    fn api_rules(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.writer.run(|db| db.api_rules()))
    }

    fn api_rule_put(
        &self,
        bus: String,
        name: String,
        doc: String,
        now: Millis,
    ) -> StoreFuture<'_, ()> {
        Box::pin(
            self.writer
                .run(move |db| db.api_rule_put(&bus, &name, &doc, now)),
        )
    }

    fn api_rule_delete(&self, bus: String, name: String) -> StoreFuture<'_, bool> {
        Box::pin(self.writer.run(move |db| db.api_rule_delete(&bus, &name)))
    }

    fn api_archives(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.writer.run(|db| db.api_archives()))
    }

    fn api_archive_put(&self, name: String, doc: String, now: Millis) -> StoreFuture<'_, ()> {
        Box::pin(
            self.writer
                .run(move |db| db.api_archive_put(&name, &doc, now)),
        )
    }

    fn api_archive_delete(&self, name: String) -> StoreFuture<'_, bool> {
        Box::pin(self.writer.run(move |db| db.api_archive_delete(&name)))
    }
}

impl Series for SqliteStore {
    fn series_add(
        &self,
        series: String,
        bucket: Millis,
        dims: String,
        count: u64,
        max_series: u32,
    ) -> StoreFuture<'_, ()> {
        Box::pin(
            self.writer
                .run(move |db| db.series_add(&series, bucket, &dims, count, max_series)),
        )
    }

    fn series_read(
        &self,
        series: String,
        from: Millis,
        to: Millis,
    ) -> StoreFuture<'_, Vec<(Millis, String, u64)>> {
        Box::pin(
            self.readers
                .run(move |conn| replay::series_read(conn, &series, from, to)),
        )
    }

    fn series_totals(&self, series: String) -> StoreFuture<'_, Vec<(String, u64)>> {
        Box::pin(
            self.readers
                .run(move |conn| replay::series_totals(conn, &series)),
        )
    }
}

impl Replays for SqliteStore {
    fn replay_create(&self, spec: ReplaySpec, now: Millis) -> StoreFuture<'_, bool> {
        Box::pin(self.writer.run(move |db| db.replay_create(&spec, now)))
    }

    fn replay(&self, name: String) -> StoreFuture<'_, Option<Replay>> {
        Box::pin(self.writer.run(move |db| db.replay(&name)))
    }

    fn replays(&self, limit: usize) -> StoreFuture<'_, Vec<Replay>> {
        Box::pin(self.writer.run(move |db| db.replays(limit)))
    }

    fn replay_state(
        &self,
        name: String,
        from: Vec<ReplayState>,
        to: ReplayState,
        reason: Option<String>,
        now: Millis,
    ) -> StoreFuture<'_, bool> {
        Box::pin(
            self.writer
                .run(move |db| db.replay_state(&name, &from, to, reason.as_deref(), now)),
        )
    }

    fn replay_advance(&self, step: ReplayStep, now: Millis) -> StoreFuture<'_, Option<Vec<i64>>> {
        Box::pin(self.writer.run(move |db| db.replay_advance(&step, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::new(std::time::Duration::from_secs(60));
        let first = SqliteStore::open(dir.path(), options).unwrap();
        let err = SqliteStore::open(dir.path(), options)
            .err()
            .expect("second open refused");
        assert!(
            err.to_string()
                .contains("another process is using this store"),
            "{err}"
        );
        drop(first);
        SqliteStore::open(dir.path(), options).expect("reopened once the first is gone");
    }

    /// A process killed while owning jobs leaves them leased; the next open (the
    /// only process, by the lock) makes them due at once instead of after the lease.
    #[tokio::test]
    async fn reopening_releases_the_claims_of_the_previous_process() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::new(std::time::Duration::from_secs(60));
        let mut event = fleetbus_event::Event::new("s", "t", Default::default());
        event.id = "e".into();
        let json = event.to_json();
        let stored = StoredEvent {
            event,
            meta: fleetbus_event::Meta::ingested("default", "test"),
        };
        let new = NewEvent::new(stored, &json, vec![("r".into(), "t".into())], vec![]).unwrap();
        let now = now_ms();
        {
            let store = SqliteStore::open(dir.path(), options).unwrap();
            store.append(vec![new], now).await.unwrap();
            assert!(
                store.claim(now, 10).await.unwrap().is_empty(),
                "leased to the appender"
            );
            assert!(store
                .lead("prune", "old".into(), now, 60_000)
                .await
                .unwrap());
        }
        let store = SqliteStore::open(dir.path(), options).unwrap();
        let jobs = store.claim(now_ms(), 10).await.unwrap();
        assert_eq!(jobs.len(), 1, "the dead appender's claim was released");
        assert_eq!(jobs[0].fence, crate::store::FIRST_FENCE + 1);
        assert!(
            store
                .lead("prune", "new".into(), now_ms(), 60_000)
                .await
                .unwrap(),
            "leadership was released too"
        );
    }
}
