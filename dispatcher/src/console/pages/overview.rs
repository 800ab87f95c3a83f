//! `/ui`: queues, routing and escalation (with the 24 h timeline), scans by
//! status and cost per scan by route; numbers refresh live.

use axum::extract::State;
use maud::{html, Markup};

use crate::console::error::ConsoleError;
use crate::console::layout::{self, page, Nav};
use crate::console::overview::{
    escalation_label, predicted_wait_label, Overview, Segment, TIMELINE_HOURS,
};
use crate::console::session::Session;
use crate::console::workers::{gib, SHOWN_SECONDS};
use crate::state::AppState;

pub async fn show(State(state): State<AppState>, session: Session) -> Result<Markup, ConsoleError> {
    let overview = Overview::load(&state, session.tenant_scope()).await?;
    Ok(page(
        "Overview",
        &session,
        Nav::Overview,
        Some("view=overview".into()),
        render(&overview, &session),
    ))
}

fn render(overview: &Overview, session: &Session) -> Markup {
    let routing = &overview.routing;
    let backlog = &routing.backlog;
    let marks = &routing.watermarks;
    html! {
        main {
            h1 { "Overview" }
            div.grid {
                section.card #queues {
                    h2 { "Queues" }
                    table {
                        thead { tr { th { "queue" } th.num { "waiting" } th.num { "running" } th.num { "consumers" } } }
                        tbody {
                            @for queue in &overview.queues {
                                tr {
                                    td { code { (queue.name) } }
                                    td.num data-live={ (queue.key) ".waiting" } { (queue.waiting) }
                                    td.num data-live=[queue.running.map(|_| format!("{}.running", queue.key))] {
                                        @match queue.running { Some(n) => (n), None => span.muted { "—" } }
                                    }
                                    td.num data-live={ (queue.key) ".consumers" } { (queue.consumers) }
                                }
                            }
                        }
                    }
                    p.muted {
                        "Waiting and consumers as the backlog monitor last sampled them ("
                        span data-live="observed_at" { (backlog.observed_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        "); running = scans marked running in the database."
                    }
                }
                section.card #routing {
                    h2 { "Routing" }
                    dl.fields {
                        dt { "mode" } dd #routing-mode { strong { (routing.mode.as_str()) } }
                        dt { "canary" } dd { (routing.canary_percent) " % of non-tier scans to GPU" }
                        dt { "changed" } dd { (layout::time(routing.updated_at)) " by " (routing.updated_by) }
                        dt { "escalation" }
                        dd {
                            span.escalated[backlog.escalated].calm[!backlog.escalated] data-live="escalation" {
                                (escalation_label(backlog.escalated))
                            }
                            " since " (layout::time(backlog.changed_at))
                        }
                        dt { "predicted CPU wait" } dd data-live="predicted_wait" { (predicted_wait_label(backlog.predicted_wait_ms)) }
                        dt { "watermarks" }
                        dd {
                            "escalate above " (marks.high_watermark) " waiting or a predicted wait over "
                            (marks.latency_target_seconds) " s; stand down below " (marks.low_watermark) " for "
                            (marks.hold_seconds) " s"
                            @if !marks.from_config { " (set at run time)" }
                        }
                    }
                    @if session.is_admin() {
                        p { a href="/ui/routing" { "Change routing…" } }
                    }
                }
            }
            (workers_panel(overview))
            section.card #escalation-timeline {
                h2 { "Escalation, last " (TIMELINE_HOURS) " h" }
                (timeline_svg(overview))
                @if overview.events.is_empty() {
                    p.muted.empty { "No escalation changes in the last " (TIMELINE_HOURS) " hours." }
                } @else {
                    table {
                        thead { tr { th { "when" } th { "change" } th { "reason" } th.num { "CPU waiting" } th.num { "CPU consumers" } } }
                        tbody {
                            @for event in &overview.events {
                                tr {
                                    td { (layout::time(event.at)) }
                                    td { @if event.escalated { span.escalated { "escalated" } } @else { span.calm { "stood down" } } }
                                    td { (event.reason) }
                                    td.num { (event.cpu_depth) }
                                    td.num { (event.cpu_consumers) }
                                }
                            }
                        }
                    }
                }
            }
            div.grid {
                section.card #by-status {
                    h2 { "Scans by status, last 24 h" }
                    table {
                        tbody {
                            @for (status, count) in &overview.by_status {
                                tr {
                                    td { (layout::status_badge(status)) }
                                    td.num data-live={ "status." (status) } { (count) }
                                    td { a href={ "/ui/scans?status=" (status) } { "list" } }
                                }
                            }
                        }
                    }
                }
                section.card #cost {
                    h2 { "Cost per scan by route, today (UTC)" }
                    @if overview.cost_today.is_empty() {
                        p.muted.empty { "No scans submitted today have succeeded yet." }
                    } @else {
                        table {
                            thead { tr { th { "route" } th.num { "scans" } th.num { "per scan" } th.num { "total" } th.num { "mean processing" } } }
                            tbody {
                                @for row in &overview.cost_today {
                                    tr {
                                        td { (row.route) }
                                        td.num { (row.scans) }
                                        td.num { (layout::usd(row.per_scan_usd())) }
                                        td.num { (layout::usd(row.total_usd)) }
                                        td.num { (row.mean_processing_ms.map_or("—".to_string(), layout::duration_ms)) }
                                    }
                                }
                            }
                        }
                        p.muted { "Succeeded scans submitted today; cost as each worker reported it (processing time × its backend's hourly price)." }
                    }
                }
            }
        }
    }
}

