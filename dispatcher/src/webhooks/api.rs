//! Webhook endpoints, the delivery log and manual redelivery.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::signing::generate_secret;
use crate::auth::Caller;
use crate::body::{parse_json, parse_optional_json, JsonBody};
use crate::problem::{ApiError, Problem};
use crate::sealing::SecretOwner;
use crate::state::AppState;

const MAX_DESCRIPTION_LEN: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// https URL that receives `scan.succeeded`, `scan.failed` and `scan.canceled`.
    #[schema(format = "uri", max_length = 2048, pattern = r"^[^\u0000]*$")]
    pub url: String,
    #[schema(max_length = 256, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// An endpoint as created or rotated: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: verify `webhook-signature` with it (Standard Webhooks).
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the old secret keeps signing beside the new one (default from config).
    #[schema(minimum = 0, maximum = 2_592_000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub overlap_seconds: Option<u64>,
}

/// A non-negative whole number, also when written `3600.0`: JSON Schema
/// counts that as an integer, so clients generated from our schema may send it.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(whole) = number.as_u64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        Some(float) if float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64 => {
            Ok(Some(float as u64))
        }
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a non-negative whole number"
        ))),
    }
}

fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// Checks a callback or endpoint URL against the SSRF policy: literal
/// addresses in any spelling, and names that resolve to a refused address
/// now (a bounded lookup); every name is resolved and checked again, pinned,
/// at each delivery.
pub async fn check_callback_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    state
        .config()
        .delivery_settings()
        .destinations
        .check_at_submit(url, URL_LOOKUP_PATIENCE)
        .await
        .map(|_| ())
        .map_err(|refusal| ApiError::unprocessable("callback_url_refused", refusal.to_string()))
}

/// How long a request waits on DNS to check a URL's host name.
pub const URL_LOOKUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Refuses a new endpoint past the tenant's tier cap (MAX_WEBHOOK_ENDPOINTS):
/// every event fans out to each endpoint, so endpoints multiply the work one
/// tenant can cause. The tenant's row is locked so that concurrent creations
/// cannot both pass the count. Disabled endpoints count until deleted.
async fn check_endpoint_cap(
    conn: &mut sqlx::PgConnection,
    state: &AppState,
    caller: &Caller,
) -> Result<(), ApiError> {
    let cap = state.config().max_webhook_endpoints.get(caller.tier);
    if cap == 0 {
        return Ok(());
    }
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(caller.tenant_id)
        .execute(&mut *conn)
        .await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1")
            .bind(caller.tenant_id)
            .fetch_one(&mut *conn)
            .await?;
    if count >= i64::from(cap) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "endpoint_limit",
            format!(
                "the {} tier allows {cap} webhook endpoints; delete one first",
                caller.tier.as_str()
            ),
        ));
    }
    Ok(())
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = NewEndpoint,
    responses(
        (status = 201, body = EndpointWithSecret),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has as many endpoints as its tier allows", body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let new: NewEndpoint = parse_json(&body)?;
    if new.url.contains('\0') || new.description.as_deref().is_some_and(|d| d.contains('\0')) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "strings must not contain U+0000",
        ));
    }
    if new.url.len() > 2048 {
        return Err(ApiError::unprocessable(
            "callback_url_refused",
            "url too long",
        ));
    }
    check_callback_url(&state, &new.url).await?;
    if new
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
    {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("description is at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    let (id, secret) = (Uuid::now_v7(), generate_secret());
    let sealed = state.sealer().seal(SecretOwner::Endpoint(id), &secret);
    let mut tx = state.pool().begin().await?;
    check_endpoint_cap(&mut tx, &state, &caller).await?;
    let row = sqlx::query!(
        r#"INSERT INTO webhook_endpoints (id, tenant_id, url, description, secret) VALUES ($1, $2, $3, $4, $5)
           RETURNING id, url, description, created_at"#,
        id,
        caller.tenant_id,
        new.url,
        new.description,
        sealed
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(endpoint_id = %row.id, tenant_id = %caller.tenant_id, "webhook endpoint created");
    let endpoint = EndpointView {
        id: row.id,
        url: row.url,
        description: row.description,
        created_at: row.created_at,
        disabled_at: None,
        disabled_reason: None,
    };
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret { endpoint, secret }),
    ))
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "webhooks",
    responses((status = 200, body = Vec<EndpointView>), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    let endpoints = sqlx::query_as!(
        EndpointView,
        r#"SELECT id, url, description, created_at, disabled_at, disabled_reason
             FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id"#,
        caller.tenant_id
    )
    .fetch_all(state.pool())
    .await?;
    Ok(Json(endpoints))
}

