//! Archive reads for people: queries with an EventBridge pattern on top of the
//! store's filters, each bounded in what it scans, and traces (what caused an
//! event, what it caused, down the chain).

use std::collections::BTreeMap;

use fleetbus_event::StoredEvent;
use fleetbus_pattern::{Matcher, Pattern};
use serde::Serialize;

use super::{Engine, DELIVERY_SOURCE};
use crate::store::{EventPage, EventQuery, GroupField, Millis};
use crate::EngineError;

/// Positions one store call looks at.
pub const QUERY_WINDOW: u64 = 20_000;
/// Positions one query request looks at, at most: a pattern that matches nothing
/// answers an empty page with a `next` to go on from, never a scan of everything.
pub const QUERY_SCAN: u64 = 200_000;
/// Events one page holds at most.
pub const QUERY_LIMIT: usize = 1_000;
/// Events a trace holds at most (the causes and the tree together).
pub const TRACE_LIMIT: usize = 1_000;

/// Events one counts request reads at most; past it the answer says `truncated`.
pub const COUNT_SCAN: u64 = 2_000_000;
/// Buckets one counts request may ask for.
pub const COUNT_BUCKETS: u64 = 1_000;

/// What events are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKey {
    DetailType,
    Source,
    /// Deliveries per rule (their outcome events).
    Rule,
    /// Deliveries per `rule/target`.
    Target,
    /// Deliveries by outcome: `succeeded` or `failed`.
    Outcome,
}

impl CountKey {
    /// As written in `group_by`.
    pub fn parse(text: &str) -> Option<CountKey> {
        Some(match text {
            "detail-type" => CountKey::DetailType,
            "source" => CountKey::Source,
            "rule" => CountKey::Rule,
            "target" => CountKey::Target,
            "outcome" => CountKey::Outcome,
            _ => return None,
        })
    }

    /// The group an event counts in, if it counts at all.
    fn of(self, e: &StoredEvent) -> Option<String> {
        let ev = &e.event;
        let outcome = || (ev.source == DELIVERY_SOURCE).then_some(&ev.detail);
        let text = |d: &serde_json::Map<String, serde_json::Value>, k: &str| {
            d.get(k).and_then(|v| v.as_str()).map(str::to_owned)
        };
        match self {
            CountKey::DetailType => Some(ev.detail_type.clone()),
            CountKey::Source => Some(ev.source.clone()),
            CountKey::Rule => outcome().and_then(|d| text(d, "rule")),
            CountKey::Target => {
                outcome().and_then(|d| Some(format!("{}/{}", text(d, "rule")?, text(d, "target")?)))
            }
            CountKey::Outcome => outcome().map(|_| {
                if ev.detail_type.ends_with("Succeeded") {
                    "succeeded".to_owned()
                } else {
                    "failed".to_owned()
                }
            }),
        }
    }
}

/// A counts request: events received in `[since, until)` in buckets of
/// `bucket_ms` (aligned to the epoch), grouped by `key`, matching `pattern`.
#[derive(Debug, Clone)]
pub struct CountQuery {
    pub key: CountKey,
    pub bucket_ms: Millis,
    pub since: Millis,
    pub until: Millis,
    pub pattern: Option<Pattern>,
}

/// Time-bucketed counts per group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountSeries {
    /// The first bucket's start (ms since the epoch); bucket `i` starts at
    /// `start + i * bucket_ms`.
    pub start: Millis,
    pub bucket_ms: Millis,
    pub buckets: usize,
    /// Per group, one count per bucket.
    pub series: BTreeMap<String, Vec<u64>>,
    /// Archived events read.
    pub scanned: u64,
    /// True when [`COUNT_SCAN`] stopped the count before `until`.
    pub truncated: bool,
}

/// A matcher of the one pattern a query or count was given.
fn one_pattern(pattern: Option<&Pattern>) -> Result<Option<Matcher<u32>>, EngineError> {
    pattern
        .map(|p| {
            let mut m = Matcher::new();
            m.add_pattern(0u32, p)
                .map_err(|e| EngineError::Query(format!("pattern: {e}")))?;
            Ok(m)
        })
        .transpose()
}

