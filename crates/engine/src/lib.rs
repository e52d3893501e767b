//! The engine: buses, rules, the durable log and delivery queue, retries, the
//! dead-letter queue, the scheduler. Storage sits behind the [`store::Store`] trait.
//!
//! Flow: [`Engine::put`] matches each event against its bus's rules, then the
//! writer thread commits the event and one job per (rule, target) in one
//! transaction; only then is the put acknowledged. The dispatcher delivers jobs
//! (handed over in memory, or found by scanning the store after a restart), records
//! each outcome, retries with backoff, and dead-letters what cannot be delivered.

mod engine;
mod error;
mod rules;
pub mod store;
mod writer;

pub use engine::{
    idempotency_key, Engine, PutOutcome, Settings, DELIVERY_SOURCE, SCHEDULER_SOURCE,
};
pub use error::{EngineError, PutError};
