//! Running one scan, whatever its kind. Errors say whether retrying can help.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use protocol::blob::{BlobError, BlobStore};
use protocol::netguard::DestinationPolicy;
use protocol::{ScanJob, ScanKind};
use serde_json::{json, Value};
use vision::backend::ScanEngine;
use vision::{CancelFlag, ItemCropOptions, ScanOptions, VisionError};

use crate::cache::{cache_key, CacheSource, ResultCache};

/// Why a scan did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The input can never succeed (not a video, refused URL…): the scan
    /// fails at once with this stable code.
    #[error("{code}: {message}")]
    BadInput { code: &'static str, message: String },
    /// Something outside the input failed (download, storage, device): worth
    /// another delivery, up to the delivery limit.
    #[error("transient: {0}")]
    Transient(String),
    /// The scan ran past the worker's `SCAN_TIME_LIMIT` (a source that
    /// trickles, a video that stalls the decoder, an input far beyond what
    /// the limit was sized for). It fails at once: another delivery would
    /// hold another slot for as long again.
    #[error("time_limit_exceeded: over the limit of {}", humantime::format_duration(*.0))]
    TimeLimit(Duration),
}

impl JobError {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        JobError::BadInput {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            JobError::BadInput { code, .. } => code,
            JobError::Transient(_) => "transient",
            JobError::TimeLimit(_) => "time_limit_exceeded",
        }
    }
}

impl From<VisionError> for JobError {
    fn from(error: VisionError) -> Self {
        if error.is_bad_input() {
            JobError::BadInput {
                code: error.code(),
                message: error.to_string(),
            }
        } else {
            JobError::Transient(error.to_string())
        }
    }
}

/// Limits and policy for fetching a scan's `source_url`.
#[derive(Debug, Clone)]
pub struct DownloadSettings {
    pub policy: DestinationPolicy,
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// What a job knows about where it runs; shared by the job tasks.
#[derive(Clone)]
pub struct JobContext {
    pub worker_name: String,
    pub queue: &'static str,
    /// The backend, resolved and warmed once per process (seed 004's model manager).
    pub engine: Arc<ScanEngine>,
    pub blobs: BlobStore,
    pub downloads: DownloadSettings,
    pub downscale_max: usize,
    pub cache: Arc<ResultCache>,
    /// Wall-clock limit of one scan, input fetch included (`SCAN_TIME_LIMIT`).
    pub time_limit: Duration,
}

impl JobContext {
    pub fn backend_name(&self) -> &str {
        &self.engine.report().used
    }

    pub fn backend_reason(&self) -> &str {
        &self.engine.report().reason
    }

    pub fn on_gpu(&self) -> bool {
        self.backend_name() == "cuda"
    }
}

/// A finished scan: its result document and the time spent per stage.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub result: Value,
    pub stage_ms: Vec<(String, f64)>,
    /// Set for kinds whose results are cached.
    pub cache: Option<CacheUse>,
}

/// How a cacheable scan used the result cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheUse {
    pub key: String,
    /// `None`: computed (the result is stored under `key` for later scans).
    pub hit: Option<CacheSource>,
}

/// Runs one scan within the worker's time limit. Past the limit the scan's
/// future is dropped, which also stops its pipeline thread (see
/// [`run_blocking`]), so the slot is free again at once.
pub async fn run(job: &ScanJob, context: &JobContext, attempt: i32) -> Result<JobOutput, JobError> {
    let scan = async {
        match job.kind {
            ScanKind::Probe => probe(job, context, attempt).await,
            ScanKind::VideoScan => video_scan(job, context).await,
            ScanKind::ItemCrop => item_crop(job, context).await,
        }
    };
    tokio::time::timeout(context.time_limit, scan)
        .await
        .unwrap_or(Err(JobError::TimeLimit(context.time_limit)))
}

/// The scan's `downscale_max` parameter, never above the worker's own limit.
fn downscale_max(job: &ScanJob, context: &JobContext) -> usize {
    job.params
        .get("downscale_max")
        .and_then(Value::as_u64)
        .map_or(context.downscale_max, |px| {
            (px as usize).min(context.downscale_max)
        })
}

