//! What the webhooks page shows: the endpoints a session may see and the
//! most recent deliveries with their attempt logs. A tenant session is
//! scoped to its own rows in every query; an admin sees every tenant's, with
//! the tenant named.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::webhooks::api::{attempts_of, AttemptView};

/// Deliveries shown on the page, newest first.
pub const RECENT_DELIVERIES: i64 = 50;

#[derive(Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub url: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Set while a rotated-out secret still signs beside the new one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    scan_id: Uuid,
    tenant: String,
    message_id: String,
    event_type: String,
    url: String,
    endpoint_id: Option<Uuid>,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct RecentDelivery {
    pub id: Uuid,
    pub scan_id: Uuid,
    pub tenant: String,
    pub webhook_id: String,
    pub event_type: String,
    pub url: String,
    pub endpoint_id: Option<Uuid>,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<AttemptView>,
}

/// The endpoints `scope` may see (`None`: an admin, every tenant's).
pub async fn endpoints(
    pool: &PgPool,
    scope: Option<Uuid>,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        r#"SELECT e.id, e.tenant_id, t.name AS tenant, e.url, e.description, e.created_at,
                  e.disabled_at, e.disabled_reason,
                  CASE WHEN e.previous_secret_expires_at > now()
                       THEN e.previous_secret_expires_at END AS previous_secret_expires_at
             FROM webhook_endpoints e JOIN tenants t ON t.id = e.tenant_id"#,
    );
    if let Some(tenant_id) = scope {
        query.push(" WHERE e.tenant_id = ").push_bind(tenant_id);
    }
    query.push(" ORDER BY t.name, e.id");
    query.build_query_as().fetch_all(pool).await
}

/// The owner of an endpoint `scope` may see; another tenant's endpoint and
/// one that does not exist look the same.
pub async fn endpoint_owner(
    pool: &PgPool,
    scope: Option<Uuid>,
    endpoint_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT tenant_id FROM webhook_endpoints WHERE id = ");
    query.push_bind(endpoint_id);
    if let Some(tenant_id) = scope {
        query.push(" AND tenant_id = ").push_bind(tenant_id);
    }
    query.build_query_scalar().fetch_optional(pool).await
}

/// The scan of a delivery `scope` may see (redelivery is keyed by scan).
pub async fn delivery_scan(
    pool: &PgPool,
    scope: Option<Uuid>,
    delivery_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT scan_id FROM webhook_deliveries WHERE id = ");
    query.push_bind(delivery_id);
    if let Some(tenant_id) = scope {
        query.push(" AND tenant_id = ").push_bind(tenant_id);
    }
    query.build_query_scalar().fetch_optional(pool).await
}

/// The newest deliveries `scope` may see, each with its attempt log. Served
/// by `webhook_deliveries_tenant_recent` / `_recent` (newest first).
pub async fn recent_deliveries(
    pool: &PgPool,
    scope: Option<Uuid>,
    limit: i64,
) -> Result<Vec<RecentDelivery>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        r#"SELECT d.id, d.scan_id, t.name AS tenant, d.message_id, d.event_type, d.url,
                  d.endpoint_id, d.status, d.attempts, d.last_error, d.created_at, d.finished_at
             FROM webhook_deliveries d JOIN tenants t ON t.id = d.tenant_id"#,
    );
    if let Some(tenant_id) = scope {
        query.push(" WHERE d.tenant_id = ").push_bind(tenant_id);
    }
    query
        .push(" ORDER BY d.created_at DESC, d.id DESC LIMIT ")
        .push_bind(limit);
    let rows: Vec<DeliveryRow> = query.build_query_as().fetch_all(pool).await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut attempts = attempts_of(pool, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| RecentDelivery {
            attempt_log: attempts.remove(&row.id).unwrap_or_default(),
            id: row.id,
            scan_id: row.scan_id,
            tenant: row.tenant,
            webhook_id: row.message_id,
            event_type: row.event_type,
            url: row.url,
            endpoint_id: row.endpoint_id,
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
            finished_at: row.finished_at,
        })
        .collect())
}
