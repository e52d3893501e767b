//! Scheduled rules: each enabled `rate(...)`/`cron(...)` rule fires its own
//! targets at its times, with a `Scheduled Event` from `fleetbus.scheduler`.

use std::time::Duration;

use fleetbus_config::Schedule;
use fleetbus_event::{Event, Meta};
use serde_json::Map;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Engine, LEADERSHIP_TTL, SCHEDULER_SOURCE};
use crate::store::now_ms;

/// Namespace of scheduled events' ids (UUID v5).
const SCHEDULED_IDS: uuid::Uuid = uuid::Uuid::from_u128(0x6a1f_3c0e_9b7d_4e52_a8c1_2f40_d95e_7b13);

/// The id of `rule`'s event firing at `at`: the same in every process, so processes
/// sharing a store that fire the same tick store one event (the others are
/// duplicates), and a restart re-firing a tick does not fire it twice.
pub(crate) fn scheduled_id(rule: &str, at: OffsetDateTime) -> String {
    let name = format!("{rule}\0{}", at.unix_timestamp_nanos());
    uuid::Uuid::new_v5(&SCHEDULED_IDS, name.as_bytes()).to_string()
}

impl Engine {
    pub(super) fn start_schedules(&self) {
        let token = self.inner.shutdown.child_token();
        let old = std::mem::replace(
            &mut *self
                .inner
                .schedules
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            token.clone(),
        );
        old.cancel();
        let rules = self.rules();
        for rule in rules.rules.iter().filter(|r| r.enabled) {
            let Some(schedule) = rule.schedule.clone() else {
                continue;
            };
            let engine = self.clone();
            let name = rule.name.clone();
            let bus = rule.bus.clone();
            let token = token.clone();
            self.inner
                .tasks
                .spawn(async move { engine.run_schedule(name, bus, schedule, token).await });
        }
    }

    pub(super) async fn run_schedule(
        &self,
        rule: String,
        bus: String,
        schedule: Schedule,
        token: CancellationToken,
    ) {
        let start = self.inner.started;
        let mut after = OffsetDateTime::now_utc();
        loop {
            let Some(at) = schedule.next_after(start, after) else {
                tracing::info!(rule = %rule, "schedule has no future firing");
                return;
            };
            let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            let wait = Duration::from_millis(wait.whole_milliseconds() as u64);
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            // One process fires each tick (the ids would dedupe a second firing,
            // but a follower should not even try).
            match self.lead("schedule", now_ms(), LEADERSHIP_TTL).await {
                Ok(true) => {}
                Ok(false) => {
                    after = at;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(rule = %rule, error = %e, "cannot tell whether this process leads scheduling; firing anyway (a duplicate firing is deduplicated by its id)");
                }
            }
            let s = &self.inner.settings;
            let mut event = Event::new(SCHEDULER_SOURCE, "Scheduled Event", Map::new());
            event.id = scheduled_id(&rule, at);
            event.time = at;
            event.account = s.account.clone();
            event.region = s.region.clone();
            event.resources = vec![format!(
                "arn:fleetbus:events:{}:{}:rule/{}",
                s.region, s.account, rule
            )];
            let meta = Meta::ingested(bus.clone(), "scheduler");
            if let Err(e) = self.put_for_rule(&rule, event, meta).await {
                tracing::error!(rule = %rule, error = %e, "scheduled event not stored");
            }
            after = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_scheduled_id_depends_on_the_rule_and_the_tick_only() {
        let at = datetime!(2026-12-03 10:00 UTC);
        assert_eq!(scheduled_id("nightly", at), scheduled_id("nightly", at));
        assert_ne!(scheduled_id("nightly", at), scheduled_id("weekly", at));
        assert_ne!(
            scheduled_id("nightly", at),
            scheduled_id("nightly", at + time::Duration::minutes(1))
        );
        // A rule name cannot run into the time: "a" at 10 vs "a\01" at 0.
        assert_ne!(
            scheduled_id("a", OffsetDateTime::from_unix_timestamp(10).unwrap()),
            scheduled_id(
                &format!("a{}1", char::from(0)),
                OffsetDateTime::from_unix_timestamp(0).unwrap()
            )
        );
        assert!(uuid::Uuid::parse_str(&scheduled_id("r", at)).is_ok());
    }
}