/// A probe does no vision work: it reports who ran it, after holding the
/// worker for `hold_ms` (to exercise slow paths and mid-scan failures).
async fn probe(job: &ScanJob, context: &JobContext, attempt: i32) -> Result<JobOutput, JobError> {
    let hold_ms = job
        .params
        .get("hold_ms")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    }
    let result = json!({
        "kind": "probe",
        "worker": context.worker_name,
        "queue": context.queue,
        "backend": context.backend_name(),
        "backend_reason": context.backend_reason(),
        "attempt": attempt,
        "held_ms": hold_ms,
    });
    Ok(JobOutput {
        result,
        stage_ms: vec![("probe".into(), hold_ms as f64)],
        cache: None,
    })
}

async fn video_scan(job: &ScanJob, context: &JobContext) -> Result<JobOutput, JobError> {
    let input = fetch_input(job, context).await?;
    let options = ScanOptions {
        downscale_max: downscale_max(job, context),
        max_bytes: protocol::MAX_VIDEO_BYTES,
        ..ScanOptions::default()
    };
    let (key, cached) = consult_cache(job, context, options.downscale_max, &input).await;
    if let Some(served) = cached {
        return Ok(served);
    }
    // OpenCV decodes from a path; the directory goes away with the scan.
    let dir = tempfile::Builder::new()
        .prefix("scanfleet-scan-")
        .tempdir()
        .map_err(|e| JobError::Transient(format!("temp dir: {e}")))?;
    let path = dir.path().join("input");
    tokio::fs::write(&path, &input)
        .await
        .map_err(|e| JobError::Transient(format!("writing input: {e}")))?;
    drop(input);
    let engine = context.engine.clone();
    let output = run_blocking(move |cancel| {
        engine.analyze_with_progress(&path, &options, &mut |_| {}, cancel)
    })
    .await?;

    let prefix = format!("artifacts/{}/{}", job.tenant_id, job.scan_id);
    let mut golden_paths = Vec::new();
    for (index, jpeg) in &output.artifacts.golden_jpegs {
        let path = format!("{prefix}/golden_{index:05}.jpg");
        put_artifact(&context.blobs, &path, jpeg).await?;
        golden_paths.push(json!({ "frame": index, "path": path }));
    }
    let mask_path = format!("{prefix}/defect_mask.png");
    put_artifact(
        &context.blobs,
        &mask_path,
        &output.artifacts.defect_mask_png,
    )
    .await?;
    let stage_ms = output
        .report
        .timings_ms
        .iter()
        .map(|t| (t.stage.clone(), t.ms))
        .collect();
    let result = json!({
        "kind": "video_scan",
        "summary": {
            "grade": output.report.scores.as_ref().map(|s| s.overall),
            "defects": output.report.defects.len(),
            "frames_processed": output.report.frames_processed,
            "backend": output.report.backend,
        },
        "report": output.report,
        "artifacts": { "golden_frames": golden_paths, "defect_mask": mask_path },
    });
    Ok(JobOutput {
        result,
        stage_ms,
        cache: Some(CacheUse { key, hit: None }),
    })
}

/// This scan's cache key, and the result of an identical earlier scan if the
/// cache has one. `downscale_max` is the one option the worker derives (its
/// own limit caps the scan's parameter), so it is part of the key.
async fn consult_cache(
    job: &ScanJob,
    context: &JobContext,
    downscale_max: usize,
    input: &[u8],
) -> (String, Option<JobOutput>) {
    let key = cache_key(
        job.kind,
        &job.params,
        &format!("downscale_max={downscale_max}"),
        input,
    );
    // A route comparison measures its own work: it is computed (and then
    // cached like any result), never served.
    if job.recompute {
        return (key, None);
    }
    let Some((cached, source)) = context.cache.lookup(job.tenant_id, &key).await else {
        return (key, None);
    };
    tracing::info!(cached_from = %cached.scan_id, source = source.as_str(), "result served from the cache");
    let served = JobOutput {
        result: cached.served(),
        stage_ms: Vec::new(),
        cache: Some(CacheUse {
            key: key.clone(),
            hit: Some(source),
        }),
    };
    (key, Some(served))
}

