//! The records the asset store keeps and the updates and filters callers pass in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Mac, keyed by its serial number. Times are RFC 3339 UTC strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub serial: String,
    pub udid: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub os_version: Option<String>,
    pub os_build: Option<String>,
    /// "enrolled" | "unenrolled" | free text.
    pub enrollment_state: Option<String>,
    pub enrolled_at: Option<String>,
    pub user_id: Option<String>,
    pub tags: Vec<String>,
    pub last_seen: Option<String>,
    pub notes: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A change to a device. `None` keeps the stored value, `Some` replaces it and
/// `Some("")` clears it; `tags` replaces the list before `add_tags`/`remove_tags` apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceUpdate {
    pub serial: String,
    pub udid: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub os_version: Option<String>,
    pub os_build: Option<String>,
    pub enrollment_state: Option<String>,
    pub enrolled_at: Option<String>,
    pub user_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    pub last_seen: Option<String>,
    pub notes: Option<String>,
}

/// Which devices [`crate::AssetStore::list_devices`] returns; every set condition must hold.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub user_id: Option<String>,
    /// Exact, case-sensitive tag.
    pub tag: Option<String>,
    /// Devices whose `os_version` is below this by [`crate::compare_versions`];
    /// devices without an `os_version` are excluded.
    pub os_below: Option<String>,
    /// Only devices whose enrollment state is "enrolled" (ASCII case-insensitive).
    pub enrolled_only: bool,
}

/// A person devices are assigned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// "active" | "deactivated" | free text.
    pub status: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A change to a user, with the same merge rules as [`DeviceUpdate`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserUpdate {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
}

/// A user with the devices assigned to them (sorted by serial).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserWithDevices {
    #[serde(flatten)]
    pub user: User,
    pub devices: Vec<Device>,
}

/// One MDM command fleetbus sent, and its result once the device answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command_uuid: String,
    pub request_type: String,
    pub udid: String,
    pub serial: Option<String>,
    pub rule: Option<String>,
    pub target: Option<String>,
    /// The event that triggered the command.
    pub event_id: Option<String>,
    pub enqueued_at: String,
    pub status: Option<String>,
    pub completed_at: Option<String>,
}

/// A DeviceLock PIN fleetbus generated, kept so an admin can unlock the Mac.
#[derive(Clone, PartialEq, Serialize)]
pub struct EscrowedPin {
    pub command_uuid: String,
    pub pin: String,
    pub created_at: String,
}

impl fmt::Debug for EscrowedPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscrowedPin")
            .field("command_uuid", &self.command_uuid)
            .field("pin", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What a CSV import wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub devices: usize,
    /// Distinct users created or updated.
    pub users: usize,
    /// Headers that map to no field, as written in the file.
    pub ignored_columns: Vec<String>,
}
