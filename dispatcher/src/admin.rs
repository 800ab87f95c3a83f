//! `/v1/admin/routing`: read and switch the routing policy at run time
//! (admin keys only). Switching to `cpu` is the rollback of seed 002.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::{parse_json, JsonBody};
use crate::config::percent_to_bp;
use crate::problem::{ApiError, Problem};
use crate::routing::{self, RoutingMode, RoutingPolicy};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingUpdate {
    pub mode: RoutingMode,
    /// Percent (0–100) of non-tier scans sent to GPU in `auto`; unchanged when absent.
    #[schema(minimum = 0, maximum = 100)]
    pub canary_percent: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BacklogView {
    pub escalated: bool,
    pub changed_at: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
    pub cpu_depth: i64,
    pub cpu_consumers: i64,
    pub gpu_depth: i64,
    pub gpu_consumers: i64,
    pub predicted_wait_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingView {
    pub mode: RoutingMode,
    pub canary_percent: f64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    pub backlog: BacklogView,
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this endpoint needs an admin API key",
        ))
    }
}

pub async fn view(state: &AppState) -> Result<RoutingView, ApiError> {
    let row = sqlx::query!(
        r#"SELECT p.mode, p.canary_bp, p.updated_at, p.updated_by,
                  b.escalated, b.changed_at, b.observed_at, b.cpu_depth, b.cpu_consumers,
                  b.gpu_depth, b.gpu_consumers, b.predicted_wait_ms
             FROM routing_policy p CROSS JOIN backlog_state b"#
    )
    .fetch_one(state.pool())
    .await?;
    Ok(RoutingView {
        mode: RoutingMode::parse(&row.mode)
            .ok_or_else(|| ApiError::internal("bad routing mode stored"))?,
        canary_percent: row.canary_bp as f64 / 100.0,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
        backlog: BacklogView {
            escalated: row.escalated,
            changed_at: row.changed_at,
            observed_at: row.observed_at,
            cpu_depth: row.cpu_depth,
            cpu_consumers: row.cpu_consumers,
            gpu_depth: row.gpu_depth,
            gpu_consumers: row.gpu_consumers,
            predicted_wait_ms: row.predicted_wait_ms,
        },
    })
}

#[utoipa::path(
    get, path = "/v1/admin/routing", tag = "admin",
    responses(
        (status = 200, body = RoutingView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_routing(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RoutingView>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(view(&state).await?))
}

#[utoipa::path(
    put, path = "/v1/admin/routing", tag = "admin",
    request_body = RoutingUpdate,
    responses(
        (status = 200, body = RoutingView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn put_routing(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<RoutingView>, ApiError> {
    require_admin(&caller)?;
    let update: RoutingUpdate = parse_json(&body)?;
    apply_update(&state, &update, &format!("tenant {}", caller.tenant_id)).await?;
    Ok(Json(view(&state).await?))
}

/// Validates and stores a routing change made by `by` (an admin API call or
/// a console login; recorded with the time in `routing_policy`).
pub async fn apply_update(
    state: &AppState,
    update: &RoutingUpdate,
    by: &str,
) -> Result<RoutingPolicy, ApiError> {
    let (current, _) = routing::current(state.pool()).await?;
    let canary_bp = match update.canary_percent {
        None => current.canary_bp,
        Some(percent) if (0.0..=100.0).contains(&percent) => percent_to_bp(percent),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "canary_percent must be within 0–100",
            ))
        }
    };
    let policy = RoutingPolicy {
        mode: update.mode,
        canary_bp,
    };
    routing::set_policy(state.pool(), policy, by).await?;
    tracing::warn!(
        mode = policy.mode.as_str(),
        canary_bp,
        by,
        "routing policy changed"
    );
    Ok(policy)
}
