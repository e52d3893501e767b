//! The page shell (navigation, search box, logout), fragments several pages share
//! (an event's row, a resource's link, pretty JSON) and the HTML error page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fleetbus_event::StoredEvent;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use crate::session::Csrf;

/// The sections in the navigation bar: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/tail", "Live tail"),
    ("/ui/events", "Events"),
    ("/ui/rules", "Rules"),
    ("/ui/sandbox", "Sandbox"),
    ("/ui/dlq", "Dead letters"),
];

/// A whole page: `title`, the section `active` in the navigation, and `body`.
pub fn page(title: &str, active: &str, csrf: &Csrf, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fleetbus" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/ui/" { "fleetbus" }
                    nav {
                        @for (path, label) in NAV {
                            a href=(path) class=[(*path == active).then_some("active")] { (label) }
                        }
                    }
                    form.search action="/ui/search" method="get" {
                        input type="search" name="q" placeholder="serial, UDID, user, name" aria-label="Search devices and users";
                    }
                    form action="/ui/logout" method="post" {
                        input type="hidden" name="csrf" value=(csrf.0);
                        button type="submit" { "Log out" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The login page, with `error` when a login was just refused.
pub fn login(next: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · fleetbus" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body.login {
                main {
                    h1 { "fleetbus" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/ui/login" {
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                        button type="submit" { "Log in" }
                    }
                    p.hint { "Any token of the server's " code { "server.api_tokens" } ". It is exchanged for a session cookie and not kept in the browser." }
                }
            }
        }
    }
}

/// An error shown as a page: its status and a sentence saying what was wrong.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A form without this session's CSRF token.
    pub fn csrf() -> PageError {
        PageError::new(
            StatusCode::FORBIDDEN,
            "the form did not carry this session's CSRF token: reload the page and try again",
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (reason) " · fleetbus" }
                    link rel="stylesheet" href="/ui/static/console.css";
                }
                body {
                    main {
                        h1 { (self.status.as_u16()) " " (reason) }
                        p.error role="alert" { (self.message) }
                        p { a href="/ui/" { "Back to the overview" } }
                    }
                }
            }
        };
        (self.status, body).into_response()
    }
}

impl From<fleetbus_server::ApiError> for PageError {
    fn from(e: fleetbus_server::ApiError) -> PageError {
        PageError::new(e.status, e.message)
    }
}

impl From<fleetbus_engine::EngineError> for PageError {
    fn from(e: fleetbus_engine::EngineError) -> PageError {
        fleetbus_server::ApiError::from(e).into()
    }
}

impl From<fleetbus_assets::AssetError> for PageError {
    fn from(e: fleetbus_assets::AssetError) -> PageError {
        let status = if e.is_retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        PageError::new(status, format!("asset store: {e}"))
    }
}

/// When an event was received, to the second, UTC.
pub fn received(e: &StoredEvent) -> String {
    let t = e.meta.received_at;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A link to a resource's page when the console has one (devices, users), else
/// its events.
pub fn resource(r: &str) -> Markup {
    let href = if let Some(serial) = r.strip_prefix("device/") {
        format!("/ui/devices/{}", encode(serial))
    } else if let Some(user) = r.strip_prefix("user/") {
        format!("/ui/users/{}", encode(user))
    } else {
        format!("/ui/events?resource={}", encode(r))
    };
    html! { a.resource href=(href) { (r) } }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A link to the event's page.
pub fn event_link(id: &str) -> Markup {
    html! { a.id href={ "/ui/events/" (encode(id)) } { (id) } }
}

/// `failed` for a failed delivery or refused command's event, `ok` for a
/// succeeded one, nothing otherwise: the class that colours a row.
pub fn status_class(e: &StoredEvent) -> Option<&'static str> {
    let dt = &e.event.detail_type;
    if dt.ends_with("Failed") || dt.contains("Error") || dt.ends_with("Dead-Lettered") {
        Some("failed")
    } else if dt.ends_with("Succeeded") || dt.ends_with("Acknowledged") {
        Some("ok")
    } else {
        None
    }
}

/// The table of events the search, the timelines and the tail share.
pub fn event_table(events: &[&StoredEvent], with_cause: bool) -> Markup {
    html! {
        table.events {
            thead { tr {
                th { "Received" } th { "Source" } th { "Detail type" } th { "Resources" } th { "Event" }
                @if with_cause { th { "Caused by" } }
            } }
            tbody {
                @for e in events {
                    tr class=[status_class(e)] {
                        td.time { (received(e)) }
                        td { (e.event.source) }
                        td { (e.event.detail_type) }
                        td { @for r in &e.event.resources { (resource(r)) " " } }
                        td { (event_link(&e.event.id)) }
                        @if with_cause {
                            td { @if let Some(c) = &e.meta.causation_id { (event_link(c)) } }
                        }
                    }
                }
            }
        }
    }
}

/// JSON, pretty-printed in a `<pre>`.
pub fn json(v: &Value) -> Markup {
    html! { pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
}
