//! The engine: buses, rules, the durable log and delivery queue, retries, the
//! dead-letter queue, the scheduler. Storage sits behind the [`store::Store`] trait.
