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

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(shown): Query<super::Shown>,
) -> Result<Markup, ConsoleError> {
    require_admin(&session)?;
    let view = admin::view(&state).await?;
    let notice = shown.notice();
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
                            fieldset {
                                legend { "Backlog escalation watermarks" }
                                @let marks = &view.watermarks;
                                p { label { "escalate above (scans waiting on CPU) " input #high type="number" name="high_watermark" min="0" max="1000000" value=(marks.high_watermark); } }
                                p { label { "or a predicted CPU wait over (seconds) " input #latency type="number" name="latency_target_seconds" min="1" max="86400" value=(marks.latency_target_seconds); } }
                                p { label { "stand down below (scans waiting) " input #low type="number" name="low_watermark" min="0" max="1000000" value=(marks.low_watermark); } }
                                p { label { "for (seconds) " input #hold type="number" name="hold_seconds" min="0" max="86400" value=(marks.hold_seconds); } }
                                p {
                                    label {
                                        input #from-config type="checkbox" name="watermarks_from_config" value="yes";
                                        " use the deployment's settings again"
                                        @if marks.from_config { " (in use now)" }
                                    }
                                }
                            }
                            button #review type="submit" { "Review change…" }
                        }
                        p.muted {
                            "cpu: every scan to CPU workers (the rollback of a GPU migration); gpu: every scan to GPU workers; "
                            "auto: paying tiers to GPU, everything to GPU while the CPU queue is escalated, the canary share to GPU, the rest to CPU. "
                            "Watermarks set here override the deployment's (BACKLOG_HIGH_WATERMARK, LATENCY_TARGET, BACKLOG_LOW_WATERMARK, BACKLOG_HOLD) "
                            "until reset; the backlog monitor applies them from its next sample."
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
            dt { "watermarks" } dd #current-watermarks { (watermarks_text(view)) }
            dt { "escalated" } dd { (if view.backlog.escalated { "yes" } else { "no" }) }
        }
    }
}

fn watermarks_text(view: &RoutingView) -> String {
    let marks = &view.watermarks;
    format!(
        "escalate above {} waiting or a predicted wait over {} s; stand down below {} for {} s ({})",
        marks.high_watermark,
        marks.latency_target_seconds,
        marks.low_watermark,
        marks.hold_seconds,
        if marks.from_config {
            "deployment settings"
        } else {
            "set at run time"
        }
    )
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    canary_percent: String,
    #[serde(default)]
    high_watermark: String,
    #[serde(default)]
    low_watermark: String,
    #[serde(default)]
    hold_seconds: String,
    #[serde(default)]
    latency_target_seconds: String,
    #[serde(default)]
    watermarks_from_config: String,
    #[serde(default)]
    confirm: String,
}

/// A whole-number field; `None` when empty or equal to the value in force
/// (a form shows the current values, and sending them back must not pin
/// the deployment's settings as run-time ones).
fn changed_number(field: &str, raw: &str, current: f64) -> Result<Option<u64>, ConsoleError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let value: u64 = raw.parse().map_err(|_| {
        ConsoleError::BadRequest(format!("{field}: expected a whole number, got {raw:?}"))
    })?;
    Ok((value as f64 != current).then_some(value))
}

fn parse(form: &ChangeForm, view: &RoutingView) -> Result<RoutingUpdate, ConsoleError> {
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
    let marks = &view.watermarks;
    let from_config = form.watermarks_from_config == "yes";
    let number = |field: &str, raw: &str, current: f64| {
        if from_config {
            Ok(None)
        } else {
            changed_number(field, raw, current)
        }
    };
    Ok(RoutingUpdate {
        mode,
        canary_percent,
        high_watermark: number(
            "escalate above",
            &form.high_watermark,
            marks.high_watermark as f64,
        )?,
        low_watermark: number(
            "stand down below",
            &form.low_watermark,
            marks.low_watermark as f64,
        )?,
        hold_seconds: number("hold", &form.hold_seconds, marks.hold_seconds)?,
        latency_target_seconds: number(
            "predicted wait",
            &form.latency_target_seconds,
            marks.latency_target_seconds,
        )?,
        watermarks_from_config: from_config,
    })
}

fn or_now(new: Option<u64>, now: f64) -> String {
    new.map_or_else(|| now.to_string(), |v| v.to_string())
}

/// First POST: a confirmation page showing the change. Second POST (with
/// `confirm=yes`): applied through `admin::apply_update`.
pub async fn change(
    State(state): State<AppState>,
    CsrfForm(session, form): CsrfForm<ChangeForm>,
) -> Result<Response, ConsoleError> {
    require_admin(&session)?;
    let view = admin::view(&state).await?;
    let update = parse(&form, &view)?;
    if form.confirm == "yes" {
        admin::apply_update(&state, &update, &session.actor()).await?;
        return Ok(Redirect::to("/ui/routing?done=routing").into_response());
    }
    let canary = update.canary_percent.unwrap_or(view.canary_percent);
    let marks = &view.watermarks;
    let watermark_rows: [(&str, &str, f64, Option<u64>); 4] = [
        (
            "escalate above",
            "high_watermark",
            marks.high_watermark as f64,
            update.high_watermark,
        ),
        (
            "predicted wait over (s)",
            "latency_target_seconds",
            marks.latency_target_seconds,
            update.latency_target_seconds,
        ),
        (
            "stand down below",
            "low_watermark",
            marks.low_watermark as f64,
            update.low_watermark,
        ),
        (
            "for (s)",
            "hold_seconds",
            marks.hold_seconds,
            update.hold_seconds,
        ),
    ];
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
                            @for (label, _, now, new) in &watermark_rows {
                                tr {
                                    th { (label) }
                                    td { (now) }
                                    td {
                                        @if update.watermarks_from_config { "deployment setting" }
                                        @else { strong { (or_now(*new, *now)) } }
                                    }
                                }
                            }
                        }
                    }
                    p { "New scans are routed by the new policy from the next submission on, on every dispatcher replica. Scans already queued stay where they are." }
                    form.inline method="post" action="/ui/routing" {
                        (csrf_field(&session))
                        input type="hidden" name="mode" value=(update.mode.as_str());
                        input type="hidden" name="canary_percent" value=(canary);
                        @for (_, name, _, new) in &watermark_rows {
                            @if let Some(value) = new {
                                input type="hidden" name=(name) value=(value);
                            }
                        }
                        @if update.watermarks_from_config {
                            input type="hidden" name="watermarks_from_config" value="yes";
                        }
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
