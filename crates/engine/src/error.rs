//! Engine errors, each saying whether trying again may help.

/// Why the engine refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("storage failed: {message}")]
    Store { message: String, retryable: bool },
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("delivery backlog is full ({pending} pending, limit {limit})")]
    Backpressure { pending: u64, limit: u64 },
    #[error("unknown bus {0:?}")]
    UnknownBus(String),
    #[error("rule {rule:?}: {message}")]
    Rule { rule: String, message: String },
    /// A query the archive cannot answer as asked.
    #[error("{0}")]
    Query(String),
    /// A request naming something that does not exist (an archive, a replay).
    #[error("{0}")]
    NotFound(String),
    /// A request creating something whose name is taken.
    #[error("{0}")]
    Exists(String),
    /// A request that cannot be carried out as asked (a replay's window, rules).
    #[error("{0}")]
    Invalid(String),
}

impl EngineError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Store { retryable, .. } => *retryable,
            EngineError::ShuttingDown | EngineError::Backpressure { .. } => true,
            EngineError::UnknownBus(_)
            | EngineError::Rule { .. }
            | EngineError::Query(_)
            | EngineError::NotFound(_)
            | EngineError::Exists(_)
            | EngineError::Invalid(_) => false,
        }
    }
}

impl From<crate::store::StoreError> for EngineError {
    fn from(e: crate::store::StoreError) -> EngineError {
        match e {
            // The store went away with the engine.
            crate::store::StoreError::Closed => EngineError::ShuttingDown,
            e => EngineError::Store {
                message: e.to_string(),
                retryable: e.is_retryable(),
            },
        }
    }
}

/// Why one event of a batch was not accepted (the others may have been).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("unknown bus {0:?}")]
    UnknownBus(String),
    #[error("hop limit {limit} reached (event caused by {cause}); dropped to stop a rule loop")]
    HopLimit { limit: u32, cause: String },
    #[error("causation chain of {root} has put {budget} events on the buses (chain_budget); dropped to stop a rule loop's fan-out")]
    ChainBudget { budget: u32, root: String },
    #[error("event does not parse for matching: {0}")]
    Unmatchable(String),
}
