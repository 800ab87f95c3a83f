//! Builds and runs a worker: backend (resolved and warmed once), consumer,
//! health and metrics server, all under one [`Supervisor`]: if any of them
//! stops while the worker should be running, `/readyz` fails naming it and
//! the process exits non-zero.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::blob::BlobStore;
use protocol::netguard::DestinationPolicy;
use protocol::supervise::{Health, Supervisor, TaskFailure};
use tokio_util::sync::CancellationToken;
use vision::backend::ScanEngine;
use vision::VisionError;

use crate::cache::ResultCache;
use crate::config::WorkerConfig;
use crate::consumer::Consumer;
use crate::gpu::{self, GpuGauges};
use crate::jobs::{DownloadSettings, JobContext};
use crate::metrics::WorkerMetrics;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("backend: {0}")]
    Backend(#[from] VisionError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("blob store: {0}")]
    Blob(#[from] protocol::blob::BlobError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct RunningWorker {
    /// Where /healthz, /readyz and /metrics are served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub backend: vision::BackendReport,
    supervisor: Supervisor,
}

impl RunningWorker {
    /// Runs until `stop` resolves (a signal) or a task fails, then waits for
    /// every task to stop (in-flight scans get `SHUTDOWN_GRACE`). The
    /// failure, if any, is the process's reason to exit non-zero.
    pub async fn wait_until(self, stop: impl Future<Output = ()>) -> Result<(), TaskFailure> {
        self.supervisor.wait_until(stop).await
    }

    /// Waits until every task has stopped (`shutdown` fired, or a task failed).
    pub async fn wait(self) -> Result<(), TaskFailure> {
        self.supervisor.wait().await
    }
}

#[derive(Clone)]
struct HealthState {
    consumer: Arc<Consumer>,
    warmed: Arc<AtomicBool>,
    tasks: Health,
}

/// Resolves the backend (`auto` probes CUDA before touching it and says why
/// it fell back); logs and returns the engine.
pub fn engine(config: &WorkerConfig) -> Result<ScanEngine, VisionError> {
    let engine = ScanEngine::new(config.backend)?;
    let report = engine.report();
    // Only `auto` can silently land elsewhere than asked (`cuda` and `wgpu`
    // fail instead when unavailable).
    if config.backend == vision::BackendChoice::Auto && report.used != "cuda" {
        tracing::warn!(requested = %config.backend, used = %report.used, reason = %report.reason, "NOT using the GPU");
    } else {
        tracing::info!(requested = %config.backend, used = %report.used, reason = %report.reason, "backend selected");
    }
    Ok(engine)
}

/// Runs one small synthetic scan so kernels, allocators and OpenCV are warm
/// before the first real scan (seeds 003/004 WARM_MODEL).
pub fn warm_up(engine: &ScanEngine) -> Result<Duration, VisionError> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| VisionError::Internal(format!("temp dir: {e}")))?;
    let truth = vision::synth::generate(&vision::synth::SynthSpec::small(), dir.path())?;
    engine.analyze(&truth.video, &vision::ScanOptions::default())?;
    Ok(started.elapsed())
}

