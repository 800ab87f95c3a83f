//! The HTTP router: versioned API, health, metrics and the OpenAPI document.

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use protocol::supervise::TaskFailure;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
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

/// The API with its limits. Every `/v1` request counts against one global
/// concurrency limit: past it, requests are shed at once with `503` and
/// `Retry-After` rather than queued (a queue would only grow memory and
/// latency under a flood). Each has a whole-request timeout (uploads their
/// own, longer one) and an idle timeout between body bytes, so a slow client
/// holds its slot for a bounded time. Probes and metrics sit outside all of
/// this: an overloaded replica must still answer its health checks.
pub fn router(state: AppState) -> Router {
    let config = state.config();
    let json = Router::new()
        .route(
            "/v1/scans",
            post(scans::submit)
                .layer(DefaultBodyLimit::max(config.max_json_bytes))
                .get(scans::list),
        )
        .route("/v1/scans/{id}", get(scans::get).delete(scans::cancel))
        .route(
            "/v1/webhook-endpoints",
            post(webhooks::create_endpoint).get(webhooks::list_endpoints),
        )
        .route(
            "/v1/webhook-endpoints/callback-secret",
            get(webhooks::callback_secret),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            axum::routing::delete(webhooks::delete_endpoint),
        )
        .route(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/v1/scans/{id}/deliveries", get(webhooks::list_deliveries))
        .route(
            "/v1/scans/{id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
        .route(
            "/v1/admin/routing",
            get(admin::get_routing).put(admin::put_routing),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    let uploads = Router::new()
        // The upload handler streams its body and enforces MAX_UPLOAD_BYTES itself.
        .route("/v1/uploads", post(uploads::create))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.upload_timeout,
        ));
    let shedding = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests,
        ));
    let api = json
        .merge(uploads)
        .layer(RequestBodyTimeoutLayer::new(config.body_read_timeout))
        .layer(shedding);
    let probes = Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    api.merge(probes)
        .merge(crate::console::router(state.clone()))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::middleware::map_response(
            crate::problem::problem_for_bare_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http_metrics::track,
        ))
        .with_state(state)
}

/// The answer to a shed request (the load-shed layer's only error).
async fn overloaded(error: BoxError) -> Response {
    if !error.is::<tower::load_shed::error::Overloaded>() {
        return ApiError::internal(error).into_response();
    }
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "this replica is handling as many requests as it takes; retry shortly",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Ready when the database answers and the outbox relay holds a broker
/// connection (submissions still succeed without it, but are not published).
/// The public port says only `ok` or `unavailable`: a driver's error text
/// names hosts, databases and users, so it goes to the log instead.
/// Once a background task has stopped for good, the answer is a
/// `task_failed` problem naming it, whatever else holds: the replica is on
/// its way out.
async fn readyz(State(state): State<AppState>) -> Response {
    if let Some(failure) = state.health().failure() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            TaskFailure::PROBLEM_CODE,
            failure.public_detail(),
        )
        .into_response();
    }
    let database = match sqlx::query("SELECT 1").execute(state.pool()).await {
        Ok(_) => "ok",
        Err(error) => {
            tracing::warn!(%error, "readiness: database unavailable");
            "unavailable"
        }
    };
    let broker = if state.metrics().broker_connected.get() == 1 {
        "ok"
    } else {
        "unavailable"
    };
    let ready = database == "ok" && broker == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": ready, "database": database, "broker": broker })),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    protocol::telemetry::render_metrics(&state.metrics().registry)
}
