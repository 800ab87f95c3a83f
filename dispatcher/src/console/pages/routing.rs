//! `/ui/routing` (admin keys only): switch the routing mode and canary share
//! through the admin API's own code path, after a confirmation step. The
//! change is stored with who made it and when (`routing_policy`).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use crate::admin::{self, RoutingUpdate, RoutingView};
use crate::console::csrf::CsrfForm;
use crate::console::error::ConsoleError;
use crate::console::layout::{self, csrf_field, page, Nav};
use crate::console::session::Session;
use crate::routing::RoutingMode;
use crate::state::AppState;

fn require_admin(session: &Session) -> Result<(), ConsoleError> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "changing routing needs a login with an admin API key",
        ))
    }
}

#[derive(Deserialize)]
pub struct Shown {
    done: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(shown): Query<Shown>,
) -> Result<Markup, ConsoleError> {
    require_admin(&session)?;
    let view = admin::view(&state).await?;
    let notice = super::notice(shown.done.as_deref());
    Ok(page(
        "Routing",
        &session,
        Nav::Routing,
        None,
        html! {
            main {
                @if let Some(notice) = notice { p.notice #notice { (notice) } }
                h1 { "Routing" }
                div.grid {
                    section.card #current { h2 { "Now" } (current(&view)) }
                    section.card #change {
                        h2 { "Change" }
                        form method="post" action="/ui/routing" {
                            (csrf_field(&session))
                            p {
                                label {
                                    "mode "
                                    select #mode name="mode" {
                                        @for mode in [RoutingMode::Auto, RoutingMode::Cpu, RoutingMode::Gpu] {
                                            option value=(mode.as_str()) selected[mode == view.mode] { (mode.as_str()) }
                                        }
                                    }
                                }
                            }
                            p {
                                label {
                                    "canary % (auto mode: share of non-tier scans sent to GPU) "
                                    input #canary type="number" name="canary_percent" min="0" max="100" step="0.01" value=(view.canary_percent);
                                }
                            }
                            button #review type="submit" { "Review change…" }
                        }
                        p.muted {
                            "cpu: every scan to CPU workers (the rollback of a GPU migration); gpu: every scan to GPU workers; "
                            "auto: paying tiers to GPU, everything to GPU while the CPU queue is escalated, the canary share to GPU, the rest to CPU. "
                            "Watermarks and hold time are deployment settings (BACKLOG_HIGH_WATERMARK, BACKLOG_LOW_WATERMARK, BACKLOG_HOLD, LATENCY_TARGET)."
                        }
                    }
                }
            }
        },
    ))
}

fn current(view: &RoutingView) -> Markup {
    html! {
        dl.fields {
            dt { "mode" } dd #current-mode { strong { (view.mode.as_str()) } }
            dt { "canary" } dd #current-canary { (view.canary_percent) " %" }
            dt { "changed" } dd #changed-by { (layout::time(view.updated_at)) " by " (view.updated_by) }
            dt { "escalated" } dd { (if view.backlog.escalated { "yes" } else { "no" }) }
        }
    }
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    canary_percent: String,
    #[serde(default)]
    confirm: String,
}

fn parse(form: &ChangeForm) -> Result<RoutingUpdate, ConsoleError> {
    let mode = RoutingMode::parse(form.mode.trim()).ok_or_else(|| {
        ConsoleError::BadRequest(format!(
            "mode: expected cpu, gpu or auto, got {:?}",
            form.mode
        ))
    })?;
    let canary = form.canary_percent.trim();
    let canary_percent = if canary.is_empty() {
        None
    } else {
        let percent: f64 = canary
            .parse()
            .map_err(|_| ConsoleError::BadRequest(format!("canary %: not a number: {canary:?}")))?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(ConsoleError::BadRequest(
                "canary %: must be within 0–100".into(),
            ));
        }
        Some(percent)
    };
    Ok(RoutingUpdate {
        mode,
        canary_percent,
    })
}

/// First POST: a confirmation page showing the change. Second POST (with
/// `confirm=yes`): applied through `admin::apply_update`.
pub async fn change(
    State(state): State<AppState>,
    CsrfForm(session, form): CsrfForm<ChangeForm>,
) -> Result<Response, ConsoleError> {
    require_admin(&session)?;
    let update = parse(&form)?;
    if form.confirm == "yes" {
        admin::apply_update(&state, &update, &session.actor()).await?;
        return Ok(Redirect::to("/ui/routing?done=routing").into_response());
    }
    let view = admin::view(&state).await?;
    let canary = update.canary_percent.unwrap_or(view.canary_percent);
    Ok(page(
        "Confirm routing change",
        &session,
        Nav::Routing,
        None,
        html! {
            main {
                h1 { "Confirm routing change" }
                section.card.confirm #confirm-change {
                    table {
                        thead { tr { th {} th { "now" } th { "after" } } }
                        tbody {
                            tr { th { "mode" } td { (view.mode.as_str()) } td #new-mode { strong { (update.mode.as_str()) } } }
                            tr { th { "canary" } td { (view.canary_percent) " %" } td { strong { (canary) " %" } } }
                        }
                    }
                    p { "New scans are routed by the new policy from the next submission on, on every dispatcher replica. Scans already queued stay where they are." }
                    form.inline method="post" action="/ui/routing" {
                        (csrf_field(&session))
                        input type="hidden" name="mode" value=(update.mode.as_str());
                        input type="hidden" name="canary_percent" value=(canary);
                        input type="hidden" name="confirm" value="yes";
                        button #confirm type="submit" { "Apply" }
                    }
                    " "
                    a href="/ui/routing" { "Cancel" }
                }
            }
        },
    )
    .into_response())
}
