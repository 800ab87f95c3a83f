//! The worker's row in `workers`, for the console's workers panel: written
//! when the worker starts, refreshed every [`INTERVAL`] with the scans in
//! flight and the GPU's memory, and marked stopped at shutdown. One upsert
//! per beat keeps it cheap however many workers run; a worker that dies
//! without saying so simply stops being refreshed and ages out of the panel.

use std::convert::Infallible;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::gpu;

pub const INTERVAL: Duration = Duration::from_secs(10);

/// What a worker says about itself; fixed for the process's life except
/// the in-flight count and GPU memory, which are read at every beat.
#[derive(Debug, Clone)]
pub struct Presence {
    pub name: String,
    pub queue: String,
    pub backend: vision::BackendReport,
    pub max_concurrent_jobs: u16,
    pub started_at: DateTime<Utc>,
}

impl Presence {
    /// One beat: inserts or refreshes the row.
    pub async fn beat(&self, pool: &PgPool, in_flight: i64) -> Result<(), sqlx::Error> {
        // Only a CUDA worker reports a GPU: a CPU worker on a GPU host is
        // not using it.
        let gpu = (self.backend.used == "cuda").then(gpu::read).flatten();
        sqlx::query(
            r#"INSERT INTO workers (name, queue, backend_requested, backend, backend_reason,
                                    gpu_name, gpu_memory_total_bytes, gpu_memory_used_bytes,
                                    in_flight, max_concurrent_jobs, started_at, last_seen)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())
               ON CONFLICT (name) DO UPDATE
                  SET queue = excluded.queue, backend_requested = excluded.backend_requested,
                      backend = excluded.backend, backend_reason = excluded.backend_reason,
                      gpu_name = excluded.gpu_name,
                      gpu_memory_total_bytes = excluded.gpu_memory_total_bytes,
                      gpu_memory_used_bytes = excluded.gpu_memory_used_bytes,
                      in_flight = excluded.in_flight,
                      max_concurrent_jobs = excluded.max_concurrent_jobs,
                      started_at = excluded.started_at, last_seen = now(), stopped_at = NULL"#,
        )
        .bind(&self.name)
        .bind(&self.queue)
        .bind(self.backend.requested.to_string())
        .bind(&self.backend.used)
        .bind(&self.backend.reason)
        .bind(gpu.as_ref().map(|g| g.name.clone()))
        .bind(gpu.as_ref().map(|g| g.memory_total_bytes as i64))
        .bind(gpu.as_ref().map(|g| g.memory_used_bytes as i64))
        .bind(in_flight.clamp(0, i64::from(i32::MAX)) as i32)
        .bind(i32::from(self.max_concurrent_jobs))
        .bind(self.started_at)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Marks the row stopped, so the panel drops it at once rather than
    /// after a minute.
    pub async fn stopped(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE workers SET stopped_at = now(), in_flight = 0 WHERE name = $1")
            .bind(&self.name)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Beats until `shutdown`, then marks the row stopped. A failed write
    /// is logged and retried at the next beat: being missing from the
    /// panel for a while must not stop a worker from working.
    pub async fn run(
        self,
        pool: PgPool,
        in_flight: prometheus::IntGauge,
        shutdown: CancellationToken,
    ) -> Result<(), Infallible> {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    if let Err(error) = self.beat(&pool, in_flight.get()).await {
                        tracing::warn!(%error, "cannot record this worker in the workers table");
                    }
                }
            }
        }
        if let Err(error) = self.stopped(&pool).await {
            tracing::warn!(%error, "cannot mark this worker stopped in the workers table");
        }
        Ok(())
    }
}
