//! Shared state of the dispatcher's HTTP handlers and background tasks.

use std::sync::Arc;

use protocol::blob::BlobStore;
use protocol::supervise::Health;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::config::DispatcherConfig;
use crate::metrics::DispatcherMetrics;
use crate::rate_limit::RateLimits;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    pool: PgPool,
    blobs: BlobStore,
    config: DispatcherConfig,
    metrics: DispatcherMetrics,
    rate_limits: RateLimits,
    /// Whether a background task has stopped (readiness fails then).
    health: Health,
    /// Wakes the outbox relay as soon as a scan is committed, so publishing
    /// does not wait for the next poll.
    outbox_wakeup: Notify,
}

impl AppState {
    pub fn new(pool: PgPool, blobs: BlobStore, config: DispatcherConfig, health: Health) -> Self {
        let rate_limits =
            RateLimits::new(config.submit_rate_per_minute, config.upload_rate_per_minute);
        AppState(Arc::new(Inner {
            pool,
            blobs,
            config,
            metrics: DispatcherMetrics::new(),
            rate_limits,
            health,
            outbox_wakeup: Notify::new(),
        }))
    }

    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.0.blobs
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.0.config
    }

    pub fn metrics(&self) -> &DispatcherMetrics {
        &self.0.metrics
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.0.rate_limits
    }

    pub fn health(&self) -> &Health {
        &self.0.health
    }

    pub fn outbox_wakeup(&self) -> &Notify {
        &self.0.outbox_wakeup
    }
}
