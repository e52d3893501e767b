//! Error types: pattern validation errors name the JSON path of the offending part.

/// A pattern was rejected. The message names the JSON path (dot-separated, `$` for the
/// pattern root) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The text is not JSON at all.
    #[error("pattern is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a valid event pattern.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where in the pattern, e.g. `detail.state`.
        path: String,
        /// Why, e.g. `unknown operator "foo" (expected one of ...)`.
        reason: String,
    },
}

impl PatternError {
    pub(crate) fn at(path: &[String], reason: impl Into<String>) -> Self {
        PatternError::Invalid {
            path: display_path(path),
            reason: reason.into(),
        }
    }
}

/// Renders a field path as `a.b.c` (`$` for the root).
pub(crate) fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        "$".to_owned()
    } else {
        path.join(".")
    }
}

/// An event could not be matched because its bytes are not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Malformed JSON.
    #[error("invalid event JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Valid JSON whose top level is not an object.
    #[error("event must be a JSON object")]
    NotObject,
    /// Nesting deeper than [`crate::MAX_EVENT_DEPTH`].
    #[error("event nesting deeper than {0} levels")]
    TooDeep(usize),
}
