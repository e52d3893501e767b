//! The engine: buses, rules, the durable log and delivery queue, retries, the
//! dead-letter queue, the scheduler. Storage sits behind the role traits of
//! [`store`], held as one `Arc<dyn store::Store>`.
//!
//! Flow: [`Engine::put`] matches each event against its bus's rules, then the
//! store appends the event and one job per (rule, target) atomically, the jobs
//! claimed by this process; only then is the put acknowledged. The dispatcher
//! delivers jobs (handed over in memory, or claimed from the store after a
//! restart or when a retry falls due), records each outcome with its claim's
//! fence, retries with backoff, and dead-letters what cannot be delivered.

mod engine;
mod error;
mod rules;
pub mod store;

pub use engine::{
    idempotency_key, CountKey, CountQuery, CountSeries, Dimensions, Engine, PutOutcome,
    ReplayRequest, Settings, Trace, TraceNode, COUNT_BUCKETS, DELIVERY_SOURCE, QUERY_LIMIT,
    QUERY_SCAN, REPLAY_LIST_LIMIT, SCHEDULER_SOURCE, SERIES_BUCKET_MS,
};
pub use error::{EngineError, PutError};
