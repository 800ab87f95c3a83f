//! Sends pending webhook deliveries, with retries on a schedule.
//!
//! Each replica claims due rows with a lease (`locked_until`), at most
//! `per_destination` in flight per endpoint across all replicas, so one slow
//! receiver cannot take every slot. A delivery whose sender died is retaken
//! when its lease runs out: delivery is at-least-once, with the same
//! `webhook-id` on every attempt.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::signing;
use crate::sealing::{SealError, SecretOwner};
use crate::settings::DeliverySettings;
use crate::state::AppState;
use protocol::netguard::Refusal;

/// How much of a receiver's answer the attempt log keeps.
const MAX_LOGGED_BODY: usize = 1024;

struct Claimed {
    id: Uuid,
    message_id: String,
    endpoint_id: Option<Uuid>,
    tenant_id: Uuid,
    url: String,
    payload: serde_json::Value,
    attempts: i32,
}

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    Delivered { status: u16, body: String },
    HttpError { status: u16, body: String },
    Gone { body: String },
    Timeout,
    ConnectError(String),
    Blocked(Refusal),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::HttpError { .. } => "http_error",
            Outcome::Gone { .. } => "gone",
            Outcome::Timeout => "timeout",
            Outcome::ConnectError(_) => "connect_error",
            Outcome::Blocked(_) => "blocked",
        }
    }

    /// Worth trying again later.
    fn retryable(&self) -> bool {
        matches!(
            self,
            Outcome::HttpError { .. } | Outcome::Timeout | Outcome::ConnectError(_)
        )
    }
}

