//! Why an asset-store call failed. Messages name the offending value but never a PIN.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How many CSV problems the error message spells out; all of them stay in the variant.
const SHOWN_PROBLEMS: usize = 50;

/// An asset-store failure. Only a busy or locked database, or a failed task of the
/// async facade, is retryable.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("cannot open asset store `{}`: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "asset store schema version {found} is newer than this build supports ({supported}); \
         not retryable, upgrade fleetbus"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("asset store {op} failed{}: {source}", retry_note(.source))]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("invalid {field} `{value}`: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid pin key: {reason}")]
    PinKey { reason: &'static str },
    #[error("invalid pin key in `{}`: {reason}", path.display())]
    PinKeyInvalid { path: PathBuf, reason: &'static str },
    #[error("cannot read or create the pin key file `{}`: {source}", path.display())]
    PinKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store's sealed check value does not open: its PINs were sealed with
    /// another key. Nothing is changed.
    #[error(
        "the pin key does not open this asset store's escrowed pins (sealed with another \
         key); not retryable, use the key the pins were escrowed with"
    )]
    WrongPinKey,
    /// Deliberately names no PIN.
    #[error("the escrowed pin for command `{command_uuid}` on device `{serial}` does not open with the pin key")]
    PinUnreadable {
        serial: String,
        command_uuid: String,
    },
    /// A stored document that does not read back (written by a newer build, or
    /// damaged): not retryable.
    #[error("asset store {op} failed: {reason}; not retryable")]
    Corrupt { op: &'static str, reason: String },
    #[error("command `{uuid}` is already in the ledger")]
    DuplicateCommand { uuid: String },
    /// Deliberately carries no PIN: neither the stored one nor the new one.
    #[error(
        "a different pin is already escrowed for command `{command_uuid}` on device `{serial}`"
    )]
    PinConflict {
        serial: String,
        command_uuid: String,
    },
    #[error("cannot escrow an empty pin for command `{command_uuid}` on device `{serial}`")]
    EmptyPin {
        serial: String,
        command_uuid: String,
    },
    /// The blocking task running a call panicked or was cancelled (shutdown): nothing
    /// says the store is at fault, so another attempt may succeed.
    #[error("asset store {op} task failed ({}); retryable", if *.cancelled { "cancelled" } else { "panicked" })]
    Task { op: &'static str, cancelled: bool },
    #[error("csv import rejected, nothing written ({} problem{}): {}",
        problems.len(), if problems.len() == 1 { "" } else { "s" }, summarize(problems))]
    Csv { problems: Vec<CsvProblem> },
}

impl AssetError {
    /// A busy or locked database may succeed on a later attempt; nothing else will.
    pub fn is_retryable(&self) -> bool {
        match self {
            AssetError::Sqlite { source, .. } | AssetError::Open { source, .. } => is_busy(source),
            AssetError::Task { .. } => true,
            _ => false,
        }
    }

    /// The CSV problems when this is an import rejection.
    pub fn csv_problems(&self) -> Option<&[CsvProblem]> {
        match self {
            AssetError::Csv { problems } => Some(problems),
            _ => None,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn retry_note(e: &rusqlite::Error) -> &'static str {
    if is_busy(e) {
        " (retryable)"
    } else {
        ""
    }
}

fn summarize(problems: &[CsvProblem]) -> String {
    let mut out = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN_PROBLEMS {
        out.push_str(&format!("; and {} more", problems.len() - SHOWN_PROBLEMS));
    }
    out
}

/// One problem in a CSV import: where it is (1-based line and column) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvProblem {
    pub line: u64,
    /// 1-based; `None` for problems with a whole row or the whole file.
    pub column: Option<usize>,
    pub header: Option<String>,
    pub message: String,
}

impl fmt::Display for CsvProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = self.column {
            write!(f, ", column {column}")?;
            if let Some(header) = &self.header {
                write!(f, " (`{header}`)")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Attaches the operation name to SQLite errors.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, AssetError>;
}

impl<T> Op<T> for rusqlite::Result<T> {
    fn op(self, op: &'static str) -> Result<T, AssetError> {
        self.map_err(|source| AssetError::Sqlite { op, source })
    }
}