/// Finds the items in a photo; each crop goes to the blob store as a JPEG and
/// the result lists their paths next to the boxes.
async fn item_crop(job: &ScanJob, context: &JobContext) -> Result<JobOutput, JobError> {
    let input = fetch_input(job, context).await?;
    let options = ItemCropOptions {
        downscale_max: downscale_max(job, context),
        max_bytes: protocol::MAX_PHOTO_BYTES as usize,
        ..ItemCropOptions::default()
    };
    let (key, cached) = consult_cache(job, context, options.downscale_max, &input).await;
    if let Some(served) = cached {
        return Ok(served);
    }
    let engine = context.engine.clone();
    // item_crop has no checkpoints: its work is bounded by the photo pixel
    // limit (about a second at the largest), not by the input's length.
    let output = run_blocking(move |_| engine.crop_items(&input, &options)).await?;

    let prefix = format!("artifacts/{}/{}", job.tenant_id, job.scan_id);
    let mut crops = Vec::new();
    for (item, jpeg) in output.report.items.iter().zip(&output.crops) {
        let path = format!("{prefix}/crop_{:02}.jpg", item.index);
        put_artifact(&context.blobs, &path, jpeg).await?;
        crops.push(json!({ "item": item.index, "path": path, "size": item.crop_size }));
    }
    let stage_ms = output
        .report
        .timings_ms
        .iter()
        .map(|t| (t.stage.clone(), t.ms))
        .collect();
    let result = json!({
        "kind": "item_crop",
        "summary": {
            "items": output.report.items.len(),
            "backend": output.report.backend,
        },
        "report": output.report,
        "artifacts": { "crops": crops },
    });
    Ok(JobOutput {
        result,
        stage_ms,
        cache: Some(CacheUse { key, hit: None }),
    })
}

/// Runs the CPU/GPU-bound pipeline off the async runtime. A panic in it (a
/// bug, or a device fault: burn surfaces CUDA out-of-memory as a panic) is
/// resumed in the job's task, where the consumer settles the delivery: on a
/// GPU worker the scan moves to the CPU queue at once.
///
/// A blocking thread cannot be aborted, so the pipeline gets a
/// [`CancelFlag`] that this future raises when it is dropped before the
/// pipeline returns (the scan's time limit, or the consumer aborting its jobs
/// after losing the broker): the pipeline stops at its next checkpoint
/// instead of computing a result nobody will read.
pub async fn run_blocking<T: Send + 'static>(
    pipeline: impl FnOnce(&CancelFlag) -> Result<T, VisionError> + Send + 'static,
) -> Result<T, JobError> {
    let cancel = CancelFlag::new();
    let _stop_when_dropped = cancel.cancel_on_drop();
    let task = tokio::task::spawn_blocking(move || pipeline(&cancel));
    match task.await {
        Ok(outcome) => Ok(outcome?),
        Err(join_error) => match join_error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(cancelled) => Err(JobError::Transient(format!(
                "pipeline task cancelled: {cancelled}"
            ))),
        },
    }
}

async fn put_artifact(blobs: &BlobStore, path: &str, bytes: &[u8]) -> Result<(), JobError> {
    blobs
        .put(path, Bytes::copy_from_slice(bytes))
        .await
        .map_err(|e| JobError::Transient(format!("storing {path}: {e}")))
}

async fn fetch_input(job: &ScanJob, context: &JobContext) -> Result<Bytes, JobError> {
    match (&job.upload_path, &job.source_url) {
        (Some(path), _) => match context.blobs.get(path).await {
            Ok(bytes) => Ok(bytes),
            Err(BlobError::NotFound { .. }) => Err(JobError::bad(
                "upload_missing",
                format!("upload {path} is gone"),
            )),
            Err(other) => Err(JobError::Transient(other.to_string())),
        },
        (None, Some(url)) => {
            // The kind's limit, or the worker's own if it is lower.
            let worker_limit = context.downloads.max_bytes;
            let max_bytes = job
                .kind
                .max_input_bytes()
                .map_or(worker_limit, |kind_limit| kind_limit.min(worker_limit));
            download(url, &context.downloads, max_bytes).await
        }
        (None, None) => Err(JobError::bad(
            "missing_source",
            "scan has neither an upload nor a source_url",
        )),
    }
}

