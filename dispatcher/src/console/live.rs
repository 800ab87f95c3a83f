//! Live updates for open console pages.
//!
//! Every scan event row fires `pg_notify('scan_events', scan_id)` (a trigger,
//! see the console migration), whichever process wrote it: a worker, this
//! replica or another. One task per dispatcher LISTENs and fans the ids out
//! on a broadcast channel. Each open page holds a Server-Sent Events stream
//! (`GET /ui/live?view=…`) that turns the ids it may see into events:
//! re-rendered list rows or scan details (`fragment`), and the overview's
//! numbers every two seconds (`values`). See `assets/console.js`.
//!
//! Notifications sent while the listener is reconnecting are lost; a page
//! then shows the change on its next reload (the data is in the database).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use protocol::backoff::Backoff;
use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::error::ConsoleError;
use super::overview::Overview;
use super::scan_list::{self, FilterForm, Filters};
use super::session::Session;
use crate::state::AppState;

/// Notification channel written by the `scan_events_notify` trigger.
pub const CHANNEL: &str = "scan_events";
/// Changes a slow page may fall behind by before it skips some.
pub const CHANGES_BUFFER: usize = 1024;
const OVERVIEW_EVERY: Duration = Duration::from_secs(2);
/// How often a stream re-checks its session (logout, expiry, revoked key).
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Relays scan-change notifications from PostgreSQL to `state.scan_changes()`.
pub async fn listen(state: AppState, shutdown: CancellationToken) {
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        match relay(&state, &shutdown, &mut backoff).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "console change listener interrupted; reconnecting");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}

async fn relay(
    state: &AppState,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(state.pool()).await?;
    listener.listen(CHANNEL).await?;
    backoff.reset();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            notification = listener.recv() => {
                let notification = notification?;
                if let Ok(scan_id) = Uuid::parse_str(notification.payload()) {
                    // No open page: nobody to tell, not an error.
                    let _ = state.scan_changes().send(scan_id);
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    #[serde(default)]
    view: String,
    #[serde(default)]
    id: String,
    #[serde(flatten)]
    filters: FilterForm,
}

/// What a stream watches.
enum View {
    Overview,
    Scans(Filters),
    Scan(Uuid),
}

struct Live {
    state: AppState,
    session: Session,
    view: View,
    changes: Receiver<Uuid>,
    overview_ticks: Interval,
    session_checks: Interval,
}

pub async fn stream(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let view = match query.view.as_str() {
        "overview" => View::Overview,
        "scans" => View::Scans(query.filters.validate(session.is_admin())?),
        "scan" => View::Scan(super::pages::scan_id(&query.id)?),
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "view: expected overview, scans or scan, got {other:?}"
            )))
        }
    };
    let mut overview_ticks = tokio::time::interval(OVERVIEW_EVERY);
    overview_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut session_checks = tokio::time::interval(SESSION_CHECK_EVERY);
    session_checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    session_checks.reset();
    let live = Live {
        changes: state.scan_changes().subscribe(),
        state,
        session,
        view,
        overview_ticks,
        session_checks,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next_event().await?;
        Some((Ok(event), live))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

impl Live {
    /// The next event for the page; `None` ends the stream.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let overview = matches!(self.view, View::Overview);
            tokio::select! {
                _ = self.state.stopping().cancelled() => return None,
                _ = self.session_checks.tick() => {
                    match self.session.still_valid(&self.state).await {
                        Ok(true) => {}
                        Ok(false) => return None,
                        Err(_) => return None,
                    }
                }
                _ = self.overview_ticks.tick(), if overview => {
                    match Overview::load(&self.state, self.session.tenant_scope()).await {
                        Ok(overview) => return Event::default().event("values").json_data(overview.live_values()).ok(),
                        Err(error) => tracing::warn!(detail = %error.detail, "console: overview refresh failed"),
                    }
                }
                changed = self.changes.recv(), if !overview => {
                    match changed {
                        Ok(scan_id) => match self.fragment_for(scan_id).await {
                            Ok(Some(event)) => return Some(event),
                            Ok(None) => {}
                            Err(error) => tracing::warn!(%error, "console: live update failed"),
                        },
                        Err(RecvError::Lagged(missed)) => {
                            tracing::debug!(missed, "console: a live page fell behind");
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
        }
    }

    /// The fragment that shows `scan_id`'s change on this page, if the page
    /// shows that scan and the session may see it.
    async fn fragment_for(&self, scan_id: Uuid) -> Result<Option<Event>, sqlx::Error> {
        let pool = self.state.pool();
        let scope = self.session.tenant_scope();
        match &self.view {
            View::Overview => Ok(None),
            View::Scans(filters) => {
                // A row that matches the filters may be added at the top; one
                // that no longer matches (a status filter) is only updated
                // where it is already shown.
                let (row, prepend) = match scan_list::matching_row(pool, filters, scope, scan_id)
                    .await?
                {
                    Some(row) => (Some(row), true),
                    None => (
                        scan_list::matching_row(pool, &Filters::default(), scope, scan_id).await?,
                        false,
                    ),
                };
                let Some(row) = row else {
                    return Ok(None);
                };
                let html = super::pages::scans::row_markup(&row, self.session.is_admin());
                Ok(fragment(
                    &format!("scan-{scan_id}"),
                    html.into_string(),
                    prepend.then_some("scan-rows"),
                ))
            }
            View::Scan(watched) if *watched == scan_id => {
                let Some(detail) = super::scan_detail::load(pool, scope, scan_id).await? else {
                    return Ok(None);
                };
                let html = super::pages::scan::detail_markup(&detail, &self.session);
                Ok(fragment("scan-detail", html.into_string(), None))
            }
            View::Scan(_) => Ok(None),
        }
    }
}

fn fragment(id: &str, html: String, prepend_to: Option<&str>) -> Option<Event> {
    Event::default()
        .event("fragment")
        .json_data(serde_json::json!({ "id": id, "html": html, "prepend_to": prepend_to }))
        .ok()
}
