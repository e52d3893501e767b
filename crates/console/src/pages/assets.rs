//! Devices and users: search by serial, UDID, user or name; a device's record, its
//! MDM commands with their answers, its escrowed DeviceLock PINs behind an explicit
//! reveal (recorded as an event first), and its timeline; a user's record, devices
//! and timeline. Timelines are newest first, filterable by detail type, each entry
//! linked to what caused it.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use fleetbus_assets::{AsyncAssetStore, DeviceFilter};
use fleetbus_event::StoredEvent;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{self, PageError};
use crate::session::Csrf;
use crate::Console;

/// Timeline entries one page shows.
const TIMELINE: usize = 200;
/// Search results shown at most.
const RESULTS: usize = 200;

fn store(console: &Console) -> Result<AsyncAssetStore, PageError> {
    console
        .app
        .assets
        .clone()
        .ok_or_else(|| PageError::not_found("this server has no asset store"))
}

#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
}

/// `GET /ui/search?q=`: straight to the device or user when `q` names exactly one
/// (serial, UDID, user id), else every device and user whose serial, UDID, name,
/// user or email contains it.
pub async fn search(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Query(params): Query<SearchParams>,
) -> Result<Response, PageError> {
    let q = params.q.trim().to_owned();
    let store = store(&console)?;
    let needle = q.to_lowercase();
    let (exact, devices, users) = store
        .run("search", move |s| {
            if q.is_empty() {
                return Ok::<_, PageError>((None, Vec::new(), Vec::new()));
            }
            if let Some(d) = s.device(&q)?.or(s.device_by_udid(&q)?) {
                return Ok((
                    Some(format!("/ui/devices/{}", layout::encode(&d.serial))),
                    vec![],
                    vec![],
                ));
            }
            if s.user(&q)?.is_some() {
                return Ok((
                    Some(format!("/ui/users/{}", layout::encode(&q))),
                    vec![],
                    vec![],
                ));
            }
            let has = |v: &Option<String>| {
                v.as_deref()
                    .is_some_and(|v| v.to_lowercase().contains(&needle))
            };
            let devices: Vec<_> = s
                .list_devices(&DeviceFilter::default())?
                .into_iter()
                .filter(|d| {
                    d.serial.to_lowercase().contains(&needle)
                        || has(&d.udid)
                        || has(&d.name)
                        || has(&d.user_id)
                })
                .take(RESULTS)
                .collect();
            let users: Vec<_> = s
                .list_users()?
                .into_iter()
                .filter(|u| u.id.to_lowercase().contains(&needle) || has(&u.email) || has(&u.name))
                .take(RESULTS)
                .collect();
            Ok((None, devices, users))
        })
        .await?;
    if let Some(href) = exact {
        return Ok(Redirect::to(&href).into_response());
    }
    let body = html! {
        @if devices.is_empty() && users.is_empty() {
            p.hint { "No device or user matches " code { (params.q) } "." }
        }
        @if !devices.is_empty() {
            h2 { "Devices" }
            table.records {
                thead { tr { th { "Serial" } th { "Name" } th { "Model" } th { "OS" } th { "User" } th { "Enrollment" } } }
                tbody { @for d in &devices { tr {
                    td { a href={ "/ui/devices/" (layout::encode(&d.serial)) } { (d.serial) } }
                    td { (d.name.as_deref().unwrap_or("")) }
                    td { (d.model.as_deref().unwrap_or("")) }
                    td { (d.os_version.as_deref().unwrap_or("")) }
                    td { @if let Some(u) = &d.user_id { a href={ "/ui/users/" (layout::encode(u)) } { (u) } } }
                    td { (d.enrollment_state.as_deref().unwrap_or("")) }
                } } }
            }
        }
        @if !users.is_empty() {
            h2 { "Users" }
            table.records {
                thead { tr { th { "User" } th { "Name" } th { "Email" } th { "Status" } } }
                tbody { @for u in &users { tr {
                    td { a href={ "/ui/users/" (layout::encode(&u.id)) } { (u.id) } }
                    td { (u.name.as_deref().unwrap_or("")) }
                    td { (u.email.as_deref().unwrap_or("")) }
                    td { (u.status.as_deref().unwrap_or("")) }
                } } }
            }
        }
    };
    Ok(layout::page("Search", "", &csrf, body).into_response())
}

/// `?detail-type=` on a timeline.
#[derive(Deserialize)]
pub struct TimelineParams {
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
}