/// True when there is no pattern or `e`'s envelope matches it (as a rule's would).
fn matches(matcher: Option<&Matcher<u32>>, e: &StoredEvent) -> bool {
    matcher.is_none_or(|m| {
        m.matches_for_event(&e.event.to_json())
            .is_ok_and(|hits| !hits.is_empty())
    })
}

/// An event, what caused it (root first) and what it caused, as a tree.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The chain from the ingested event down to the traced one's cause.
    pub causes: Vec<StoredEvent>,
    /// The traced event and its effects.
    pub tree: TraceNode,
    /// True when the trace reached [`TRACE_LIMIT`] events (more may exist).
    pub truncated: bool,
}

/// One event of a trace and the events it caused.
#[derive(Debug, Clone, Serialize)]
pub struct TraceNode {
    #[serde(flatten)]
    pub stored: StoredEvent,
    pub effects: Vec<TraceNode>,
}

impl Engine {
    /// One page of archived events matching `query` and, when given, `pattern`
    /// (matched against the envelope, as rules are).
    pub async fn query(
        &self,
        mut query: EventQuery,
        pattern: Option<&Pattern>,
    ) -> Result<EventPage, EngineError> {
        let matcher = one_pattern(pattern)?;
        let limit = query.limit.clamp(1, QUERY_LIMIT);
        let mut out = EventPage::default();
        loop {
            let wanted = limit - out.events.len();
            // With a pattern, more rows than wanted are read and the surplus left
            // for the next page (its cursor is the last event kept).
            query.limit = if matcher.is_some() {
                QUERY_LIMIT
            } else {
                wanted
            };
            let page = self.inner.store.query(query.clone(), QUERY_WINDOW).await?;
            out.scanned += page.scanned;
            out.next = page.next;
            for (seq, e) in page.events {
                if matches(matcher.as_ref(), &e) {
                    out.events.push((seq, e));
                    if out.events.len() == limit {
                        out.next = Some(seq);
                        break;
                    }
                }
            }
            match out.next {
                Some(next) if out.events.len() < limit && out.scanned < QUERY_SCAN => {
                    query.after = Some(next);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// CountSeries of archived events per group and time bucket (see [`CountQuery`]).
    pub async fn count_series(&self, q: CountQuery) -> Result<CountSeries, EngineError> {
        let mut all = self.count_many(vec![q]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Several [`CountQuery`]s answered in one read of the archive (over the union
    /// of their ranges): a page that shows several charts reads each event once.
    pub async fn count_many(&self, qs: Vec<CountQuery>) -> Result<Vec<CountSeries>, EngineError> {
        struct One {
            q: CountQuery,
            matcher: Option<Matcher<u32>>,
            out: CountSeries,
        }
        let mut work = Vec::with_capacity(qs.len());
        for q in qs {
            if q.bucket_ms <= 0 || q.until <= q.since {
                return Err(EngineError::Query(
                    "the bucket and the time range must not be empty".into(),
                ));
            }
            let start = q.since.div_euclid(q.bucket_ms) * q.bucket_ms;
            let buckets = (q.until - start + q.bucket_ms - 1) / q.bucket_ms;
            if buckets as u64 > COUNT_BUCKETS {
                return Err(EngineError::Query(format!(
                    "{buckets} buckets asked for (at most {COUNT_BUCKETS}: a larger bucket or a shorter range)"
                )));
            }
            let matcher = one_pattern(q.pattern.as_ref())?;
            let out = CountSeries {
                start,
                bucket_ms: q.bucket_ms,
                buckets: buckets as usize,
                ..CountSeries::default()
            };
            work.push(One { q, matcher, out });
        }
        // Counts of all events by detail-type or source: the store counts them,
        // reading no event (a day of a large fleet's events in one indexed scan).
        let grouped = |k: &CountKey| match k {
            CountKey::DetailType => Some(GroupField::DetailType),
            CountKey::Source => Some(GroupField::Source),
            _ => None,
        };
        if work
            .iter()
            .all(|w| w.q.pattern.is_none() && grouped(&w.q.key).is_some())
        {
            let mut out = Vec::with_capacity(work.len());
            for mut w in work {
                let Some(field) = grouped(&w.q.key) else {
                    continue;
                };
                let rows = self
                    .inner
                    .store
                    .count_grouped(field, w.out.start, w.q.since, w.q.until, w.q.bucket_ms)
                    .await?;
                let buckets = w.out.buckets;
                for (i, key, n) in rows {
                    w.out.scanned += n;
                    if let Some(slot) = w
                        .out
                        .series
                        .entry(key)
                        .or_insert_with(|| vec![0; buckets])
                        .get_mut(i as usize)
                    {
                        *slot += n;
                    }
                }
                out.push(w.out);
            }
            return Ok(out);
        }
        let (Some(since), Some(until)) = (
            work.iter().map(|w| w.q.since).min(),
            work.iter().map(|w| w.q.until).max(),
        ) else {
            return Ok(Vec::new());
        };
        let mut query = EventQuery {
            since: Some(since),
            until: Some(until),
            oldest_first: true,
            limit: QUERY_LIMIT,
            ..EventQuery::default()
        };
        let mut scanned = 0u64;
        let mut truncated = false;
        loop {
            let page = self.inner.store.query(query.clone(), QUERY_WINDOW).await?;
            for (_, e) in &page.events {
                scanned += 1;
                let at = (e.meta.received_at.unix_timestamp_nanos() / 1_000_000) as Millis;
                for w in work.iter_mut() {
                    if at < w.q.since || at >= w.q.until {
                        continue;
                    }
                    w.out.scanned += 1;
                    let Some(key) = w.q.key.of(e) else { continue };
                    if !matches(w.matcher.as_ref(), e) {
                        continue;
                    }
                    let i = ((at - w.out.start) / w.q.bucket_ms) as usize;
                    if i < w.out.buckets {
                        let buckets = w.out.buckets;
                        w.out.series.entry(key).or_insert_with(|| vec![0; buckets])[i] += 1;
                    }
                }
            }
            match page.next {
                Some(next) if scanned < COUNT_SCAN => query.after = Some(next),
                Some(_) => {
                    truncated = true;
                    break;
                }
                None => break,
            }
        }
        Ok(work
            .into_iter()
            .map(|mut w| {
                w.out.truncated = truncated;
                w.out
            })
            .collect())
    }

    /// The trace around the event `id`, or `None` when there is no such event.
    pub async fn trace(&self, id: String) -> Result<Option<Trace>, EngineError> {
        let store = &self.inner.store;
        let Some(event) = store.event(id).await? else {
            return Ok(None);
        };
        let mut budget = TRACE_LIMIT.saturating_sub(1);
        // Up: each cause by id, as far as the archive still has them.
        let mut causes = Vec::new();
        let mut next = event.meta.causation_id.clone();
        while let Some(cause) = next {
            if budget == 0 {
                break;
            }
            match store.event(cause).await? {
                Some(c) => {
                    next = c.meta.causation_id.clone();
                    causes.push(c);
                    budget -= 1;
                }
                None => break,
            }
        }
        causes.reverse();
        // Down: breadth first, so a cut keeps the nearest effects.
        let mut nodes = vec![(event, None::<usize>)];
        let mut truncated = false;
        let mut i = 0;
        while i < nodes.len() {
            let id = nodes[i].0.event.id.clone();
            if budget == 0 {
                truncated = true;
                break;
            }
            let effects = store.effects(id, budget + 1).await?;
            if effects.len() > budget {
                truncated = true;
            }
            for e in effects.into_iter().take(budget) {
                nodes.push((e, Some(i)));
                budget -= 1;
            }
            i += 1;
        }
        // Assemble children before parents (they come later in `nodes`).
        let mut built: Vec<Option<TraceNode>> = nodes
            .iter()
            .map(|(e, _)| {
                Some(TraceNode {
                    stored: e.clone(),
                    effects: Vec::new(),
                })
            })
            .collect();
        for j in (1..nodes.len()).rev() {
            if let (Some(parent), Some(node)) = (nodes[j].1, built[j].take()) {
                if let Some(p) = built[parent].as_mut() {
                    p.effects.push(node);
                }
            }
        }
        for node in built.iter_mut().flatten() {
            node.effects.reverse();
        }
        let tree = built[0].take().expect("the traced event is the first node");
        Ok(Some(Trace {
            causes,
            tree,
            truncated,
        }))
    }
}