pub async fn start(
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<RunningWorker, StartError> {
    config.validate().map_err(StartError::Config)?;
    tracing::info!(config = %config.describe(), "worker starting");
    let engine = Arc::new(engine(&config)?);
    let backend = engine.report().clone();
    let pool = protocol::db::pool(
        config.service.database_url.expose_secret(),
        config.max_concurrent_jobs as u32 + 2,
    )?;
    let blobs = BlobStore::open(&config.service.blob_store)?;
    let price_per_hour = if backend.used == "cuda" {
        config.gpu_price_per_hour
    } else {
        config.cpu_price_per_hour
    };
    let cache = Arc::new(ResultCache::new(
        pool.clone(),
        config.result_cache_max,
        config.result_cache_ttl,
    ));
    let consumer = Arc::new(Consumer {
        pool,
        amqp_url: config.service.amqp_url.expose_secret().to_string(),
        topology: config.service.topology(),
        route: config.queue.route(),
        max_concurrent_jobs: config.max_concurrent_jobs,
        cost_meter: crate::cost::CostMeter::new(std::time::Instant::now()),
        shutdown_grace: config.shutdown_grace,
        heartbeat_interval: config.heartbeat_interval,
        job_context: JobContext {
            worker_name: config.name(),
            queue: protocol::topology::queue_name(config.queue.route()),
            engine: engine.clone(),
            blobs,
            downloads: DownloadSettings {
                policy: DestinationPolicy {
                    allow_http: config.source_allow_http,
                    allow_hosts: config
                        .source_allow_hosts
                        .iter()
                        .map(|h| h.trim().to_ascii_lowercase())
                        .collect(),
                },
                max_bytes: config.max_download_bytes,
                timeout: config.download_timeout,
            },
            downscale_max: config.downscale_max,
            cache,
            time_limit: config.scan_time_limit,
        },
        metrics: WorkerMetrics::new(),
        price_per_hour,
    });
    let warmed = Arc::new(AtomicBool::new(false));
    // In-flight scans get the grace period; the rest stops at once. The
    // margin covers closing the connection and the health server.
    let mut supervisor = Supervisor::new(
        shutdown.clone(),
        config.shutdown_grace + Duration::from_secs(10),
    );
    let metrics_addr = match config.metrics_addr {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Listen { addr, source })?;
            let app = Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route("/readyz", get(readyz))
                .route("/metrics", get(metrics))
                .with_state(HealthState {
                    consumer: consumer.clone(),
                    warmed: warmed.clone(),
                    tasks: supervisor.health(),
                });
            supervisor.spawn(
                "health-server",
                protocol::http::serve_until(listener, app, shutdown.clone()),
            );
            Some(local)
        }
    };
    if let Some(gauges) = GpuGauges::register(&consumer.metrics.registry) {
        let stop = shutdown.clone();
        supervisor.spawn("gpu-gauges", async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticks.tick() => gauges.refresh(),
                }
            }
            Ok::<_, Infallible>(())
        });
    }
    // The workers panel's row: written now and every few seconds after.
    let presence = crate::presence::Presence {
        name: config.name(),
        queue: consumer.job_context.queue.to_string(),
        backend: backend.clone(),
        max_concurrent_jobs: config.max_concurrent_jobs,
        started_at: chrono::Utc::now(),
    };
    supervisor.spawn(
        "presence",
        presence.run(
            consumer.pool.clone(),
            consumer.metrics.in_flight.clone(),
            shutdown.clone(),
        ),
    );
    // Warm up before consuming, so the queue does not hand this worker scans
    // it would run cold; /readyz says not-ready until then.
    let warm = config.warm_model;
    let (warm_engine, warm_flag, consumer_task) =
        (engine.clone(), warmed.clone(), consumer.clone());
    supervisor.spawn("consumer", async move {
        if warm {
            match tokio::task::spawn_blocking(move || warm_up(&warm_engine)).await {
                Ok(Ok(took)) => {
                    tracing::info!(took_ms = took.as_millis() as u64, "warm-up scan done")
                }
                Ok(Err(error)) => tracing::error!(%error, "warm-up scan failed; consuming anyway"),
                Err(error) => tracing::error!(%error, "warm-up scan panicked; consuming anyway"),
            }
        }
        warm_flag.store(true, Ordering::SeqCst);
        consumer_task.run(shutdown).await
    });
    Ok(RunningWorker {
        metrics_addr,
        backend,
        supervisor,
    })
}

/// Ready when the database answers, the consumer holds a broker session and
/// the warm-up is done. Once a task has stopped for good, the answer is a
/// `task_failed` problem naming it (RFC 9457, as the dispatcher's errors):
/// the worker is on its way out. This port is internal; the reason is in the
/// log as well.
async fn readyz(State(state): State<HealthState>) -> Response {
    if let Some(failure) = state.tasks.failure() {
        let problem = serde_json::json!({
            "type": format!("https://scanfleet.dev/problems/{}", TaskFailure::PROBLEM_CODE),
            "title": "Service Unavailable",
            "status": 503,
            "detail": failure.public_detail(),
            "code": TaskFailure::PROBLEM_CODE,
            "task": failure.task,
            "reason": failure.reason,
        });
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            problem.to_string(),
        )
            .into_response();
    }
    let consumer = &state.consumer;
    let database = sqlx::query("SELECT 1")
        .execute(&consumer.pool)
        .await
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| e.to_string());
    let consuming = consumer.metrics.consumer_connected.get() == 1;
    let warmed = state.warmed.load(Ordering::SeqCst);
    let ready = database == "ok" && consuming && warmed;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let report = consumer.job_context.engine.report();
    let body = serde_json::json!({
        "ready": ready,
        "database": database,
        "broker": if consuming { "ok" } else { "not consuming" },
        // The backend is resolved before this server starts; what can still
        // be pending is the warm-up scan.
        "warmed_up": warmed,
        "queue": consumer.job_context.queue,
        "backend": report,
        "gpu": gpu::read(),
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    protocol::telemetry::render_metrics(&state.consumer.metrics.registry)
}
