//! One scan as the detail page shows it: the same `ScanView` the public API
//! returns, plus its owner, its event timeline and its webhook deliveries.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::scans::ScanView;
use crate::store::ScanRow;
use crate::webhooks::api::{deliveries_of, DeliveryView};

/// A scan visible to the session, with what the console needs besides the
/// API's view of it.
pub struct ScanDetail {
    pub tenant_id: Uuid,
    pub tenant: String,
    pub view: ScanView,
    pub timeline: Vec<TimelineEntry>,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Clone)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    pub detail: Value,
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: Uuid,
    tenant: String,
    id: Uuid,
    kind: String,
    input: Value,
    item_type: Option<String>,
    callback_url: Option<String>,
    metadata: Value,
    status: String,
    route: String,
    route_reason: String,
    attempts: i32,
    worker: Option<String>,
    backend: Option<String>,
    result: Option<Value>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

/// The scan's owner and row, if `scope` may see it (`None`: an admin).
/// Another tenant's scan and a scan that does not exist look the same.
pub async fn owner_and_row(
    pool: &PgPool,
    scope: Option<Uuid>,
    scan_id: Uuid,
) -> Result<Option<(Uuid, String, ScanRow)>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        r#"SELECT s.tenant_id, t.name AS tenant, s.id, s.kind, s.input, s.item_type, s.callback_url,
                  s.metadata, s.status, s.route, s.route_reason, s.attempts, s.worker, s.backend,
                  s.result, s.error_code, s.error_message, s.created_at, s.started_at, s.finished_at
             FROM scans s JOIN tenants t ON t.id = s.tenant_id
            WHERE s.id = "#,
    );
    query.push_bind(scan_id);
    if let Some(tenant_id) = scope {
        query.push(" AND s.tenant_id = ").push_bind(tenant_id);
    }
    let row: Option<Row> = query.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(|row| {
        (
            row.tenant_id,
            row.tenant,
            ScanRow {
                id: row.id,
                kind: row.kind,
                input: row.input,
                item_type: row.item_type,
                callback_url: row.callback_url,
                metadata: row.metadata,
                status: row.status,
                route: row.route,
                route_reason: row.route_reason,
                attempts: row.attempts,
                worker: row.worker,
                backend: row.backend,
                result: row.result,
                error_code: row.error_code,
                error_message: row.error_message,
                created_at: row.created_at,
                started_at: row.started_at,
                finished_at: row.finished_at,
            },
        )
    }))
}

pub async fn load(
    pool: &PgPool,
    scope: Option<Uuid>,
    scan_id: Uuid,
) -> Result<Option<ScanDetail>, sqlx::Error> {
    let Some((tenant_id, tenant, row)) = owner_and_row(pool, scope, scan_id).await? else {
        return Ok(None);
    };
    let mut timeline: Vec<TimelineEntry> = sqlx::query_as::<_, (DateTime<Utc>, String, Value)>(
        "SELECT at, event, detail FROM scan_events WHERE scan_id = $1 ORDER BY id",
    )
    .bind(scan_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(at, event, detail)| TimelineEntry { at, event, detail })
    .collect();
    // Publishing is recorded on the outbox row, not as an event.
    let relayed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT sent_at FROM outbox WHERE scan_id = $1 AND sent_at IS NOT NULL ORDER BY id LIMIT 1",
    )
    .bind(scan_id)
    .fetch_optional(pool)
    .await?;
    if let Some(at) = relayed {
        timeline.push(TimelineEntry {
            at,
            event: "relayed".into(),
            detail: serde_json::json!({ "to": "RabbitMQ", "queue": row.route }),
        });
    }
    let deliveries = deliveries_of(pool, scan_id).await?;
    for delivery in &deliveries {
        for attempt in &delivery.attempt_log {
            timeline.push(TimelineEntry {
                at: attempt.started_at,
                event: format!("webhook {}", attempt.outcome),
                detail: serde_json::json!({
                    "event": delivery.event_type,
                    "url": delivery.url,
                    "attempt": attempt.attempt,
                    "status_code": attempt.status_code,
                    "duration_ms": attempt.duration_ms,
                }),
            });
        }
    }
    // Stable: events written in one transaction keep their order.
    timeline.sort_by_key(|entry| entry.at);
    Ok(Some(ScanDetail {
        tenant_id,
        tenant,
        view: row.into(),
        timeline,
        deliveries,
    }))
}

/// The result's scalar fields as `(path, value)` rows, depth-first, for the
/// readable view; arrays are summarised by length. At most `limit` rows.
pub fn readable_fields(result: &Value, limit: usize) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>, limit: usize) {
        if out.len() >= limit {
            return;
        }
        match value {
            Value::Object(fields) => {
                for (name, value) in fields {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&path, value, out, limit);
                }
            }
            Value::Array(items) => out.push((prefix.to_string(), format!("{} items", items.len()))),
            Value::Null => out.push((prefix.to_string(), "—".into())),
            Value::String(text) => out.push((prefix.to_string(), text.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", result, &mut out, limit);
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_fields_flatten_objects_and_summarise_arrays() {
        let result = serde_json::json!({
            "kind": "probe",
            "cost_usd": 0.0001,
            "report": {"scores": {"overall": 8}, "defects": [1, 2, 3], "item": null},
        });
        let fields = readable_fields(&result, 10);
        assert_eq!(
            fields,
            [
                ("cost_usd".to_string(), "0.0001".to_string()),
                ("kind".into(), "probe".into()),
                ("report.defects".into(), "3 items".into()),
                ("report.item".into(), "—".into()),
                ("report.scores.overall".into(), "8".into()),
            ]
        );
        assert_eq!(readable_fields(&result, 2).len(), 2);
    }
}
