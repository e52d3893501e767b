//! Error types of the crate.

use thiserror::Error;

/// Reading log input failed (I/O only: malformed content is skipped and counted).
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("reading log input: {0}")]
    Io(#[from] std::io::Error),
}

/// A predicate did not parse; `column` is 1-based, in characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("predicate syntax error at column {column}: {message}")]
pub struct PredicateError {
    pub column: usize,
    pub message: String,
}

impl PredicateError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        PredicateError {
            column,
            message: message.into(),
        }
    }

    /// The predicate with a caret under the offending column, for terminals.
    pub fn render(&self, predicate: &str) -> String {
        let pad = " ".repeat(self.column.saturating_sub(1));
        format!("{self}\n  {predicate}\n  {pad}^")
    }
}

/// An extraction rule is invalid.
#[derive(Debug, Error)]
pub enum RuleError {
    #[error("rule `{rule}`: {source}")]
    Predicate {
        rule: String,
        #[source]
        source: PredicateError,
    },
    #[error("rule `{rule}`: invalid regex `{pattern}`: {source}")]
    Regex {
        rule: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("rule `{rule}`: capture group `{group}` is reserved (scope, device, rule and log are set by the extractor)")]
    Reserved { rule: String, group: String },
    #[error("rule `{rule}`: dictionary group `{group}` is not a named group of any pattern")]
    DictionaryGroup { rule: String, group: String },
}
