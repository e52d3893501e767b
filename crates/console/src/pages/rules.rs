//! Rules: every rule of the running configuration with its pattern or schedule,
//! its targets and their deliveries and failures over the last day; and the
//! sandbox: an event pasted or picked from the archive, a pattern tested with the
//! matcher's explanation, each target's input previewed by the real input
//! transformer, and the YAML to copy.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::{Extension, Form};
use fleetbus_config::{Config, Rule};
use fleetbus_engine::{CountKey, CountQuery};
use fleetbus_event::{Event, Meta, StoredEvent};
use fleetbus_pattern::Pattern;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::events::envelope_text;
use super::{now_ms, DAY, FAILED};
use crate::layout::{self, PageError};
use crate::session::Csrf;
use crate::Console;

fn kind(t: &fleetbus_config::Target) -> &'static str {
    fleetbus_config::kinds::spec(t.spec.kind()).name
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `GET /ui/rules`.
pub async fn list(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
) -> Result<Markup, PageError> {
    // The running rules: the file's and those made through the AWS API.
    let config = console.app.running_config();
    let now = now_ms();
    let per_target = |pattern| CountQuery {
        key: CountKey::Target,
        bucket_ms: DAY,
        since: now - DAY,
        until: now,
        pattern,
    };
    let sum = |s: fleetbus_engine::CountSeries| -> BTreeMap<String, u64> {
        s.series
            .into_iter()
            .map(|(k, v)| (k, v.iter().sum()))
            .collect()
    };
    let engine = &console.app.engine;
    // Both from one read of the day's events.
    let mut both = engine
        .count_many(vec![
            per_target(None),
            per_target(Pattern::parse(FAILED).ok()),
        ])
        .await?
        .into_iter();
    let all = sum(both.next().unwrap_or_default());
    let failed = sum(both.next().unwrap_or_default());
    let body = html! {
        p.hint { (config.rules.len()) " rules. Deliveries and failures are over the last day." }
        table.rules #rules {
            thead { tr { th { "Rule" } th { "Bus" } th { "Pattern or schedule" } th { "Targets" } th { "Delivered" } th { "Failed" } th {} } }
            tbody {
                @for r in &config.rules {
                    @let delivered: u64 = r.targets.iter().map(|t| all.get(&format!("{}/{}", r.name, t.id)).copied().unwrap_or(0)).sum();
                    @let failures: u64 = r.targets.iter().map(|t| failed.get(&format!("{}/{}", r.name, t.id)).copied().unwrap_or(0)).sum();
                    tr class=[(!r.enabled).then_some("disabled")] data-rule=(r.name) {
                        td { strong { (r.name) } @if !r.enabled { " (disabled)" }
                            @if let Some(d) = &r.description { br; span.hint { (d) } } }
                        td { (r.bus) }
                        td {
                            @if let Some(p) = &r.event_pattern { pre.json { (compact(p)) } }
                            @if let Some(s) = &r.schedule { code { (s.to_string()) } }
                        }
                        td { ul { @for t in &r.targets {
                            @let key = format!("{}/{}", r.name, t.id);
                            li class=[failed.get(&key).is_some_and(|n| *n > 0).then_some("failed")] {
                                (t.id) " (" (kind(t)) ")"
                            }
                        } } }
                        td.delivered { (delivered.saturating_sub(failures)) }
                        td.failed-count { (failures) }
                        td { @if r.event_pattern.is_some() {
                            a href={ "/ui/sandbox?rule=" (layout::encode(&r.name)) } { "Sandbox" }
                        } }
                    }
                }
            }
        }
    };
    Ok(layout::page("Rules", "/ui/rules", &csrf, body))
}

/// `GET /ui/sandbox?event=<id>&rule=<name>`: the form, prefilled.
#[derive(Deserialize)]
pub struct SandboxParams {
    event: Option<String>,
    rule: Option<String>,
}

/// What the sandbox's form posts.
#[derive(Deserialize, Default)]
pub struct SandboxForm {
    csrf: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    rule: String,
}

pub async fn sandbox(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Query(params): Query<SandboxParams>,
) -> Result<Markup, PageError> {
    // The running rules: the file's and those made through the AWS API.
    let config = console.app.running_config();
    let mut form = SandboxForm::default();
    if let Some(id) = params.event.filter(|e| !e.is_empty()) {
        match console.app.engine.event(id.clone()).await? {
            Some(e) => form.event = envelope_text(&e),
            None => {
                return Err(PageError::not_found(format!(
                    "no event {id:?} in the archive"
                )))
            }
        }
    }
    if let Some(name) = params.rule.filter(|r| !r.is_empty()) {
        let rule = find(&config, &name)?;
        form.pattern = rule
            .event_pattern
            .as_ref()
            .map(|p| serde_json::to_string_pretty(p).unwrap_or_default())
            .unwrap_or_default();
        form.rule = name;
    }
    Ok(render(&config, &csrf, &form, None))
}

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a Rule, PageError> {
    config.rules.iter().find(|r| r.name == name).ok_or_else(|| {
        PageError::not_found(format!("no rule {name:?} in the running configuration"))
    })
}

