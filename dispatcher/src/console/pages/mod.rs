//! The console's handlers and their markup, one page per file.

pub mod actions;
pub mod artifact;
pub mod compare;
pub mod dead_letters;
pub mod login;
pub mod overview;
pub mod routing;
pub mod scan;
pub mod scans;
pub mod webhooks;

use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::ConsoleError;
use super::session::Session;

/// Unknown console paths: a login is required first (nothing about the
/// console's shape leaks to strangers), then a plain 404 page.
pub async fn not_found_for(_session: Session) -> Response {
    ConsoleError::NotFound("page").into_response()
}

/// The 404 page itself (also for unknown assets).
pub async fn not_found() -> Response {
    ConsoleError::NotFound("page").into_response()
}

/// A scan id from a path; a malformed one names no scan.
pub fn scan_id(raw: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(raw).map_err(|_| ConsoleError::NotFound("scan"))
}

/// A page's `?done=…`, set by the redirect after an action.
#[derive(serde::Deserialize)]
pub struct Shown {
    done: Option<String>,
}

impl Shown {
    /// What the page says about the action that led to it, if anything.
    pub fn notice(&self) -> Option<&'static str> {
        notice(self.done.as_deref())
    }
}

/// What a redirect after a successful action says on the next page
/// (`?done=…`): a fixed set of messages, so nothing from the URL is echoed.
pub fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "retried" => Some("Submitted again as this new scan."),
        "canceled" => Some("Scan canceled."),
        "redelivered" => Some("Webhook queued for redelivery with the same webhook-id."),
        "routing" => Some("Routing policy changed."),
        "requeued" => Some("Requeued: its input was submitted again as a new scan."),
        _ => None,
    }
}