pub async fn run(state: AppState, shutdown: CancellationToken) {
    let settings = state.config().delivery_settings();
    let mut in_flight = JoinSet::new();
    loop {
        while let Some(finished) = in_flight.try_join_next() {
            // One delivery's panic must not stop the others; its lease runs
            // out and it is attempted again, so say so loudly here.
            if let Err(error) = finished {
                tracing::error!(%error, "a webhook attempt panicked; retried when its lease expires");
            }
        }
        let room = settings.max_in_flight.saturating_sub(in_flight.len());
        if room > 0 {
            match claim(state.pool(), &settings, room as i64).await {
                Ok(claimed) => {
                    for delivery in claimed {
                        let (state, settings) = (state.clone(), settings.clone());
                        in_flight.spawn(async move { attempt(&state, &settings, delivery).await });
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot claim webhook deliveries"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
    // Attempts under way finish (bounded by the timeout); unclaimed rows wait.
    while in_flight.join_next().await.is_some() {}
}

async fn claim(
    pool: &PgPool,
    settings: &DeliverySettings,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lease_ms = settings.lease().as_millis() as i64;
    sqlx::query_as!(
        Claimed,
        r#"WITH pending AS (
               SELECT id, next_attempt_at, coalesce(endpoint_id::text, url) AS destination,
                      coalesce(locked_until >= now(), false) AS leased
                 FROM webhook_deliveries WHERE status = 'pending'
           ), ranked AS (
               SELECT id, leased, next_attempt_at,
                      count(*) FILTER (WHERE leased) OVER (PARTITION BY destination) AS in_flight,
                      row_number() OVER (PARTITION BY destination, leased ORDER BY next_attempt_at) AS rank
                 FROM pending
           ), picked AS (
               SELECT d.id FROM webhook_deliveries d JOIN ranked r ON r.id = d.id
                WHERE NOT r.leased AND r.next_attempt_at <= now() AND r.rank + r.in_flight <= $1
                ORDER BY r.next_attempt_at
                LIMIT $2
                  FOR UPDATE OF d SKIP LOCKED
           )
           UPDATE webhook_deliveries d
              SET locked_until = now() + make_interval(secs => $3::bigint / 1000.0)
             FROM picked WHERE d.id = picked.id
         RETURNING d.id, d.message_id, d.endpoint_id, d.tenant_id, d.url, d.payload, d.attempts"#,
        settings.per_destination,
        limit,
        lease_ms
    )
    .fetch_all(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
enum SecretsError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A key missing from SECRETS_KEYS: retried, so deliveries resume once
    /// the operator restores it (the attempt is not burnt).
    #[error(transparent)]
    Sealed(#[from] SealError),
}

/// The secrets that sign a delivery: the endpoint's (and its previous one
/// during a rotation overlap), or the tenant's callback secret, opened.
async fn signing_secrets(
    state: &AppState,
    delivery: &Claimed,
) -> Result<Vec<String>, SecretsError> {
    let (owner, stored) = match delivery.endpoint_id {
        Some(endpoint_id) => {
            let row = sqlx::query!(
                r#"SELECT secret, CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS "previous"
                     FROM webhook_endpoints WHERE id = $1"#,
                endpoint_id
            )
            .fetch_one(state.pool())
            .await?;
            (
                SecretOwner::Endpoint(endpoint_id),
                [Some(row.secret), row.previous]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<String>>(),
            )
        }
        None => {
            let secret = sqlx::query_scalar!(
                "SELECT callback_secret FROM tenants WHERE id = $1",
                delivery.tenant_id
            )
            .fetch_one(state.pool())
            .await?;
            (
                SecretOwner::Tenant(delivery.tenant_id),
                secret.into_iter().collect::<Vec<_>>(),
            )
        }
    };
    Ok(stored
        .iter()
        .map(|s| state.sealer().open(owner, s))
        .collect::<Result<_, _>>()?)
}

async fn attempt(state: &AppState, settings: &DeliverySettings, delivery: Claimed) {
    let started_at = Utc::now();
    let clock = Instant::now();
    let outcome = match signing_secrets(state, &delivery).await {
        // The whole attempt, name resolution included, ends well inside the
        // lease: while it runs no other replica may take the delivery, so
        // two replicas never send it at the same time.
        Ok(secrets) => tokio::time::timeout(
            settings.attempt_limit(),
            send(settings, &delivery, &secrets),
        )
        .await
        .unwrap_or(Outcome::Timeout),
        Err(error) => {
            tracing::warn!(%error, delivery_id = %delivery.id, "cannot load signing secrets; will retry");
            release(state.pool(), delivery.id).await;
            return;
        }
    };
    let duration_ms = clock.elapsed().as_millis() as i32;
    let attempt_number = delivery.attempts + 1;
    let next_delay = if outcome.retryable() {
        settings.next_delay(attempt_number as usize)
    } else {
        None
    };
    let label = outcome.label();
    state
        .metrics()
        .webhook_attempts
        .with_label_values(&[label])
        .inc();
    tracing::info!(
        delivery_id = %delivery.id, webhook_id = %delivery.message_id, attempt = attempt_number,
        outcome = label, duration_ms, retry_in_ms = next_delay.map(|d| d.as_millis() as u64), "webhook attempt"
    );
    if let Err(error) = record(
        state.pool(),
        &delivery,
        attempt_number,
        started_at,
        duration_ms,
        &outcome,
        next_delay,
    )
    .await
    {
        // The lease expires and another attempt is made: at-least-once.
        tracing::error!(%error, delivery_id = %delivery.id, "cannot record webhook attempt");
    }
}

async fn send(settings: &DeliverySettings, delivery: &Claimed, secrets: &[String]) -> Outcome {
    let destination = match settings.destinations.resolve(&delivery.url).await {
        Ok(destination) => destination,
        Err(refusal) => return Outcome::Blocked(refusal),
    };
    let body = serde_json::to_vec(&delivery.payload).expect("stored JSON serialises");
    let timestamp = Utc::now().timestamp();
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let signature =
        match signing::signature_header(&secret_refs, &delivery.message_id, timestamp, &body) {
            Ok(signature) if !secrets.is_empty() => signature,
            _ => {
                return Outcome::ConnectError("no valid signing secret for this destination".into())
            }
        };
    // One client per attempt, pinned to the address the guard checked.
    let client = match destination.pinned_client(
        settings.timeout,
        concat!("ScanFleet-Webhooks/", env!("CARGO_PKG_VERSION")),
    ) {
        Ok(client) => client,
        Err(error) => return Outcome::ConnectError(error.to_string()),
    };
    let response = client
        .post(destination.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match response {
        Err(error) if error.is_timeout() => Outcome::Timeout,
        Err(error) => Outcome::ConnectError(error.to_string()),
        Ok(response) => {
            let status = response.status().as_u16();
            let body = match capped_body(response).await {
                Ok(body) => body,
                // The receiver did not finish its answer within the timeout
                // (a trickle): the same as not answering in time.
                Err(error) if error.is_timeout() => return Outcome::Timeout,
                // An answer cut off after its status line: the status decides.
                Err(error) => format!("(reply body unreadable: {error})"),
            };
            match status {
                200..=299 => Outcome::Delivered { status, body },
                410 => Outcome::Gone { body },
                _ => Outcome::HttpError { status, body },
            }
        }
    }
}

/// The first [`MAX_LOGGED_BODY`] bytes of the receiver's answer. Reading
/// stops there: the rest is never read and the connection is dropped with the
/// response, so a receiver that streams for ever costs one KiB and no time.
/// (Reading the whole body and truncating afterwards let a hostile receiver
/// stream into the dispatcher for the full timeout, on every delivery slot.)
async fn capped_body(mut response: reqwest::Response) -> reqwest::Result<String> {
    let mut kept = Vec::with_capacity(MAX_LOGGED_BODY);
    let mut cut = false;
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_LOGGED_BODY - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() >= room {
            cut = chunk.len() > room;
            break;
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if cut {
        text.push('…');
    }
    Ok(text)
}

async fn record(
    pool: &PgPool,
    delivery: &Claimed,
    attempt_number: i32,
    started_at: chrono::DateTime<Utc>,
    duration_ms: i32,
    outcome: &Outcome,
    next_delay: Option<Duration>,
) -> Result<(), sqlx::Error> {
    let (status_code, error, response_body) = match outcome {
        Outcome::Delivered { status, body } => (Some(*status as i32), None, Some(body.clone())),
        Outcome::HttpError { status, body } => (
            Some(*status as i32),
            Some(format!("HTTP {status}")),
            Some(body.clone()),
        ),
        Outcome::Gone { body } => (
            Some(410),
            Some("410 Gone: endpoint disabled".to_string()),
            Some(body.clone()),
        ),
        Outcome::Timeout => (None, Some("timed out".to_string()), None),
        Outcome::ConnectError(reason) => (None, Some(reason.clone()), None),
        Outcome::Blocked(refusal) => (
            None,
            Some(format!("refused before connecting: {refusal}")),
            None,
        ),
    };
    let status = match (outcome, next_delay) {
        (Outcome::Delivered { .. }, _) => "delivered",
        (_, Some(_)) => "pending",
        (_, None) => "failed",
    };
    let next_ms = next_delay.map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut tx = pool.begin().await?;
    sqlx::query!(
        r#"INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, outcome, status_code, error, response_body)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
        delivery.id,
        attempt_number,
        started_at,
        duration_ms,
        outcome.label(),
        status_code,
        error,
        response_body
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"UPDATE webhook_deliveries
              SET attempts = $2, status = $3, last_error = $4, locked_until = NULL,
                  next_attempt_at = now() + make_interval(secs => $5::bigint / 1000.0),
                  finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
            WHERE id = $1"#,
        delivery.id,
        attempt_number,
        status,
        error,
        next_ms
    )
    .execute(&mut *tx)
    .await?;
    if let (Outcome::Gone { .. }, Some(endpoint_id)) = (outcome, delivery.endpoint_id) {
        // The receiver asked us to stop: disable the endpoint and drop what is queued for it.
        sqlx::query!(
            "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = '410 Gone' WHERE id = $1",
            endpoint_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint disabled (410 Gone)', finished_at = now()
                WHERE endpoint_id = $1 AND status = 'pending'"#,
            endpoint_id
        )
        .execute(&mut *tx)
        .await?;
        tracing::warn!(%endpoint_id, "webhook endpoint answered 410 Gone; disabled");
    }
    tx.commit().await
}

async fn release(pool: &PgPool, delivery_id: Uuid) {
    let _ = sqlx::query!(
        "UPDATE webhook_deliveries SET locked_until = NULL WHERE id = $1",
        delivery_id
    )
    .execute(pool)
    .await;
}
