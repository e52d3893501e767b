//! Scheduled rules: each enabled `rate(...)`/`cron(...)` rule fires its own
//! targets at its times, with a `Scheduled Event` from `fleetbus.scheduler`.

use std::time::Duration;

use fleetbus_config::Schedule;
use fleetbus_event::{Event, Meta};
use serde_json::Map;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Engine, SCHEDULER_SOURCE};

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
            let s = &self.inner.settings;
            let mut event = Event::new(SCHEDULER_SOURCE, "Scheduled Event", Map::new());
            event.id = Engine::new_event_id();
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
