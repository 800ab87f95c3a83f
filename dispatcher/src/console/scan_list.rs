//! The console's scan list: filters from the query string, validated, and
//! keyset pagination on `(created_at, id)` newest first.
//!
//! The SQL is assembled from the filters actually given (no `$n IS NULL OR`
//! branches), so PostgreSQL plans each shape with its index:
//! `scans_console_recent` (all tenants), `scans_console_tenant_recent`
//! (one tenant) or `scans_console_status_recent` (one status), each walked
//! in order from the cursor and stopped after one page — the cost of a page
//! does not grow with the table.

use chrono::{DateTime, NaiveDateTime, Utc};
use protocol::{RouteReason, ScanKind, ScanStatus};
use serde::Deserialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::error::ConsoleError;

pub const PAGE_SIZE: i64 = 50;

/// The filter form's fields as the browser sends them (empty = not set).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterForm {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub route: String,
    #[serde(default)]
    pub route_reason: String,
    /// Tenant name (admin only).
    #[serde(default)]
    pub tenant: String,
    /// `YYYY-MM-DDTHH:MM` (an `<input type=datetime-local>`), read as UTC.
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    /// The last row of the previous page (`after`), opaque to the browser.
    #[serde(default)]
    pub after: String,
}

/// Validated filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub status: Option<ScanStatus>,
    pub kind: Option<ScanKind>,
    pub route: Option<protocol::Route>,
    pub route_reason: Option<RouteReason>,
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after: Option<Cursor>,
}

/// A position in the list: the `(created_at, id)` of the last row shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// `<microseconds since the epoch>_<uuid>`.
    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        let (micros, id) = raw.split_once('_')?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

fn non_empty(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    (!raw.is_empty()).then_some(raw)
}

fn parse_time(field: &str, raw: &str) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let Some(raw) = non_empty(raw) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| {
            ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
                .map(|naive| naive.and_utc())
                .ok_or(())
        })
        .map_err(|_| {
            ConsoleError::BadRequest(format!(
                "{field}: expected a time like 2026-12-03T14:30 (UTC), got {raw:?}"
            ))
        })?;
    Ok(Some(parsed))
}

fn parse_named<T>(
    field: &str,
    raw: &str,
    parse: impl Fn(&str) -> Option<T>,
    known: &[&str],
) -> Result<Option<T>, ConsoleError> {
    let Some(raw) = non_empty(raw) else {
        return Ok(None);
    };
    parse(raw).map(Some).ok_or_else(|| {
        ConsoleError::BadRequest(format!(
            "{field}: unknown value {raw:?}; one of: {}",
            known.join(", ")
        ))
    })
}

impl FilterForm {
    /// Checks every field; `is_admin` decides whether a tenant filter is allowed.
    pub fn validate(&self, is_admin: bool) -> Result<Filters, ConsoleError> {
        let statuses: Vec<&str> = ScanStatus::ALL.iter().map(|s| s.as_str()).collect();
        let kinds: Vec<&str> = ScanKind::ALL.iter().map(|k| k.as_str()).collect();
        let reasons: Vec<&str> = RouteReason::ALL.iter().map(|r| r.as_str()).collect();
        let tenant = non_empty(&self.tenant).map(str::to_string);
        if tenant.is_some() && !is_admin {
            return Err(ConsoleError::Forbidden(
                "only an admin key may filter by tenant",
            ));
        }
        let filters = Filters {
            status: parse_named("status", &self.status, ScanStatus::parse, &statuses)?,
            kind: parse_named("kind", &self.kind, ScanKind::parse, &kinds)?,
            route: parse_named(
                "route",
                &self.route,
                protocol::Route::parse,
                &["cpu", "gpu"],
            )?,
            route_reason: parse_named(
                "route_reason",
                &self.route_reason,
                RouteReason::parse,
                &reasons,
            )?,
            tenant,
            since: parse_time("since", &self.since)?,
            until: parse_time("until", &self.until)?,
            after: match non_empty(&self.after) {
                None => None,
                Some(raw) => Some(Cursor::decode(raw).ok_or_else(|| {
                    ConsoleError::BadRequest("after: not a position this console issued".into())
                })?),
            },
        };
        if let (Some(since), Some(until)) = (filters.since, filters.until) {
            if since > until {
                return Err(ConsoleError::BadRequest(
                    "since must not be later than until".into(),
                ));
            }
        }
        Ok(filters)
    }
}

