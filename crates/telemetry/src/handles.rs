//! Hot-path handles, one set per rule, (rule, target) and bus, built with each
//! configuration: the hot path skips the recorder's lookup by name and labels, and a
//! series is registered only when it first counts, so series that never happen never
//! appear in `/metrics`.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};

use crate::catalogue::{self, Counter as CounterDef};

/// A counter registered on first use.
#[derive(Debug)]
struct Lazy<const N: usize> {
    def: &'static CounterDef<N>,
    values: [String; N],
    handle: OnceLock<Counter>,
}

impl<const N: usize> Lazy<N> {
    fn new(def: &'static CounterDef<N>, values: [String; N]) -> Self {
        Lazy {
            def,
            values,
            handle: OnceLock::new(),
        }
    }

    fn get(&self) -> &Counter {
        self.handle
            .get_or_init(|| self.def.with(self.values.clone()))
    }
}

/// One rule's counters.
#[derive(Debug)]
pub struct RuleMetrics {
    matched: Lazy<1>,
    exempted: Lazy<1>,
}

impl RuleMetrics {
    pub fn new(rule: &str) -> RuleMetrics {
        RuleMetrics {
            matched: Lazy::new(&catalogue::EVENTS_MATCHED, [rule.to_owned()]),
            exempted: Lazy::new(&catalogue::RULE_EXEMPTED, [rule.to_owned()]),
        }
    }

    /// The rule's pattern matched an event.
    pub fn matched(&self) {
        self.matched.get().increment(1);
    }

    /// The rule matched, and its exemption pattern suppressed it.
    pub fn exempted(&self) {
        self.exempted.get().increment(1);
    }
}

/// One (rule, target)'s delivery counters and latency.
#[derive(Debug)]
pub struct TargetMetrics {
    succeeded: Lazy<2>,
    retried: Lazy<2>,
    dead: Lazy<2>,
    labels: [String; 2],
    latency: OnceLock<Histogram>,
}

impl TargetMetrics {
    pub fn new(rule: &str, target: &str) -> TargetMetrics {
        let labels = [rule.to_owned(), target.to_owned()];
        TargetMetrics {
            succeeded: Lazy::new(&catalogue::DELIVERIES_SUCCEEDED, labels.clone()),
            retried: Lazy::new(&catalogue::DELIVERIES_RETRIED, labels.clone()),
            dead: Lazy::new(&catalogue::DELIVERIES_DEAD, labels.clone()),
            labels,
            latency: OnceLock::new(),
        }
    }

    pub fn succeeded(&self) {
        self.succeeded.get().increment(1);
    }

    pub fn retried(&self) {
        self.retried.get().increment(1);
    }

    pub fn dead_lettered(&self) {
        self.dead.get().increment(1);
    }

    /// How long one attempt took.
    pub fn latency(&self, seconds: f64) {
        self.latency
            .get_or_init(|| catalogue::DELIVERY_LATENCY.with(self.labels.clone()))
            .record(seconds);
    }
}

/// One bus's counters.
#[derive(Debug)]
pub struct BusMetrics {
    stored: Lazy<1>,
}

impl BusMetrics {
    pub fn new(bus: &str) -> BusMetrics {
        BusMetrics {
            stored: Lazy::new(&catalogue::EVENTS_STORED, [bus.to_owned()]),
        }
    }

    /// `n` events of this bus were committed.
    pub fn stored(&self, n: u64) {
        self.stored.get().increment(n);
    }
}
