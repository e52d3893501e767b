//! Replays, as EventBridge's: the events of an archive received in a window are
//! delivered again to chosen rules (or every rule of the bus), each carrying a
//! top-level `replay-name`, so live rules can leave replays out with
//! `{"replay-name": [{"exists": false}]}`. Replayed events are not archived again:
//! their jobs point at the archived event. Each step queues one page's jobs and
//! moves the replay's cursor in one store transaction, so a replay interrupted by
//! a crash resumes at the next start exactly where it was, and the jobs are
//! delivered at least once like any others.

use std::time::Duration;

use fleetbus_config::DEFAULT_ARCHIVE;

use super::archive::QUERY_WINDOW;
use super::{engine_backlog_set, Engine, LEADERSHIP_TTL};
use crate::store::{
    now_ms, EventQuery, Millis, Replay, ReplaySpec, ReplayState, ReplayStep, StoreError,
};
use crate::EngineError;

/// Events looked at per step.
const REPLAY_PAGE: usize = 500;
/// Replays listed at most.
pub const REPLAY_LIST_LIMIT: usize = 1_000;
/// How long a replay waits before looking again when the backlog is busy or the
/// store failed.
const REPLAY_PAUSE: Duration = Duration::from_millis(100);

/// What `fleetbus replay start` and StartReplay ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    pub name: String,
    pub description: Option<String>,
    /// A named archive, or `default` (every event).
    pub archive: String,
    /// For the default archive, the bus whose events and rules are replayed
    /// (default `default`); a named archive has its own.
    pub bus: Option<String>,
    /// Receipt times, `[from, to)`.
    pub from: Millis,
    pub to: Millis,
    /// Rules to deliver to; empty: every rule of the bus.
    pub rules: Vec<String>,
}

