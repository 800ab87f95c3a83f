//! Postgres access shared by the dispatcher and the workers: the pool, the
//! migrations, and the scan state transitions both sides make.
//!
//! Every transition is a guarded `UPDATE … WHERE status IN (…)`: whichever
//! process gets there first wins, the others see zero rows and back off. That
//! is what makes redelivered messages and racing replicas harmless.

use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::message::{Route, RouteReason, ScanStatus};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pool that connects lazily, so a process starts (and reports not-ready)
/// while the database is still down, and recovers on its own when it returns.
pub fn pool(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(database_url)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Appends to a scan's event log, inside the caller's transaction.
pub async fn record_event(
    conn: &mut PgConnection,
    scan_id: Uuid,
    event: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO scan_events (scan_id, event, detail) VALUES ($1, $2, $3)",
        scan_id,
        event,
        detail
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a worker found when it tried to take a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The scan is now running on this worker; `attempt` counts from 1.
    Running { attempt: i32 },
    /// Nothing to do: the scan already reached this state (a redelivery after
    /// completion, or a cancel while it was queued).
    AlreadyFinished(ScanStatus),
    /// No such scan (deleted with its tenant); the message is stale.
    Missing,
}

/// Marks a queued (or orphaned running) scan as running on `worker`.
/// `fallback` records that the scan came to this queue by GPU-timeout fallback.
pub async fn claim_scan(
    pool: &PgPool,
    scan_id: Uuid,
    worker: &str,
    backend: &str,
    fallback: Option<(Route, RouteReason)>,
) -> Result<Claim, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (route, reason) = fallback.map_or((None, None), |(route, reason)| {
        (Some(route.as_str()), Some(reason.as_str()))
    });
    let claimed = sqlx::query_scalar!(
        r#"UPDATE scans
              SET status = 'running',
                  attempts = attempts + 1,
                  started_at = coalesce(started_at, now()),
                  heartbeat_at = now(),
                  worker = $2,
                  backend = $3,
                  route = coalesce($4, route),
                  route_reason = coalesce($5, route_reason)
            WHERE id = $1 AND status IN ('queued', 'running')
        RETURNING attempts"#,
        scan_id,
        worker,
        backend,
        route,
        reason
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(attempt) = claimed else {
        let status = sqlx::query_scalar!("SELECT status FROM scans WHERE id = $1", scan_id)
            .fetch_optional(&mut *tx)
            .await?;
        return Ok(match status.as_deref().and_then(ScanStatus::parse) {
            Some(status) => Claim::AlreadyFinished(status),
            None => Claim::Missing,
        });
    };
    let detail = serde_json::json!({ "attempt": attempt, "worker": worker, "backend": backend });
    record_event(&mut tx, scan_id, "started", detail).await?;
    if let Some(reason) = reason {
        record_event(
            &mut tx,
            scan_id,
            "rerouted",
            serde_json::json!({ "reason": reason }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Claim::Running { attempt })
}

/// Proves the worker is still alive on a running scan.
pub async fn heartbeat(pool: &PgPool, scan_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE scans SET heartbeat_at = now() WHERE id = $1 AND status = 'running'",
        scan_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a scan's result, in the caller's transaction so that anything else
/// that must happen with it (the pending webhook) commits atomically.
/// Returns false when the scan was not running (someone else finished it).
/// `cache_key` makes the result reusable by identical scans (see
/// [`cached_result`]); `None` for kinds that are not cached and for results
/// that were themselves served from the cache.
pub async fn record_success(
    tx: &mut Transaction<'_, Postgres>,
    scan_id: Uuid,
    result: &Value,
    cache_key: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        r#"UPDATE scans
              SET status = 'succeeded', result = $2, finished_at = now(), heartbeat_at = now(),
                  error_code = NULL, error_message = NULL, cache_key = $3
            WHERE id = $1 AND status = 'running'"#,
        scan_id,
        result,
        cache_key
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 1 {
        record_event(tx, scan_id, "succeeded", Value::Null).await?;
        enqueue_webhooks(tx, scan_id, WebhookEvent::ScanSucceeded).await?;
    }
    Ok(updated == 1)
}

/// The oldest computed result of `tenant`'s scans with this cache key:
/// `(scan id, result)`.
pub async fn cached_result(
    pool: &PgPool,
    tenant_id: Uuid,
    cache_key: &str,
    ttl: std::time::Duration,
) -> Result<Option<(Uuid, Value, std::time::Duration)>, sqlx::Error> {
    // The newest match younger than the TTL; its age in seconds comes back
    // so the memory level expires it at the same moment.
    let row = sqlx::query!(
        r#"SELECT id, result AS "result!", EXTRACT(EPOCH FROM now() - finished_at)::float8 AS "age_s!"
             FROM scans
            WHERE tenant_id = $1 AND cache_key = $2 AND status = 'succeeded' AND result IS NOT NULL
              AND finished_at > now() - make_interval(secs => $3)
            ORDER BY finished_at DESC
            LIMIT 1"#,
        tenant_id,
        cache_key,
        ttl.as_secs_f64()
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        (
            row.id,
            row.result,
            std::time::Duration::from_secs_f64(row.age_s.max(0.0)),
        )
    }))
}

/// Marks a queued or running scan failed with a stable error code.
/// Returns false when the scan had already finished.
pub async fn record_failure(
    tx: &mut Transaction<'_, Postgres>,
    scan_id: Uuid,
    code: &str,
    message: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        r#"UPDATE scans
              SET status = 'failed', error_code = $2, error_message = $3, finished_at = now()
            WHERE id = $1 AND status IN ('queued', 'running')"#,
        scan_id,
        code,
        message
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 1 {
        record_event(tx, scan_id, "failed", serde_json::json!({ "code": code })).await?;
        enqueue_webhooks(tx, scan_id, WebhookEvent::ScanFailed).await?;
    }
    Ok(updated == 1)
}

/// The events a tenant can receive by webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    ScanSucceeded,
    ScanFailed,
    ScanCanceled,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::ScanSucceeded => "scan.succeeded",
            WebhookEvent::ScanFailed => "scan.failed",
            WebhookEvent::ScanCanceled => "scan.canceled",
        }
    }
}

