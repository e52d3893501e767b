//! Users and the devices assigned to them.

use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::error::{AssetError, Op};
use crate::model::{DeviceFilter, User, UserUpdate, UserWithDevices};
use crate::{key, merge, timestamp, AssetStore};

const USER_COLUMNS: &str = "id, email, name, status, created_at, updated_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        status: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

fn get_user(conn: &Connection, id: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_from_row,
    )
    .optional()
}

/// Lowercased with full Unicode rules, unlike SQLite's ASCII-only `lower()`/NOCASE.
fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The id of the first user (by id) with this email, ignoring case.
pub(crate) fn user_id_by_email_in(
    conn: &Connection,
    email: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT id FROM users WHERE email_key = ?1 ORDER BY id LIMIT 1",
        [email_key(email)],
        |row| row.get(0),
    )
    .optional()
}

/// The merge behind [`AssetStore::upsert_user`], inside the caller's transaction.
pub(crate) fn upsert_user_in(
    conn: &Connection,
    u: &UserUpdate,
    now: &str,
) -> Result<User, AssetError> {
    const OP: &str = "upsert_user";
    let id = key("user id", &u.id)?;
    let mut user = get_user(conn, id).op(OP)?.unwrap_or_else(|| User {
        id: id.to_string(),
        email: None,
        name: None,
        status: None,
        created_at: now.to_string(),
        updated_at: now.to_string(),
    });
    merge(&mut user.email, &u.email);
    merge(&mut user.name, &u.name);
    merge(&mut user.status, &u.status);
    user.updated_at = now.to_string();
    conn.execute(
        &format!(
            "INSERT INTO users ({USER_COLUMNS}, email_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name,
               status = excluded.status, updated_at = excluded.updated_at,
               email_key = excluded.email_key"
        ),
        params![
            user.id,
            user.email,
            user.name,
            user.status,
            user.created_at,
            user.updated_at,
            user.email.as_deref().map(email_key)
        ],
    )
    .op(OP)?;
    Ok(user)
}

impl AssetStore {
    /// Creates or merges into the user `u.id` (`None` keeps, `Some("")` clears).
    pub fn upsert_user(&self, u: &UserUpdate, now: OffsetDateTime) -> Result<User, AssetError> {
        let now = timestamp(now)?;
        self.write("upsert_user", |tx| upsert_user_in(tx, u, &now))
    }

    /// The user with the devices whose `user_id` is `id`.
    pub fn user(&self, id: &str) -> Result<Option<UserWithDevices>, AssetError> {
        let user = get_user(&self.lock(), id.trim()).op("user")?;
        user.map(|user| self.with_devices(user)).transpose()
    }

    /// The user with this email, ignoring case; the lowest id wins if several share it.
    pub fn user_by_email(&self, email: &str) -> Result<Option<UserWithDevices>, AssetError> {
        let user = {
            let conn = self.lock();
            match user_id_by_email_in(&conn, email).op("user_by_email")? {
                Some(id) => get_user(&conn, &id).op("user_by_email")?,
                None => None,
            }
        };
        user.map(|user| self.with_devices(user)).transpose()
    }

    /// All users, sorted by id.
    pub fn list_users(&self) -> Result<Vec<User>, AssetError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .op("list_users")?;
        let users = stmt
            .query_map([], user_from_row)
            .op("list_users")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .op("list_users");
        users
    }

    fn with_devices(&self, user: User) -> Result<UserWithDevices, AssetError> {
        let devices = self.list_devices(&DeviceFilter {
            user_id: Some(user.id.clone()),
            ..DeviceFilter::default()
        })?;
        Ok(UserWithDevices { user, devices })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceUpdate;
    use time::macros::datetime;

    #[test]
    fn users_merge_and_carry_their_devices() {
        let s = AssetStore::open_in_memory().unwrap();
        let now = datetime!(2024-05-01 10:00 UTC);
        s.upsert_user(
            &UserUpdate {
                id: "ada".into(),
                email: Some("Ada.Lovelace@Example.COM".into()),
                name: Some("Ada Lovelace".into()),
                status: Some("active".into()),
            },
            now,
        )
        .unwrap();
        let user = s
            .upsert_user(
                &UserUpdate {
                    id: "ada".into(),
                    status: Some("deactivated".into()),
                    ..UserUpdate::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(user.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(user.status.as_deref(), Some("deactivated"));

        for serial in ["S2", "S1"] {
            s.upsert_device(
                &DeviceUpdate {
                    serial: serial.into(),
                    user_id: Some("ada".into()),
                    ..DeviceUpdate::default()
                },
                now,
            )
            .unwrap();
        }
        let found = s
            .user_by_email("ada.lovelace@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(found.user, user);
        let serials: Vec<_> = found.devices.iter().map(|d| d.serial.as_str()).collect();
        assert_eq!(serials, ["S1", "S2"]);
        assert_eq!(s.user("ada").unwrap(), Some(found));
        assert_eq!(s.user("bob").unwrap(), None);
        assert_eq!(s.user_by_email("bob@example.com").unwrap(), None);
        assert_eq!(s.list_users().unwrap(), vec![user]);
    }

    #[test]
    fn user_with_devices_serializes_flat() {
        let s = AssetStore::open_in_memory().unwrap();
        let now = datetime!(2024-05-01 10:00 UTC);
        s.upsert_user(
            &UserUpdate {
                id: "ada".into(),
                ..UserUpdate::default()
            },
            now,
        )
        .unwrap();
        let json = serde_json::to_value(s.user("ada").unwrap().unwrap()).unwrap();
        assert_eq!(json["id"], "ada");
        assert_eq!(json["devices"], serde_json::json!([]));
    }
}
