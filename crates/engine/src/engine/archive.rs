//! Archive reads for people: queries with an EventBridge pattern on top of the
//! store's filters, each bounded in what it scans, and traces (what caused an
//! event, what it caused, down the chain).

use fleetbus_event::StoredEvent;
use fleetbus_pattern::{Matcher, Pattern};
use serde::Serialize;

use super::Engine;
use crate::store::{EventPage, EventQuery};
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
        let matcher = match pattern {
            None => None,
            Some(p) => {
                let mut m = Matcher::new();
                m.add_pattern(0u32, p)
                    .map_err(|e| EngineError::Query(format!("pattern: {e}")))?;
                Some(m)
            }
        };
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
                let keep = match &matcher {
                    None => true,
                    Some(m) => m
                        .matches_for_event(&e.event.to_json())
                        .map(|hits| !hits.is_empty())
                        .unwrap_or(false),
                };
                if keep {
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
