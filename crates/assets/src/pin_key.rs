//! Escrowed DeviceLock PINs are sealed at rest with AES-256-GCM under a key kept
//! outside the database: `assets.db` alone (a backup, a copy sent for debugging)
//! does not reveal a PIN.
//!
//! A sealed PIN is stored as `v1:` + base64(nonce ‖ ciphertext ‖ tag). The row's
//! serial and CommandUUID are the associated data, so a sealed PIN moved to
//! another row does not open. The store keeps one sealed check value, so opening it
//! with the wrong key fails at once instead of at the first retried DeviceLock.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::AssetError;

/// Marks a sealed value (and its format version).
const PREFIX: &str = "v1:";
/// Key length: AES-256.
const KEY_LEN: usize = 32;

/// The key that seals escrowed PINs. Its `Debug` shows nothing of the key.
pub struct PinKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for PinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinKey(..)")
    }
}

impl PinKey {
    /// A key from its base64 text (32 bytes, e.g. `openssl rand -base64 32`).
    pub fn from_base64(text: &str) -> Result<PinKey, AssetError> {
        let invalid = |reason| AssetError::PinKey { reason };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| invalid("not base64 (make one with `openssl rand -base64 32`)"))?;
        if bytes.len() != KEY_LEN {
            return Err(invalid(
                "must be 32 bytes (make one with `openssl rand -base64 32`)",
            ));
        }
        PinKey::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<PinKey, AssetError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| AssetError::PinKey {
            reason: "must be 32 bytes",
        })?;
        Ok(PinKey {
            key: LessSafeKey::new(key),
        })
    }

    /// A new random key.
    pub fn generate() -> Result<PinKey, AssetError> {
        PinKey::from_bytes(&random::<KEY_LEN>()?)
    }

    /// The key in the file at `path`, created (readable by the owner only) with a
    /// new random key if there is none.
    pub fn load_or_create(path: &Path) -> Result<PinKey, AssetError> {
        let file_error = |source| AssetError::PinKeyFile {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => PinKey::from_base64(&text).map_err(|e| match e {
                AssetError::PinKey { reason } => AssetError::PinKeyInvalid {
                    path: path.to_path_buf(),
                    reason,
                },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = random::<KEY_LEN>()?;
                let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(path).map_err(file_error)?;
                writeln!(file, "{text}").map_err(file_error)?;
                file.sync_all().map_err(file_error)?;
                PinKey::from_bytes(&bytes)
            }
            Err(e) => Err(file_error(e)),
        }
    }

    /// `pin` sealed for the row (`serial`, `command_uuid`).
    pub(crate) fn seal(
        &self,
        pin: &str,
        serial: &str,
        command_uuid: &str,
    ) -> Result<String, AssetError> {
        let nonce = random::<NONCE_LEN>()?;
        let mut sealed = pin.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(serial, command_uuid)),
                &mut sealed,
            )
            .map_err(|_| AssetError::PinKey {
                reason: "sealing failed",
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// The PIN in `stored`, or `None` when it does not open with this key for this row.
    pub(crate) fn open(&self, stored: &str, serial: &str, command_uuid: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(stored.strip_prefix(PREFIX)?)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(serial, command_uuid)), &mut sealed)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// True for a value [`PinKey::seal`] made (an older store kept PINs in plain text).
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// `N` bytes from the system's secure random generator.
fn random<const N: usize>() -> Result<[u8; N], AssetError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AssetError::PinKey {
            reason: "the system random generator failed",
        })?;
    Ok(bytes)
}

fn aad(serial: &str, command_uuid: &str) -> Vec<u8> {
    // NUL cannot occur in either key, so the pair is unambiguous.
    [serial.as_bytes(), b"\0", command_uuid.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sealed_pin_opens_only_with_its_key_and_row() {
        let key = PinKey::generate().unwrap();
        let sealed = key.seal("123456", "C02X", "uuid-1").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("123456"));
        assert_eq!(
            key.open(&sealed, "C02X", "uuid-1").as_deref(),
            Some("123456")
        );
        assert_eq!(key.open(&sealed, "C02Y", "uuid-1"), None);
        assert_eq!(key.open(&sealed, "C02X", "uuid-2"), None);
        let other = PinKey::generate().unwrap();
        assert_eq!(other.open(&sealed, "C02X", "uuid-1"), None);
    }

    #[test]
    fn the_same_pin_seals_differently_each_time() {
        let key = PinKey::generate().unwrap();
        assert_ne!(
            key.seal("123456", "C02X", "u").unwrap(),
            key.seal("123456", "C02X", "u").unwrap()
        );
    }

    #[test]
    fn key_text_must_be_32_base64_bytes() {
        let err = PinKey::from_base64("c2hvcnQ=").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid pin key: must be 32 bytes (make one with `openssl rand -base64 32`)"
        );
        assert!(PinKey::from_base64("not base64!").is_err());
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(PinKey::from_base64(&format!("{good}\n")).is_ok());
        assert_eq!(format!("{:?}", PinKey::generate().unwrap()), "PinKey(..)");
    }

    #[test]
    fn a_key_file_is_created_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin.key");
        let first = PinKey::load_or_create(&path).unwrap();
        let sealed = first.seal("9999", "S", "U").unwrap();
        let again = PinKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "S", "U").as_deref(), Some("9999"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        let err = PinKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("pin.key"), "{err}");
    }

    proptest! {
        #[test]
        fn opening_arbitrary_text_never_panics(text in ".*") {
            let key = PinKey::generate().unwrap();
            let _ = key.open(&text, "S", "U");
            let _ = key.open(&format!("v1:{text}"), "S", "U");
        }

        #[test]
        fn any_pin_round_trips(pin in "\\PC{1,32}", serial in "[A-Z0-9]{1,12}", uuid in "[a-f0-9-]{1,36}") {
            let key = PinKey::generate().unwrap();
            let sealed = key.seal(&pin, &serial, &uuid).unwrap();
            prop_assert_eq!(key.open(&sealed, &serial, &uuid), Some(pin));
        }
    }
}
