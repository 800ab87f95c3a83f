//! Shared state of the dispatcher's HTTP handlers and background tasks.

use std::sync::Arc;

use protocol::blob::BlobStore;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::config::DispatcherConfig;
use crate::metrics::DispatcherMetrics;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    pool: PgPool,
    blobs: BlobStore,
    config: DispatcherConfig,
    metrics: DispatcherMetrics,
    /// Wakes the outbox relay as soon as a scan is committed, so publishing
    /// does not wait for the next poll.
    outbox_wakeup: Notify,
}

impl AppState {
    pub fn new(pool: PgPool, blobs: BlobStore, config: DispatcherConfig) -> Self {
        AppState(Arc::new(Inner {
            pool,
            blobs,
            config,
            metrics: DispatcherMetrics::new(),
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

    pub fn outbox_wakeup(&self) -> &Notify {
        &self.0.outbox_wakeup
    }
}
