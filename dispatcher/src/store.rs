//! The dispatcher's queries on scans, uploads and the outbox.

use chrono::{DateTime, Utc};
use protocol::{Route, RouteReason, ScanMessage};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// A scan row as the API shows it.
#[derive(Debug, Clone)]
pub struct ScanRow {
    pub id: Uuid,
    pub kind: String,
    pub input: Value,
    pub item_type: Option<String>,
    pub callback_url: Option<String>,
    pub metadata: Value,
    pub status: String,
    pub route: String,
    pub route_reason: String,
    pub attempts: i32,
    pub worker: Option<String>,
    pub backend: Option<String>,
    pub result: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A scan to insert, with its queue message.
pub struct NewScan<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: &'a str,
    pub input: Value,
    pub item_type: Option<&'a str>,
    pub callback_url: Option<&'a str>,
    pub metadata: Value,
    pub route: Route,
    pub route_reason: RouteReason,
    pub idempotency_key: Option<&'a str>,
    pub request_sha256: Vec<u8>,
    pub message: ScanMessage,
}

/// What happened to a submission.
pub enum Inserted {
    Created,
    /// The idempotency key was used before: the earlier scan and whether the
    /// earlier request body was the same.
    Replay {
        scan_id: Uuid,
        same_request: bool,
    },
}

/// Writes the scan, its outbox row and its `submitted` event in ONE
/// statement: a statement is its own transaction, so the three are written
/// together or not at all, in one round trip to PostgreSQL (an explicit
/// transaction took five: BEGIN, three INSERTs, COMMIT). Foreign keys from
/// the outbox and the event to the scan are checked at the end of the
/// statement, when the scan row exists. Not a `query!` macro so that no
/// offline query data (.sqlx) has to change with it.
pub async fn insert_scan(pool: &PgPool, scan: NewScan<'_>) -> Result<Inserted, sqlx::Error> {
    let payload = serde_json::to_value(&scan.message).expect("message serialises");
    let detail = serde_json::json!({ "route": scan.route, "reason": scan.route_reason });
    let inserted: Option<Uuid> = sqlx::query_scalar(
        r#"WITH scan AS (
               INSERT INTO scans (id, tenant_id, kind, input, item_type, callback_url, metadata,
                                  route, route_reason, idempotency_key, request_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
               RETURNING id
           ), queued AS (
               INSERT INTO outbox (scan_id, routing_key, payload)
               SELECT id, $12, $13 FROM scan
           ), submitted AS (
               INSERT INTO scan_events (scan_id, event, detail)
               SELECT id, 'submitted', $14 FROM scan
           )
           SELECT id FROM scan"#,
    )
    .bind(scan.id)
    .bind(scan.tenant_id)
    .bind(scan.kind)
    .bind(&scan.input)
    .bind(scan.item_type)
    .bind(scan.callback_url)
    .bind(&scan.metadata)
    .bind(scan.route.as_str())
    .bind(scan.route_reason.as_str())
    .bind(scan.idempotency_key)
    .bind(&scan.request_sha256)
    .bind(protocol::topology::routing_key(scan.route))
    .bind(&payload)
    .bind(&detail)
    .fetch_optional(pool)
    .await?;
    if inserted.is_some() {
        return Ok(Inserted::Created);
    }
    // Only an idempotency key can conflict; the row it names is committed
    // (a concurrent insert with the same key waited for it).
    let earlier = sqlx::query!(
        "SELECT id, request_sha256 FROM scans WHERE tenant_id = $1 AND idempotency_key = $2",
        scan.tenant_id,
        scan.idempotency_key
    )
    .fetch_one(pool)
    .await?;
    Ok(Inserted::Replay {
        scan_id: earlier.id,
        same_request: earlier.request_sha256.as_deref() == Some(&scan.request_sha256[..]),
    })
}

pub async fn get_scan(
    pool: &PgPool,
    tenant_id: Uuid,
    scan_id: Uuid,
) -> Result<Option<ScanRow>, sqlx::Error> {
    sqlx::query_as!(
        ScanRow,
        r#"SELECT id, kind, input, item_type, callback_url, metadata, status, route, route_reason,
                  attempts, worker, backend, result, error_code, error_message,
                  created_at, started_at, finished_at
             FROM scans WHERE id = $1 AND tenant_id = $2"#,
        scan_id,
        tenant_id
    )
    .fetch_optional(pool)
    .await
}

/// One page of a tenant's scans, newest first. Scan ids are UUIDv7, so the id
/// is both the sort key and the cursor.
pub async fn list_scans(
    pool: &PgPool,
    tenant_id: Uuid,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ScanRow>, sqlx::Error> {
    sqlx::query_as!(
        ScanRow,
        r#"SELECT id, kind, input, item_type, callback_url, metadata, status, route, route_reason,
                  attempts, worker, backend, result, error_code, error_message,
                  created_at, started_at, finished_at
             FROM scans
            WHERE tenant_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::uuid IS NULL OR id < $3)
            ORDER BY id DESC
            LIMIT $4"#,
        tenant_id,
        status,
        before,
        limit
    )
    .fetch_all(pool)
    .await
}

pub enum CancelOutcome {
    Canceled,
    NotFound,
    /// Already running or finished: reports the current status.
    NotCancelable(String),
}

pub async fn cancel_scan(
    pool: &PgPool,
    tenant_id: Uuid,
    scan_id: Uuid,
) -> Result<CancelOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let canceled = sqlx::query!(
        r#"UPDATE scans SET status = 'canceled', finished_at = now()
            WHERE id = $1 AND tenant_id = $2 AND status = 'queued'"#,
        scan_id,
        tenant_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if canceled == 1 {
        protocol::db::record_event(&mut tx, scan_id, "canceled", Value::Null).await?;
        protocol::db::enqueue_webhooks(&mut tx, scan_id, protocol::db::WebhookEvent::ScanCanceled)
            .await?;
        tx.commit().await?;
        return Ok(CancelOutcome::Canceled);
    }
    let status = sqlx::query_scalar!(
        "SELECT status FROM scans WHERE id = $1 AND tenant_id = $2",
        scan_id,
        tenant_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match status {
        None => CancelOutcome::NotFound,
        Some(status) => CancelOutcome::NotCancelable(status),
    })
}

#[derive(sqlx::FromRow)]
pub struct UploadRow {
    pub object_path: String,
    pub size_bytes: i64,
}

pub async fn insert_upload(
    pool: &PgPool,
    id: Uuid,
    tenant_id: Uuid,
    object_path: &str,
    size_bytes: i64,
    content_sha256: &str,
    content_type: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO uploads (id, tenant_id, object_path, size_bytes, content_sha256, content_type)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        id,
        tenant_id,
        object_path,
        size_bytes,
        content_sha256,
        content_type
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get_upload(
    pool: &PgPool,
    tenant_id: Uuid,
    upload_id: Uuid,
) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as("SELECT object_path, size_bytes FROM uploads WHERE id = $1 AND tenant_id = $2")
        .bind(upload_id)
        .bind(tenant_id)
        .fetch_optional(pool)
        .await
}

/// An unsent outbox row.
pub struct OutboxRow {
    pub id: i64,
    pub scan_id: Uuid,
    pub routing_key: String,
    pub payload: Value,
}

/// Locks up to `limit` unsent rows for this relay; other replicas skip them.
pub async fn lock_unsent(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as!(
        OutboxRow,
        r#"SELECT id, scan_id, routing_key, payload FROM outbox
            WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(&mut **tx)
    .await
}

pub async fn mark_sent(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)", ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
