//! `/v1/admin/routing`: read and switch the routing policy at run time
//! (admin keys only). Switching to `cpu` is the rollback of seed 002.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::backlog::{self, WatermarkOverrides};
use crate::body::{parse_json, JsonBody};
use crate::config::percent_to_bp;
use crate::problem::{ApiError, Problem};
use crate::routing::{self, RoutingMode, RoutingPolicy};
use crate::settings::Watermarks;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingUpdate {
    pub mode: RoutingMode,
    /// Percent (0–100) of non-tier scans sent to GPU in `auto`; unchanged when absent.
    #[schema(minimum = 0, maximum = 100)]
    pub canary_percent: Option<f64>,
    /// Escalate when more scans than this wait on the CPU queue; unchanged when absent.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub high_watermark: Option<u64>,
    /// Stand down once fewer than this wait (for `hold_seconds`); unchanged when absent.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub low_watermark: Option<u64>,
    /// How long the CPU queue must stay under the low watermark; unchanged when absent.
    #[schema(minimum = 0, maximum = 86_400)]
    pub hold_seconds: Option<u64>,
    /// Escalate when a new CPU scan's predicted wait exceeds this; unchanged when absent.
    #[schema(minimum = 1, maximum = 86_400)]
    pub latency_target_seconds: Option<u64>,
    /// `true`: drop every watermark set at run time and use the deployment's
    /// settings again (the watermark fields above are then not allowed).
    #[serde(default)]
    pub watermarks_from_config: bool,
}

impl RoutingUpdate {
    fn sets_watermarks(&self) -> bool {
        self.high_watermark.is_some()
            || self.low_watermark.is_some()
            || self.hold_seconds.is_some()
            || self.latency_target_seconds.is_some()
    }
}

/// The escalation watermarks in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WatermarksView {
    pub high_watermark: u64,
    pub low_watermark: u64,
    pub hold_seconds: f64,
    pub latency_target_seconds: f64,
    /// True when every value is the deployment's setting (none set at run time).
    pub from_config: bool,
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
    pub watermarks: WatermarksView,
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
    let overrides = backlog::watermark_overrides(state.pool()).await?;
    let marks = overrides.apply(state.config().watermarks());
    Ok(RoutingView {
        mode: RoutingMode::parse(&row.mode)
            .ok_or_else(|| ApiError::internal("bad routing mode stored"))?,
        canary_percent: row.canary_bp as f64 / 100.0,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
        watermarks: WatermarksView {
            high_watermark: marks.high_depth,
            low_watermark: marks.low_depth,
            hold_seconds: marks.hold.as_secs_f64(),
            latency_target_seconds: marks.latency_target.as_secs_f64(),
            from_config: overrides.is_empty(),
        },
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
    let overrides = watermark_overrides(
        update,
        backlog::watermark_overrides(state.pool()).await?,
        state.config().watermarks(),
    )?;
    let mut tx = state.pool().begin().await?;
    routing::set_policy(&mut *tx, policy, by).await?;
    backlog::set_watermark_overrides(&mut *tx, &overrides).await?;
    tx.commit().await?;
    tracing::warn!(
        mode = policy.mode.as_str(),
        canary_bp,
        ?overrides,
        by,
        "routing policy changed"
    );
    Ok(policy)
}

/// The run-time watermarks after `update`, checked against each other with
/// the deployment's `base` filling what is not set.
fn watermark_overrides(
    update: &RoutingUpdate,
    current: WatermarkOverrides,
    base: Watermarks,
) -> Result<WatermarkOverrides, ApiError> {
    let invalid = |detail: &str| ApiError::unprocessable("invalid_body", detail.to_string());
    if update.watermarks_from_config {
        if update.sets_watermarks() {
            return Err(invalid(
                "watermarks_from_config cannot be combined with watermark values",
            ));
        }
        return Ok(WatermarkOverrides::default());
    }
    const MAX_DEPTH: u64 = 1_000_000;
    const MAX_SECONDS: u64 = 86_400;
    if update.high_watermark.is_some_and(|d| d > MAX_DEPTH)
        || update.low_watermark.is_some_and(|d| d > MAX_DEPTH)
    {
        return Err(invalid("watermarks must be within 0–1000000"));
    }
    if update.hold_seconds.is_some_and(|s| s > MAX_SECONDS) {
        return Err(invalid("hold_seconds must be within 0–86400"));
    }
    if update
        .latency_target_seconds
        .is_some_and(|s| s == 0 || s > MAX_SECONDS)
    {
        return Err(invalid("latency_target_seconds must be within 1–86400"));
    }
    let overrides = WatermarkOverrides {
        high_depth: update
            .high_watermark
            .map(|d| d as i64)
            .or(current.high_depth),
        low_depth: update.low_watermark.map(|d| d as i64).or(current.low_depth),
        hold_ms: update
            .hold_seconds
            .map(|s| s as i64 * 1000)
            .or(current.hold_ms),
        latency_target_ms: update
            .latency_target_seconds
            .map(|s| s as i64 * 1000)
            .or(current.latency_target_ms),
    };
    let marks = overrides.apply(base);
    if marks.low_depth > marks.high_depth {
        return Err(invalid(&format!(
            "the low watermark ({}) must not exceed the high watermark ({})",
            marks.low_depth, marks.high_depth
        )));
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BASE: Watermarks = Watermarks {
        high_depth: 10,
        latency_target: Duration::from_secs(120),
        low_depth: 3,
        hold: Duration::from_secs(30),
    };

    fn update(body: serde_json::Value) -> RoutingUpdate {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn watermark_changes_keep_what_they_do_not_name() {
        let current = WatermarkOverrides {
            hold_ms: Some(5_000),
            ..Default::default()
        };
        let set = watermark_overrides(
            &update(serde_json::json!({"mode": "auto", "high_watermark": 40, "latency_target_seconds": 60})),
            current,
            BASE,
        )
        .unwrap();
        assert_eq!(
            set,
            WatermarkOverrides {
                high_depth: Some(40),
                low_depth: None,
                hold_ms: Some(5_000),
                latency_target_ms: Some(60_000),
            }
        );
        let reset = watermark_overrides(
            &update(serde_json::json!({"mode": "auto", "watermarks_from_config": true})),
            set,
            BASE,
        )
        .unwrap();
        assert!(reset.is_empty());
    }

    #[test]
    fn inconsistent_watermarks_are_refused() {
        for body in [
            serde_json::json!({"mode": "auto", "low_watermark": 11}),
            serde_json::json!({"mode": "auto", "high_watermark": 2}),
            serde_json::json!({"mode": "auto", "latency_target_seconds": 0}),
            serde_json::json!({"mode": "auto", "hold_seconds": 100000}),
            serde_json::json!({"mode": "auto", "high_watermark": 2000000}),
            serde_json::json!({"mode": "auto", "high_watermark": 20, "watermarks_from_config": true}),
        ] {
            let refused = watermark_overrides(&update(body.clone()), Default::default(), BASE)
                .expect_err(&body.to_string());
            assert_eq!(refused.code, "invalid_body");
        }
    }
}