/// Results up to this size travel in the webhook; larger ones are fetched
/// through the link in the payload.
const MAX_INLINE_RESULT_BYTES: i32 = 8 * 1024;

/// Queues one delivery of `event` per active endpoint of the scan's tenant and
/// one to the scan's `callback_url`, inside the transaction that moved the scan
/// to its final state: if that commits, the webhooks will be sent (the
/// dispatcher's deliverer picks them up), and if it does not, neither happens.
pub async fn enqueue_webhooks(
    conn: &mut PgConnection,
    scan_id: Uuid,
    event: WebhookEvent,
) -> Result<u64, sqlx::Error> {
    // Payload version 1; `webhook-id` = one message id per scan and event.
    let inserted = sqlx::query!(
        r#"INSERT INTO webhook_deliveries (id, message_id, scan_id, tenant_id, endpoint_id, url, event_type, payload)
           SELECT gen_random_uuid(),
                  'msg_' || replace(s.id::text, '-', '') || '_' || replace($2, 'scan.', ''),
                  s.id, s.tenant_id, d.endpoint_id, d.url, $2,
                  jsonb_build_object(
                      'type', $2::text,
                      'version', 1,
                      'timestamp', to_jsonb(now()),
                      'data', jsonb_build_object(
                          'scan_id', s.id,
                          'kind', s.kind,
                          'status', s.status,
                          'route', s.route,
                          'route_reason', s.route_reason,
                          'attempts', s.attempts,
                          'backend', s.backend,
                          'created_at', s.created_at,
                          'started_at', s.started_at,
                          'finished_at', s.finished_at,
                          'processing_ms', (extract(epoch FROM s.finished_at - s.started_at) * 1000)::bigint,
                          'cost_usd', s.result -> 'cost_usd',
                          'error', CASE WHEN s.error_code IS NULL THEN NULL
                                        ELSE jsonb_build_object('code', s.error_code, 'message', s.error_message) END,
                          'result', CASE WHEN octet_length(s.result::text) <= $3 THEN s.result END,
                          'metadata', s.metadata,
                          'links', jsonb_build_object('scan', '/v1/scans/' || s.id::text)))
             FROM scans s
             CROSS JOIN LATERAL (
                   SELECT e.id AS endpoint_id, e.url FROM webhook_endpoints e
                    WHERE e.tenant_id = s.tenant_id AND e.disabled_at IS NULL
                   UNION ALL
                   SELECT NULL::uuid, s.callback_url WHERE s.callback_url IS NOT NULL
             ) d
            WHERE s.id = $1
           ON CONFLICT (message_id, url) DO NOTHING"#,
        scan_id,
        event.as_str(),
        MAX_INLINE_RESULT_BYTES
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// Whether a database error is the database being unreachable or restarting
/// (worth waiting for), rather than a problem with the statement.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        // Class 08: connection exceptions; 57: operator intervention (shutdown, restart).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
        _ => false,
    }
}

/// Runs `operation` until it succeeds, fails for a reason other than the
/// database being away, or `patience` runs out: a PostgreSQL restart then
/// delays work instead of failing it.
pub async fn retrying<T, F, Fut>(patience: Duration, mut operation: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = crate::backoff::Backoff::default();
    loop {
        match operation().await {
            Err(error) if is_unavailable(&error) && tokio::time::Instant::now() < deadline => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "database unavailable; waiting");
                tokio::time::sleep(delay).await;
            }
            outcome => return outcome,
        }
    }
}
