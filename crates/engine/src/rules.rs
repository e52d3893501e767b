//! Rules compiled for matching: one matcher per bus over every enabled rule's
//! pattern, the exemptions, and the targets built once per configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetbus_config::{Config, Schedule, Target};
use fleetbus_pattern::{Matcher, Pattern};
use fleetbus_targets::{BuildContext, TargetImpl};
use fleetbus_telemetry::{BusMetrics, RuleMetrics, TargetMetrics};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::EngineError;

/// A target ready to deliver, with its limits.
pub(crate) struct TargetEntry {
    pub config: Target,
    pub target: TargetImpl,
    pub concurrency: Semaphore,
    limiter: Option<Mutex<(Duration, Instant)>>,
    pub metrics: TargetMetrics,
}

impl TargetEntry {
    /// Waits for this target's next rate-limit slot.
    pub(crate) async fn rate_slot(&self) {
        let Some(limiter) = &self.limiter else { return };
        let at = {
            let mut guard = limiter.lock().unwrap_or_else(|p| p.into_inner());
            let (interval, next) = *guard;
            let slot = next.max(Instant::now());
            guard.1 = slot + interval;
            slot
        };
        tokio::time::sleep_until(at).await;
    }
}

pub(crate) struct CompiledRule {
    pub name: String,
    pub bus: String,
    pub schedule: Option<Schedule>,
    pub enabled: bool,
    exempt: Option<Matcher<u8>>,
    pub targets: Vec<Arc<TargetEntry>>,
    pub metrics: RuleMetrics,
}

impl CompiledRule {
    pub(crate) fn exempted(&self, event_json: &[u8]) -> bool {
        self.exempt.as_ref().is_some_and(|m| {
            m.matches_for_event(event_json)
                .is_ok_and(|hits| !hits.is_empty())
        })
    }
}

/// A named archive: which events it holds and how long it keeps them.
pub(crate) struct CompiledArchive {
    pub config: fleetbus_config::Archive,
    /// `None`: every event of the bus.
    matcher: Option<Matcher<u8>>,
}

impl CompiledArchive {
    /// True when an event of `bus` (as JSON) is in this archive.
    pub(crate) fn holds(&self, bus: &str, event_json: &[u8]) -> bool {
        bus == self.config.bus
            && self.matcher.as_ref().is_none_or(|m| {
                m.matches_for_event(event_json)
                    .is_ok_and(|hits| !hits.is_empty())
            })
    }
}

/// One configuration's rules; replaced whole on reload.
pub(crate) struct RuleSet {
    pub rules: Vec<CompiledRule>,
    pub archives: Vec<CompiledArchive>,
    /// Named archives that keep events longer than the default archive.
    longer: Vec<usize>,
    default_retention: Duration,
    matchers: HashMap<String, Matcher<u32>>,
    targets: HashMap<(String, String), Arc<TargetEntry>>,
    /// Per bus: events stored.
    stored: HashMap<String, BusMetrics>,
}

