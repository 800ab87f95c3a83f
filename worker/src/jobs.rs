//! Running one scan, whatever its kind. Errors say whether retrying can help.

use std::time::Duration;

use protocol::{ScanJob, ScanKind};
use serde_json::{json, Value};

use crate::backend::ActiveBackend;

/// Why a scan did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The input can never succeed (not a video, unsupported kind…): the scan
    /// fails at once with this stable code.
    #[error("{code}: {message}")]
    BadInput { code: &'static str, message: String },
    /// Something outside the input failed (download, storage, device): worth
    /// another delivery, up to the delivery limit.
    #[error("transient: {0}")]
    Transient(String),
}

/// What a job knows about where it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub worker_name: String,
    pub queue: &'static str,
    pub backend: ActiveBackend,
}

pub async fn run(job: &ScanJob, context: &JobContext, attempt: i32) -> Result<Value, JobError> {
    match job.kind {
        ScanKind::Probe => probe(job, context, attempt).await,
        ScanKind::VideoScan => Err(JobError::BadInput {
            code: "kind_not_supported",
            message: "this worker build cannot run video_scan yet".into(),
        }),
    }
}

/// A probe does no vision work: it reports who ran it, after holding the
/// worker for `hold_ms` (to exercise slow paths and mid-scan failures).
async fn probe(job: &ScanJob, context: &JobContext, attempt: i32) -> Result<Value, JobError> {
    let hold_ms = job.params.get("hold_ms").and_then(Value::as_u64).unwrap_or(0);
    if hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    }
    Ok(json!({
        "kind": "probe",
        "worker": context.worker_name,
        "queue": context.queue,
        "backend": context.backend.name,
        "backend_reason": context.backend.reason,
        "attempt": attempt,
        "held_ms": hold_ms,
    }))
}
