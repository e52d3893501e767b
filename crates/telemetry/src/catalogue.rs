//! Every metric fleetbus exports: name, kind, help text and label keys, in one place.
//! A metric's label keys are part of its type (`Counter<N>` takes exactly `N`
//! values, in order), so one name can never be registered with two label sets.

use metrics::{Counter as CounterHandle, Gauge as GaugeHandle, Histogram as HistogramHandle};

/// A counter with `N` label keys.
#[derive(Debug)]
pub struct Counter<const N: usize> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: [&'static str; N],
}

/// A gauge with `N` label keys.
#[derive(Debug)]
pub struct Gauge<const N: usize> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: [&'static str; N],
}

/// A histogram with `N` label keys.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: [&'static str; N],
}

fn labels<const N: usize>(keys: &[&'static str; N], values: [String; N]) -> Vec<metrics::Label> {
    keys.iter()
        .zip(values)
        .map(|(k, v)| metrics::Label::new(*k, v))
        .collect()
}

impl<const N: usize> Counter<N> {
    /// The series for these label values (in the order of [`Counter::labels`]).
    pub fn with(&'static self, values: [String; N]) -> CounterHandle {
        metrics::counter!(self.name, labels(&self.labels, values))
    }
}

impl Counter<0> {
    pub fn get(&'static self) -> CounterHandle {
        metrics::counter!(self.name)
    }
}

impl<const N: usize> Gauge<N> {
    pub fn with(&'static self, values: [String; N]) -> GaugeHandle {
        metrics::gauge!(self.name, labels(&self.labels, values))
    }
}

impl Gauge<0> {
    pub fn get(&'static self) -> GaugeHandle {
        metrics::gauge!(self.name)
    }
}

impl<const N: usize> Histogram<N> {
    pub fn with(&'static self, values: [String; N]) -> HistogramHandle {
        metrics::histogram!(self.name, labels(&self.labels, values))
    }
}

impl Histogram<0> {
    pub fn get(&'static self) -> HistogramHandle {
        metrics::histogram!(self.name)
    }
}

/// Any metric of the catalogue, for [`ALL`].
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    Counter(&'static str, &'static str, &'static [&'static str]),
    Gauge(&'static str, &'static str, &'static [&'static str]),
    Histogram(&'static str, &'static str, &'static [&'static str]),
}

impl Metric {
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Counter(n, ..) | Metric::Gauge(n, ..) | Metric::Histogram(n, ..) => n,
        }
    }

    pub(crate) fn describe(&self) {
        match *self {
            Metric::Counter(name, help, _) => metrics::describe_counter!(name, help),
            Metric::Gauge(name, help, _) => metrics::describe_gauge!(name, help),
            Metric::Histogram(name, help, _) => metrics::describe_histogram!(name, help),
        }
    }
}

macro_rules! catalogue {
    ($($kind:ident $konst:ident<$n:literal> = $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $konst: $kind<$n> = $kind { name: $name, help: $help, labels: [$($label),*] };
        )*
        /// Every metric, for descriptions and the catalogue's own checks.
        pub static ALL: &[Metric] = &[$(Metric::$kind($name, $help, &[$($label),*])),*];
    };
}

catalogue! {
    Counter EVENTS_STORED<1> = "fleetbus_events_stored_total" ["bus"]
        "Events committed to the log, by bus.";
    Counter EVENTS_DUPLICATE<0> = "fleetbus_events_duplicate_total" []
        "Events accepted and dropped because the same source and id arrived within the dedup window.";
    Counter EVENTS_HOP_LIMITED<0> = "fleetbus_events_hop_limited_total" []
        "Derived events dropped at the hop limit (rule-loop guard).";
    Counter EVENTS_CHAIN_BUDGET_DROPPED<0> = "fleetbus_events_chain_budget_dropped_total" []
        "Derived events dropped because their causation chain used its event budget (rule-loop fan-out guard).";
    Counter EVENTS_MATCHED<1> = "fleetbus_events_matched_total" ["rule"]
        "Events a rule's pattern matched.";
    Counter RULE_EXEMPTED<1> = "fleetbus_rule_exempted_total" ["rule"]
        "Events a rule matched but its exemption pattern suppressed.";
    Counter DELIVERIES_SUCCEEDED<2> = "fleetbus_deliveries_succeeded_total" ["rule", "target"]
        "Deliveries a target accepted.";
    Counter DELIVERIES_RETRIED<2> = "fleetbus_deliveries_retried_total" ["rule", "target"]
        "Delivery attempts that failed and were scheduled again.";
    Counter DELIVERIES_DEAD<2> = "fleetbus_deliveries_dead_lettered_total" ["rule", "target"]
        "Deliveries moved to the dead-letter queue.";
    Histogram DELIVERY_LATENCY<2> = "fleetbus_delivery_latency_seconds" ["rule", "target"]
        "Time one delivery attempt took, in seconds.";
    Gauge DELIVERY_BACKLOG<0> = "fleetbus_delivery_backlog" []
        "Deliveries pending (due or waiting for a retry).";
    Counter STORE_PRUNED<1> = "fleetbus_store_pruned_total" ["kind"]
        "Archived events and finished deliveries removed by retention, by kind (events, deliveries).";
    Histogram STORE_BATCH_EVENTS<0> = "fleetbus_store_batch_events" []
        "Events per store commit (group commit size).";
    Counter INGEST_ENTRIES_FAILED<0> = "fleetbus_ingest_entries_failed_total" []
        "PutEvents entries refused (reported in FailedEntryCount).";
    Counter MDM_WEBHOOK_EVENTS<2> = "fleetbus_mdm_webhook_events_total" ["server", "detail_type"]
        "Events made from MDM server webhooks.";
    Counter MDM_COMMANDS_ENQUEUED<2> = "fleetbus_mdm_commands_enqueued_total" ["server", "request_type"]
        "MDM commands enqueued on a device through an MDM server.";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = HashSet::new();
        for m in ALL {
            let name = m.name();
            assert!(seen.insert(name), "{name} is in the catalogue twice");
            assert!(name.starts_with("fleetbus_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            match m {
                Metric::Counter(..) => assert!(name.ends_with("_total"), "{name}"),
                _ => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
    }

    #[test]
    fn no_metric_is_labelled_by_a_node() {
        // Per-device or per-user labels would make one series per Mac (invariant:
        // no per-device metric labels).
        for m in ALL {
            let (Metric::Counter(_, _, labels)
            | Metric::Gauge(_, _, labels)
            | Metric::Histogram(_, _, labels)) = m;
            for l in *labels {
                assert!(
                    !["device", "serial", "udid", "user", "id", "event_id"].contains(l),
                    "{} is labelled by {l}",
                    m.name()
                );
            }
        }
    }
}
