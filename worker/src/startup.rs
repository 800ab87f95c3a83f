//! Builds and runs a worker: backend, consumer, health and metrics server.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::{self, ActiveBackend};
use crate::config::WorkerConfig;
use crate::consumer::Consumer;
use crate::jobs::JobContext;
use crate::metrics::WorkerMetrics;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

pub struct RunningWorker {
    /// Where /healthz, /readyz and /metrics are served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub backend: ActiveBackend,
    tasks: JoinSet<()>,
}

impl RunningWorker {
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

#[derive(Clone)]
struct HealthState {
    consumer: Arc<Consumer>,
}

pub async fn start(config: WorkerConfig, shutdown: CancellationToken) -> Result<RunningWorker, StartError> {
    config.validate().map_err(StartError::Config)?;
    tracing::info!(config = %config.describe(), "worker starting");
    let backend = backend::select(config.backend)?;
    tracing::info!(backend = backend.name, reason = %backend.reason, "backend selected");
    let pool = protocol::db::pool(&config.service.database_url, config.max_concurrent_jobs as u32 + 2)?;
    let consumer = Arc::new(Consumer {
        pool,
        amqp_url: config.service.amqp_url.clone(),
        topology: config.service.topology(),
        route: config.queue.route(),
        max_concurrent_jobs: config.max_concurrent_jobs,
        shutdown_grace: config.shutdown_grace,
        heartbeat_interval: config.heartbeat_interval,
        job_context: JobContext {
            worker_name: config.name(),
            queue: protocol::topology::queue_name(config.queue.route()),
            backend: backend.clone(),
        },
        metrics: WorkerMetrics::new(),
    });
    let mut tasks = JoinSet::new();
    let metrics_addr = match config.metrics_addr {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })?;
            let local = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
            let app = Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route("/readyz", get(readyz))
                .route("/metrics", get(metrics))
                .with_state(HealthState { consumer: consumer.clone() });
            let server_shutdown = shutdown.clone();
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "health server failed");
                }
            });
            Some(local)
        }
    };
    tasks.spawn(consumer.run(shutdown));
    Ok(RunningWorker { metrics_addr, backend, tasks })
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let consumer = &state.consumer;
    let database = sqlx::query("SELECT 1")
        .execute(&consumer.pool)
        .await
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| e.to_string());
    let consuming = consumer.metrics.consumer_connected.get() == 1;
    let ready = database == "ok" && consuming;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "ready": ready,
        "database": database,
        "broker": if consuming { "ok" } else { "not consuming" },
        "queue": consumer.job_context.queue,
        "backend": consumer.job_context.backend,
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    protocol::telemetry::render_metrics(&state.consumer.metrics.registry)
}
