//! The crate's error type.

use std::fmt;

/// Everything that can go wrong building, validating or parsing MDM data.
#[derive(Debug, thiserror::Error)]
pub enum MdmError {
    /// A request type the catalog does not know.
    #[error("unknown request type {name:?}{}", suggestion_text(.suggestion))]
    UnknownRequestType {
        name: String,
        suggestion: Option<String>,
    },
    /// An OS name that is not one of Apple's.
    #[error("unknown OS {0:?} (expected one of: iOS, macOS, tvOS, visionOS, watchOS)")]
    UnknownOs(String),
    /// The payload breaks the catalog's rules; every problem is listed.
    #[error("invalid {request_type} payload: {}", join(.problems))]
    InvalidPayload {
        request_type: String,
        problems: Vec<Problem>,
    },
    /// Bytes that are neither an XML nor a binary property list.
    #[error("invalid plist: {0}")]
    Plist(String),
    /// A plist or JSON whose shape is not the expected one.
    #[error("unexpected message: {0}")]
    Shape(String),
    /// A webhook body that cannot be read.
    #[error("invalid webhook body: {0}")]
    Webhook(String),
    /// A value that cannot be turned into the wanted form (e.g. a bad KEY=VALUE).
    #[error("invalid value for {key}: {reason}")]
    Value { key: String, reason: String },
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One validation problem, at a key path such as `Settings[0].DeviceName`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: dotted key path with array indexes.
    pub path: String,
    /// What.
    pub kind: ProblemKind,
}

/// The kinds of validation problems.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ProblemKind {
    /// A key the schema does not define here.
    UnknownKey { allowed: Vec<String> },
    /// A required key is absent.
    MissingKey { expected_type: String },
    /// The value has the wrong type.
    WrongType { expected: String, found: String },
    /// The value is not one of the allowed values.
    NotAllowed { value: String, allowed: Vec<String> },
    /// The number is outside the bounds.
    OutOfRange { value: String, range: String },
    /// The string does not have the required format.
    BadFormat { value: String, format: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.path;
        match &self.kind {
            ProblemKind::UnknownKey { allowed } => {
                if allowed.is_empty() {
                    write!(f, "unknown key {p} (no keys allowed here)")
                } else {
                    write!(f, "unknown key {p} (allowed: {})", allowed.join(", "))
                }
            }
            ProblemKind::MissingKey { expected_type } => {
                write!(f, "missing required key {p} ({expected_type})")
            }
            ProblemKind::WrongType { expected, found } => {
                write!(f, "key {p} must be {expected}, found {found}")
            }
            ProblemKind::NotAllowed { value, allowed } => write!(
                f,
                "key {p} has value {value} which is not allowed (allowed: {})",
                allowed.join(", ")
            ),
            ProblemKind::OutOfRange { value, range } => {
                write!(f, "key {p} has value {value} outside {range}")
            }
            ProblemKind::BadFormat { value, format } => {
                write!(
                    f,
                    "key {p} has value {value:?} which is not a valid {format}"
                )
            }
        }
    }
}
