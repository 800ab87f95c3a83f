//! `/ui/scans/{id}`: one scan — summary, event timeline, result (readable
//! and as the API's JSON), webhook deliveries, and the actions.

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use uuid::Uuid;

use crate::console::artifacts;
use crate::console::error::ConsoleError;
use crate::console::layout::{self, csrf_field, page, Nav};
use crate::console::scan_detail::{self, readable_fields, ScanDetail};
use crate::console::session::Session;
use crate::console::viewer;
use crate::state::AppState;

/// Readable result rows shown before the JSON takes over.
const MAX_READABLE_FIELDS: usize = 80;

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(shown): Query<super::Shown>,
) -> Result<Markup, ConsoleError> {
    let scan_id = super::scan_id(&id)?;
    let detail = scan_detail::load(state.pool(), session.tenant_scope(), scan_id)
        .await?
        .ok_or(ConsoleError::NotFound("scan"))?;
    let notice = shown.notice();
    Ok(page(
        &format!("Scan {scan_id}"),
        &session,
        Nav::Scans,
        Some(format!("view=scan&id={scan_id}")),
        html! {
            main {
                @if let Some(notice) = notice { p.notice #notice { (notice) } }
                (detail_markup(&detail, &session))
            }
        },
    ))
}

/// The route comparisons this scan is part of, as (first, second) scan ids,
/// from its event log (`compared` on the first, `resubmitted` via
/// `compared` on the second).
fn comparisons(detail: &ScanDetail) -> Vec<(Uuid, Uuid)> {
    let id = |value: &serde_json::Value| value.as_str().and_then(|s| Uuid::parse_str(s).ok());
    detail
        .timeline
        .iter()
        .filter_map(|entry| match entry.event.as_str() {
            "compared" => id(&entry.detail["as"]).map(|other| (detail.view.id, other)),
            "resubmitted" if entry.detail["via"] == "compared" => {
                id(&entry.detail["from"]).map(|first| (first, detail.view.id))
            }
            _ => None,
        })
        .collect()
}

/// Everything below the notice; the live stream re-sends it when the scan
/// changes (`id` = `scan-detail`).
pub fn detail_markup(detail: &ScanDetail, session: &Session) -> Markup {
    let scan = &detail.view;
    let json = serde_json::to_string_pretty(scan).unwrap_or_default();
    html! {
        div #scan-detail data-status=(scan.status) {
            h1 { "Scan " span.mono { (scan.id) } }
            div.grid {
                section.card #summary {
                    h2 { "Summary" }
                    dl.fields {
                        dt { "status" } dd { (layout::status_badge(&scan.status)) }
                        @if let Some(error) = &scan.error {
                            dt { "error" } dd { code { (error.code) } " " (error.message) }
                        }
                        dt { "tenant" } dd { (detail.tenant) }
                        dt { "kind" } dd { (scan.kind) }
                        @if let Some(item_type) = &scan.item_type { dt { "item type" } dd { (item_type) } }
                        dt { "route" } dd { (scan.route) " (" (scan.route_reason) ")" }
                        dt { "attempts" } dd { (scan.attempts) }
                        dt { "worker" } dd { (scan.worker.as_deref().unwrap_or("—")) }
                        dt { "backend" } dd { (scan.backend.as_deref().unwrap_or("—")) }
                        dt { "created" } dd { (layout::time(scan.created_at)) }
                        dt { "started" } dd { (layout::optional_time(scan.started_at)) }
                        dt { "finished" } dd { (layout::optional_time(scan.finished_at)) }
                        @if let (Some(started), Some(finished)) = (scan.started_at, scan.finished_at) {
                            dt { "run time" } dd { (layout::duration_ms((finished - started).num_milliseconds() as f64)) }
                        }
                        @if let Some(cost) = scan.cost_usd() {
                            dt { "cost" } dd { (layout::usd(cost)) }
                        }
                        @if let Some(url) = &scan.callback_url { dt { "callback" } dd { code { (url) } } }
                    }
                }
                section.card #actions {
                    h2 { "Actions" }
                    div.actions {
                        form.inline method="post" action={ "/ui/scans/" (scan.id) "/retry" } {
                            (csrf_field(session))
                            // Names this click: a double submit makes one scan, not two.
                            input type="hidden" name="nonce" value=(Uuid::new_v4().simple());
                            button #retry type="submit" title="Submit the same input again as a new scan (routed as a new submission)" { "Retry as new scan" }
                        }
                        form.inline method="post" action={ "/ui/scans/" (scan.id) "/compare" } {
                            (csrf_field(session))
                            input type="hidden" name="nonce" value=(Uuid::new_v4().simple());
                            button.secondary #compare type="submit" title="Run the same input on the other route, computed afresh, and show both side by side" {
                                "Compare on " (if scan.route == "gpu" { "CPU" } else { "GPU" })
                            }
                        }
                        @if scan.status == "queued" {
                            form.inline method="post" action={ "/ui/scans/" (scan.id) "/cancel" } {
                                (csrf_field(session))
                                button.danger #cancel type="submit" { "Cancel" }
                            }
                        }
                    }
                    p.muted { "Retry re-submits the input through the same checks and routing as " code { "POST /v1/scans" } ", on behalf of the scan's tenant." }
                    @let comparisons = comparisons(detail);
                    @if !comparisons.is_empty() {
                        ul #comparisons {
                            @for (first, second) in &comparisons {
                                li { a href={ "/ui/scans/" (first) "/compare/" (second) } { "Comparison " (first.simple().to_string()[..8]) " ↔ " (second.simple().to_string()[..8]) } }
                            }
                        }
                    }
                }
            }
            section.card #timeline {
                h2 { "Timeline" }
                ol.events {
                    @for entry in &detail.timeline {
                        li data-event=(entry.event) {
                            span { (layout::time(entry.at)) }
                            strong { (entry.event) }
                            code.muted { @if !entry.detail.is_null() && entry.detail != serde_json::json!({}) { (entry.detail.to_string()) } }
                        }
                    }
                }
            }
            section.card #deliveries {
                h2 { "Webhook deliveries" }
                @if detail.deliveries.is_empty() {
                    p.muted.empty { "No webhooks for this scan (none are sent before it finishes, and only to the tenant's endpoints and the scan's callback URL)." }
                } @else {
                    table {
                        thead { tr { th { "event" } th { "url" } th { "status" } th.num { "attempts" } th { "last error" } th { "attempt log" } th {} } }
                        tbody {
                            @for delivery in &detail.deliveries {
                                tr #{ "delivery-" (delivery.id) } data-status=(delivery.status) {
                                    td { (delivery.event_type) br; code.muted { (delivery.webhook_id) } }
                                    td { code { (delivery.url) } }
                                    td { span.badge.{ "status-" (delivery.status) } { (delivery.status) } }
                                    td.num { (delivery.attempts) }
                                    td { (delivery.last_error.as_deref().unwrap_or("—")) }
                                    td {
                                        @for attempt in &delivery.attempt_log {
                                            div {
                                                "#" (attempt.attempt) " " (attempt.outcome)
                                                @if let Some(code) = attempt.status_code { " " (code) }
                                                " in " (attempt.duration_ms) " ms at " (attempt.started_at.format("%H:%M:%S"))
                                            }
                                        }
                                    }
                                    td {
                                        @if delivery.status != "pending" {
                                            form.inline method="post" action={ "/ui/scans/" (scan.id) "/deliveries/" (delivery.id) "/redeliver" } {
                                                (csrf_field(session))
                                                button.secondary.redeliver type="submit" { "Redeliver" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(result) = &scan.result {
                @let images = artifacts::listed(result, detail.tenant_id);
                @if let Some(report) = viewer::Report::of(result) {
                    (viewer::render(scan.id, &report, &images))
                } @else if !images.is_empty() {
                    section.card #artifacts {
                        h2 { "Artifacts" }
                        div.artifacts {
                            @for (index, image) in images.iter().enumerate() {
                                figure {
                                    a href={ "/ui/scans/" (scan.id) "/artifacts/" (index) } {
                                        img src={ "/ui/scans/" (scan.id) "/artifacts/" (index) } alt=(image.label) loading="lazy";
                                    }
                                    figcaption { (image.label) }
                                }
                            }
                        }
                    }
                }
                section.card #result {
                    h2 { "Result" }
                    table {
                        tbody {
                            @for (path, value) in readable_fields(result, MAX_READABLE_FIELDS) {
                                tr { th { (path) } td { (value) } }
                            }
                        }
                    }
                }
            }
            section.card #json {
                h2 { "As the API returns it (" code { "GET /v1/scans/" (scan.id) } ")" }
                pre.json { (json) }
            }
        }
    }
}