impl RuleSet {
    pub(crate) fn build(
        config: &Config,
        assets: Option<&fleetbus_assets::AsyncAssetStore>,
        series: Option<&Arc<dyn fleetbus_targets::kinds::metrics::SeriesSink>>,
    ) -> Result<RuleSet, EngineError> {
        let build = BuildContext::new(&config.connections)
            .with_assets(assets)
            .with_series(series);
        let mut matchers: HashMap<String, Matcher<u32>> = config
            .buses
            .iter()
            .map(|b| (b.clone(), Matcher::new()))
            .collect();
        let mut rules = Vec::new();
        let mut targets = HashMap::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let err = |message: String| EngineError::Rule {
                rule: rule.name.clone(),
                message,
            };
            let exempt = match &rule.exempt {
                Some(p) => {
                    let pattern =
                        Pattern::from_value(p).map_err(|e| err(format!("exempt: {e}")))?;
                    let mut m = Matcher::new();
                    m.add_pattern(0u8, &pattern)
                        .map_err(|e| err(format!("exempt: {e}")))?;
                    Some(m)
                }
                None => None,
            };
            if let (Some(p), true) = (&rule.event_pattern, rule.enabled) {
                let pattern =
                    Pattern::from_value(p).map_err(|e| err(format!("event_pattern: {e}")))?;
                let matcher = matchers
                    .get_mut(&rule.bus)
                    .ok_or_else(|| EngineError::UnknownBus(rule.bus.clone()))?;
                matcher
                    .add_pattern(i as u32, &pattern)
                    .map_err(|e| err(format!("event_pattern: {e}")))?;
            }
            let mut built = Vec::new();
            for t in &rule.targets {
                let target = TargetImpl::build(t, &build)
                    .map_err(|e| err(format!("target {}: {e}", t.id)))?;
                let limiter = t
                    .rate_limit
                    .map(|r| Mutex::new((Duration::from_secs_f64(1.0 / r), Instant::now())));
                let entry = Arc::new(TargetEntry {
                    config: t.clone(),
                    target,
                    concurrency: Semaphore::new(t.concurrency as usize),
                    limiter,
                    metrics: TargetMetrics::new(&rule.name, &t.id),
                });
                targets.insert((rule.name.clone(), t.id.clone()), entry.clone());
                built.push(entry);
            }
            rules.push(CompiledRule {
                name: rule.name.clone(),
                bus: rule.bus.clone(),
                schedule: rule.schedule.clone(),
                enabled: rule.enabled,
                exempt,
                targets: built,
                metrics: RuleMetrics::new(&rule.name),
            });
        }
        let stored = config
            .buses
            .iter()
            .map(|b| (b.clone(), BusMetrics::new(b)))
            .collect();
        let mut archives = Vec::new();
        for a in &config.archives {
            let matcher = match &a.event_pattern {
                Some(p) => {
                    let err = |e: String| {
                        EngineError::Invalid(format!("archive {:?}: event_pattern: {e}", a.name))
                    };
                    let pattern = Pattern::from_value(p).map_err(|e| err(e.to_string()))?;
                    let mut m = Matcher::new();
                    m.add_pattern(0u8, &pattern)
                        .map_err(|e| err(e.to_string()))?;
                    Some(m)
                }
                None => None,
            };
            archives.push(CompiledArchive {
                config: a.clone(),
                matcher,
            });
        }
        let longer = archives
            .iter()
            .enumerate()
            .filter(|(_, a)| a.config.retention > config.retention.archive)
            .map(|(i, _)| i)
            .collect();
        Ok(RuleSet {
            rules,
            archives,
            longer,
            default_retention: config.retention.archive,
            matchers,
            targets,
            stored,
        })
    }

    /// The named archive `name`, if the configuration declares it.
    pub(crate) fn archive(&self, name: &str) -> Option<&CompiledArchive> {
        self.archives.iter().find(|a| a.config.name == name)
    }

    /// How long past the default retention an event of `bus` must be kept: the
    /// longest retention of the named archives holding it, if longer.
    pub(crate) fn keep_for(&self, bus: &str, event_json: &[u8]) -> Option<Duration> {
        self.longer
            .iter()
            .map(|&i| &self.archives[i])
            .filter(|a| a.holds(bus, event_json))
            .map(|a| a.config.retention)
            .max()
            .filter(|&r| r > self.default_retention)
    }

    pub(crate) fn has_bus(&self, bus: &str) -> bool {
        self.matchers.contains_key(bus)
    }

    /// Indexes of the rules on `bus` whose pattern matches.
    pub(crate) fn matching(&self, bus: &str, event_json: &[u8]) -> Result<Vec<u32>, String> {
        match self.matchers.get(bus) {
            None => Ok(Vec::new()),
            Some(m) => m.matches_for_event(event_json).map_err(|e| e.to_string()),
        }
    }

    /// Counts an event stored on `bus`.
    pub(crate) fn count_stored(&self, bus: &str) {
        match self.stored.get(bus) {
            Some(m) => m.stored(1),
            // A bus of an earlier configuration (a reload since the put began).
            None => BusMetrics::new(bus).stored(1),
        }
    }

    pub(crate) fn target(&self, rule: &str, target: &str) -> Option<Arc<TargetEntry>> {
        self.targets
            .get(&(rule.to_owned(), target.to_owned()))
            .cloned()
    }

    /// Rule names, for logs on reload.
    pub(crate) fn summary(&self) -> BTreeMap<&str, usize> {
        self.rules
            .iter()
            .map(|r| (r.name.as_str(), r.targets.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the named archives holding an event, and keeping longer than the
    /// default archive, extend its life; the longest wins.
    #[test]
    fn an_event_is_kept_for_the_longest_archive_holding_it() {
        let config = fleetbus_config::load_str(
            "c.yaml",
            "retention: {archive: 30d}
archives:
  - {name: mdm, event_pattern: {source: [mdm]}, retention: 400d}
  - {name: all-long, retention: 60d}
  - {name: same, event_pattern: {source: [mdm]}, retention: 30d}
",
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        let rules = RuleSet::build(&config, None, None).unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(
            rules.keep_for("default", br#"{"source":"mdm"}"#),
            Some(400 * day)
        );
        assert_eq!(
            rules.keep_for("default", br#"{"source":"okta"}"#),
            Some(60 * day)
        );
        assert_eq!(rules.keep_for("other", br#"{"source":"mdm"}"#), None);
        assert!(rules
            .archive("mdm")
            .unwrap()
            .holds("default", br#"{"source":"mdm"}"#));
        assert!(!rules
            .archive("mdm")
            .unwrap()
            .holds("default", br#"{"source":"x"}"#));
        assert!(rules.archive("nope").is_none());
    }
}
