//! What fleetbus's tests share across crates, as a crate instead of `#[path]`
//! includes: each part behind a feature, so a crate's tests build only what they use.
//!
//! - [`reference`]: a tree-walking EventBridge pattern evaluator written apart from
//!   the compiled matcher, the oracle for the matcher's property tests.
//! - `smtp` (feature `smtp`): an SMTP sink with STARTTLS, implicit TLS and AUTH.
//! - `store` (feature `store`): the conformance suite every storage backend passes
//!   ([`store_conformance!`]).

pub mod reference;
#[cfg(feature = "smtp")]
pub mod smtp;
#[cfg(feature = "store")]
pub mod store;
