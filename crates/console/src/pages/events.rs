//! Event search (the archive query with a pattern, paged), and one event's page:
//! its envelope and metadata, its trace (what caused it, what it caused, each
//! step's status), and "why didn't rule X match" with the matcher's explanation.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Extension;
use fleetbus_engine::TraceNode;
use fleetbus_event::StoredEvent;
use maud::{html, Markup};
use serde_json::json;

use crate::layout::{self, PageError};
use crate::session::Csrf;
use crate::Console;

/// The search form's fields, as `GET /v1/events` takes them.
const FIELDS: &[(&str, &str)] = &[
    ("source", "Source"),
    ("detail-type", "Detail type"),
    ("resource", "Resource"),
    ("since", "Since"),
    ("until", "Until"),
];

/// `GET /ui/events?source=&detail-type=&resource=&since=&until=&pattern=&cursor=`.
pub async fn search(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Query(mut params): Query<BTreeMap<String, String>>,
) -> Result<Markup, PageError> {
    params.retain(|_, v| !v.trim().is_empty());
    let form = params.clone();
    params.entry("limit".into()).or_insert_with(|| "50".into());
    let (page, error) =
        match fleetbus_server::archive::parse(&params, time::OffsetDateTime::now_utc()) {
            Ok(parsed) => match console
                .app
                .engine
                .query(parsed.query, parsed.pattern.as_ref())
                .await
            {
                Ok(page) => (Some(page), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(e) => (None, Some(e.message)),
        };
    let value = |k: &str| form.get(k).cloned().unwrap_or_default();
    let next_link = page.as_ref().and_then(|p| p.next).map(|n| {
        let mut q = form.clone();
        q.insert("cursor".into(), format!("n{n}"));
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        format!("/ui/events?{query}")
    });
    let body = html! {
        form.query method="get" action="/ui/events" {
            @for (name, label) in FIELDS {
                label { (label) input type="text" name=(name) value=(value(name)); }
            }
            label.wide { "Event pattern (JSON)" textarea name="pattern" rows="3" { (value("pattern")) } }
            button type="submit" { "Search" }
        }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        @if let Some(page) = &page {
            @let events: Vec<&StoredEvent> = page.events.iter().map(|(_, e)| e).collect();
            p.hint { (events.len()) " events, newest first (" (page.scanned) " looked at)." }
            (layout::event_table(&events, true))
            @if let Some(href) = next_link { p { a #older href=(href) { "Older events →" } } }
        }
    };
    Ok(layout::page("Events", "/ui/events", &csrf, body))
}

/// `?explain=<rule>` on an event's page.
#[derive(serde::Deserialize)]
pub struct EventParams {
    explain: Option<String>,
}

/// `GET /ui/events/{id}`.
pub async fn event(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Path(id): Path<String>,
    Query(params): Query<EventParams>,
) -> Result<Markup, PageError> {
    let Some(trace) = console.app.engine.trace(id.clone()).await? else {
        return Err(PageError::not_found(format!(
            "no event {id:?} in the archive"
        )));
    };
    let stored = &trace.tree.stored;
    // The running rules: the file's and those made through the AWS API.
    let config = console.app.running_config();
    let rules: Vec<&str> = config
        .rules
        .iter()
        .filter(|r| r.event_pattern.is_some())
        .map(|r| r.name.as_str())
        .collect();
    let explanation = params
        .explain
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|name| explain(&config, name, stored));
    let meta = serde_json::to_value(&stored.meta).unwrap_or_default();
    let body = html! {
        section.columns {
            div {
                h2 { "Envelope" }
                (layout::json(&stored.event.to_value()))
            }
            div {
                h2 { "Metadata" }
                (layout::json(&meta))
                @if let Some(a) = &stored.meta.attachment {
                    p #attachment {
                        "Its " code { (a.part) } " is kept whole beside it (" (a.bytes) " bytes): "
                        a href={ "/ui/events/" (layout::encode(&stored.event.id)) "/attachment" } { "show the attachment" }
                    }
                }
                p { a href={ "/ui/sandbox?event=" (layout::encode(&stored.event.id)) } { "Try rules on this event in the sandbox" } }
            }
        }
        section #trace {
            h2 { "Trace" }
            @if !trace.causes.is_empty() {
                h3 { "Caused by" }
                ol.causes { @for c in &trace.causes { li { (step(c)) } } }
            }
            h3 { "This event and what it caused" }
            ul.tree { (node(&trace.tree)) }
            @if trace.truncated { p.hint { "The trace was cut at its size limit." } }
        }
        section #explain {
            h2 { "Why didn't a rule match?" }
            form method="get" {
                label { "Rule "
                    select name="explain" {
                        @for r in &rules {
                            option value=(r) selected[params.explain.as_deref() == Some(*r)] { (r) }
                        }
                    }
                }
                button type="submit" { "Explain" }
            }
            @if let Some(result) = &explanation {
                @match result {
                    Ok((matched, text)) => pre.explanation.ok[*matched].failed[!*matched] { (text) },
                    Err(e) => p.error role="alert" { (e) },
                }
            }
        }
    };
    Ok(layout::page(
        &format!("{} · {}", stored.event.detail_type, stored.event.id),
        "/ui/events",
        &csrf,
        body,
    ))
}

