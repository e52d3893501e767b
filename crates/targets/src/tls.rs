//! The one TLS stack shared by the http, slack and email targets: rustls with
//! the ring crypto provider, installed as the process default once.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Installs ring as rustls's process-wide provider unless one already is (an
/// embedding program may have chosen its own; that choice stands).
pub fn ensure_provider() {
    INSTALL.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: fine either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}