/// A node's timeline, newest first, optionally one detail type only, with the
/// filter's choices taken from what the timeline holds.
async fn timeline(
    console: &Console,
    resource: &str,
    params: &TimelineParams,
) -> Result<Markup, PageError> {
    let events = console
        .app
        .engine
        .timeline(resource.to_owned(), TIMELINE)
        .await?;
    let wanted = params.detail_type.as_deref().filter(|d| !d.is_empty());
    let kinds: BTreeMap<&str, usize> = events.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.event.detail_type.as_str()).or_default() += 1;
        m
    });
    let shown: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| wanted.is_none_or(|w| e.event.detail_type == w))
        .collect();
    Ok(html! {
        section #timeline {
            h2 { "Timeline" }
            form.inline method="get" {
                label { "Detail type "
                    select name="detail-type" {
                        option value="" { "all (" (events.len()) ")" }
                        @for (k, n) in &kinds {
                            option value=(k) selected[wanted == Some(*k)] { (k) " (" (n) ")" }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if shown.is_empty() { p.hint { "No events on " code { (resource) } " yet." } }
            @else { (grouped(&shown)) }
        }
    })
}

/// A timeline grouped by causation: each group is what one ingested event set off
/// (the event, the deliveries and commands it caused, their answers), groups newest
/// first, each told in order from its cause.
fn grouped(events: &[&StoredEvent]) -> Markup {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for e in events {
        let root = e.chain_root();
        if !groups.contains_key(root) {
            order.push(root);
        }
        groups.entry(root).or_default().push(e);
    }
    html! {
        table.events.grouped {
            thead { tr {
                th { "Received" } th { "Source" } th { "Detail type" } th { "Resources" } th { "Event" } th { "Caused by" }
            } }
            @for root in &order {
                tbody.chain {
                    @for (i, e) in groups[root].iter().rev().enumerate() {
                        tr class=[layout::status_class(e)] {
                            td.time { (layout::received(e)) }
                            td { (e.event.source) }
                            td { @if i > 0 { span.effect { "↳ " } } (e.event.detail_type) }
                            td { @for r in &e.event.resources { (layout::resource(r)) " " } }
                            td { (layout::event_link(&e.event.id)) }
                            td { @if let Some(c) = &e.meta.causation_id { (layout::event_link(c)) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/devices/{serial}`.
pub async fn device(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Path(serial): Path<String>,
    Query(params): Query<TimelineParams>,
) -> Result<Markup, PageError> {
    let key = serial.clone();
    let (device, commands, pins, policy_state) = store(&console)?
        .run("device", move |s| {
            Ok::<_, PageError>((
                s.device(&key)?,
                s.commands_for_device(&key)?,
                s.escrowed_pins(&key)?.len(),
                s.su_state(&key)?,
            ))
        })
        .await?;
    let timeline = timeline(&console, &format!("device/{serial}"), &params).await?;
    // Where the Mac is in a software update: the policy's state when a
    // `software_update:` policy keeps one, else read from the same story the
    // `fleetbus su status` command reads.
    let story = console
        .app
        .engine
        .timeline(format!("device/{serial}"), TIMELINE)
        .await?;
    let su = fleetbus_server::software_update::step(&story);
    let body = html! {
        @match &device {
            None => p.hint { "No asset record for " code { (serial) } "; its events are below." },
            Some(d) => {
                section.columns {
                    div {
                        h2 { "Record" }
                        dl.record {
                            dt { "Serial" } dd #serial { (d.serial) }
                            dt { "UDID" } dd { (d.udid.as_deref().unwrap_or("—")) }
                            dt { "Name" } dd { (d.name.as_deref().unwrap_or("—")) }
                            dt { "Model" } dd { (d.model.as_deref().unwrap_or("—")) }
                            dt { "OS" } dd { (d.os_version.as_deref().unwrap_or("—")) " " (d.os_build.as_deref().unwrap_or("")) }
                            dt { "Enrollment" } dd { (d.enrollment_state.as_deref().unwrap_or("—")) }
                            dt { "User" } dd { @match &d.user_id {
                                Some(u) => a href={ "/ui/users/" (layout::encode(u)) } { (u) },
                                None => "—",
                            } }
                            dt { "Tags" } dd { (d.tags.join(", ")) }
                            dt { "Last seen" } dd { (d.last_seen.as_deref().unwrap_or("—")) }
                        }
                    }
                    div {
                        h2 { "Escrowed DeviceLock PINs" }
                        @if pins == 0 { p.hint { "None." } }
                        @else {
                            p { (pins) " escrowed. Revealing them is recorded on this device's timeline." }
                            form method="post" action={ "/ui/devices/" (layout::encode(&serial)) "/pins" } {
                                input type="hidden" name="csrf" value=(csrf.0);
                                button #reveal type="submit" { "Reveal PINs" }
                            }
                        }
                    }
                }
            }
        }
        section #software-update {
            h2 { "Software update" }
            @if let Some(st) = &policy_state {
                p {
                    strong { (st.stage) }
                    @if let Some(why) = &st.reason { " (" (why) ")" }
                    " since " (st.updated_at)
                    @if let Some(id) = &st.event_id { " · " (layout::event_link(id)) }
                }
                dl.record {
                    dt { "Requirement" } dd { (st.requirement.as_deref().unwrap_or("—")) }
                    dt { "Required" } dd { (st.required_version.as_deref().unwrap_or("—")) " by " (st.deadline.as_deref().unwrap_or("—")) }
                    dt { "Update" } dd { (st.available_version.as_deref().unwrap_or("—")) " " (st.product_key.as_deref().unwrap_or("")) }
                    dt { "InstallAction" } dd { (st.install_action.as_deref().unwrap_or("—")) }
                    dt { "Download" } dd { @match st.progress { Some(p) => { (format!("{:.0} %", p * 100.0)) }, None => "—" } }
                    dt { "Deferrals" } dd { (st.deferrals_used) @if let Some(m) = st.max_user_deferrals { " of " (m) } }
                }
                p.hint { "Next: " (st.next.as_deref().unwrap_or("the next evaluation")) }
            } @else {
                p {
                    strong { (su.state) }
                    @if let Some(why) = &su.why { " (" (why) ")" }
                    @if let Some(at) = &su.at { " since " (at) }
                    @if let Some(id) = &su.event_id { " · " (layout::event_link(id)) }
                }
                p.hint { "Next: " (su.next) }
            }
        }
        @if !commands.is_empty() {
            section #commands {
                h2 { "MDM commands" }
                table.records {
                    thead { tr { th { "Enqueued" } th { "Request type" } th { "Command UUID" } th { "Rule → target" } th { "Status" } th { "Completed" } th { "Cause" } } }
                    tbody { @for c in &commands {
                        tr class=[command_class(c.status.as_deref())] {
                            td { (c.enqueued_at) }
                            td { (c.request_type) }
                            td { code { (c.command_uuid) } }
                            td { (c.rule.as_deref().unwrap_or("")) " → " (c.target.as_deref().unwrap_or("")) }
                            td { (c.status.as_deref().unwrap_or("pending")) }
                            td { (c.completed_at.as_deref().unwrap_or("")) }
                            td { @if let Some(id) = &c.event_id { (layout::event_link(id)) } }
                        }
                    } }
                }
            }
        }
        (timeline)
    };
    Ok(layout::page(&format!("Device {serial}"), "", &csrf, body))
}

fn command_class(status: Option<&str>) -> Option<&'static str> {
    match status {
        Some("Acknowledged") => Some("ok"),
        Some("Error" | "CommandFormatError") => Some("failed"),
        _ => None,
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /ui/devices/{serial}/pins`: the reveal, recorded first as a
/// `DeviceLock PIN Revealed` event; no record, no PINs.
pub async fn reveal(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Extension(read_only): Extension<crate::session::ReadOnly>,
    Path(serial): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Markup, PageError> {
    crate::may_change(read_only)?;
    if !csrf.accepts(&form.csrf) {
        return Err(PageError::csrf());
    }
    let pins = fleetbus_server::reveal_pins(&console.app, &serial, "console").await?;
    let body = html! {
        p { "This reveal is recorded on " a href={ "/ui/devices/" (layout::encode(&serial)) } { "the device's timeline" } "." }
        table.records #pins {
            thead { tr { th { "PIN" } th { "Command UUID" } th { "Escrowed" } } }
            tbody { @for p in &pins { tr { td.pin { code { (p.pin) } } td { (p.command_uuid) } td { (p.created_at) } } } }
        }
    };
    Ok(layout::page(&format!("PINs of {serial}"), "", &csrf, body))
}

/// `GET /ui/users/{id}`.
pub async fn user(
    State(console): State<Console>,
    Extension(csrf): Extension<Csrf>,
    Path(id): Path<String>,
    Query(params): Query<TimelineParams>,
) -> Result<Markup, PageError> {
    let key = id.clone();
    let user = store(&console)?
        .run("user", move |s| Ok::<_, PageError>(s.user(&key)?))
        .await?;
    let timeline = timeline(&console, &format!("user/{id}"), &params).await?;
    let body = html! {
        @match &user {
            None => p.hint { "No asset record for " code { (id) } "; its events are below." },
            Some(u) => {
                dl.record {
                    dt { "User" } dd { (u.user.id) }
                    dt { "Name" } dd { (u.user.name.as_deref().unwrap_or("—")) }
                    dt { "Email" } dd { (u.user.email.as_deref().unwrap_or("—")) }
                    dt { "Status" } dd { (u.user.status.as_deref().unwrap_or("—")) }
                }
                h2 { "Devices" }
                @if u.devices.is_empty() { p.hint { "None." } }
                ul { @for d in &u.devices {
                    li { a href={ "/ui/devices/" (layout::encode(&d.serial)) } { (d.serial) } " " (d.name.as_deref().unwrap_or("")) }
                } }
            }
        }
        (timeline)
    };
    Ok(layout::page(&format!("User {id}"), "", &csrf, body))
}
