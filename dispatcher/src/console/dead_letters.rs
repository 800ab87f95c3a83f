//! Dead-lettered scans as the dead letters page lists them. The dead-letter
//! watcher (`crate::dead_letters`) marks a scan whose message reached
//! `scans.dead` as failed with code `dead_lettered` and the broker's reason
//! (`x-first-death-reason` on its queue) in the message; a console requeue
//! leaves a `requeued` event on it naming the new scan.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// The error code the watcher records (written literally in the query, not
/// bound, so that a generic plan can still use the partial indexes).
pub const CODE: &str = "dead_lettered";
/// Rows shown, newest first.
pub const SHOWN: i64 = 100;

#[derive(Debug, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: Uuid,
    pub tenant: String,
    pub kind: String,
    pub route: String,
    pub route_reason: String,
    pub attempts: i32,
    pub worker: Option<String>,
    /// Why: the broker's dead-letter reason and queue, in words.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dead_at: Option<DateTime<Utc>>,
    pub requeued_as: Option<Uuid>,
    pub requeued_by: Option<String>,
    pub requeued_at: Option<DateTime<Utc>>,
}

/// The newest dead-lettered scans `scope` may see (`None`: every tenant's).
/// Served by the partial indexes `scans_dead_lettered*`, which hold only
/// dead-lettered rows.
pub async fn list(
    pool: &PgPool,
    scope: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        r#"SELECT s.id, t.name AS tenant, s.kind, s.route, s.route_reason, s.attempts, s.worker,
                  s.error_message AS reason, s.created_at, s.finished_at AS dead_at,
                  (r.detail ->> 'as')::uuid AS requeued_as, r.detail ->> 'by' AS requeued_by,
                  r.at AS requeued_at
             FROM scans s
             JOIN tenants t ON t.id = s.tenant_id
             LEFT JOIN LATERAL (
                  SELECT e.at, e.detail FROM scan_events e
                   WHERE e.scan_id = s.id AND e.event = 'requeued'
                   ORDER BY e.id LIMIT 1) r ON true
            WHERE s.error_code = 'dead_lettered'"#,
    );
    if let Some(tenant_id) = scope {
        query.push(" AND s.tenant_id = ").push_bind(tenant_id);
    }
    query
        .push(" ORDER BY s.finished_at DESC, s.id DESC LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}