/// Downloads a source video through the SSRF guard, with a size cap
/// (`max_bytes`, the input kind's limit within the worker's) that is
/// enforced while streaming (a lying Content-Length cannot exhaust memory).
pub async fn download(
    url: &str,
    settings: &DownloadSettings,
    max_bytes: u64,
) -> Result<Bytes, JobError> {
    let destination = settings
        .policy
        .resolve(url)
        .await
        .map_err(|refusal| JobError::bad("source_refused", refusal.to_string()))?;
    let client = destination
        .pinned_client(
            settings.timeout,
            concat!("ScanFleet-Worker/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(|e| JobError::Transient(e.to_string()))?;
    let response = client.get(destination.url).send().await.map_err(|e| {
        if e.is_timeout() {
            JobError::Transient(format!("source timed out: {e}"))
        } else {
            JobError::Transient(format!("source unreachable: {e}"))
        }
    })?;
    let status = response.status();
    if status.is_redirection() {
        return Err(JobError::bad(
            "source_redirected",
            format!("source answered {status}; redirects are not followed"),
        ));
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(JobError::Transient(format!("source answered {status}")));
    }
    if !status.is_success() {
        return Err(JobError::bad(
            "source_unavailable",
            format!("source answered {status}"),
        ));
    }
    if response.content_length().is_some_and(|len| len > max_bytes) {
        return Err(too_large(max_bytes));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| JobError::Transient(format!("source download failed: {e}")))?;
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(too_large(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

fn too_large(max_bytes: u64) -> JobError {
    JobError::bad(
        "input_too_large",
        format!("source is larger than {max_bytes} bytes"),
    )
}

/// Runs one scan of a local file with no services (`worker analyze`),
/// reporting progress after every batch of frames.
pub fn analyze_file(
    engine: &ScanEngine,
    path: &Path,
    downscale_max: usize,
    progress: &mut dyn FnMut(vision::Progress),
) -> Result<vision::VideoScanOutput, VisionError> {
    let options = ScanOptions {
        downscale_max,
        max_bytes: protocol::MAX_VIDEO_BYTES,
        ..ScanOptions::default()
    };
    engine.analyze_with_progress(path, &options, progress, &CancelFlag::new())
}

/// Runs one `item_crop` of a local photo with no services (`worker analyze --kind item_crop`).
pub fn crop_file(
    engine: &ScanEngine,
    path: &Path,
    downscale_max: usize,
) -> Result<vision::ItemCropOutput, VisionError> {
    // As for a video: a file that cannot be read is the caller's input, not an internal fault.
    let photo = std::fs::read(path).map_err(|e| {
        VisionError::InputNotImage(format!("cannot read input {}: {e}", path.display()))
    })?;
    let options = ItemCropOptions {
        downscale_max,
        max_bytes: protocol::MAX_PHOTO_BYTES as usize,
        ..ItemCropOptions::default()
    };
    engine.crop_items(&photo, &options)
}

/// Writes an `item_crop`'s crops as `dir/crop_NN.jpg` (`worker analyze --crops-dir`).
pub fn write_crops(output: &vision::ItemCropOutput, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (item, jpeg) in output.report.items.iter().zip(&output.crops) {
        std::fs::write(dir.join(format!("crop_{:02}.jpg", item.index)), jpeg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping the future that waits for a pipeline (what the time limit
    /// and an aborted job do) raises its cancel flag, so the blocking thread
    /// stops instead of computing on.
    #[tokio::test]
    async fn a_dropped_wait_stops_the_pipeline_thread() {
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        let pipeline = run_blocking(move |cancel| {
            // A stand-in for a pipeline's batches: a checkpoint per step.
            for _step in 0..100_000 {
                if let Err(cancelled) = cancel.check() {
                    stopped_tx.send(()).unwrap();
                    return Err::<(), _>(cancelled);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        });
        let waited = tokio::time::timeout(Duration::from_millis(50), pipeline).await;
        assert!(waited.is_err(), "the pipeline cannot finish in 50 ms");
        let stopped =
            tokio::task::spawn_blocking(move || stopped_rx.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap();
        assert!(
            stopped.is_ok(),
            "the pipeline kept running after its wait was dropped"
        );
    }
}