impl Filters {
    /// The query string for these filters (for links and the live stream),
    /// without the page position unless `with_cursor`.
    pub fn query_string(&self, with_cursor: bool) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(status) = self.status {
            pairs.push(("status", status.as_str().into()));
        }
        if let Some(kind) = self.kind {
            pairs.push(("kind", kind.as_str().into()));
        }
        if let Some(route) = self.route {
            pairs.push(("route", route.as_str().into()));
        }
        if let Some(reason) = self.route_reason {
            pairs.push(("route_reason", reason.as_str().into()));
        }
        if let Some(tenant) = &self.tenant {
            pairs.push(("tenant", tenant.clone()));
        }
        if let Some(since) = self.since {
            pairs.push(("since", since.format("%Y-%m-%dT%H:%M:%S").to_string()));
        }
        if let Some(until) = self.until {
            pairs.push(("until", until.format("%Y-%m-%dT%H:%M:%S").to_string()));
        }
        if with_cursor {
            if let Some(after) = self.after {
                pairs.push(("after", after.encode()));
            }
        }
        serde_urlencoded::to_string(pairs).expect("pairs of strings encode")
    }
}

/// A scan as the list shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScanListRow {
    pub id: Uuid,
    pub tenant: String,
    pub kind: String,
    pub status: String,
    pub route: String,
    pub route_reason: String,
    pub attempts: i32,
    pub worker: Option<String>,
    pub error_code: Option<String>,
    pub cost_usd: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ScanListRow {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// The list query for `filters` within `scope` (a tenant, or all for an
/// admin), optionally narrowed to one scan (the live stream asks whether a
/// changed scan belongs on a page), at most `limit` rows.
pub fn build_query<'a>(
    filters: &'a Filters,
    scope: Option<Uuid>,
    only: Option<Uuid>,
    limit: i64,
) -> QueryBuilder<'a, Postgres> {
    build("", filters, scope, only, limit)
}

/// The plan PostgreSQL picks for a page of `filters` in `scope`, as text
/// (`EXPLAIN`): the tests check it walks an index in order, without a sort.
pub async fn explain_page(
    pool: &PgPool,
    filters: &Filters,
    scope: Option<Uuid>,
) -> Result<String, sqlx::Error> {
    let lines: Vec<String> = build("EXPLAIN ", filters, scope, None, PAGE_SIZE + 1)
        .build_query_scalar()
        .fetch_all(pool)
        .await?;
    Ok(lines.join("\n"))
}

fn build<'a>(
    prefix: &str,
    filters: &'a Filters,
    scope: Option<Uuid>,
    only: Option<Uuid>,
    limit: i64,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(prefix);
    query.push(
        r#"SELECT s.id, t.name AS tenant, s.kind, s.status, s.route, s.route_reason, s.attempts,
                  s.worker, s.error_code, (s.result ->> 'cost_usd')::float8 AS cost_usd,
                  s.created_at, s.started_at, s.finished_at
             FROM scans s JOIN tenants t ON t.id = s.tenant_id
            WHERE true"#,
    );
    if let Some(tenant_id) = scope {
        query.push(" AND s.tenant_id = ").push_bind(tenant_id);
    }
    if let Some(name) = &filters.tenant {
        // A subquery, not `t.name = …`: the tenant's id then drives the index.
        query
            .push(" AND s.tenant_id = (SELECT id FROM tenants WHERE name = ")
            .push_bind(name.as_str())
            .push(")");
    }
    if let Some(id) = only {
        query.push(" AND s.id = ").push_bind(id);
    }
    if let Some(status) = filters.status {
        query.push(" AND s.status = ").push_bind(status.as_str());
    }
    if let Some(kind) = filters.kind {
        query.push(" AND s.kind = ").push_bind(kind.as_str());
    }
    if let Some(route) = filters.route {
        query.push(" AND s.route = ").push_bind(route.as_str());
    }
    if let Some(reason) = filters.route_reason {
        query
            .push(" AND s.route_reason = ")
            .push_bind(reason.as_str());
    }
    if let Some(since) = filters.since {
        query.push(" AND s.created_at >= ").push_bind(since);
    }
    if let Some(until) = filters.until {
        query.push(" AND s.created_at < ").push_bind(until);
    }
    if let Some(after) = filters.after {
        query
            .push(" AND (s.created_at, s.id) < (")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    query
        .push(" ORDER BY s.created_at DESC, s.id DESC LIMIT ")
        .push_bind(limit);
    query
}

