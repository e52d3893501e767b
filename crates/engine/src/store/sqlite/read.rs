//! Archive queries on connections of their own: WAL lets them read a snapshot
//! while the writer commits, so a query that walks many rows never holds up
//! ingest. At most [`READERS`] run at once, each on a blocking thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Semaphore;

use super::db::Db;
use crate::store::{Attachment, EventPage, EventQuery, GroupField, Millis, StoreError};
use fleetbus_event::StoredEvent;

/// Read connections at most (and queries at once).
pub(super) const READERS: usize = 4;

/// How far around `since`/`until` positions are looked for: events are appended
/// in commit order, and an event's receipt time is taken just before, so the two
/// orders differ by at most the time an event waits for its commit.
const CLOCK_SLACK_MS: Millis = 60_000;

/// A small pool of read-only connections to the store file.
pub(super) struct Readers {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(super) fn new(file: PathBuf) -> Readers {
        Readers {
            file,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Runs `f` on a read connection, on a blocking thread.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match me.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                Some(c) => c,
                None => me.connect()?,
            };
            let out = f(&conn);
            me.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Backend {
            backend: "sqlite",
            message: format!("read task failed: {e}"),
            retryable: true,
        })?
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
        Ok(conn)
    }
}

/// One page of `q`, looking at no more than `window` positions.
pub(super) fn query(
    conn: &Connection,
    q: &EventQuery,
    window: u64,
) -> Result<EventPage, StoreError> {
    let window = window.max(1) as i64;
    let Some(max) = conn.query_row("SELECT max(seq) FROM events", [], |r| {
        r.get::<_, Option<i64>>(0)
    })?
    else {
        return Ok(EventPage::default());
    };
    // The range of positions the time bounds allow, widened by the slack; the
    // exact bounds are applied to each row below.
    let first_at = |at: Millis| -> Result<Option<i64>, StoreError> {
        Ok(conn
            .query_row(
                "SELECT seq FROM events WHERE received_at >= ?1 ORDER BY received_at LIMIT 1",
                [at],
                |r| r.get(0),
            )
            .optional()?)
    };
    let lo = match q.since {
        Some(s) => match first_at(s.saturating_sub(CLOCK_SLACK_MS))? {
            Some(seq) => seq,
            None => return Ok(EventPage::default()),
        },
        None => 0,
    };
    let hi = match q.until {
        Some(u) => first_at(u.saturating_add(CLOCK_SLACK_MS))?.unwrap_or(max + 1),
        None => max + 1,
    };
    // This call's window: [from, to) of positions.
    let (from, to) = if q.oldest_first {
        let from = q.after.map_or(lo, |a| (a + 1).max(lo));
        (from, from.saturating_add(window).min(hi))
    } else {
        let to = q.after.map_or(hi, |a| a.min(hi));
        (to.saturating_sub(window).max(lo), to)
    };
    if from >= to {
        return Ok(EventPage::default());
    }
    let order = if q.oldest_first { "ASC" } else { "DESC" };
    let sql = if q.resource.is_some() {
        format!(
            "SELECT e.seq, e.body FROM resources r JOIN events e ON e.seq = r.seq
             WHERE r.resource = ?1 AND r.seq >= ?2 AND r.seq < ?3
               AND (?4 IS NULL OR e.source = ?4) AND (?5 IS NULL OR e.detail_type = ?5)
               AND (?6 IS NULL OR e.received_at >= ?6) AND (?7 IS NULL OR e.received_at < ?7)
             ORDER BY r.seq {order} LIMIT ?8"
        )
    } else {
        format!(
            "SELECT seq, body FROM events
             WHERE ?1 IS NULL AND seq >= ?2 AND seq < ?3
               AND (?4 IS NULL OR source = ?4) AND (?5 IS NULL OR detail_type = ?5)
               AND (?6 IS NULL OR received_at >= ?6) AND (?7 IS NULL OR received_at < ?7)
             ORDER BY seq {order} LIMIT ?8"
        )
    };
    let limit = q.limit.max(1);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            q.resource,
            from,
            to,
            q.source,
            q.detail_type,
            q.since,
            q.until,
            limit as i64
        ],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, body) = row?;
        events.push((seq, Db::parse_event(seq, &body)?));
    }
    let full = events.len() == limit;
    let next = if full {
        events.last().map(|(seq, _)| *seq)
    } else if q.oldest_first {
        // The window is done; more lie above it unless it reached the end.
        (to < hi).then_some(to - 1)
    } else {
        (from > lo).then_some(from)
    };
    let scanned = match (full, events.last()) {
        (true, Some((last, _))) if q.oldest_first => last - from + 1,
        (true, Some((last, _))) => to - last,
        _ => to - from,
    };
    Ok(EventPage {
        events,
        next,
        scanned: scanned.max(0) as u64,
    })
}

/// The events `id` caused directly, oldest first.
pub(super) fn effects(
    conn: &Connection,
    id: &str,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.seq, e.body FROM causes c JOIN events e ON e.seq = c.seq WHERE c.cause = ?1 ORDER BY c.seq LIMIT ?2",
    )?;
    Db::collect_events(&mut stmt, params![id, limit as i64])
}

/// Counts per bucket and field value, by SQL over the receipt-time index.
pub(super) fn count_grouped(
    conn: &Connection,
    field: GroupField,
    origin: Millis,
    from: Millis,
    to: Millis,
    bucket_ms: Millis,
) -> Result<Vec<(u64, String, u64)>, StoreError> {
    let column = match field {
        GroupField::DetailType => "detail_type",
        GroupField::Source => "source",
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT (received_at - ?4) / ?3, {column}, COUNT(*) FROM events
         WHERE received_at >= ?1 AND received_at < ?2 GROUP BY 1, 2"
    ))?;
    let rows = stmt.query_map(params![from, to, bucket_ms.max(1), origin], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The attachment of the latest event with `id`.
pub(super) fn attachment(conn: &Connection, id: &str) -> Result<Option<Attachment>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.content_type, a.body FROM attachments a
         WHERE a.event_seq = (SELECT seq FROM events WHERE id = ?1 ORDER BY seq DESC LIMIT 1)",
    )?;
    Ok(stmt
        .query_row([id], |r| {
            Ok(Attachment {
                content_type: r.get(0)?,
                body: r.get(1)?,
            })
        })
        .optional()?)
}