#[utoipa::path(
    delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted, with its pending deliveries"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    let deleted = sqlx::query!(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2",
        id,
        caller.tenant_id
    )
    .execute(state.pool())
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path)), request_body = Option<Rotation>,
    responses(
        (status = 200, body = EndpointWithSecret),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    // No body, `null` and `{}` all mean "rotate with the default overlap",
    // as the OpenAPI document's optional, nullable body says.
    let rotation: Rotation = parse_optional_json(&body)?;
    let overlap = rotation
        .overlap_seconds
        .unwrap_or(state.config().webhook_secret_overlap.as_secs());
    if overlap > 30 * 24 * 3600 {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "overlap_seconds is at most 30 days",
        ));
    }
    let rotated = rotate(&state, caller.tenant_id, id, overlap).await?;
    Ok(Json(rotated))
}

/// Gives the tenant's endpoint a new secret; the old one keeps signing beside
/// it for `overlap` seconds so receivers can switch without dropping
/// deliveries. Shared by the API and the console (which checks who may see
/// the endpoint and passes its owner). Another tenant's endpoint is a `404`.
pub async fn rotate(
    state: &AppState,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    overlap: u64,
) -> Result<EndpointWithSecret, ApiError> {
    let secret = generate_secret();
    let sealed = state
        .sealer()
        .seal(SecretOwner::Endpoint(endpoint_id), &secret);
    let row = sqlx::query_as!(
        EndpointView,
        r#"UPDATE webhook_endpoints
              SET previous_secret = secret, secret = $3,
                  previous_secret_expires_at = now() + make_interval(secs => $4::bigint)
            WHERE id = $1 AND tenant_id = $2
        RETURNING id, url, description, created_at, disabled_at, disabled_reason"#,
        endpoint_id,
        tenant_id,
        sealed,
        overlap as i64
    )
    .fetch_optional(state.pool())
    .await?
    .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    tracing::info!(%endpoint_id, overlap_seconds = overlap, "webhook secret rotated");
    Ok(EndpointWithSecret {
        endpoint: row,
        secret,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackSecret {
    /// Signs deliveries to scans' own `callback_url`s.
    pub secret: String,
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints/callback-secret", tag = "webhooks",
    responses((status = 200, body = CallbackSecret), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn callback_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CallbackSecret>, ApiError> {
    let owner = SecretOwner::Tenant(caller.tenant_id);
    let stored = sqlx::query_scalar!(
        r#"UPDATE tenants SET callback_secret = coalesce(callback_secret, $2) WHERE id = $1 RETURNING callback_secret AS "secret!""#,
        caller.tenant_id,
        state.sealer().seal(owner, &generate_secret())
    )
    .fetch_one(state.pool())
    .await?;
    let secret = state
        .sealer()
        .open(owner, &stored)
        .map_err(ApiError::internal)?;
    Ok(Json(CallbackSecret { secret }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// `delivered`, `http_error`, `gone`, `timeout`, `connect_error` or `blocked`.
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id` header, the same on every attempt.
    pub webhook_id: String,
    pub event_type: String,
    pub url: String,
    pub endpoint_id: Option<Uuid>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<AttemptView>,
}

async fn scan_belongs_to(state: &AppState, caller: &Caller, scan_id: Uuid) -> Result<(), ApiError> {
    let found = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM scans WHERE id = $1 AND tenant_id = $2) AS "found!""#,
        scan_id,
        caller.tenant_id
    )
    .fetch_one(state.pool())
    .await?;
    if found {
        Ok(())
    } else {
        Err(ApiError::not_found("scan"))
    }
}

#[utoipa::path(
    get, path = "/v1/scans/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = Vec<DeliveryView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let scan_id = parse_id(&id, "scan")?;
    scan_belongs_to(&state, &caller, scan_id).await?;
    Ok(Json(deliveries_of(state.pool(), scan_id).await?))
}

/// A scan's webhook deliveries with every attempt, oldest first. The caller
/// has checked that the scan is visible to whoever asks.
pub async fn deliveries_of(
    pool: &sqlx::PgPool,
    scan_id: Uuid,
) -> Result<Vec<DeliveryView>, sqlx::Error> {
    let deliveries = sqlx::query!(
        r#"SELECT id, message_id, event_type, url, endpoint_id, status, attempts, next_attempt_at,
                  last_error, created_at, finished_at
             FROM webhook_deliveries WHERE scan_id = $1 ORDER BY created_at, id"#,
        scan_id
    )
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let mut attempts = attempts_of(pool, &ids).await?;
    let views = deliveries
        .into_iter()
        .map(|d| DeliveryView {
            attempt_log: attempts.remove(&d.id).unwrap_or_default(),
            next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
            id: d.id,
            webhook_id: d.message_id,
            event_type: d.event_type,
            url: d.url,
            endpoint_id: d.endpoint_id,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
        })
        .collect();
    Ok(views)
}

/// The attempt log of each of `ids`, oldest attempt first (also for the
/// console's list of recent deliveries across scans).
pub async fn attempts_of(
    pool: &sqlx::PgPool,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<AttemptView>>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT delivery_id, attempt, started_at, duration_ms, outcome, status_code, error, response_body
             FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY id"#,
        ids
    )
    .fetch_all(pool)
    .await?;
    let mut by_delivery: std::collections::HashMap<Uuid, Vec<AttemptView>> = Default::default();
    for a in rows {
        by_delivery
            .entry(a.delivery_id)
            .or_default()
            .push(AttemptView {
                attempt: a.attempt,
                started_at: a.started_at,
                duration_ms: a.duration_ms,
                outcome: a.outcome,
                status_code: a.status_code,
                error: a.error,
                response_body: a.response_body,
            });
    }
    Ok(by_delivery)
}

#[utoipa::path(
    post, path = "/v1/scans/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses(
        (status = 202, description = "Queued for another attempt with the same webhook-id"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((scan_id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let scan_id = parse_id(&scan_id, "scan")?;
    let delivery_id = parse_id(&delivery_id, "delivery")?;
    scan_belongs_to(&state, &caller, scan_id).await?;
    requeue_delivery(state.pool(), scan_id, delivery_id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Queues a finished delivery of a scan for another attempt now, with the
/// same `webhook-id`. The caller has checked that the scan is visible to
/// whoever asks; a pending delivery or a disabled endpoint is a `409`.
pub async fn requeue_delivery(
    pool: &sqlx::PgPool,
    scan_id: Uuid,
    delivery_id: Uuid,
) -> Result<(), ApiError> {
    let queued = sqlx::query!(
        r#"UPDATE webhook_deliveries d
              SET status = 'pending', next_attempt_at = now(), finished_at = NULL
            WHERE d.id = $1 AND d.scan_id = $2 AND d.status <> 'pending'
              AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.disabled_at IS NOT NULL)"#,
        delivery_id,
        scan_id
    )
    .execute(pool)
    .await?
    .rows_affected();
    if queued == 1 {
        return Ok(());
    }
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1 AND scan_id = $2) AS "exists!""#,
        delivery_id,
        scan_id
    )
    .fetch_one(pool)
    .await?;
    if exists {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_redeliverable",
            "the delivery is still pending or its endpoint is disabled",
        ))
    } else {
        Err(ApiError::not_found("delivery"))
    }
}
