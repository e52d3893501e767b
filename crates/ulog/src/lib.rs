//! macOS unified-log reading, NSPredicate-style filtering, summaries and event
//! extraction.
//!
//! - [`reader`]: streaming reader of `log show --style json|ndjson` output (gzip accepted),
//!   constant memory, junk lines skipped and counted.
//! - [`entry`]: one entry with every field `log` emits.
//! - [`predicate`]: the predicate language of `log --predicate` (NSPredicate syntax), parser
//!   with column-pointing errors, evaluator, and a literal prefilter on raw bytes.
//! - [`summary`]: counts by subsystem, category, process or message type.
//! - [`extract`]: extraction rules (predicate + regexes) turning log lines into
//!   EventBridge-shaped events; built-in software-update and MDM-client rules.
//!
//! Pure library code: no I/O except reading from a caller's `Read`, no async runtime.

pub mod entry;
pub mod error;
pub mod extract;
pub mod predicate;
pub mod reader;
pub mod summary;

pub use entry::{EventType, LogEntry, MessageType, NumField, StrField};
pub use error::{PredicateError, ReadError, RuleError};
pub use extract::{events_from_ndjson, extract_ndjson, EnvelopeOptions, Extractor, RuleSpec};
pub use predicate::Predicate;
pub use reader::{open, LogReader, ReadStats};