/// What a try-out found.
struct Outcome {
    matched: bool,
    explanation: String,
    /// Per target of the chosen rule: its id, kind and the input it would get.
    previews: Vec<(String, String, Result<String, String>)>,
    yaml: String,
}

/// `POST /ui/sandbox`.
pub async fn try_out(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Form(form): Form<SandboxForm>,
) -> Result<Markup, PageError> {
    if !csrf.accepts(&form.csrf) {
        return Err(PageError::csrf());
    }
    // The running rules: the file's and those made through the AWS API.
    let config = console.app.running_config();
    let outcome = evaluate(&console, &config, &form);
    Ok(render(&config, &csrf, &form, Some(outcome)))
}

fn evaluate(console: &Console, config: &Config, form: &SandboxForm) -> Result<Outcome, String> {
    let value: Value =
        serde_json::from_str(&form.event).map_err(|e| format!("event: not JSON: {e}"))?;
    let event = Event::from_value(value, &console.app.engine.defaults())
        .map_err(|e| format!("event: {e}"))?;
    let pattern_value: Value =
        serde_json::from_str(&form.pattern).map_err(|e| format!("pattern: not JSON: {e}"))?;
    let pattern = Pattern::from_value(&pattern_value).map_err(|e| format!("pattern: {e}"))?;
    let x = fleetbus_pattern::explain(&pattern, &event.to_json())
        .map_err(|e| format!("the event cannot be matched: {e}"))?;
    let stored = StoredEvent {
        event,
        meta: Meta::ingested("default", "sandbox"),
    };
    let rule = (!form.rule.is_empty())
        .then(|| config.rules.iter().find(|r| r.name == form.rule))
        .flatten();
    let name = rule.map_or("my-rule", |r| r.name.as_str());
    let previews = rule
        .map(|r| {
            r.targets
                .iter()
                .map(|t| {
                    let input = fleetbus_targets::transform::apply(&t.input, &stored, name)
                        .map(|p| p.to_text())
                        .map_err(|e| e.to_string());
                    (t.id.clone(), kind(t).to_owned(), input)
                })
                .collect()
        })
        .unwrap_or_default();
    let yaml = format!(
        "- name: {name}\n  event_pattern: {}\n",
        compact(&pattern_value)
    );
    Ok(Outcome {
        matched: x.matched,
        explanation: x.to_string(),
        previews,
        yaml,
    })
}

fn render(
    config: &Config,
    csrf: &Csrf,
    form: &SandboxForm,
    outcome: Option<Result<Outcome, String>>,
) -> Markup {
    let body = html! {
        form.sandbox method="post" action="/ui/sandbox" {
            input type="hidden" name="csrf" value=(csrf.0);
            section.columns {
                label.wide { "Event (an envelope as JSON)"
                    textarea #sandbox-event name="event" rows="16" required { (form.event) }
                }
                label.wide { "Event pattern (JSON)"
                    textarea #sandbox-pattern name="pattern" rows="16" required { (form.pattern) }
                }
            }
            label { "Preview the targets of "
                select name="rule" {
                    option value="" { "no rule" }
                    @for r in &config.rules {
                        option value=(r.name) selected[r.name == form.rule] { (r.name) }
                    }
                }
            }
            " "
            button #sandbox-test type="submit" { "Test" }
        }
        @match &outcome {
            None => {},
            Some(Err(e)) => p.error role="alert" { (e) },
            Some(Ok(o)) => {
                section #sandbox-result {
                    h2.ok[o.matched].failed[!o.matched] { @if o.matched { "Matches" } @else { "Does not match" } }
                    pre.explanation { (o.explanation) }
                    @if !o.previews.is_empty() {
                        h2 { "What each target of " (form.rule) " would receive" }
                        @for (id, kind, input) in &o.previews {
                            h3 { (id) " (" (kind) ")" }
                            @match input {
                                Ok(text) => pre.json.preview { (text) },
                                Err(e) => p.error { (e) },
                            }
                        }
                    }
                    h2 { "YAML" }
                    textarea #sandbox-yaml readonly rows="4" { (o.yaml) }
                }
            }
        }
    };
    layout::page("Sandbox", "/ui/sandbox", csrf, body)
}
