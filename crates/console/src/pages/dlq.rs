//! Dead letters: every dead-lettered delivery with its reason and attempts, its
//! event one click away, and redrive for the ones ticked or all of them.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{self, PageError};
use crate::session::Csrf;
use crate::Console;

/// Entries listed at most.
const LIST: usize = 500;

#[derive(Deserialize)]
pub struct ListParams {
    /// Jobs just redriven, to say so.
    redriven: Option<usize>,
}

/// `GET /ui/dlq`.
pub async fn list(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Query(params): Query<ListParams>,
) -> Result<Markup, PageError> {
    let entries = console.app.engine.dlq_list(LIST).await?;
    let body = html! {
        @if let Some(n) = params.redriven {
            p.ok #redriven role="status" { (n) " sent back for delivery." }
        }
        @if entries.is_empty() { p.ok #dlq-empty { "No dead letters." } }
        @else {
            form method="post" action="/ui/dlq/redrive" {
                input type="hidden" name="csrf" value=(csrf.0);
                table.records #dlq {
                    thead { tr { th {} th { "Job" } th { "Rule → target" } th { "Attempts" } th { "Reason" } th { "Failed at" } th { "Event" } } }
                    tbody { @for e in &entries {
                        tr.failed {
                            td { input type="checkbox" name="job" value=(e.job_id) aria-label={ "job " (e.job_id) }; }
                            td { (e.job_id) }
                            td { (e.rule) " → " (e.target) }
                            td { (e.attempts) }
                            td.reason { (e.error) }
                            td.time { (failed_at(e.failed_at)) }
                            td { (layout::event_link(&e.event_id)) }
                        }
                    } }
                }
                button #redrive-selected type="submit" name="which" value="selected" { "Redrive selected" }
                " "
                button #redrive-all type="submit" name="which" value="all" { "Redrive all" }
            }
        }
    };
    Ok(layout::page("Dead letters", "/ui/dlq", &csrf, body))
}

fn failed_at(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// `POST /ui/dlq/redrive` with `csrf`, `which` (`selected` or `all`) and a `job`
/// field per ticked entry.
pub async fn redrive(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Extension(read_only): Extension<crate::session::ReadOnly>,
    body: Bytes,
) -> Result<Response, PageError> {
    crate::may_change(read_only)?;
    let mut token = String::new();
    let mut which = String::new();
    let mut jobs = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => token = v.into_owned(),
            "which" => which = v.into_owned(),
            "job" => jobs.push(
                v.parse::<i64>()
                    .map_err(|_| PageError::bad_request(format!("job {v:?} is not a job id")))?,
            ),
            other => {
                return Err(PageError::bad_request(format!(
                    "unknown form field {other:?}"
                )))
            }
        }
    }
    if !csrf.accepts(&token) {
        return Err(PageError::csrf());
    }
    let ids = match which.as_str() {
        "all" => None,
        "selected" if jobs.is_empty() => {
            return Err(PageError::bad_request("no dead letter was ticked"))
        }
        "selected" => Some(jobs),
        other => {
            return Err(PageError::bad_request(format!(
                "which {other:?} is not selected or all"
            )))
        }
    };
    let moved = console.app.engine.dlq_redrive(ids).await?;
    tracing::info!(jobs = moved.len(), "dead letters redriven from the console");
    Ok(Redirect::to(&format!("/ui/dlq?redriven={}", moved.len())).into_response())
}
