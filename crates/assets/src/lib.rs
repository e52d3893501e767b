//! The asset store: devices and users, the UDID -> serial mapping, the MDM command
//! ledger and escrowed DeviceLock PINs, in one SQLite file beside the event store.
//!
//! [`AssetStore`] is a cheap handle (`Clone + Send + Sync`) around one connection behind
//! a mutex. Every call is short and synchronous; async callers use it through
//! [`AsyncAssetStore`] (`store.to_async()`), which runs calls on the blocking pool with
//! a bound. Writes that touch several rows run in one transaction.

mod async_store;
mod channels;
mod devices;
mod error;
mod import;
mod ledger;
mod model;
mod pin_key;
mod schema;
mod software_update;
mod users;
mod version;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

pub use async_store::{AsyncAssetStore, MAX_BLOCKING};
pub use error::{AssetError, CsvProblem};
pub use model::{
    CommandRecord, Device, DeviceFilter, DeviceUpdate, EscrowedPin, ImportReport, User, UserUpdate,
    UserWithDevices,
};
pub use pin_key::PinKey;
pub use software_update::{OsRelease, SuState};
pub use version::compare_versions;

/// Copies the asset store at `path` to `dest` (which must not exist) as one
/// consistent snapshot while a server may be writing to it (`VACUUM INTO` on a
/// read-only connection). PINs stay sealed in the copy: it needs the same
/// `pin_key` to be read. Returns the copy's size in bytes.
pub fn backup(path: &std::path::Path, dest: &std::path::Path) -> Result<u64, AssetError> {
    let err = |op: &'static str| move |source| AssetError::Sqlite { op, source };
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| AssetError::Open {
                path: path.to_path_buf(),
                source,
            })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err("backup"))?;
    let dest_text = dest.to_string_lossy();
    conn.execute("VACUUM INTO ?1", [dest_text.as_ref()])
        .map_err(err("backup"))?;
    Ok(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0))
}

use error::Op;

/// How long a call waits for another process (e.g. the CLI) holding the write lock.
/// Short, because callers may be on an async runtime.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Handle to the asset database. Clones share one connection.
#[derive(Clone)]
pub struct AssetStore {
    conn: Arc<Mutex<Connection>>,
    /// Seals escrowed PINs at rest.
    pins: Arc<PinKey>,
}

impl std::fmt::Debug for AssetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetStore").finish_non_exhaustive()
    }
}

impl AssetStore {
    /// Opens (creating if needed) the asset database at `path`, with the pin key in
    /// `pin.key` beside it (created with a new random key if missing).
    pub fn open(path: &Path) -> Result<Self, AssetError> {
        let key = PinKey::load_or_create(&path.with_file_name("pin.key"))?;
        Self::open_with_key(path, key)
    }

    /// Opens (creating if needed) the asset database at `path` and migrates its
    /// schema; escrowed PINs are sealed with `key` (plain-text PINs an older build
    /// stored are sealed now).
    pub fn open_with_key(path: &Path, key: PinKey) -> Result<Self, AssetError> {
        let open_err = |source| AssetError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets the CLI read while the server writes; NORMAL is durable enough for an
        // inventory that the MDM server can always resend.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        Self::with_connection(conn, key)
    }

    /// A private in-memory database with a random pin key, for tests and dry runs.
    pub fn open_in_memory() -> Result<Self, AssetError> {
        let conn = Connection::open_in_memory().map_err(|source| AssetError::Open {
            path: ":memory:".into(),
            source,
        })?;
        Self::with_connection(conn, PinKey::generate()?)
    }

    fn with_connection(mut conn: Connection, key: PinKey) -> Result<Self, AssetError> {
        schema::migrate(&mut conn)?;
        ledger::seal_pins(&mut conn, &key)?;
        Ok(AssetStore {
            conn: Arc::new(Mutex::new(conn)),
            pins: Arc::new(key),
        })
    }

    /// The connection. A panic elsewhere while holding the lock leaves no transaction
    /// open (it rolls back on drop), so a poisoned lock is safe to reuse.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in an immediate transaction (taking the write lock up front so a
    /// read-then-write cannot fail half way on a busy upgrade) and commits if it succeeds.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, AssetError>,
    ) -> Result<T, AssetError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op(op)?;
        let out = f(&tx)?;
        tx.commit().op(op)?;
        Ok(out)
    }
}

/// `now` as the RFC 3339 UTC string stored in records.
fn timestamp(now: OffsetDateTime) -> Result<String, AssetError> {
    now.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| AssetError::Invalid {
            field: "time",
            value: now.to_string(),
            reason: "cannot be written as rfc 3339",
        })
}

/// Nanoseconds since the epoch, for ordering rows by time regardless of string format.
fn sort_key(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// A required key (serial, user id, command uuid, ...), trimmed; empty is an error.
fn key<'a>(field: &'static str, value: &'a str) -> Result<&'a str, AssetError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(AssetError::Invalid {
            field,
            value: value.to_string(),
            reason: "must not be empty",
        });
    }
    Ok(trimmed)
}

/// Applies one field of an update: `None` keeps, `Some("")` clears, `Some(v)` replaces.
fn merge(slot: &mut Option<String>, update: &Option<String>) {
    if let Some(value) = update {
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<AssetStore>();
    }

    #[test]
    fn merge_keeps_replaces_and_clears() {
        let mut slot = Some("a".to_string());
        merge(&mut slot, &None);
        assert_eq!(slot.as_deref(), Some("a"));
        merge(&mut slot, &Some(" b ".into()));
        assert_eq!(slot.as_deref(), Some("b"));
        merge(&mut slot, &Some("  ".into()));
        assert_eq!(slot, None);
    }

    #[test]
    fn empty_keys_are_errors_naming_the_value() {
        let err = key("serial", "  ").unwrap_err();
        assert_eq!(err.to_string(), "invalid serial `  `: must not be empty");
        assert!(!err.is_retryable());
    }
}
