//! The HTTP router: versioned API, health, metrics and the OpenAPI document.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::ApiError;
use crate::state::AppState;
use crate::webhooks::api as webhooks;
use crate::{admin, scans, uploads};

#[derive(OpenApi)]
#[openapi(
    info(title = "ScanFleet", description = "Submit computer-vision scans of collectibles; get a signed webhook when they finish."),
    paths(scans::submit, scans::get, scans::list, scans::cancel, uploads::create, admin::get_routing, admin::put_routing,
        webhooks::create_endpoint, webhooks::list_endpoints, webhooks::delete_endpoint, webhooks::rotate_secret,
        webhooks::callback_secret, webhooks::list_deliveries, webhooks::redeliver),
    components(schemas(crate::problem::Problem)),
    modifiers(&BearerAuth),
    tags((name = "scans"), (name = "uploads"), (name = "admin"), (name = "webhooks"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AppState) -> Router {
    let max_json = state.config().max_json_bytes;
    let max_upload = state.config().max_upload_bytes;
    Router::new()
        .route(
            "/v1/scans",
            post(scans::submit)
                .layer(DefaultBodyLimit::max(max_json))
                .get(scans::list),
        )
        .route("/v1/scans/{id}", get(scans::get).delete(scans::cancel))
        .route(
            "/v1/uploads",
            post(uploads::create).layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/v1/webhook-endpoints", post(webhooks::create_endpoint).get(webhooks::list_endpoints))
        .route("/v1/webhook-endpoints/callback-secret", get(webhooks::callback_secret))
        .route("/v1/webhook-endpoints/{id}", axum::routing::delete(webhooks::delete_endpoint))
        .route("/v1/webhook-endpoints/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/scans/{id}/deliveries", get(webhooks::list_deliveries))
        .route("/v1/scans/{id}/deliveries/{delivery_id}/redeliver", post(webhooks::redeliver))
        .route("/v1/admin/routing", get(admin::get_routing).put(admin::put_routing))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
}

/// Ready when the database answers and the outbox relay holds a broker
/// connection (submissions still succeed without it, but are not published).
async fn readyz(State(state): State<AppState>) -> Response {
    let database = sqlx::query_scalar!("SELECT 1 AS \"one!\"")
        .fetch_one(state.pool())
        .await
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| e.to_string());
    let broker = if state.metrics().broker_connected.get() == 1 {
        "ok".to_string()
    } else {
        "outbox relay not connected".to_string()
    };
    let ready = database == "ok" && broker == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "database": database, "broker": broker }))).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    protocol::telemetry::render_metrics(&state.metrics().registry)
}
