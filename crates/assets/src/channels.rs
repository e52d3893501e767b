//! MDM channels between an Authenticate and their first TokenUpdate. NanoMDM counts
//! TokenUpdates itself (`token_update_tally`); MicroMDM sends no count, so the
//! enrollment (a channel's first TokenUpdate since its device's last Authenticate)
//! is told from what is recorded here.

use rusqlite::params;
use time::OffsetDateTime;

use crate::error::{AssetError, Op};
use crate::{key, timestamp, AssetStore};

impl AssetStore {
    /// A device authenticated (enrolling, or enrolling again): every channel of it
    /// starts over, so the next TokenUpdate of each is an enrollment.
    pub fn mdm_authenticated(&self, udid: &str, now: OffsetDateTime) -> Result<(), AssetError> {
        const OP: &str = "mdm authenticated";
        let udid = key("udid", udid)?;
        let at = timestamp(now)?;
        let mut conn = self.lock();
        let tx = conn.transaction().op(OP)?;
        tx.execute(
            "DELETE FROM mdm_token_updates WHERE udid = ?1",
            params![udid],
        )
        .op(OP)?;
        tx.execute(
            "INSERT INTO mdm_authenticated (udid, at) VALUES (?1, ?2)
             ON CONFLICT(udid) DO UPDATE SET at = excluded.at",
            params![udid, at],
        )
        .op(OP)?;
        tx.commit().op(OP)
    }

    /// A TokenUpdate on the device's channel (`user_id` `None`) or a user's: true
    /// when it is the channel's first since the device's last Authenticate (its
    /// enrollment). A device never seen authenticating gets false: it enrolled
    /// before this store knew it.
    pub fn mdm_token_update(&self, udid: &str, user_id: Option<&str>) -> Result<bool, AssetError> {
        const OP: &str = "mdm token update";
        let udid = key("udid", udid)?;
        let user = user_id.map(str::trim).unwrap_or("");
        let mut conn = self.lock();
        let tx = conn.transaction().op(OP)?;
        let authenticated: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM mdm_authenticated WHERE udid = ?1",
                params![udid],
                |r| r.get(0),
            )
            .op(OP)?;
        if authenticated == 0 {
            return Ok(false);
        }
        let first = tx
            .execute(
                "INSERT OR IGNORE INTO mdm_token_updates (udid, user_id) VALUES (?1, ?2)",
                params![udid, user],
            )
            .op(OP)?
            == 1;
        tx.commit().op(OP)?;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use crate::AssetStore;
    use time::macros::datetime;

    #[test]
    fn the_first_token_update_of_each_channel_after_authenticate_is_the_enrollment() {
        let s = AssetStore::open_in_memory().unwrap();
        let now = datetime!(2026-12-03 10:00 UTC);
        assert!(
            !s.mdm_token_update("U1", None).unwrap(),
            "never authenticated"
        );
        s.mdm_authenticated("U1", now).unwrap();
        assert!(s.mdm_token_update("U1", None).unwrap());
        assert!(!s.mdm_token_update("U1", None).unwrap(), "a token refresh");
        assert!(
            s.mdm_token_update("U1", Some("user-a")).unwrap(),
            "the user channel's first"
        );
        assert!(!s.mdm_token_update("U1", Some("user-a")).unwrap());
        // Enrolling again starts every channel over.
        s.mdm_authenticated("U1", now).unwrap();
        assert!(s.mdm_token_update("U1", Some("user-a")).unwrap());
        assert!(s.mdm_token_update("U1", None).unwrap());
        assert!(!s.mdm_token_update("U2", None).unwrap(), "another device");
    }
}
