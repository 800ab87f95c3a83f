//! `/ui/webhooks`: the endpoints a session may see, the most recent
//! deliveries with every attempt (outcome, status code, duration), and two
//! actions: redeliver a delivery and rotate an endpoint's secret. Both go
//! through the webhook module's own functions (`requeue_delivery`,
//! `rotate`), so the console and `/v1` cannot drift apart.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use crate::console::csrf::CsrfForm;
use crate::console::error::ConsoleError;
use crate::console::layout::{self, csrf_field, page, Nav};
use crate::console::session::Session;
use crate::console::webhook_log::{self, EndpointRow, RecentDelivery, RECENT_DELIVERIES};
use crate::state::AppState;
use crate::webhooks::api::{requeue_delivery, rotate};

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(shown): Query<super::Shown>,
) -> Result<Markup, ConsoleError> {
    let scope = session.tenant_scope();
    let endpoints = webhook_log::endpoints(state.pool(), scope).await?;
    let deliveries = webhook_log::recent_deliveries(state.pool(), scope, RECENT_DELIVERIES).await?;
    let notice = shown.notice();
    Ok(page(
        "Webhooks",
        &session,
        Nav::Webhooks,
        None,
        html! {
            main {
                @if let Some(notice) = notice { p.notice #notice { (notice) } }
                h1 { "Webhooks" }
                (endpoints_card(&endpoints, &session))
                (deliveries_card(&deliveries, &session))
            }
        },
    ))
}

fn endpoints_card(endpoints: &[EndpointRow], session: &Session) -> Markup {
    html! {
        section.card #endpoints {
            h2 { "Endpoints" }
            @if endpoints.is_empty() {
                p.muted.empty { "No webhook endpoints. Create one with " code { "POST /v1/webhook-endpoints" } "; scans' own callback URLs get deliveries too." }
            } @else {
                table {
                    thead {
                        tr {
                            @if session.is_admin() { th { "tenant" } }
                            th { "url" } th { "description" } th { "state" } th { "created" } th {}
                        }
                    }
                    tbody {
                        @for endpoint in endpoints {
                            tr #{ "endpoint-" (endpoint.id) } {
                                @if session.is_admin() { td { (endpoint.tenant) } }
                                td { code { (endpoint.url) } }
                                td { (endpoint.description.as_deref().unwrap_or("—")) }
                                td {
                                    @if let Some(at) = endpoint.disabled_at {
                                        span.badge.status-failed { "disabled" } " " (layout::time(at))
                                        @if let Some(reason) = &endpoint.disabled_reason { br; span.muted { (reason) } }
                                    } @else {
                                        span.badge.status-delivered { "active" }
                                    }
                                    @if let Some(until) = endpoint.previous_secret_expires_at {
                                        br; span.muted.overlap { "previous secret signs too until " (layout::time(until)) }
                                    }
                                }
                                td { (layout::time(endpoint.created_at)) }
                                td {
                                    form.inline method="post" action={ "/ui/webhooks/endpoints/" (endpoint.id) "/rotate" } {
                                        (csrf_field(session))
                                        button.secondary.rotate type="submit" { "Rotate secret…" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn deliveries_card(deliveries: &[RecentDelivery], session: &Session) -> Markup {
    html! {
        section.card #recent-deliveries {
            h2 { "Recent deliveries" }
            @if deliveries.is_empty() {
                p.muted.empty { "No deliveries yet: one is queued per endpoint (and callback URL) when a scan finishes." }
            } @else {
                table {
                    thead {
                        tr {
                            th { "created" }
                            @if session.is_admin() { th { "tenant" } }
                            th { "scan · event" } th { "url" } th { "status" } th.num { "attempts" }
                            th { "attempt log" } th { "took" } th {}
                        }
                    }
                    tbody {
                        @for delivery in deliveries {
                            tr #{ "delivery-" (delivery.id) } data-status=(delivery.status) {
                                td { (layout::time(delivery.created_at)) }
                                @if session.is_admin() { td { (delivery.tenant) } }
                                td {
                                    a.mono href={ "/ui/scans/" (delivery.scan_id) } { (delivery.scan_id) }
                                    br; (delivery.event_type) " " code.muted { (delivery.webhook_id) }
                                }
                                td {
                                    code { (delivery.url) }
                                    @if delivery.endpoint_id.is_none() { br; span.muted { "(scan's callback URL)" } }
                                }
                                td { span.badge.{ "status-" (delivery.status) } { (delivery.status) } }
                                td.num { (delivery.attempts) }
                                td.attempts {
                                    @for attempt in &delivery.attempt_log {
                                        div.attempt data-outcome=(attempt.outcome) {
                                            "#" (attempt.attempt) " " (attempt.outcome)
                                            @if let Some(code) = attempt.status_code { " " span.status-code { (code) } }
                                            " in " (attempt.duration_ms) " ms at " (attempt.started_at.format("%H:%M:%S"))
                                            @if let Some(error) = &attempt.error { br; span.muted { (error) } }
                                        }
                                    }
                                    @if delivery.attempt_log.is_empty() { span.muted { "not tried yet" } }
                                }
                                td {
                                    @match delivery.finished_at {
                                        Some(done) => (layout::duration_ms((done - delivery.created_at).num_milliseconds() as f64)),
                                        None => span.muted { "—" },
                                    }
                                }
                                td {
                                    @if delivery.status != "pending" {
                                        form.inline method="post" action={ "/ui/webhooks/deliveries/" (delivery.id) "/redeliver" } {
                                            (csrf_field(session))
                                            button.secondary.redeliver type="submit" { "Redeliver" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.muted { "The newest " (RECENT_DELIVERIES) ". Redeliver sends the same payload again with the same " code { "webhook-id" } ", now. took = queued to final outcome." }
            }
        }
    }
}

fn uuid(raw: &str, what: &'static str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(raw).map_err(|_| ConsoleError::NotFound(what))
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(session, NoFields {}): CsrfForm<NoFields>,
) -> Result<Redirect, ConsoleError> {
    let delivery_id = uuid(&id, "delivery")?;
    let scan_id = webhook_log::delivery_scan(state.pool(), session.tenant_scope(), delivery_id)
        .await?
        .ok_or(ConsoleError::NotFound("delivery"))?;
    requeue_delivery(state.pool(), scan_id, delivery_id).await?;
    tracing::info!(%scan_id, %delivery_id, by = %session.actor(), "console: webhook redelivery");
    Ok(Redirect::to("/ui/webhooks?done=redelivered"))
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    confirm: String,
}

/// First POST: a confirmation page. Second POST (`confirm=yes`): the secret
/// is rotated through `webhooks::api::rotate` with the deployment's overlap,
/// and the new secret is shown once — as the API shows it once.
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(session, form): CsrfForm<RotateForm>,
) -> Result<Response, ConsoleError> {
    let endpoint_id = uuid(&id, "webhook endpoint")?;
    let owner = webhook_log::endpoint_owner(state.pool(), session.tenant_scope(), endpoint_id)
        .await?
        .ok_or(ConsoleError::NotFound("webhook endpoint"))?;
    let overlap = state.config().webhook_secret_overlap.as_secs();
    let overlap_text = layout::duration_ms(overlap as f64 * 1e3);
    if form.confirm != "yes" {
        let url: String = sqlx::query_scalar("SELECT url FROM webhook_endpoints WHERE id = $1")
            .bind(endpoint_id)
            .fetch_one(state.pool())
            .await?;
        return Ok(page(
            "Confirm secret rotation",
            &session,
            Nav::Webhooks,
            None,
            html! {
                main {
                    h1 { "Rotate webhook secret" }
                    section.card.confirm #confirm-rotation {
                        p { "Endpoint " code #rotate-url { (url) } }
                        p {
                            "A new " code { "whsec_…" } " secret is generated and shown once. "
                            "The current secret keeps signing every delivery beside the new one for "
                            strong { (overlap_text) } ", so the receiver can switch without rejecting deliveries."
                        }
                        form.inline method="post" action={ "/ui/webhooks/endpoints/" (endpoint_id) "/rotate" } {
                            (csrf_field(&session))
                            input type="hidden" name="confirm" value="yes";
                            button.danger #confirm type="submit" { "Rotate secret" }
                        }
                        " "
                        a href="/ui/webhooks" { "Cancel" }
                    }
                }
            },
        )
        .into_response());
    }
    let rotated = rotate(&state, owner, endpoint_id, overlap).await?;
    tracing::info!(%endpoint_id, by = %session.actor(), "console: webhook secret rotated");
    Ok(page(
        "Secret rotated",
        &session,
        Nav::Webhooks,
        None,
        html! {
            main {
                p.notice #notice { "Secret rotated. The previous secret keeps signing for " (overlap_text) "." }
                h1 { "New webhook secret" }
                section.card #rotated {
                    p { "Endpoint " code { (rotated.endpoint.url) } }
                    p { "Copy it now: it is not shown again." }
                    pre.json #new-secret { (rotated.secret) }
                    p { a href="/ui/webhooks" { "Back to webhooks" } }
                }
            }
        },
    )
    .into_response())
}
