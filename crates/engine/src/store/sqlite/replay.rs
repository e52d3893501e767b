//! Replays and API rules in SQLite (API rules: one document per (bus, name) in
//! `api_rules`). Replays: one row per replay in `replays`, its jobs in `jobs` marked
//! with its name. A step queues a page's jobs and moves the cursor in one
//! transaction, so a replay resumes after a crash exactly where it was.

use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::db::Db;
use crate::store::{Millis, Replay, ReplaySpec, ReplayState, ReplayStep, StoreError};

const COLUMNS: &str = "name, description, archive, bus, from_ms, to_ms, rules, state, reason, cursor, last_replayed, events, jobs, started_at, ended_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Replay> {
    let rules: String = r.get(6)?;
    let state: String = r.get(7)?;
    let bad = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
    };
    Ok(Replay {
        spec: ReplaySpec {
            name: r.get(0)?,
            description: r.get(1)?,
            archive: r.get(2)?,
            bus: r.get(3)?,
            from: r.get(4)?,
            to: r.get(5)?,
            rules: serde_json::from_str(&rules)
                .map_err(|e| bad(format!("replay rules {rules:?}: {e}")))?,
        },
        state: ReplayState::parse(&state).ok_or_else(|| bad(format!("replay state {state:?}")))?,
        reason: r.get(8)?,
        cursor: r.get(9)?,
        last_replayed: r.get(10)?,
        events: r.get::<_, i64>(11)? as u64,
        jobs: r.get::<_, i64>(12)? as u64,
        started_at: r.get(13)?,
        ended_at: r.get(14)?,
    })
}

impl Db {
    pub(super) fn replay_create(
        &mut self,
        spec: &ReplaySpec,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let rules = serde_json::to_string(&spec.rules).unwrap_or_else(|_| "[]".into());
        self.write(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO replays (name, description, archive, bus, from_ms, to_ms, rules, state, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    spec.name,
                    spec.description,
                    spec.archive,
                    spec.bus,
                    spec.from,
                    spec.to,
                    rules,
                    ReplayState::Starting.as_str(),
                    now
                ],
            )?;
            Ok(n == 1)
        })
    }

    pub(super) fn replay(&mut self, name: &str) -> Result<Option<Replay>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM replays WHERE name = ?1"))?
            .query_row([name], row)
            .optional()?)
    }

    pub(super) fn replays(&mut self, limit: usize) -> Result<Vec<Replay>, StoreError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM replays ORDER BY started_at DESC, name LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn replay_state(
        &mut self,
        name: &str,
        from: &[ReplayState],
        to: ReplayState,
        reason: Option<&str>,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let Some(state) = current(tx, name)? else {
                return Ok(false);
            };
            if !from.contains(&state) {
                return Ok(false);
            }
            let ended = to.is_final().then_some(now);
            tx.execute(
                "UPDATE replays SET state = ?2, reason = COALESCE(?3, reason), ended_at = ?4 WHERE name = ?1",
                params![name, to.as_str(), reason, ended],
            )?;
            Ok(true)
        })
    }

    pub(super) fn replay_advance(
        &mut self,
        step: &ReplayStep,
        now: Millis,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        self.write(|tx| {
            if current(tx, &step.name)? != Some(ReplayState::Running) {
                return Ok(None);
            }
            let mut ids = Vec::with_capacity(step.jobs.len());
            {
                let mut job = tx.prepare_cached(
                    "INSERT INTO jobs (event_seq, rule, target, next_at, created_at, updated_at, fence, replay)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?4, 0, ?5)",
                )?;
                for (seq, rule, target) in &step.jobs {
                    job.execute(params![seq, rule, target, now, step.name])?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            tx.execute(
                "UPDATE replays SET cursor = ?2, last_replayed = COALESCE(?3, last_replayed),
                   events = events + ?4, jobs = jobs + ?5 WHERE name = ?1",
                params![
                    step.name,
                    step.cursor,
                    step.last_replayed,
                    step.events as i64,
                    ids.len() as i64
                ],
            )?;
            Ok(Some(ids))
        })
    }
}

impl Db {
    pub(super) fn api_rules(&mut self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT doc FROM api_rules ORDER BY bus, name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn api_rule_put(
        &mut self,
        bus: &str,
        name: &str,
        doc: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO api_rules (bus, name, doc, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (bus, name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                params![bus, name, doc, now],
            )?;
            Ok(())
        })
    }

    pub(super) fn api_archives(&mut self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT doc FROM api_archives ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn api_archive_put(
        &mut self,
        name: &str,
        doc: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO api_archives (name, doc, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                params![name, doc, now],
            )?;
            Ok(())
        })
    }

    pub(super) fn api_archive_delete(&mut self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| Ok(tx.execute("DELETE FROM api_archives WHERE name = ?1", [name])? == 1))
    }

    pub(super) fn api_rule_delete(&mut self, bus: &str, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM api_rules WHERE bus = ?1 AND name = ?2",
                params![bus, name],
            )? == 1)
        })
    }
}

impl Db {
    pub(super) fn series_add(
        &mut self,
        series: &str,
        bucket: Millis,
        dims: &str,
        count: u64,
        max_series: u32,
    ) -> Result<(), StoreError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.write(|tx| {
            let known: bool = tx
                .prepare_cached("SELECT 1 FROM series_totals WHERE name = ?1 AND dims = ?2")?
                .exists(params![series, dims])?;
            let dims = if known {
                dims
            } else {
                let have: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM series_totals WHERE name = ?1")?
                    .query_row([series], |r| r.get(0))?;
                if have >= i64::from(max_series) {
                    crate::store::SERIES_OVERFLOW
                } else {
                    dims
                }
            };
            tx.prepare_cached(
                "INSERT INTO series (name, bucket, dims, count) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name, bucket, dims) DO UPDATE SET count = count + ?4",
            )?
            .execute(params![series, bucket, dims, count])?;
            tx.prepare_cached(
                "INSERT INTO series_totals (name, dims, count) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, dims) DO UPDATE SET count = count + ?3",
            )?
            .execute(params![series, dims, count])?;
            Ok(())
        })
    }
}

fn current(tx: &Transaction<'_>, name: &str) -> Result<Option<ReplayState>, StoreError> {
    let state: Option<String> = tx
        .query_row("SELECT state FROM replays WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(state.and_then(|s| ReplayState::parse(&s)))
}

/// `series`' buckets in `[from, to)`, on a reader connection.
pub(super) fn series_read(
    conn: &rusqlite::Connection,
    series: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<(Millis, String, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT bucket, dims, count FROM series WHERE name = ?1 AND bucket >= ?2 AND bucket < ?3 ORDER BY bucket, dims",
    )?;
    let rows = stmt.query_map(params![series, from, to], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `series`' totals, on a reader connection (a `/metrics` scrape must not wait
/// behind commits).
pub(super) fn series_totals(
    conn: &rusqlite::Connection,
    series: &str,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT dims, count FROM series_totals WHERE name = ?1 ORDER BY dims")?;
    let rows = stmt.query_map([series], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
