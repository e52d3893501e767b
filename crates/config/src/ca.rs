//! CA certificate files (`ca_file`): PEM bundles read and checked when the config
//! loads, so a missing or broken file is a located config error (and `fleetbus
//! validate` finds it) rather than a failed delivery later.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates of a `ca_file`, in file order, each checked to parse as an
/// X.509 trust anchor. Re-read on every config load, so a rotated CA is picked up
/// by a reload.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCerts {
    /// The file, resolved against the config file's directory.
    pub path: PathBuf,
    /// DER encodings, at least one.
    pub certs: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCerts")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

impl CaCerts {
    /// Reads a PEM file of one or more `CERTIFICATE` blocks (other blocks, such as
    /// a key left in the same file, are skipped). The error names the path.
    pub fn read(path: &Path) -> Result<CaCerts, String> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{shown} is not a valid PEM file ({e})"))?;
        if certs.is_empty() {
            return Err(format!(
                "{shown} holds no certificate (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")"
            ));
        }
        for (i, cert) in certs.iter().enumerate() {
            // The check rustls makes when the certificate is added to a root store.
            webpki::anchor_from_trusted_cert(cert).map_err(|e| {
                format!(
                    "{shown}: certificate {} of {} is not a valid X.509 certificate ({e})",
                    i + 1,
                    certs.len()
                )
            })?;
        }
        Ok(CaCerts {
            path: path.to_path_buf(),
            certs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a file holds (bytes, or PEM armour around garbage), reading it
        /// answers with certificates or an error naming the file, never a panic.
        #[test]
        fn any_file_gives_certs_or_a_named_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            armoured in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ca.pem");
            let content = if armoured {
                let mut c = b"-----BEGIN CERTIFICATE-----\n".to_vec();
                c.extend(&bytes);
                c.extend(b"\n-----END CERTIFICATE-----\n");
                c
            } else {
                bytes
            };
            std::fs::write(&path, content).unwrap();
            if let Err(e) = CaCerts::read(&path) {
                prop_assert!(e.contains(&path.display().to_string()), "{}", e);
            }
        }
    }

    #[test]
    fn broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = CaCerts::read(&missing).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot read {}: ", missing.display())),
            "{err}"
        );

        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let err = CaCerts::read(&text).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
        assert!(err.contains(&text.display().to_string()), "{err}");

        let base64 = dir.path().join("base64.pem");
        std::fs::write(
            &base64,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = CaCerts::read(&base64).unwrap_err();
        assert!(err.contains("is not a valid PEM file"), "{err}");

        let der = dir.path().join("der.pem");
        std::fs::write(
            &der,
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = CaCerts::read(&der).unwrap_err();
        assert!(
            err.contains("certificate 1 of 1 is not a valid X.509 certificate"),
            "{err}"
        );
    }
}