/// `GET /ui/events/{id}/attachment`: the part kept beside the event, pretty when
/// it is JSON.
pub async fn attachment(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let Some(a) = console.app.engine.attachment(id.clone()).await? else {
        return Err(PageError::not_found(format!(
            "event {id:?} has no attachment (or is not in the archive)"
        )));
    };
    let text = match serde_json::from_slice::<serde_json::Value>(&a.body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&a.body).into_owned(),
    };
    let body = html! {
        p { "Kept beside " (layout::event_link(&id)) " (" (a.content_type) ", " (a.body.len()) " bytes)." }
        pre.json #attachment-body { (text) }
    };
    Ok(layout::page("Attachment", "/ui/events", &csrf, body))
}

/// The matcher's explanation of rule `name`'s pattern against `e`.
fn explain(
    config: &fleetbus_config::Config,
    name: &str,
    e: &StoredEvent,
) -> Result<(bool, String), String> {
    let rule = config
        .rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("no rule {name:?} in the running configuration"))?;
    let pattern = rule
        .event_pattern
        .as_ref()
        .ok_or_else(|| format!("rule {name:?} runs on a schedule and has no event pattern"))?;
    let pattern = fleetbus_pattern::Pattern::from_value(pattern)
        .map_err(|e| format!("rule {name:?}: {e}"))?;
    let x = fleetbus_pattern::explain(&pattern, &e.event.to_json())
        .map_err(|e| format!("the event cannot be matched: {e}"))?;
    Ok((x.matched, format!("rule {name}: {x}")))
}

/// One step of a trace: what it is, where from, when, and its outcome.
fn step(e: &StoredEvent) -> Markup {
    let detail = &e.event.detail;
    let about = match (detail.get("rule"), detail.get("target")) {
        (Some(r), Some(t)) => Some(format!(
            "{} → {}",
            r.as_str().unwrap_or_default(),
            t.as_str().unwrap_or_default()
        )),
        _ => None,
    };
    let error = detail.get("error").and_then(|v| v.as_str());
    html! {
        span.step class=[layout::status_class(e)] {
            (layout::event_link(&e.event.id)) " "
            strong { (e.event.detail_type) } " "
            span.source { (e.event.source) } " "
            span.time { (layout::received(e)) }
            @if let Some(a) = about { " " span.rule { (a) } }
            @if let Some(err) = error { " " span.error { (err) } }
        }
    }
}

fn node(n: &TraceNode) -> Markup {
    html! {
        li {
            (step(&n.stored))
            @if !n.effects.is_empty() {
                ul { @for child in &n.effects { (node(child)) } }
            }
        }
    }
}

/// The event as the sandbox's form takes it: the envelope, pretty.
pub fn envelope_text(e: &StoredEvent) -> String {
    serde_json::to_string_pretty(&e.event.to_value()).unwrap_or_else(|_| json!({}).to_string())
}
