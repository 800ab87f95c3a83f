//! `/ui/scans`: the filtered, paginated scan list; new and changed scans
//! appear live on the first page.

use axum::extract::{Query, State};
use maud::{html, Markup};
use protocol::{RouteReason, ScanKind, ScanStatus};

use crate::console::error::ConsoleError;
use crate::console::layout::{self, page, Nav};
use crate::console::scan_list::{self, FilterForm, Filters, ScanListRow};
use crate::console::session::Session;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(form): Query<FilterForm>,
) -> Result<Markup, ConsoleError> {
    let filters = form.validate(session.is_admin())?;
    let page_rows = scan_list::page(state.pool(), &filters, session.tenant_scope()).await?;
    let first_page = filters.after.is_none();
    // The live stream watches the same filters; rows are placed only on the
    // first page (a later page would shift under the reader).
    let live = format!("view=scans&{}", filters.query_string(false));
    Ok(page(
        "Scans",
        &session,
        Nav::Scans,
        Some(live),
        html! {
            main {
                h1 { "Scans" }
                section.card { (filter_form(&form, &session)) }
                section.card {
                    table #scan-table {
                        thead {
                            tr {
                                th { "scan" }
                                @if session.is_admin() { th { "tenant" } }
                                th { "kind" } th { "status" } th { "route" } th { "reason" }
                                th.num { "attempts" } th { "worker" } th.num { "cost" }
                                th { "created" } th { "finished" }
                            }
                        }
                        tbody #scan-rows data-live=[first_page.then_some("prepend")] {
                            @if page_rows.rows.is_empty() {
                                tr.empty { td colspan="11" .muted { "No scans match." } }
                            }
                            @for row in &page_rows.rows {
                                (row_markup(row, session.is_admin()))
                            }
                        }
                    }
                    div.pager {
                        @if first_page { span {} } @else {
                            a href={ "/ui/scans?" (filters.query_string(false)) } { "← newest" }
                        }
                        @if let Some(next) = page_rows.next {
                            @let next_filters = Filters { after: Some(next), ..filters.clone() };
                            a #next-page href={ "/ui/scans?" (next_filters.query_string(true)) } { "older →" }
                        }
                    }
                }
            }
        },
    ))
}

/// One row; also sent alone by the live stream (`id` = `scan-<uuid>`).
pub fn row_markup(row: &ScanListRow, is_admin: bool) -> Markup {
    html! {
        tr #{ "scan-" (row.id) } data-status=(row.status) {
            td { a.mono href={ "/ui/scans/" (row.id) } { (row.id) } }
            @if is_admin { td { (row.tenant) } }
            td { (row.kind) }
            td {
                (layout::status_badge(&row.status))
                @if let Some(code) = &row.error_code { " " code.muted { (code) } }
            }
            td { (row.route) }
            td { (row.route_reason) }
            td.num { (row.attempts) }
            td { @if let Some(worker) = &row.worker { (worker) } @else { span.muted { "—" } } }
            td.num { @if let Some(cost) = row.cost_usd { (layout::usd(cost)) } @else { span.muted { "—" } } }
            td { (layout::time(row.created_at)) }
            td { (layout::optional_time(row.finished_at)) }
        }
    }
}

fn select(name: &str, label: &str, current: &str, options: &[&str]) -> Markup {
    html! {
        label {
            (label)
            select name=(name) {
                option value="" selected[current.is_empty()] { "any" }
                @for option in options {
                    option value=(option) selected[*option == current] { (option) }
                }
            }
        }
    }
}

fn filter_form(form: &FilterForm, session: &Session) -> Markup {
    let statuses: Vec<&str> = ScanStatus::ALL.iter().map(|s| s.as_str()).collect();
    let kinds: Vec<&str> = ScanKind::ALL.iter().map(|k| k.as_str()).collect();
    let reasons: Vec<&str> = RouteReason::ALL.iter().map(|r| r.as_str()).collect();
    html! {
        form.filters #filters method="get" action="/ui/scans" {
            (select("status", "status", form.status.trim(), &statuses))
            (select("kind", "kind", form.kind.trim(), &kinds))
            (select("route", "route", form.route.trim(), &["cpu", "gpu"]))
            (select("route_reason", "route reason", form.route_reason.trim(), &reasons))
            @if session.is_admin() {
                label { "tenant" input type="text" name="tenant" value=(form.tenant) placeholder="name"; }
            }
            label { "created since (UTC)" input type="datetime-local" name="since" value=(form.since); }
            label { "until (UTC)" input type="datetime-local" name="until" value=(form.until); }
            button type="submit" { "Filter" }
            a href="/ui/scans" { "clear" }
        }
    }
}
