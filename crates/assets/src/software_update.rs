//! Software-update state: where each Mac is on its way to the required OS version
//! (the `software_update:` policy's orchestrator writes it from command results,
//! check-ins and the Mac's own log events), and the OS releases the feed published
//! (the orchestrator's `latest` and its SLA deadlines are computed from them).
//!
//! A state is one row per serial; its fields are kept as one JSON document beside
//! the columns queries filter on (stage, requirement), so a field added later needs
//! no migration.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::{AssetError, Op};
use crate::{key, AssetStore};

/// One Mac's software-update state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SuState {
    pub serial: String,
    pub udid: Option<String>,
    /// The policy requirement that applies (its `name`).
    pub requirement: Option<String>,
    /// The version the requirement asks for, resolved (`latest` from the feed).
    pub required_version: Option<String>,
    /// When it must be installed (RFC 3339).
    pub deadline: Option<String>,
    /// Where the Mac is: `compliant`, `scan sent`, `scanned`, `update found`,
    /// `no update offered`, `scheduled`, `downloading`, `downloaded`,
    /// `installing`, `refused`, `failed`, `abandoned`, `declared`,
    /// `waiting for check-in`, `waiting for a release`.
    pub stage: String,
    /// The OS version the Mac last reported.
    pub os_version: Option<String>,
    /// The OS update the Mac offered (its AvailableOSUpdates answer).
    pub product_key: Option<String>,
    pub available_version: Option<String>,
    /// The InstallAction last sent in ScheduleOSUpdate.
    pub install_action: Option<String>,
    pub max_user_deferrals: Option<u32>,
    /// Times the user put the install off (the Mac's log says so).
    pub deferrals_used: u32,
    /// Download progress, 0 to 1.
    pub progress: Option<f64>,
    /// Why it is where it is (ErrorChain, failureReason, NotNow).
    pub reason: Option<String>,
    /// What fleetbus does next.
    pub next: Option<String>,
    /// The command sent and not yet answered, and when (RFC 3339).
    pub pending_command: Option<String>,
    pub pending_since: Option<String>,
    /// Error answers in a row (reset by any other answer).
    pub errors: u32,
    /// The time of the newest log event read (RFC 3339): a Mac's log lines may be
    /// delivered out of order, and an older one must not move the state back.
    pub log_time: Option<String>,
    /// The event that last moved the state.
    pub event_id: Option<String>,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// An OS release the feed published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsRelease {
    pub platform: String,
    pub product_version: String,
    pub build: Option<String>,
    /// RFC 3339.
    pub release_date: Option<String>,
    pub cves: u32,
    pub actively_exploited: bool,
}

fn decode<T: serde::de::DeserializeOwned>(op: &'static str, doc: &str) -> Result<T, AssetError> {
    serde_json::from_str(doc).map_err(|e| AssetError::Corrupt {
        op,
        reason: format!("stored document does not read back: {e}"),
    })
}

fn encode<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

impl AssetStore {
    /// The state of `serial`, if the orchestrator has one.
    pub fn su_state(&self, serial: &str) -> Result<Option<SuState>, AssetError> {
        const OP: &str = "su state";
        let serial = key("serial", serial)?;
        let conn = self.lock();
        let doc: Option<String> = conn
            .query_row(
                "SELECT doc FROM su_states WHERE serial = ?1",
                params![serial],
                |r| r.get(0),
            )
            .optional()
            .op(OP)?;
        doc.map(|d| decode(OP, &d)).transpose()
    }

    /// Writes `state` (by its serial), replacing what was there.
    pub fn put_su_state(&self, state: &SuState) -> Result<(), AssetError> {
        const OP: &str = "put su state";
        let serial = key("serial", &state.serial)?.to_owned();
        self.write(OP, |tx| {
            tx.execute(
                "INSERT INTO su_states (serial, stage, requirement, updated_at, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(serial) DO UPDATE SET stage = excluded.stage,
                   requirement = excluded.requirement, updated_at = excluded.updated_at,
                   doc = excluded.doc",
                params![
                    serial,
                    state.stage,
                    state.requirement,
                    state.updated_at,
                    encode(state)
                ],
            )
            .op(OP)?;
            Ok(())
        })
    }

    /// Every state, by serial.
    pub fn su_states(&self) -> Result<Vec<SuState>, AssetError> {
        const OP: &str = "su states";
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT doc FROM su_states ORDER BY serial")
            .op(OP)?;
        let docs = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .op(OP)?
            .collect::<Result<Vec<_>, _>>()
            .op(OP)?;
        docs.iter().map(|d| decode(OP, d)).collect()
    }

    /// Records a release (its platform and version are its key); true when new.
    pub fn put_os_release(&self, release: &OsRelease) -> Result<bool, AssetError> {
        const OP: &str = "put os release";
        let platform = key("platform", &release.platform)?.to_owned();
        let version = key("product_version", &release.product_version)?.to_owned();
        self.write(OP, |tx| {
            let before = tx
                .query_row(
                    "SELECT COUNT(*) FROM os_releases WHERE platform = ?1 AND product_version = ?2",
                    params![platform, version],
                    |r| r.get::<_, i64>(0),
                )
                .op(OP)?;
            tx.execute(
                "INSERT INTO os_releases (platform, product_version, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT(platform, product_version) DO UPDATE SET doc = excluded.doc",
                params![platform, version, encode(release)],
            )
            .op(OP)?;
            Ok(before == 0)
        })
    }

    /// The releases of `platform` the feed published, in no particular order.
    pub fn os_releases(&self, platform: &str) -> Result<Vec<OsRelease>, AssetError> {
        const OP: &str = "os releases";
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT doc FROM os_releases WHERE platform = ?1")
            .op(OP)?;
        let docs = stmt
            .query_map(params![platform], |r| r.get::<_, String>(0))
            .op(OP)?
            .collect::<Result<Vec<_>, _>>()
            .op(OP)?;
        docs.iter().map(|d| decode(OP, d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_releases_round_trip() {
        let s = AssetStore::open_in_memory().unwrap();
        assert_eq!(s.su_state("C02X").unwrap(), None);
        let mut st = SuState {
            serial: "C02X".into(),
            stage: "scan sent".into(),
            requirement: Some("all".into()),
            deferrals_used: 1,
            progress: Some(0.5),
            updated_at: "2026-12-04T10:00:00Z".into(),
            ..SuState::default()
        };
        s.put_su_state(&st).unwrap();
        st.stage = "scanned".into();
        s.put_su_state(&st).unwrap();
        assert_eq!(s.su_state("C02X").unwrap(), Some(st.clone()));
        assert_eq!(s.su_states().unwrap(), vec![st]);
        let err = s.put_su_state(&SuState::default()).unwrap_err();
        assert!(err.to_string().contains("serial"), "{err}");

        let r = OsRelease {
            platform: "macOS".into(),
            product_version: "15.1".into(),
            actively_exploited: true,
            ..OsRelease::default()
        };
        assert!(s.put_os_release(&r).unwrap());
        assert!(!s.put_os_release(&r).unwrap(), "the same release again");
        assert_eq!(s.os_releases("macOS").unwrap(), vec![r]);
        assert!(s.os_releases("iOS").unwrap().is_empty());
    }
}
