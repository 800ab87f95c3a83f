//! The operator console under `/ui` (issue #25): overview, scans, scan
//! detail with actions, webhooks, dead letters and routing — server-rendered
//! HTML.
//!
//! Choices, and why:
//! - HTML comes from `maud`: templates are Rust expressions checked at
//!   compile time, and every interpolated value is HTML-escaped unless it is
//!   explicitly wrapped in `PreEscaped` (used only for our own rendered
//!   fragments). No template files to ship, no runtime parser.
//! - Live updates are Server-Sent Events read by ~60 lines of plain
//!   JavaScript (`assets/console.js`) rather than htmx and its SSE extension:
//!   the page needs only "replace this element with this server-rendered
//!   fragment" and "set these numbers", which `EventSource` does alone; no
//!   50 KB vendored library to keep patched, and a strict Content Security
//!   Policy (`script-src 'self'`, no inline script or style) holds.
//! - Assets are embedded in the binary (`include_str!`); there is no build step.
//! - A login exchanges an API key for a server-side session (see `session`);
//!   every POST carries a per-session CSRF token (see `csrf`).
//!
//! Layout: `session` and `csrf` (who is asking), `error` (HTML error pages),
//! `layout` (page shell and formatting), `overview`, `scan_list`,
//! `scan_detail`, `compare`, `webhook_log`, `dead_letters` (queries), `pages/*`
//! (handlers and markup), `live` (SSE).

pub mod artifacts;
pub mod assets;
pub mod compare;
pub mod csrf;
pub mod dead_letters;
pub mod error;
pub mod layout;
pub mod live;
pub mod overview;
pub mod pages;
pub mod scan_detail;
pub mod scan_list;
pub mod session;
pub mod viewer;
pub mod webhook_log;
pub mod workers;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

use crate::state::AppState;

/// The console's routes. Pages and actions have the API's request timeout;
/// the SSE stream is long-lived by design and sits outside it.
pub fn router(state: AppState) -> Router<AppState> {
    let timeout = state.config().request_timeout;
    let pages = Router::new()
        .route("/ui", get(pages::overview::show))
        .route(
            "/ui/login",
            get(pages::login::form).post(pages::login::submit),
        )
        .route("/ui/logout", post(pages::login::logout))
        .route("/ui/scans", get(pages::scans::list))
        .route("/ui/scans/{id}", get(pages::scan::show))
        .route(
            "/ui/scans/{id}/artifacts/{index}",
            get(pages::artifact::serve),
        )
        .route("/ui/scans/{id}/retry", post(pages::actions::retry))
        .route("/ui/scans/{id}/compare", post(pages::actions::compare))
        .route("/ui/scans/{id}/compare/{other}", get(pages::compare::show))
        .route("/ui/scans/{id}/cancel", post(pages::actions::cancel))
        .route(
            "/ui/scans/{id}/deliveries/{delivery_id}/redeliver",
            post(pages::actions::redeliver),
        )
        .route(
            "/ui/routing",
            get(pages::routing::show).post(pages::routing::change),
        )
        .route("/ui/webhooks", get(pages::webhooks::show))
        .route(
            "/ui/webhooks/endpoints/{id}/rotate",
            post(pages::webhooks::rotate_secret),
        )
        .route(
            "/ui/webhooks/deliveries/{id}/redeliver",
            post(pages::webhooks::redeliver),
        )
        .route("/ui/dead-letters", get(pages::dead_letters::show))
        .route(
            "/ui/dead-letters/{id}/requeue",
            post(pages::dead_letters::requeue),
        )
        .route("/ui/assets/{name}", get(assets::serve))
        // Unknown console paths get an HTML 404 (the API's fallback answers
        // problem+json); behind the session check, so they reveal nothing.
        .route(
            "/ui/{*rest}",
            get(pages::not_found_for).post(pages::not_found_for),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    let live = Router::new().route("/ui/live", get(live::stream));
    pages
        .merge(live)
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every console answer carries: no framing, no inline script or
/// style, no cross-origin form targets, nothing cached (pages hold tenant
/// data; assets are small and versioned by the binary anyway).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
