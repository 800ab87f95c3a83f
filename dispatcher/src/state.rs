//! Shared state of the dispatcher's HTTP handlers and background tasks.

use std::sync::Arc;

use protocol::blob::BlobStore;
use protocol::supervise::Health;
use sqlx::PgPool;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::DispatcherConfig;
use crate::metrics::DispatcherMetrics;
use crate::rate_limit::RateLimits;
use crate::sealing::Sealer;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    pool: PgPool,
    blobs: BlobStore,
    config: DispatcherConfig,
    metrics: DispatcherMetrics,
    rate_limits: RateLimits,
    /// Seals and opens webhook signing secrets (`SECRETS_KEYS`).
    sealer: Sealer,
    /// Whether a background task has stopped (readiness fails then).
    health: Health,
    /// Wakes the outbox relay as soon as a scan is committed, so publishing
    /// does not wait for the next poll.
    outbox_wakeup: Notify,
    /// Ids of scans that just changed (any replica, any worker), fed by the
    /// console's Postgres listener; open console pages subscribe.
    scan_changes: broadcast::Sender<Uuid>,
    /// Fires when the dispatcher shuts down: long-lived responses (the
    /// console's event streams) end then, or graceful shutdown would wait
    /// for them forever.
    stopping: CancellationToken,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        blobs: BlobStore,
        config: DispatcherConfig,
        health: Health,
        stopping: CancellationToken,
    ) -> Self {
        let rate_limits =
            RateLimits::new(config.submit_rate_per_minute, config.upload_rate_per_minute);
        let sealer = Sealer::new(config.secrets_keys.clone());
        AppState(Arc::new(Inner {
            pool,
            blobs,
            config,
            sealer,
            metrics: DispatcherMetrics::new(),
            rate_limits,
            health,
            outbox_wakeup: Notify::new(),
            scan_changes: broadcast::channel(crate::console::live::CHANGES_BUFFER).0,
            stopping,
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

    pub fn sealer(&self) -> &Sealer {
        &self.0.sealer
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

    pub fn scan_changes(&self) -> &broadcast::Sender<Uuid> {
        &self.0.scan_changes
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.0.stopping
    }
}
