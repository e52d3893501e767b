//! The overview: what came in and what went out over the last hour (per minute)
//! and the last day (per hour), the busiest sources and rules, failing targets,
//! the backlog and the dead letters, and the store's health.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Extension;
use fleetbus_engine::{CountKey, CountQuery, CountSeries, DELIVERY_SOURCE};
use fleetbus_pattern::Pattern;
use maud::{html, Markup};

use super::{hh_mm, now_ms, DAY, FAILED, HOUR, MINUTE};
use crate::chart;
use crate::layout::{self, PageError};
use crate::session::Csrf;
use crate::Console;

/// Sums of several series, bucket by bucket.
fn total<'a>(series: impl Iterator<Item = &'a Vec<u64>>, buckets: usize) -> Vec<u64> {
    let mut out = vec![0; buckets];
    for s in series {
        for (o, v) in out.iter_mut().zip(s) {
            *o += v;
        }
    }
    out
}

/// Each group's total over the whole range, largest first, at most `n`.
fn busiest(s: &CountSeries, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = s
        .series
        .iter()
        .map(|(k, c)| (k.clone(), c.iter().sum()))
        .filter(|(_, c)| *c > 0)
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// The charts of one range: events in (every source but deliveries' outcomes),
/// delivered and failed.
struct Range {
    sources: CountSeries,
    outcomes: CountSeries,
}

impl Range {
    fn events_in(&self) -> Vec<u64> {
        let s = &self.sources;
        total(
            s.series
                .iter()
                .filter(|(k, _)| k.as_str() != DELIVERY_SOURCE)
                .map(|(_, v)| v),
            s.buckets,
        )
    }

    fn outcome(&self, which: &str) -> Vec<u64> {
        self.outcomes
            .series
            .get(which)
            .cloned()
            .unwrap_or_else(|| vec![0; self.outcomes.buckets])
    }

    fn charts(&self, name: &str) -> Markup {
        let s = &self.sources;
        let label = |i: usize| hh_mm(s.start + i as i64 * s.bucket_ms);
        let rows = [
            ("Events in", self.events_in()),
            ("Delivered", self.outcome("succeeded")),
            ("Failed deliveries", self.outcome("failed")),
        ];
        html! {
            section.charts {
                h2 { (name) }
                @for (title, values) in &rows {
                    figure.failed[title.starts_with("Failed")] {
                        figcaption { (title) ": " strong.total { (values.iter().sum::<u64>()) } }
                        (chart::bars(&format!("{title}, {name}"), values, label))
                    }
                }
                @if s.truncated || self.outcomes.truncated {
                    p.hint { "Counted from the first " (s.scanned) " events of the range only." }
                }
            }
        }
    }
}

/// `GET /ui/`.
pub async fn page(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
) -> Result<Markup, PageError> {
    let engine = &console.app.engine;
    let (counts, store_error) = match engine.counts().await {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // Every chart of the page from one read of the last day's events.
    let now = now_ms();
    let q = |key, bucket_ms, span, pattern: Option<Pattern>| CountQuery {
        key,
        bucket_ms,
        since: now - span,
        until: now,
        pattern,
    };
    let mut all = engine
        .count_many(vec![
            q(CountKey::Source, MINUTE, HOUR, None),
            q(CountKey::Outcome, MINUTE, HOUR, None),
            q(CountKey::Source, HOUR, DAY, None),
            q(CountKey::Outcome, HOUR, DAY, None),
            q(CountKey::Rule, DAY, DAY, None),
            q(CountKey::Target, DAY, DAY, Pattern::parse(FAILED).ok()),
            q(CountKey::Target, DAY, DAY, None),
        ])
        .await?
        .into_iter();
    let mut next = || all.next().unwrap_or_default();
    let hour = Range {
        sources: next(),
        outcomes: next(),
    };
    let day = Range {
        sources: next(),
        outcomes: next(),
    };
    let rules = next();
    let failing = next();
    let delivered: BTreeMap<String, u64> = busiest(&next(), usize::MAX).into_iter().collect();
    let body = html! {
        section.tiles {
            @if let Some(c) = counts {
                div.tile { span.label { "Events archived" } strong #events-total { (c.events) } }
                div.tile { span.label { "Backlog (deliveries pending)" } strong #backlog { (c.pending_jobs) } }
                div.tile.warn[c.dead_jobs > 0] {
                    span.label { "Dead-lettered" }
                    a href="/ui/dlq" { strong #dead { (c.dead_jobs) } }
                }
            }
            div.tile {
                span.label { "Store" }
                @match &store_error {
                    None => strong.ok #store-health { "healthy" },
                    Some(e) => strong.failed #store-health title=(e) { "failing" },
                }
            }
        }
        (hour.charts("Last hour, per minute"))
        (day.charts("Last day, per hour"))
        section.columns {
            div {
                h2 { "Busiest sources (day)" }
                (ranking(&busiest(&day.sources, 10), |k| format!("/ui/events?source={}", layout::encode(k))))
            }
            div {
                h2 { "Busiest rules (day)" }
                (ranking(&busiest(&rules, 10), |_| "/ui/rules".to_owned()))
            }
            div {
                h2 { "Failing targets (day)" }
                @let worst = busiest(&failing, 10);
                @if worst.is_empty() { p.ok { "No delivery failed." } }
                @else {
                    table.ranking #failing-targets {
                        thead { tr { th { "Rule/target" } th { "Failed" } th { "Delivered" } } }
                        tbody {
                            @for (k, n) in &worst {
                                tr.failed { td { (k) } td { (n) } td { (delivered.get(k).copied().unwrap_or(0).saturating_sub(*n)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Overview", "/ui/", &csrf, body))
}

fn ranking(rows: &[(String, u64)], href: impl Fn(&str) -> String) -> Markup {
    html! {
        @if rows.is_empty() { p.hint { "Nothing yet." } }
        @else {
            table.ranking {
                tbody {
                    @for (k, n) in rows { tr { td { a href=(href(k)) { (k) } } td { (n) } } }
                }
            }
        }
    }
}
