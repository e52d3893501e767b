//! The causation-chain budget: how many events each chain (an ingested event and
//! everything derived from it) has put on the buses. The hop limit bounds how deep
//! a rule loop goes; this bounds how wide (a loop through three bus targets triples
//! at every hop). It also makes the loop guards' warnings once per chain, not once
//! per dropped event.
//!
//! Bounded: at most [`MAX_CHAINS`] chains are tracked. When full, chains idle for
//! [`IDLE`] are forgotten first, then all; a forgotten chain starts its budget
//! again, and the hop limit still ends it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Chains tracked at once.
pub(crate) const MAX_CHAINS: usize = 10_000;
/// A chain with no new event for this long may be forgotten.
pub(crate) const IDLE: Duration = Duration::from_secs(600);

/// Whether a derived event may go on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// The chain has used its budget; `first` for the first refusal (warn once).
    OverBudget {
        first: bool,
    },
}

#[derive(Debug)]
struct Chain {
    /// Events put so far, the root included.
    events: u32,
    warned_budget: bool,
    warned_hops: bool,
    seen: Instant,
}

/// Per-chain counts. No lock is held across an await: every method is sync.
#[derive(Debug)]
pub(crate) struct Chains {
    budget: u32,
    chains: Mutex<HashMap<String, Chain>>,
}

impl Chains {
    pub(crate) fn new(budget: u32) -> Chains {
        Chains {
            budget,
            chains: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn budget(&self) -> u32 {
        self.budget
    }

    /// Counts one derived event of the chain started by `root`, or refuses it.
    pub(crate) fn admit(&self, root: &str, now: Instant) -> Admit {
        let budget = self.budget;
        self.with(root, now, |c| {
            if c.events >= budget {
                let first = !c.warned_budget;
                c.warned_budget = true;
                Admit::OverBudget { first }
            } else {
                c.events += 1;
                Admit::Yes
            }
        })
    }

    /// True the first time the chain started by `root` reaches the hop limit.
    pub(crate) fn first_hop_warning(&self, root: &str, now: Instant) -> bool {
        self.with(root, now, |c| !std::mem::replace(&mut c.warned_hops, true))
    }

    fn with<T>(&self, root: &str, now: Instant, f: impl FnOnce(&mut Chain) -> T) -> T {
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(chain) = chains.get_mut(root) {
            chain.seen = now;
            return f(chain);
        }
        if chains.len() >= MAX_CHAINS {
            chains.retain(|_, c| now.saturating_duration_since(c.seen) < IDLE);
            if chains.len() >= MAX_CHAINS {
                chains.clear();
            }
        }
        let chain = chains.entry(root.to_owned()).or_insert(Chain {
            // The root itself was put on a bus.
            events: 1,
            warned_budget: false,
            warned_hops: false,
            seen: now,
        });
        chain.seen = now;
        f(chain)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.chains.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_gets_its_budget_and_one_warning() {
        let chains = Chains::new(3);
        let now = Instant::now();
        // The root counts: two derived events fit a budget of three.
        assert_eq!(chains.admit("r", now), Admit::Yes);
        assert_eq!(chains.admit("r", now), Admit::Yes);
        assert_eq!(chains.admit("r", now), Admit::OverBudget { first: true });
        assert_eq!(chains.admit("r", now), Admit::OverBudget { first: false });
        // Another chain has its own.
        assert_eq!(chains.admit("s", now), Admit::Yes);
        assert!(chains.first_hop_warning("r", now));
        assert!(!chains.first_hop_warning("r", now));
        assert!(chains.first_hop_warning("s", now));
    }

    #[test]
    fn the_table_is_bounded_forgetting_idle_chains_first() {
        let chains = Chains::new(5);
        let start = Instant::now();
        for i in 0..MAX_CHAINS {
            chains.admit(&format!("old-{i}"), start);
        }
        assert_eq!(chains.len(), MAX_CHAINS);
        let later = start + IDLE + Duration::from_secs(1);
        chains.admit("busy", later);
        // The idle ones went; the new one is in.
        assert_eq!(chains.len(), 1);
        // Full of recent chains: all are forgotten to make room.
        for i in 0..MAX_CHAINS {
            chains.admit(&format!("new-{i}"), later);
        }
        chains.admit("one-more", later);
        assert!(chains.len() <= MAX_CHAINS);
    }
}
