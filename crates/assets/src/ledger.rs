//! The MDM command ledger (CommandUUID -> what was sent and why) and escrowed
//! DeviceLock PINs. PIN values never appear in errors or Debug output.

use rusqlite::{params, Connection, OptionalExtension, Row};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::devices::serial_for_udid_in;
use crate::error::{AssetError, Op};
use crate::model::{CommandRecord, EscrowedPin};
use crate::pin_key::{is_sealed, PinKey};
use crate::{key, sort_key, timestamp, AssetStore};

/// What the store's check row seals: opening it proves the key is the store's.
const CHECK_TEXT: &str = "fleetbus pin key check";
const CHECK_ROW: (&str, &str) = ("", "pin-key-check");

/// At open: checks `key` against the store's check row (writing one into a new
/// store) and seals any PIN an older build kept in plain text, in one transaction.
pub(crate) fn seal_pins(conn: &mut Connection, key: &PinKey) -> Result<(), AssetError> {
    const OP: &str = "seal pins";
    let tx = conn.transaction().op(OP)?;
    let check: Option<String> = tx
        .query_row("SELECT sealed FROM pin_key_check WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()
        .op(OP)?;
    match check {
        Some(sealed) => {
            if key.open(&sealed, CHECK_ROW.0, CHECK_ROW.1).as_deref() != Some(CHECK_TEXT) {
                return Err(AssetError::WrongPinKey);
            }
        }
        None => {
            let sealed = key.seal(CHECK_TEXT, CHECK_ROW.0, CHECK_ROW.1)?;
            tx.execute(
                "INSERT INTO pin_key_check (id, sealed) VALUES (1, ?1)",
                [sealed],
            )
            .op(OP)?;
        }
    }
    let plain: Vec<(i64, String, String, String)> = {
        let mut stmt = tx
            .prepare("SELECT seq, serial, command_uuid, pin FROM pins WHERE pin NOT LIKE 'v1:%'")
            .op(OP)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .op(OP)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .op(OP)?;
        rows
    };
    for (seq, serial, uuid, pin) in plain {
        let sealed = key.seal(&pin, &serial, &uuid)?;
        tx.execute(
            "UPDATE pins SET pin = ?1 WHERE seq = ?2",
            params![sealed, seq],
        )
        .op(OP)?;
    }
    tx.commit().op(OP)
}

/// The PIN of a stored row, opened with the store's key.
fn open_pin(key: &PinKey, stored: &str, serial: &str, uuid: &str) -> Result<String, AssetError> {
    let unreadable = || AssetError::PinUnreadable {
        serial: serial.to_owned(),
        command_uuid: uuid.to_owned(),
    };
    if !is_sealed(stored) {
        return Err(unreadable());
    }
    key.open(stored, serial, uuid).ok_or_else(unreadable)
}

const COMMAND_COLUMNS: &str = "command_uuid, request_type, udid, serial, rule, target, \
     event_id, enqueued_at, status, completed_at";

fn command_from_row(row: &Row<'_>) -> rusqlite::Result<CommandRecord> {
    Ok(CommandRecord {
        command_uuid: row.get(0)?,
        request_type: row.get(1)?,
        udid: row.get(2)?,
        serial: row.get(3)?,
        rule: row.get(4)?,
        target: row.get(5)?,
        event_id: row.get(6)?,
        enqueued_at: row.get(7)?,
        status: row.get(8)?,
        completed_at: row.get(9)?,
    })
}

fn get_command(conn: &Connection, uuid: &str) -> rusqlite::Result<Option<CommandRecord>> {
    conn.query_row(
        &format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE command_uuid = ?1"),
        [uuid],
        command_from_row,
    )
    .optional()
}

impl AssetStore {
    /// Adds a sent command to the ledger. A missing serial is filled in from the UDID
    /// map when the UDID is known; a CommandUUID already in the ledger is an error.
    pub fn record_command(&self, c: &CommandRecord) -> Result<(), AssetError> {
        const OP: &str = "record_command";
        let uuid = key("command uuid", &c.command_uuid)?;
        key("request type", &c.request_type)?;
        let udid = key("udid", &c.udid)?;
        // Ordering uses the parsed time: RFC 3339 strings with and without fractional
        // seconds do not sort correctly as text.
        let enqueued_ns = OffsetDateTime::parse(c.enqueued_at.trim(), &Rfc3339)
            .ok()
            .map(sort_key);
        self.write(OP, |tx| {
            if get_command(tx, uuid).op(OP)?.is_some() {
                return Err(AssetError::DuplicateCommand {
                    uuid: uuid.to_string(),
                });
            }
            let serial = match &c.serial {
                Some(serial) => Some(serial.clone()),
                None => serial_for_udid_in(tx, udid).op(OP)?,
            };
            tx.execute(
                &format!(
                    "INSERT INTO commands ({COMMAND_COLUMNS}, enqueued_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    uuid,
                    c.request_type,
                    udid,
                    serial,
                    c.rule,
                    c.target,
                    c.event_id,
                    c.enqueued_at,
                    c.status,
                    c.completed_at,
                    enqueued_ns
                ],
            )
            .op(OP)?;
            Ok(())
        })
    }

    pub fn command(&self, uuid: &str) -> Result<Option<CommandRecord>, AssetError> {
        get_command(&self.lock(), uuid.trim()).op("command")
    }

    /// Records the result status (Acknowledged, Error, NotNow, ...) and time; returns the
    /// updated record, None if unknown uuid. A later result (NotNow, then Acknowledged)
    /// replaces an earlier one.
    pub fn complete_command(
        &self,
        uuid: &str,
        status: &str,
        now: OffsetDateTime,
    ) -> Result<Option<CommandRecord>, AssetError> {
        const OP: &str = "complete_command";
        let status = key("command status", status)?;
        let now = timestamp(now)?;
        self.write(OP, |tx| {
            let n = tx
                .execute(
                    "UPDATE commands SET status = ?2, completed_at = ?3 WHERE command_uuid = ?1",
                    params![uuid.trim(), status, now],
                )
                .op(OP)?;
            if n == 0 {
                return Ok(None);
            }
            get_command(tx, uuid.trim()).op(OP)
        })
    }

    /// Commands sent to the device, by serial or by any UDID linked to it; newest first.
    pub fn commands_for_device(&self, serial: &str) -> Result<Vec<CommandRecord>, AssetError> {
        const OP: &str = "commands_for_device";
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands
                 WHERE serial = ?1 OR udid IN (SELECT udid FROM udids WHERE serial = ?1)
                 ORDER BY enqueued_ns IS NULL, enqueued_ns DESC, seq DESC"
            ))
            .op(OP)?;
        let commands = stmt
            .query_map([serial.trim()], command_from_row)
            .op(OP)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .op(OP);
        commands
    }

    /// Keeps a DeviceLock PIN for the device, whether or not the device is in the store
    /// (a PIN must never be dropped). Escrowing the same PIN again for the same command
    /// is a no-op; a different PIN for the same command is an error.
    pub fn escrow_pin(
        &self,
        serial: &str,
        command_uuid: &str,
        pin: &str,
        now: OffsetDateTime,
    ) -> Result<(), AssetError> {
        const OP: &str = "escrow_pin";
        let serial = key("serial", serial)?;
        let uuid = key("command uuid", command_uuid)?;
        if pin.trim().is_empty() {
            return Err(AssetError::EmptyPin {
                serial: serial.to_string(),
                command_uuid: uuid.to_string(),
            });
        }
        let created_at = timestamp(now)?;
        self.write(OP, |tx| {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT pin FROM pins WHERE serial = ?1 AND command_uuid = ?2",
                    [serial, uuid],
                    |row| row.get(0),
                )
                .optional()
                .op(OP)?;
            match stored {
                Some(stored) if open_pin(&self.pins, &stored, serial, uuid)? == pin => Ok(()),
                Some(_) => Err(AssetError::PinConflict {
                    serial: serial.to_string(),
                    command_uuid: uuid.to_string(),
                }),
                None => {
                    let sealed = self.pins.seal(pin, serial, uuid)?;
                    tx.execute(
                        "INSERT INTO pins (serial, command_uuid, pin, created_at, created_ns)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![serial, uuid, sealed, created_at, sort_key(now)],
                    )
                    .op(OP)?;
                    Ok(())
                }
            }
        })
    }

    /// The device's escrowed PINs, newest first.
    pub fn escrowed_pins(&self, serial: &str) -> Result<Vec<EscrowedPin>, AssetError> {
        const OP: &str = "escrowed_pins";
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT command_uuid, pin, created_at FROM pins WHERE serial = ?1
                 ORDER BY created_ns DESC, seq DESC",
            )
            .op(OP)?;
        let serial = serial.trim();
        let rows = stmt
            .query_map([serial], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .op(OP)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .op(OP)?;
        rows.into_iter()
            .map(|(command_uuid, stored, created_at)| {
                Ok(EscrowedPin {
                    pin: open_pin(&self.pins, &stored, serial, &command_uuid)?,
                    command_uuid,
                    created_at,
                })
            })
            .collect()
    }

    /// The PIN escrowed for a command, under whichever key (serial or UDID) it
    /// was escrowed: a retry must find it even if the device's serial became
    /// known in between.
    pub fn pin_for_command(&self, command_uuid: &str) -> Result<Option<EscrowedPin>, AssetError> {
        const OP: &str = "pin_for_command";
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT command_uuid, pin, created_at, serial FROM pins WHERE command_uuid = ?1 \
                 ORDER BY seq LIMIT 1",
                [command_uuid],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
            .op(OP)?;
        row.map(|(command_uuid, stored, created_at, serial)| {
            Ok(EscrowedPin {
                pin: open_pin(&self.pins, &stored, &serial, &command_uuid)?,
                command_uuid,
                created_at,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn pins_are_sealed_in_the_file_and_a_plain_text_pin_from_an_older_build_is_sealed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assets.db");
        let store = AssetStore::open(&path).unwrap();
        let now = datetime!(2026-01-02 03:04:05 UTC);
        store
            .escrow_pin("C02NEW", "uuid-new", "112233", now)
            .unwrap();
        drop(store);
        // An older build's row, in plain text.
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO pins (serial, command_uuid, pin, created_at, created_ns) \
             VALUES ('C02OLD', 'uuid-old', '445566', '2025-01-01T00:00:00Z', 1)",
            [],
        )
        .unwrap();
        drop(conn);
        let store = AssetStore::open(&path).unwrap();
        assert_eq!(store.escrowed_pins("C02OLD").unwrap()[0].pin, "445566");
        assert_eq!(
            store.pin_for_command("uuid-new").unwrap().unwrap().pin,
            "112233"
        );
        drop(store);
        let raw = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("445566") && !text.contains("112233"));
        let wal = std::fs::read(dir.path().join("assets.db-wal")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&wal).contains("445566"));
    }

    #[test]
    fn a_store_opened_with_another_key_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assets.db");
        let store = AssetStore::open(&path).unwrap();
        store
            .escrow_pin("C02X", "u-1", "123456", datetime!(2026-01-02 03:04:05 UTC))
            .unwrap();
        drop(store);
        let err = AssetStore::open_with_key(&path, PinKey::generate().unwrap()).unwrap_err();
        assert!(matches!(err, AssetError::WrongPinKey), "{err:?}");
        assert!(!err.is_retryable());
        // The right key still opens it.
        let store = AssetStore::open(&path).unwrap();
        assert_eq!(store.escrowed_pins("C02X").unwrap()[0].pin, "123456");
    }

    fn command(uuid: &str, udid: &str, enqueued_at: &str) -> CommandRecord {
        CommandRecord {
            command_uuid: uuid.into(),
            request_type: "DeviceLock".into(),
            udid: udid.into(),
            serial: None,
            rule: Some("lock-on-deactivate".into()),
            target: Some("nanomdm".into()),
            event_id: Some("evt-1".into()),
            enqueued_at: enqueued_at.into(),
            status: None,
            completed_at: None,
        }
    }

    #[test]
    fn ledger_records_completes_and_orders_newest_first() {
        let s = AssetStore::open_in_memory().unwrap();
        let now = datetime!(2024-05-01 10:00 UTC);
        s.link_udid("UDID-1", "C02XK1JHJG5H", now).unwrap();
        // Fractional seconds would sort wrongly as text ('.' < 'Z').
        s.record_command(&command("c1", "UDID-1", "2024-05-01T10:00:00.500Z"))
            .unwrap();
        s.record_command(&command("c2", "UDID-1", "2024-05-01T10:00:01Z"))
            .unwrap();
        s.record_command(&command("c0", "UDID-1", "2024-05-01T10:00:00Z"))
            .unwrap();
        let err = s
            .record_command(&command("c1", "UDID-1", "2024-05-01T10:00:00Z"))
            .unwrap_err();
        assert!(matches!(err, AssetError::DuplicateCommand { .. }));
        assert_eq!(err.to_string(), "command `c1` is already in the ledger");

        let recorded = s.command("c1").unwrap().unwrap();
        assert_eq!(recorded.serial.as_deref(), Some("C02XK1JHJG5H"));
        assert_eq!(recorded.status, None);

        let done = s
            .complete_command("c1", "Acknowledged", datetime!(2024-05-01 10:05 UTC))
            .unwrap()
            .unwrap();
        assert_eq!(done.status.as_deref(), Some("Acknowledged"));
        assert_eq!(done.completed_at.as_deref(), Some("2024-05-01T10:05:00Z"));
        assert_eq!(s.command("c1").unwrap(), Some(done));
        assert_eq!(s.complete_command("nope", "Error", now).unwrap(), None);
        assert_eq!(s.command("nope").unwrap(), None);

        let order: Vec<_> = s
            .commands_for_device("C02XK1JHJG5H")
            .unwrap()
            .into_iter()
            .map(|c| c.command_uuid)
            .collect();
        assert_eq!(order, ["c2", "c1", "c0"]);
        assert!(s.commands_for_device("OTHER").unwrap().is_empty());
    }

    #[test]
    fn pins_are_escrowed_newest_first_and_never_printed() {
        let s = AssetStore::open_in_memory().unwrap();
        s.escrow_pin("S1", "c1", "482913", datetime!(2024-05-01 10:00 UTC))
            .unwrap();
        s.escrow_pin("S1", "c2", "775120", datetime!(2024-05-02 10:00 UTC))
            .unwrap();
        // Same PIN again: idempotent. A different PIN: refused, without either PIN in the message.
        s.escrow_pin("S1", "c2", "775120", datetime!(2024-05-03 10:00 UTC))
            .unwrap();
        let err = s
            .escrow_pin("S1", "c2", "000111", datetime!(2024-05-03 10:00 UTC))
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("775120") && !text.contains("000111"),
            "{text}"
        );
        let err = s.escrow_pin("S1", "c3", " ", datetime!(2024-05-03 10:00 UTC));
        assert!(matches!(err, Err(AssetError::EmptyPin { .. })));

        let pins = s.escrowed_pins("S1").unwrap();
        let got: Vec<_> = pins
            .iter()
            .map(|p| (p.command_uuid.as_str(), p.pin.as_str()))
            .collect();
        assert_eq!(got, [("c2", "775120"), ("c1", "482913")]);
        let debug = format!("{:?} {:#?}", pins[0], pins);
        assert!(
            !debug.contains("775120") && !debug.contains("482913"),
            "{debug}"
        );
        assert!(s.escrowed_pins("S2").unwrap().is_empty());
        // Found by command alone, whatever key it was escrowed under.
        s.escrow_pin("UDID-9", "c9", "123456", datetime!(2024-05-04 10:00 UTC))
            .unwrap();
        assert_eq!(s.pin_for_command("c9").unwrap().unwrap().pin, "123456");
        assert_eq!(s.pin_for_command("c1").unwrap().unwrap().pin, "482913");
        assert!(s.pin_for_command("nope").unwrap().is_none());
    }
}
