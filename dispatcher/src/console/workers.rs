//! The overview's workers panel: what workers wrote about themselves in the
//! `workers` table (see `worker::presence`). Workers refresh their row every
//! ~10 s; one not refreshed for [`STALE_AFTER_SECONDS`] (or marked stopped)
//! is shown greyed, and one silent for [`SHOWN_SECONDS`] is left out.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub const STALE_AFTER_SECONDS: i64 = 60;
pub const SHOWN_SECONDS: i64 = 300;
/// A fleet bigger than this is summarised by the queue numbers anyway.
const MAX_SHOWN: i64 = 200;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerRow {
    pub name: String,
    pub queue: String,
    pub backend_requested: String,
    pub backend: String,
    pub backend_reason: String,
    pub gpu_name: Option<String>,
    pub gpu_memory_total_bytes: Option<i64>,
    pub gpu_memory_used_bytes: Option<i64>,
    pub in_flight: i32,
    pub max_concurrent_jobs: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Seen within [`STALE_AFTER_SECONDS`] and not stopped.
    pub live: bool,
}

/// Workers seen within [`SHOWN_SECONDS`], live ones first, by queue and name.
pub async fn recent(pool: &PgPool) -> Result<Vec<WorkerRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT name, queue, backend_requested, backend, backend_reason, gpu_name,
                  gpu_memory_total_bytes, gpu_memory_used_bytes, in_flight, max_concurrent_jobs,
                  started_at, last_seen, stopped_at,
                  (stopped_at IS NULL AND last_seen > now() - make_interval(secs => $1)) AS live
             FROM workers
            WHERE last_seen > now() - make_interval(secs => $2)
            ORDER BY live DESC, queue, name
            LIMIT $3"#,
    )
    .bind(STALE_AFTER_SECONDS as f64)
    .bind(SHOWN_SECONDS as f64)
    .bind(MAX_SHOWN)
    .fetch_all(pool)
    .await
}

/// Bytes as GiB with one decimal (GPU memory sizes).
pub fn gib(bytes: i64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_memory_reads_in_gib() {
        assert_eq!(gib(0), "0.0 GiB");
        assert_eq!(gib(150_000_000_000), "139.7 GiB");
        assert_eq!(gib(512 << 20), "0.5 GiB");
    }
}
