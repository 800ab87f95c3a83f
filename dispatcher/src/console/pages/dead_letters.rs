//! `/ui/dead-letters`: scans whose queue message was dead-lettered, with the
//! broker's reason, and (admin keys only) a requeue action. A requeue submits
//! the scan's input again through the retry action's path
//! (`actions::resubmit`: `scans::submit_scan`, routing, outbox) and records
//! `requeued` (who, and the new scan) on the dead scan, `resubmitted` on the
//! new one. The dead scan itself stays failed: its webhooks have gone out,
//! and a final state is never reopened.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use maud::{html, Markup};
use serde::Deserialize;

use crate::console::dead_letters::{self, DeadLetter, CODE, SHOWN};
use crate::console::error::ConsoleError;
use crate::console::layout::{self, csrf_field, page, Nav};
use crate::console::scan_detail::owner_and_row;
use crate::console::session::Session;
use crate::console::{csrf::CsrfForm, pages::actions};
use crate::state::AppState;

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(shown): Query<super::Shown>,
) -> Result<Markup, ConsoleError> {
    let rows = dead_letters::list(state.pool(), session.tenant_scope(), SHOWN).await?;
    let notice = shown.notice();
    Ok(page(
        "Dead letters",
        &session,
        Nav::DeadLetters,
        None,
        html! {
            main {
                @if let Some(notice) = notice { p.notice #notice { (notice) } }
                h1 { "Dead letters" }
                section.card #dead-letters {
                    @if rows.is_empty() {
                        p.muted.empty { "No dead-lettered scans." }
                    } @else {
                        (table(&rows, &session))
                    }
                    p.muted {
                        "A scan is dead-lettered when its message ran out of deliveries (worker crashes, repeated transient errors) "
                        "or could not be routed; it is marked failed with code " code { (CODE) } ". "
                        @if session.is_admin() {
                            "Requeue submits its input again as a new scan of the same tenant, through the same checks and routing as "
                            code { "POST /v1/scans" } "."
                        } @else {
                            "Requeueing needs a login with an admin API key."
                        }
                    }
                }
            }
        },
    ))
}

fn table(rows: &[DeadLetter], session: &Session) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th { "dead-lettered" }
                    @if session.is_admin() { th { "tenant" } }
                    th { "scan" } th { "kind" } th { "route" } th.num { "attempts" } th { "reason" } th { "requeued" } th {}
                }
            }
            tbody {
                @for row in rows {
                    tr #{ "dead-" (row.id) } data-requeued=(if row.requeued_as.is_some() { "yes" } else { "no" }) {
                        td { (layout::optional_time(row.dead_at)) }
                        @if session.is_admin() { td { (row.tenant) } }
                        td { a.mono href={ "/ui/scans/" (row.id) } { (row.id) } }
                        td { (row.kind) }
                        td { (row.route) " " span.muted { "(" (row.route_reason) ")" } }
                        td.num { (row.attempts) @if let Some(worker) = &row.worker { br; span.muted { (worker) } } }
                        td.reason { (row.reason.as_deref().unwrap_or("—")) }
                        td {
                            @if let Some(new) = row.requeued_as {
                                "as " a.mono.requeued-as href={ "/ui/scans/" (new) } { (new) }
                                br; span.muted { (layout::optional_time(row.requeued_at)) " by " (row.requeued_by.as_deref().unwrap_or("?")) }
                            } @else {
                                span.muted { "—" }
                            }
                        }
                        td {
                            @if session.is_admin() && row.requeued_as.is_none() {
                                form.inline method="post" action={ "/ui/dead-letters/" (row.id) "/requeue" } {
                                    (csrf_field(session))
                                    button.requeue type="submit" { "Requeue" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn requeue(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(session, NoFields {}): CsrfForm<NoFields>,
) -> Result<Redirect, ConsoleError> {
    if !session.is_admin() {
        return Err(ConsoleError::Forbidden(
            "requeueing dead letters needs a login with an admin API key",
        ));
    }
    let scan_id = super::scan_id(&id)?;
    let (owner, _, row) = owner_and_row(state.pool(), None, scan_id)
        .await?
        .ok_or(ConsoleError::NotFound("scan"))?;
    if row.error_code.as_deref() != Some(CODE) {
        return Err(ConsoleError::Refused(
            StatusCode::CONFLICT,
            "this scan was not dead-lettered; use Retry on its page".into(),
        ));
    }
    // One requeue per dead scan: a second click (or a second operator)
    // replays the first submission instead of creating another scan.
    let idempotency_key = format!("console-requeue-{}", row.id.simple());
    let to = actions::resubmit(&state, owner, &row, &idempotency_key, None).await?;
    actions::record_resubmission(&state, row.id, to, "requeued", &session.actor()).await?;
    tracing::info!(from = %row.id, %to, by = %session.actor(), "console: dead letter requeued");
    Ok(Redirect::to("/ui/dead-letters?done=requeued"))
}