/// The workers that reported in the last few minutes; stale or stopped ones
/// greyed (see `console::workers`).
fn workers_panel(overview: &Overview) -> Markup {
    html! {
        section.card #workers {
            h2 { "Workers " span.muted { "(" span data-live="workers.live" { (overview.workers.iter().filter(|w| w.live).count()) } " live)" } }
            @if overview.workers.is_empty() {
                p.muted.empty { "No worker has reported in the last " (SHOWN_SECONDS / 60) " minutes." }
            } @else {
                table {
                    thead { tr { th { "name" } th { "queue" } th { "backend" } th { "GPU" } th.num { "in flight" } th { "last seen" } } }
                    tbody {
                        @for worker in &overview.workers {
                            tr.stale[!worker.live] data-worker=(worker.name) {
                                td { code { (worker.name) } @if worker.stopped_at.is_some() { " " span.muted { "stopped" } } @else if !worker.live { " " span.muted { "stale" } } }
                                td { (worker.queue) }
                                td.backend {
                                    strong { (worker.backend) }
                                    @if !worker.backend.starts_with(worker.backend_requested.as_str()) { " (asked for " (worker.backend_requested) ")" }
                                    br; span.muted.reason { (worker.backend_reason) }
                                }
                                td.gpu {
                                    @match &worker.gpu_name {
                                        Some(name) => {
                                            (name)
                                            @if let (Some(used), Some(total)) = (worker.gpu_memory_used_bytes, worker.gpu_memory_total_bytes) {
                                                br; span.muted { (gib(used)) " of " (gib(total)) " in use" }
                                            }
                                        }
                                        None => span.muted { "—" },
                                    }
                                }
                                td.num.in-flight { (worker.in_flight) " / " (worker.max_concurrent_jobs) }
                                td { (layout::time(worker.last_seen)) }
                            }
                        }
                    }
                }
                p.muted { "Each worker reports every ~10 s (in flight = scans it is running now / its MAX_CONCURRENT_JOBS); greyed: not heard from for a minute, or stopped." }
            }
        }
    }
}

/// The 24 h escalation timeline as an SVG bar (attributes, not inline
/// styles, so the Content Security Policy needs no exception).
fn timeline_svg(overview: &Overview) -> Markup {
    const WIDTH: f64 = 1000.0;
    let span = (overview.now - overview.window_start)
        .num_milliseconds()
        .max(1) as f64;
    let x = |at: chrono::DateTime<chrono::Utc>| {
        ((at - overview.window_start).num_milliseconds() as f64 / span * WIDTH).clamp(0.0, WIDTH)
    };
    let bar = |segment: &Segment| {
        let (start, end) = (x(segment.start), x(segment.end));
        (start, (end - start).max(0.5))
    };
    html! {
        svg.timeline viewBox="0 0 1000 46" preserveAspectRatio="none" role="img" aria-label="Escalation over the last 24 hours" {
            @for segment in &overview.timeline {
                @let (start, width) = bar(segment);
                rect class=(if segment.escalated { "escalated-bar" } else { "calm-bar" })
                    x=(format!("{start:.1}")) y="0" width=(format!("{width:.1}")) height="28"
                    data-escalated=(segment.escalated) {
                    title { (if segment.escalated { "escalated" } else { "calm" }) " from " (segment.start.format("%H:%M")) " to " (segment.end.format("%H:%M")) }
                }
            }
            text x="0" y="42" { (overview.window_start.format("%H:%M")) }
            text x="1000" y="42" text-anchor="end" { "now " (overview.now.format("%H:%M")) " UTC" }
        }
    }
}