pub struct Page {
    pub rows: Vec<ScanListRow>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

pub async fn page(
    pool: &PgPool,
    filters: &Filters,
    scope: Option<Uuid>,
) -> Result<Page, sqlx::Error> {
    // One extra row says whether another page follows.
    let mut rows: Vec<ScanListRow> = build_query(filters, scope, None, PAGE_SIZE + 1)
        .build_query_as()
        .fetch_all(pool)
        .await?;
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    let next = more.then(|| rows.last().map(ScanListRow::cursor)).flatten();
    Ok(Page { rows, next })
}

/// The row of one scan if it is visible in `scope` and matches `filters`
/// (the page position is ignored: the live stream places rows itself).
pub async fn matching_row(
    pool: &PgPool,
    filters: &Filters,
    scope: Option<Uuid>,
    scan_id: Uuid,
) -> Result<Option<ScanListRow>, sqlx::Error> {
    let filters = Filters {
        after: None,
        ..filters.clone()
    };
    build_query(&filters, scope, Some(scan_id), 1)
        .build_query_as()
        .fetch_optional(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "x",
            "12_notauuid",
            "abc_0190f0e0-0000-7000-8000-000000000000",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn filters_are_validated_with_clear_messages() {
        let form = FilterForm {
            status: "failed".into(),
            kind: "probe".into(),
            route: "gpu".into(),
            route_reason: "canary".into(),
            since: "2026-12-03T10:00".into(),
            ..Default::default()
        };
        let filters = form.validate(false).unwrap();
        assert_eq!(filters.status, Some(ScanStatus::Failed));
        assert_eq!(filters.route, Some(protocol::Route::Gpu));
        assert_eq!(
            filters.since.unwrap().to_rfc3339(),
            "2026-12-03T10:00:00+00:00"
        );
        let bad = FilterForm {
            status: "exploded".into(),
            ..Default::default()
        };
        match bad.validate(true) {
            Err(ConsoleError::BadRequest(message)) => {
                assert!(message.contains("status") && message.contains("succeeded"))
            }
            other => panic!("{other:?}"),
        }
        let tenant = FilterForm {
            tenant: "acme".into(),
            ..Default::default()
        };
        assert!(matches!(
            tenant.validate(false),
            Err(ConsoleError::Forbidden(_))
        ));
        assert_eq!(
            tenant.validate(true).unwrap().tenant.as_deref(),
            Some("acme")
        );
        let backwards = FilterForm {
            since: "2026-12-03T10:00".into(),
            until: "2026-12-02T10:00".into(),
            ..Default::default()
        };
        assert!(backwards.validate(false).is_err());
    }

    #[test]
    fn query_strings_round_trip_through_the_form() {
        let form = FilterForm {
            status: "queued".into(),
            tenant: "a&b=c".into(),
            since: "2026-12-03T10:00:05".into(),
            ..Default::default()
        };
        let filters = form.validate(true).unwrap();
        let again: FilterForm = serde_urlencoded::from_str(&filters.query_string(false)).unwrap();
        assert_eq!(again.validate(true).unwrap(), filters);
    }

    #[test]
    fn the_sql_names_only_the_filters_given() {
        let filters = Filters {
            status: Some(ScanStatus::Queued),
            ..Default::default()
        };
        let sql = build_query(&filters, None, None, 51).into_sql();
        assert!(sql.contains("s.status = $1"), "{sql}");
        assert!(!sql.contains("s.kind ="), "{sql}");
        assert!(
            sql.ends_with("ORDER BY s.created_at DESC, s.id DESC LIMIT $2"),
            "{sql}"
        );
    }
}
