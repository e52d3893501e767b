//! The one error type of the event model.

/// Why an event was refused. `Display` reads `field: what is wrong`, the way an HTTP
/// 4xx body and the CLI report it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The bytes are not JSON at all.
    #[error("event is not valid JSON: {0}")]
    Json(String),
    /// A field is missing, of the wrong type or out of range.
    #[error("{field}: {message}")]
    Field {
        /// The offending field, as a dotted path (`detail`, `resources[2]`).
        field: String,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// The whole event is larger than the limit.
    #[error("event is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl EventError {
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        EventError::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Bad input is never worth retrying: the same bytes fail the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
