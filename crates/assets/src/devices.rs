//! Devices and the UDID -> serial map.

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::error::{AssetError, Op};
use crate::model::{Device, DeviceFilter, DeviceUpdate};
use crate::{compare_versions, key, merge, timestamp, AssetStore};

const DEVICE_COLUMNS: &str = "serial, udid, name, model, os_version, os_build, \
     enrollment_state, enrolled_at, user_id, tags, last_seen, notes, created_at, updated_at";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    let tags: String = row.get(9)?;
    let tags = serde_json::from_str(&tags)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(9, Type::Text, Box::new(e)))?;
    Ok(Device {
        serial: row.get(0)?,
        udid: row.get(1)?,
        name: row.get(2)?,
        model: row.get(3)?,
        os_version: row.get(4)?,
        os_build: row.get(5)?,
        enrollment_state: row.get(6)?,
        enrolled_at: row.get(7)?,
        user_id: row.get(8)?,
        tags,
        last_seen: row.get(10)?,
        notes: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

pub(crate) fn get_device(conn: &Connection, serial: &str) -> rusqlite::Result<Option<Device>> {
    conn.query_row(
        &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE serial = ?1"),
        [serial],
        device_from_row,
    )
    .optional()
}

pub(crate) fn serial_for_udid_in(
    conn: &Connection,
    udid: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT serial FROM udids WHERE udid = ?1",
        [udid.trim()],
        |row| row.get(0),
    )
    .optional()
}

/// Adds `new` tags in order, skipping blanks and ones already present.
fn push_tags(tags: &mut Vec<String>, new: &[String]) {
    for tag in new {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
}

/// The merge behind [`AssetStore::upsert_device`], inside the caller's transaction.
pub(crate) fn upsert_device_in(
    conn: &Connection,
    u: &DeviceUpdate,
    now: &str,
) -> Result<Device, AssetError> {
    const OP: &str = "upsert_device";
    let serial = key("serial", &u.serial)?;
    let mut d = get_device(conn, serial).op(OP)?.unwrap_or_else(|| Device {
        serial: serial.to_string(),
        udid: None,
        name: None,
        model: None,
        os_version: None,
        os_build: None,
        enrollment_state: None,
        enrolled_at: None,
        user_id: None,
        tags: Vec::new(),
        last_seen: None,
        notes: None,
        created_at: now.to_string(),
        updated_at: now.to_string(),
    });
    let old_udid = d.udid.clone();
    merge(&mut d.udid, &u.udid);
    merge(&mut d.name, &u.name);
    merge(&mut d.model, &u.model);
    merge(&mut d.os_version, &u.os_version);
    merge(&mut d.os_build, &u.os_build);
    merge(&mut d.enrollment_state, &u.enrollment_state);
    merge(&mut d.enrolled_at, &u.enrolled_at);
    merge(&mut d.user_id, &u.user_id);
    merge(&mut d.last_seen, &u.last_seen);
    merge(&mut d.notes, &u.notes);
    if let Some(tags) = &u.tags {
        d.tags.clear();
        push_tags(&mut d.tags, tags);
    }
    push_tags(&mut d.tags, &u.add_tags);
    d.tags
        .retain(|t| !u.remove_tags.iter().any(|r| r.trim() == t));
    d.updated_at = now.to_string();

    match (&old_udid, &d.udid) {
        (_, Some(udid)) if u.udid.is_some() => claim_udid(conn, udid, &d.serial, now)?,
        (Some(old), None) => {
            conn.execute("DELETE FROM udids WHERE udid = ?1", [old])
                .op(OP)?;
        }
        _ => {}
    }
    write_device(conn, &d).op(OP)?;
    Ok(d)
}

fn write_device(conn: &Connection, d: &Device) -> rusqlite::Result<()> {
    // Serializing a Vec<String> cannot fail.
    let tags = serde_json::to_string(&d.tags).unwrap_or_else(|_| "[]".into());
    conn.execute(
        &format!(
            "INSERT INTO devices ({DEVICE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (serial) DO UPDATE SET
               udid = excluded.udid, name = excluded.name, model = excluded.model,
               os_version = excluded.os_version, os_build = excluded.os_build,
               enrollment_state = excluded.enrollment_state, enrolled_at = excluded.enrolled_at,
               user_id = excluded.user_id, tags = excluded.tags, last_seen = excluded.last_seen,
               notes = excluded.notes, updated_at = excluded.updated_at"
        ),
        params![
            d.serial,
            d.udid,
            d.name,
            d.model,
            d.os_version,
            d.os_build,
            d.enrollment_state,
            d.enrolled_at,
            d.user_id,
            tags,
            d.last_seen,
            d.notes,
            d.created_at,
            d.updated_at
        ],
    )?;
    Ok(())
}

/// Points `udid` at `serial`. A UDID belongs to one Mac, so any other device row that
/// still claims it loses it.
fn claim_udid(conn: &Connection, udid: &str, serial: &str, now: &str) -> Result<(), AssetError> {
    const OP: &str = "link_udid";
    conn.execute(
        "INSERT INTO udids (udid, serial, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (udid) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at",
        params![udid, serial, now],
    )
    .op(OP)?;
    conn.execute(
        "UPDATE devices SET udid = NULL, updated_at = ?3 WHERE udid = ?1 AND serial <> ?2",
        params![udid, serial, now],
    )
    .op(OP)?;
    Ok(())
}

impl AssetStore {
    /// Creates or merges into the device `u.serial` (see [`DeviceUpdate`] for the rules);
    /// a UDID in the update is also recorded in the UDID map. Returns the stored device.
    pub fn upsert_device(
        &self,
        u: &DeviceUpdate,
        now: OffsetDateTime,
    ) -> Result<Device, AssetError> {
        let now = timestamp(now)?;
        self.write("upsert_device", |tx| upsert_device_in(tx, u, &now))
    }

    pub fn device(&self, serial: &str) -> Result<Option<Device>, AssetError> {
        get_device(&self.lock(), serial.trim()).op("device")
    }

    /// The device a UDID was last linked to.
    pub fn device_by_udid(&self, udid: &str) -> Result<Option<Device>, AssetError> {
        const OP: &str = "device_by_udid";
        let conn = self.lock();
        match serial_for_udid_in(&conn, udid).op(OP)? {
            Some(serial) => get_device(&conn, &serial).op(OP),
            None => Ok(None),
        }
    }

    /// Devices matching every condition of `f`, sorted by serial.
    pub fn list_devices(&self, f: &DeviceFilter) -> Result<Vec<Device>, AssetError> {
        const OP: &str = "list_devices";
        let mut sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE 1 = 1");
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
        if let Some(user_id) = &f.user_id {
            args.push(user_id);
            sql.push_str(&format!(" AND user_id = ?{}", args.len()));
        }
        if let Some(tag) = &f.tag {
            args.push(tag);
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_each(devices.tags) WHERE json_each.value = ?{})",
                args.len()
            ));
        }
        if f.enrolled_only {
            sql.push_str(" AND lower(enrollment_state) = 'enrolled'");
        }
        if f.os_below.is_some() {
            sql.push_str(" AND os_version IS NOT NULL");
        }
        sql.push_str(" ORDER BY serial");

        let conn = self.lock();
        let mut stmt = conn.prepare(&sql).op(OP)?;
        let rows = stmt.query_map(args.as_slice(), device_from_row).op(OP)?;
        let mut out = Vec::new();
        for device in rows {
            let device = device.op(OP)?;
            let below = match (&f.os_below, &device.os_version) {
                (Some(limit), Some(version)) => compare_versions(version, limit).is_lt(),
                _ => true,
            };
            if below {
                out.push(device);
            }
        }
        Ok(out)
    }

    /// Removes a device and its UDID links; the command ledger and escrowed PINs stay,
    /// since a locked Mac still needs its PIN. Returns whether the device existed.
    pub fn delete_device(&self, serial: &str) -> Result<bool, AssetError> {
        self.write("delete_device", |tx| {
            let serial = serial.trim();
            tx.execute("DELETE FROM udids WHERE serial = ?1", [serial])
                .op("delete_device")?;
            let n = tx
                .execute("DELETE FROM devices WHERE serial = ?1", [serial])
                .op("delete_device")?;
            Ok(n > 0)
        })
    }

    /// Records that `udid` belongs to `serial` and sets it on the device, creating the
    /// device if it is not known yet.
    pub fn link_udid(
        &self,
        udid: &str,
        serial: &str,
        now: OffsetDateTime,
    ) -> Result<(), AssetError> {
        let update = DeviceUpdate {
            serial: key("serial", serial)?.to_string(),
            udid: Some(key("udid", udid)?.to_string()),
            ..DeviceUpdate::default()
        };
        self.upsert_device(&update, now).map(drop)
    }

    pub fn serial_for_udid(&self, udid: &str) -> Result<Option<String>, AssetError> {
        serial_for_udid_in(&self.lock(), udid).op("serial_for_udid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn store() -> AssetStore {
        AssetStore::open_in_memory().unwrap()
    }

    fn update(serial: &str) -> DeviceUpdate {
        DeviceUpdate {
            serial: serial.into(),
            ..DeviceUpdate::default()
        }
    }

    #[test]
    fn none_keeps_some_replaces_empty_clears() {
        let s = store();
        let t1 = datetime!(2024-05-01 10:00 UTC);
        let t2 = datetime!(2024-05-02 10:00 +02:00);
        let first = s
            .upsert_device(
                &DeviceUpdate {
                    name: Some("Ada's Mac".into()),
                    model: Some("MacBookPro18,3".into()),
                    notes: Some("loaner".into()),
                    tags: Some(vec!["eng".into(), "eng".into(), " ".into()]),
                    ..update("C02XK1JHJG5H")
                },
                t1,
            )
            .unwrap();
        assert_eq!(first.tags, vec!["eng"]);
        assert_eq!(first.created_at, "2024-05-01T10:00:00Z");

        let second = s
            .upsert_device(
                &DeviceUpdate {
                    name: Some("Ada's MacBook".into()),
                    notes: Some(String::new()),
                    add_tags: vec!["berlin".into()],
                    remove_tags: vec!["eng".into()],
                    ..update("C02XK1JHJG5H")
                },
                t2,
            )
            .unwrap();
        assert_eq!(second.name.as_deref(), Some("Ada's MacBook"));
        assert_eq!(second.model.as_deref(), Some("MacBookPro18,3"));
        assert_eq!(second.notes, None);
        assert_eq!(second.tags, vec!["berlin"]);
        assert_eq!(second.created_at, "2024-05-01T10:00:00Z");
        assert_eq!(second.updated_at, "2024-05-02T08:00:00Z");
        assert_eq!(s.device("C02XK1JHJG5H").unwrap(), Some(second));
    }

    #[test]
    fn udid_moves_to_the_device_that_claims_it() {
        let s = store();
        let now = datetime!(2024-05-01 10:00 UTC);
        s.link_udid("UDID-1", "SERIALA", now).unwrap();
        assert_eq!(
            s.serial_for_udid("UDID-1").unwrap().as_deref(),
            Some("SERIALA")
        );
        assert_eq!(
            s.device("SERIALA").unwrap().unwrap().udid.as_deref(),
            Some("UDID-1")
        );

        s.upsert_device(
            &DeviceUpdate {
                udid: Some("UDID-1".into()),
                ..update("SERIALB")
            },
            now,
        )
        .unwrap();
        assert_eq!(
            s.device_by_udid("UDID-1").unwrap().unwrap().serial,
            "SERIALB"
        );
        assert_eq!(s.device("SERIALA").unwrap().unwrap().udid, None);

        // Clearing the UDID forgets the link.
        s.upsert_device(
            &DeviceUpdate {
                udid: Some(String::new()),
                ..update("SERIALB")
            },
            now,
        )
        .unwrap();
        assert_eq!(s.serial_for_udid("UDID-1").unwrap(), None);
        assert_eq!(s.device_by_udid("UDID-1").unwrap(), None);
    }

    #[test]
    fn filters_combine() {
        let s = store();
        let now = datetime!(2024-05-01 10:00 UTC);
        for (serial, os, user, state, tag) in [
            ("A1", Some("13.5.1"), "ada", "enrolled", "eng"),
            ("A2", Some("13.10"), "ada", "Enrolled", "sales"),
            ("A3", Some("14"), "bob", "enrolled", "eng"),
            ("A4", None, "bob", "unenrolled", "eng"),
            ("A5", Some("12.7.6"), "bob", "unenrolled", "eng"),
        ] {
            s.upsert_device(
                &DeviceUpdate {
                    os_version: os.map(Into::into),
                    user_id: Some(user.into()),
                    enrollment_state: Some(state.into()),
                    tags: Some(vec![tag.into()]),
                    ..update(serial)
                },
                now,
            )
            .unwrap();
        }
        let serials = |f: DeviceFilter| -> Vec<String> {
            s.list_devices(&f)
                .unwrap()
                .into_iter()
                .map(|d| d.serial)
                .collect()
        };
        assert_eq!(
            serials(DeviceFilter::default()),
            ["A1", "A2", "A3", "A4", "A5"]
        );
        let below = |v: &str| DeviceFilter {
            os_below: Some(v.into()),
            ..DeviceFilter::default()
        };
        assert_eq!(serials(below("13.10")), ["A1", "A5"]);
        assert_eq!(serials(below("14.0")), ["A1", "A2", "A5"]);
        assert_eq!(serials(below("13.5.1")), ["A5"]);
        assert_eq!(
            serials(DeviceFilter {
                enrolled_only: true,
                tag: Some("eng".into()),
                ..DeviceFilter::default()
            }),
            ["A1", "A3"]
        );
        assert_eq!(
            serials(DeviceFilter {
                user_id: Some("bob".into()),
                os_below: Some("99".into()),
                ..DeviceFilter::default()
            }),
            ["A3", "A5"]
        );
        assert!(serials(DeviceFilter {
            tag: Some("ENG".into()),
            ..DeviceFilter::default()
        })
        .is_empty());
    }

    #[test]
    fn delete_reports_whether_the_device_existed() {
        let s = store();
        let now = datetime!(2024-05-01 10:00 UTC);
        s.link_udid("U", "S", now).unwrap();
        assert!(s.delete_device("S").unwrap());
        assert!(!s.delete_device("S").unwrap());
        assert_eq!(s.serial_for_udid("U").unwrap(), None);
    }

    #[test]
    fn empty_serial_is_rejected() {
        let err = store()
            .upsert_device(&update(" "), datetime!(2024-05-01 10:00 UTC))
            .unwrap_err();
        assert!(err.to_string().contains("invalid serial"), "{err}");
    }
}
