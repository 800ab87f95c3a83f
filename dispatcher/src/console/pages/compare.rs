//! `/ui/scans/{first}/compare/{second}`: one input run on both routes, side
//! by side — route, backend and worker, queue wait and run time, cost, and
//! every result field with the ones that differ marked.

use axum::extract::{Path, State};
use maud::{html, Markup};
use protocol::ScanStatus;

use crate::console::compare::{field_rows, findings_that_differ, waited_and_ran};
use crate::console::error::ConsoleError;
use crate::console::layout::{self, page, Nav};
use crate::console::scan_detail::{self, ScanDetail};
use crate::console::session::Session;
use crate::scans::ScanView;
use crate::state::AppState;

async fn visible(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<ScanDetail, ConsoleError> {
    scan_detail::load(state.pool(), session.tenant_scope(), super::scan_id(id)?)
        .await?
        .ok_or(ConsoleError::NotFound("scan"))
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path((first, second)): Path<(String, String)>,
) -> Result<Markup, ConsoleError> {
    let a = visible(&state, &session, &first).await?;
    let b = visible(&state, &session, &second).await?;
    // An admin sees every tenant's scans; a comparison is of one tenant's.
    if a.tenant_id != b.tenant_id {
        return Err(ConsoleError::NotFound("comparison"));
    }
    let (a, b) = (&a.view, &b.view);
    let rows = field_rows(a.result.as_ref(), b.result.as_ref());
    let differing = findings_that_differ(&rows);
    let finished = |status: &str| ScanStatus::parse(status).is_some_and(ScanStatus::is_terminal);
    let done = finished(&a.status) && finished(&b.status);
    let timing = |ms: Option<f64>| ms.map_or("—".to_string(), layout::duration_ms);
    let cost = |scan: &ScanView| scan.cost_usd().map_or("—".to_string(), layout::usd);
    let (a_waited, a_ran) = waited_and_ran(a);
    let (b_waited, b_ran) = waited_and_ran(b);
    let scan_link = |scan: &ScanView| {
        html! { a.mono href={ "/ui/scans/" (scan.id) } { (scan.id) } }
    };
    Ok(page(
        "Compare routes",
        &session,
        Nav::Scans,
        None,
        html! {
            main #compare data-done=(done) {
                h1 { "Compare routes" }
                @if done {
                    p #verdict {
                        @if differing == 0 { "Both routes found the same." }
                        @else { (differing) " result field(s) differ in what was found." }
                        " Timings, backends, costs and transfer counts are shown but not counted."
                    }
                } @else {
                    p.notice #verdict { "Not finished yet: " a href="" { "reload" } " to see both results." }
                }
                section.card #runs {
                    table {
                        thead { tr { th {} th { (scan_link(a)) } th { (scan_link(b)) } } }
                        tbody {
                            tr { th { "status" } td { (layout::status_badge(&a.status)) } td { (layout::status_badge(&b.status)) } }
                            tr.route { th { "route" } td { (a.route) " (" (a.route_reason) ")" } td { (b.route) " (" (b.route_reason) ")" } }
                            tr { th { "backend" } td { (a.backend.as_deref().unwrap_or("—")) } td { (b.backend.as_deref().unwrap_or("—")) } }
                            tr { th { "worker" } td { (a.worker.as_deref().unwrap_or("—")) } td { (b.worker.as_deref().unwrap_or("—")) } }
                            tr { th { "queue wait" } td.num { (timing(a_waited)) } td.num { (timing(b_waited)) } }
                            tr { th { "run time" } td.num { (timing(a_ran)) } td.num { (timing(b_ran)) } }
                            tr { th { "cost" } td.num { (cost(a)) } td.num { (cost(b)) } }
                        }
                    }
                }
                section.card #fields {
                    h2 { "Result fields" }
                    table {
                        thead { tr { th { "field" } th { (a.route) } th { (b.route) } th.num { "difference" } } }
                        tbody {
                            @for row in &rows {
                                tr class=[row.is_finding_difference().then_some("differs")] data-path=(row.path) {
                                    th { code { (row.path) } }
                                    td { (row.first.as_deref().unwrap_or("—")) }
                                    td { (row.second.as_deref().unwrap_or("—")) }
                                    td.num { @if let Some(delta) = row.delta { @if delta != 0.0 { (format!("{delta:+}")) } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