impl Engine {
    /// Checks and records a replay, then starts it; answers it as recorded
    /// (`STARTING`, or further along already).
    pub async fn start_replay(&self, req: ReplayRequest) -> Result<Replay, EngineError> {
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let invalid = |m: String| Err(EngineError::Invalid(m));
        // EventBridge's ReplayName: [\.\-_A-Za-z0-9]+, 1 to 64 characters.
        if req.name.is_empty()
            || req.name.len() > 64
            || !req
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return invalid(format!(
                "replay name {:?} is not valid (1 to 64 letters, digits, '.', '-' or '_')",
                req.name
            ));
        }
        if req.from >= req.to {
            return invalid(format!(
                "the replay's start ({}) must be before its end ({})",
                rfc3339(req.from),
                rfc3339(req.to)
            ));
        }
        let now = now_ms();
        if req.to > now {
            return invalid(format!(
                "the replay's end ({}) is in the future: only events already archived can be replayed",
                rfc3339(req.to)
            ));
        }
        let rules = self.rules();
        let bus = if req.archive == DEFAULT_ARCHIVE {
            req.bus.clone().unwrap_or_else(|| "default".into())
        } else {
            let Some(archive) = rules.archive(&req.archive) else {
                let mut names: Vec<&str> = rules
                    .archives
                    .iter()
                    .map(|a| a.config.name.as_str())
                    .collect();
                names.insert(0, DEFAULT_ARCHIVE);
                return Err(EngineError::NotFound(format!(
                    "archive {:?} does not exist (archives: {})",
                    req.archive,
                    names.join(", ")
                )));
            };
            if let Some(b) = req.bus.as_ref().filter(|b| **b != archive.config.bus) {
                return invalid(format!(
                    "archive {:?} keeps events of bus {:?}, not {b:?}",
                    req.archive, archive.config.bus
                ));
            }
            archive.config.bus.clone()
        };
        if !rules.has_bus(&bus) {
            return Err(EngineError::NotFound(format!("bus {bus:?} does not exist")));
        }
        for name in &req.rules {
            match rules.rules.iter().find(|r| r.name == *name) {
                None => {
                    return Err(EngineError::NotFound(format!(
                        "rule {name:?} does not exist"
                    )))
                }
                Some(r) if r.bus != bus => {
                    return invalid(format!(
                        "rule {name:?} is on bus {:?}, the replay's events are on {bus:?}",
                        r.bus
                    ))
                }
                Some(r) if r.schedule.is_some() => {
                    return invalid(format!(
                        "rule {name:?} is a scheduled rule: it matches no events to replay"
                    ))
                }
                Some(_) => {}
            }
        }
        let spec = ReplaySpec {
            name: req.name.clone(),
            description: req.description,
            archive: req.archive,
            bus,
            from: req.from,
            to: req.to,
            rules: req.rules,
        };
        if !self.inner.store.replay_create(spec, now).await? {
            return Err(EngineError::Exists(format!(
                "a replay named {:?} already exists",
                req.name
            )));
        }
        tracing::info!(replay = %req.name, "replay started");
        self.spawn_replay(req.name.clone());
        self.replay(req.name.clone())
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("replay {:?} vanished", req.name)))
    }

    pub async fn replay(&self, name: String) -> Result<Option<Replay>, EngineError> {
        Ok(self.inner.store.replay(name).await?)
    }

    /// Replays, most recently started first.
    pub async fn replays(&self) -> Result<Vec<Replay>, EngineError> {
        Ok(self.inner.store.replays(REPLAY_LIST_LIMIT).await?)
    }

    /// Asks a starting or running replay to stop: it is `CANCELLING` until its
    /// runner sees it (at its next step) and makes it `CANCELLED`.
    pub async fn cancel_replay(&self, name: String) -> Result<Replay, EngineError> {
        let moved = self
            .inner
            .store
            .replay_state(
                name.clone(),
                vec![ReplayState::Starting, ReplayState::Running],
                ReplayState::Cancelling,
                Some("cancelled on request".into()),
                now_ms(),
            )
            .await?;
        let Some(replay) = self.replay(name.clone()).await? else {
            return Err(EngineError::NotFound(format!(
                "replay {name:?} does not exist"
            )));
        };
        if !moved && replay.state != ReplayState::Cancelling {
            return Err(EngineError::Invalid(format!(
                "replay {name:?} is {}: only a starting or running replay can be cancelled",
                replay.state.as_str()
            )));
        }
        Ok(replay)
    }

    /// Resumes the replays a previous run left unfinished.
    pub(super) fn resume_replays(&self) {
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            match engine.inner.store.replays(REPLAY_LIST_LIMIT).await {
                Ok(all) => {
                    for r in all.into_iter().filter(|r| !r.state.is_final()) {
                        tracing::info!(replay = %r.spec.name, state = r.state.as_str(), "resuming replay");
                        engine.spawn_replay(r.spec.name);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list replays to resume"),
            }
        });
    }

    fn spawn_replay(&self, name: String) {
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            loop {
                match engine.run_replay(&name).await {
                    Ok(()) => return,
                    Err(EngineError::ShuttingDown) => return,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(replay = %name, error = %e, "replay step failed; trying again");
                        if engine.pause().await {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(replay = %name, error = %e, "replay failed");
                        let _ = engine
                            .inner
                            .store
                            .replay_state(
                                name.clone(),
                                vec![
                                    ReplayState::Starting,
                                    ReplayState::Running,
                                    ReplayState::Cancelling,
                                ],
                                ReplayState::Failed,
                                Some(e.to_string()),
                                now_ms(),
                            )
                            .await;
                        return;
                    }
                }
            }
        });
    }

    /// Sleeps [`REPLAY_PAUSE`]; true when shutdown began meanwhile.
    async fn pause(&self) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(REPLAY_PAUSE) => self.is_shutting_down(),
            _ = self.inner.shutdown.cancelled() => true,
        }
    }

    /// Runs `name` step by step until it ends (or shutdown).
    async fn run_replay(&self, name: &str) -> Result<(), EngineError> {
        let store = &self.inner.store;
        loop {
            if self.is_shutting_down() {
                return Err(EngineError::ShuttingDown);
            }
            // Processes sharing a store: one runs replays at a time.
            if !self.lead("replays", now_ms(), LEADERSHIP_TTL).await? {
                if self.pause().await {
                    return Err(EngineError::ShuttingDown);
                }
                continue;
            }
            let Some(replay) = store.replay(name.to_owned()).await? else {
                return Ok(());
            };
            match replay.state {
                ReplayState::Starting => {
                    store
                        .replay_state(
                            name.to_owned(),
                            vec![ReplayState::Starting],
                            ReplayState::Running,
                            None,
                            now_ms(),
                        )
                        .await?;
                    continue;
                }
                ReplayState::Cancelling => {
                    store
                        .replay_state(
                            name.to_owned(),
                            vec![ReplayState::Cancelling],
                            ReplayState::Cancelled,
                            None,
                            now_ms(),
                        )
                        .await?;
                    tracing::info!(replay = %name, events = replay.events, "replay cancelled");
                    return Ok(());
                }
                s if s.is_final() => return Ok(()),
                _ => {}
            }
            // Live traffic keeps half the backlog: a replay waits for room.
            let room = self.inner.settings.max_backlog / 2;
            if self
                .inner
                .backlog
                .load(std::sync::atomic::Ordering::Relaxed)
                >= room
            {
                if self.pause().await {
                    return Err(EngineError::ShuttingDown);
                }
                continue;
            }
            let (done, events) = self.replay_step(&replay).await?;
            if done {
                let total = replay.events + events;
                // An empty window is not an error, but it is said.
                let reason = (total == 0).then(|| {
                    format!(
                        "no event of archive {:?} received between {} and {} matched the replay's rules",
                        replay.spec.archive,
                        rfc3339(replay.spec.from),
                        rfc3339(replay.spec.to)
                    )
                });
                let finished = store
                    .replay_state(
                        name.to_owned(),
                        vec![ReplayState::Running],
                        ReplayState::Completed,
                        reason,
                        now_ms(),
                    )
                    .await?;
                if finished {
                    tracing::info!(replay = %name, events = total, "replay completed");
                    return Ok(());
                }
            }
        }
    }

    /// Queues one page of `replay`'s jobs; answers whether its window is exhausted
    /// and how many events the page replayed.
    async fn replay_step(&self, replay: &Replay) -> Result<(bool, u64), EngineError> {
        let spec = &replay.spec;
        let rules = self.rules();
        let archive = if spec.archive == DEFAULT_ARCHIVE {
            None
        } else {
            Some(rules.archive(&spec.archive).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "archive {:?} is no longer in the configuration",
                    spec.archive
                ))
            })?)
        };
        let page = self
            .inner
            .store
            .query(
                EventQuery {
                    since: Some(spec.from),
                    until: Some(spec.to),
                    oldest_first: true,
                    after: replay.cursor,
                    limit: REPLAY_PAGE,
                    ..EventQuery::default()
                },
                QUERY_WINDOW,
            )
            .await?;
        let mut step = ReplayStep {
            name: spec.name.clone(),
            jobs: Vec::new(),
            cursor: page
                .next
                .or(page.events.last().map(|(seq, _)| *seq))
                .or(replay.cursor)
                .unwrap_or(0),
            last_replayed: None,
            events: 0,
        };
        for (seq, stored) in &page.events {
            if stored.meta.bus != spec.bus {
                continue;
            }
            let mut event = stored.event.clone();
            event.replay_name = Some(spec.name.clone());
            let json = event.to_json();
            if archive.is_some_and(|a| !a.holds(&spec.bus, &json)) {
                continue;
            }
            let hits = rules
                .matching(&spec.bus, &json)
                .map_err(|e| EngineError::Store {
                    message: format!("archived event {} does not match: {e}", event.id),
                    retryable: false,
                })?;
            let before = step.jobs.len();
            for i in hits {
                let Some(rule) = rules.rules.get(i as usize) else {
                    continue;
                };
                if (!spec.rules.is_empty() && !spec.rules.contains(&rule.name))
                    || rule.exempted(&json)
                {
                    continue;
                }
                step.jobs.extend(
                    rule.targets
                        .iter()
                        .map(|t| (*seq, rule.name.clone(), t.config.id.clone())),
                );
            }
            if step.jobs.len() > before {
                step.events += 1;
                step.last_replayed =
                    Some((stored.meta.received_at.unix_timestamp_nanos() / 1_000_000) as Millis);
            }
        }
        let queued = step.jobs.len() as u64;
        let events = step.events;
        match self.inner.store.replay_advance(step, now_ms()).await {
            Ok(Some(_)) => {}
            // Cancelled meanwhile: the next turn sees it.
            Ok(None) => return Ok((false, 0)),
            Err(StoreError::Closed) => return Err(EngineError::ShuttingDown),
            Err(e) => return Err(e.into()),
        }
        if queued > 0 {
            let pending = self
                .inner
                .backlog
                .fetch_add(queued, std::sync::atomic::Ordering::Relaxed)
                + queued;
            engine_backlog_set(&self.inner, pending);
            self.inner.wake.notify_one();
        }
        Ok((page.next.is_none(), events))
    }
}

fn rfc3339(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}
