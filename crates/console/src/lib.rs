//! The web console, served by `fleetbus serve` under `/ui/` on the API's port.
//!
//! Pages are HTML rendered on the server with maud (templates checked at compile
//! time) from the same state the HTTP API reads: the engine's archive queries, the
//! asset store, the running configuration. A small script of our own (`assets/`,
//! embedded in the binary like the stylesheet) does what HTML cannot: the live tail
//! over server-sent events. Nothing is fetched from elsewhere, so the console works
//! offline.
//!
//! - `session.rs`: login with an API token, session cookie, CSRF tokens.
//! - `layout.rs`: the page shell, shared fragments, HTML error pages.
//! - `chart.rs`: bar charts drawn as SVG on the server.
//! - `pages/`: one module per page (overview, events and traces, live tail,
//!   devices and users, rules and the sandbox, dead letters).
//!
//! Every page but the login needs a session; every form that changes something
//! carries the session's CSRF token; answers carry a Content-Security-Policy that
//! allows only the console's own script and style.

mod chart;
mod layout;
mod pages;
pub mod session;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fleetbus_server::AppState;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use layout::PageError;
use session::{Csrf, ReadOnly, Sessions};

/// What the console's handlers share: the API's state and the sessions.
#[derive(Clone)]
pub(crate) struct Console {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    /// Cancelled when the server shuts down: ends the live streams.
    pub shutdown: CancellationToken,
}

/// The console's routes, to merge into the API's router
/// (`fleetbus_server::router_with`).
pub fn routes(app: AppState, shutdown: CancellationToken) -> Router<AppState> {
    let console = Console {
        app,
        sessions: Arc::new(Sessions::default()),
        shutdown,
    };
    let private = Router::new()
        .route("/ui/", get(pages::overview::page))
        .route("/ui/events", get(pages::events::search))
        .route("/ui/events/{id}", get(pages::events::event))
        .route("/ui/events/{id}/attachment", get(pages::events::attachment))
        .route("/ui/tail", get(pages::tail::page))
        .route("/ui/tail/stream", get(pages::tail::stream))
        .route("/ui/search", get(pages::assets::search))
        .route("/ui/devices/{serial}", get(pages::assets::device))
        .route("/ui/devices/{serial}/pins", post(pages::assets::reveal))
        .route("/ui/users/{id}", get(pages::assets::user))
        .route("/ui/rules", get(pages::rules::list))
        .route(
            "/ui/sandbox",
            get(pages::rules::sandbox).post(pages::rules::try_out),
        )
        .route("/ui/dlq", get(pages::dlq::list))
        .route("/ui/dlq/redrive", post(pages::dlq::redrive))
        .route("/ui/logout", post(logout))
        .route_layer(from_fn_with_state(console.clone(), require_session));
    let public = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/static/console.js", get(script));
    private
        .merge(public)
        .layer(from_fn(security_headers))
        .with_state(console)
}

/// Lets a request with a live session through, with its [`Csrf`] in the request's
/// extensions; a page asked for without one goes to the login page.
async fn require_session(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    let csrf = request
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::cookie_value)
        .and_then(|id| console.sessions.check(id, Instant::now()));
    match csrf {
        Some((csrf, read_only)) => {
            request.extensions_mut().insert(csrf);
            request.extensions_mut().insert(read_only);
            next.run(request).await
        }
        None if request.method() == axum::http::Method::GET => {
            let next_page = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/ui/".into());
            let target = format!(
                "/ui/login?next={}",
                form_urlencoded::byte_serialize(next_page.as_bytes()).collect::<String>()
            );
            Redirect::to(&target).into_response()
        }
        None => PageError::new(
            StatusCode::UNAUTHORIZED,
            "your session has ended: log in again",
        )
        .into_response(),
    }
}

/// The console's own script and style only; no frames, no sniffing, no referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Response {
    layout::login(q.next.as_deref(), None).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Exchanges a management API token for a session.
async fn login(
    State(console): State<Console>,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(access) = fleetbus_server::token_access(&console.app, form.token.trim()) else {
        tracing::warn!("console login refused: not an API token");
        let page = layout::login(
            form.next.as_deref(),
            Some("that is not one of this server's API tokens (server.api_tokens or server.read_tokens)"),
        );
        return (StatusCode::UNAUTHORIZED, page).into_response();
    };
    let read_only = access == fleetbus_server::Access::Read;
    let Some((id, _)) = console.sessions.create(Instant::now(), read_only) else {
        return PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the system's random number generator failed; no session was made",
        )
        .into_response();
    };
    // Only a path of the console's own: never a redirect to another site.
    let next = form
        .next
        .filter(|n| n.starts_with("/ui/") && !n.starts_with("//"))
        .unwrap_or_else(|| "/ui/".into());
    let mut response = Redirect::to(&next).into_response();
    let over_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id, over_tls)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Refuses a change to a session that may only read.
pub(crate) fn may_change(read_only: ReadOnly) -> Result<(), PageError> {
    if read_only.0 {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "you are logged in with a read token: it sees everything and changes nothing",
        ))
    } else {
        Ok(())
    }
}

async fn logout(
    State(console): State<Console>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    headers: axum::http::HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !csrf.accepts(&form.csrf) {
        return PageError::csrf().into_response();
    }
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::cookie_value)
    {
        console.sessions.remove(id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/console.js"),
    )
        .into_response()
}
