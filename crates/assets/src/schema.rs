//! The asset database schema, versioned with `PRAGMA user_version` and migrated on open.

use rusqlite::Connection;

use crate::error::{AssetError, Op};

/// Each entry upgrades from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: devices, the UDID map, users, the command ledger and escrowed PINs.
    "CREATE TABLE devices (
        serial TEXT PRIMARY KEY NOT NULL,
        udid TEXT,
        name TEXT,
        model TEXT,
        os_version TEXT,
        os_build TEXT,
        enrollment_state TEXT,
        enrolled_at TEXT,
        user_id TEXT,
        tags TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
        last_seen TEXT,
        notes TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX devices_user_id ON devices (user_id);
    CREATE INDEX devices_udid ON devices (udid);
    -- Every UDID ever seen, so a check-in that carries only the UDID finds its serial.
    CREATE TABLE udids (
        udid TEXT PRIMARY KEY NOT NULL,
        serial TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX udids_serial ON udids (serial);
    CREATE TABLE users (
        id TEXT PRIMARY KEY NOT NULL,
        email TEXT,
        email_key TEXT,  -- lowercased email, for case-insensitive lookup
        name TEXT,
        status TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX users_email_key ON users (email_key);
    CREATE TABLE commands (
        seq INTEGER PRIMARY KEY,
        command_uuid TEXT NOT NULL UNIQUE,
        request_type TEXT NOT NULL,
        udid TEXT NOT NULL,
        serial TEXT,
        rule TEXT,
        target TEXT,
        event_id TEXT,
        enqueued_at TEXT NOT NULL,
        enqueued_ns INTEGER,  -- parsed enqueued_at for ordering; NULL if it does not parse
        status TEXT,
        completed_at TEXT
    );
    CREATE INDEX commands_serial ON commands (serial);
    CREATE INDEX commands_udid ON commands (udid);
    CREATE TABLE pins (
        seq INTEGER PRIMARY KEY,
        serial TEXT NOT NULL,
        command_uuid TEXT NOT NULL,
        pin TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        UNIQUE (serial, command_uuid)
    );",
    // 2: a retried command finds its PIN by CommandUUID alone.
    "CREATE INDEX pins_command ON pins (command_uuid);",
    // 3: PINs are sealed with the pin key (an older build must not read the sealed
    // text as a PIN); one sealed check value tells a wrong key at open.
    "CREATE TABLE pin_key_check (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sealed TEXT NOT NULL
    );",
    // 4: MDM channels since their device's last Authenticate, for servers that
    // send no TokenUpdate tally (MicroMDM): a channel's first TokenUpdate after
    // an Authenticate is its enrollment.
    "CREATE TABLE mdm_authenticated (
        udid TEXT PRIMARY KEY NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE mdm_token_updates (
        udid TEXT NOT NULL,
        user_id TEXT NOT NULL,  -- '' for the device channel
        PRIMARY KEY (udid, user_id)
    );",
    // 5: software-update state per Mac and the OS releases the feed published.
    "CREATE TABLE su_states (
        serial TEXT PRIMARY KEY NOT NULL,
        stage TEXT NOT NULL,
        requirement TEXT,
        updated_at TEXT NOT NULL,
        doc TEXT NOT NULL  -- the whole state as JSON
    );
    CREATE TABLE os_releases (
        platform TEXT NOT NULL,
        product_version TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (platform, product_version)
    );",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), AssetError> {
    let tx = conn.transaction().op("migrate")?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .op("migrate")?;
    if found > VERSION {
        return Err(AssetError::NewerSchema {
            found,
            supported: VERSION,
        });
    }
    for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(sql).op("migrate")?;
    }
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)
            .op("migrate")?;
    }
    tx.commit().op("migrate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assets.db");
        crate::AssetStore::open(&path).unwrap();
        // Reopening must not try to create the tables again.
        crate::AssetStore::open(&path).unwrap();

        // A version-1 database gains the later steps on open.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX pins_command; DROP TABLE pin_key_check; DROP TABLE mdm_authenticated;
             DROP TABLE mdm_token_updates; DROP TABLE su_states; DROP TABLE os_releases;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        crate::AssetStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let indexed: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'pins_command'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1);
        assert_eq!(
            conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .unwrap(),
            VERSION
        );

        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        drop(conn);
        let err = crate::AssetStore::open(&path).unwrap_err();
        assert!(matches!(err, AssetError::NewerSchema { found, .. } if found == VERSION + 1));
        let expected = format!("schema version {} is newer", VERSION + 1);
        assert!(err.to_string().contains(&expected), "{err}");
    }
}
