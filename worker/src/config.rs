//! The worker's configuration, from flags or environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::config::{parse_duration, ServiceConfig};
use protocol::Route;

use vision::BackendChoice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueChoice {
    Cpu,
    Gpu,
}

impl QueueChoice {
    pub fn route(self) -> Route {
        match self {
            QueueChoice::Cpu => Route::Cpu,
            QueueChoice::Gpu => Route::Gpu,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub service: ServiceConfig,
    /// Which queue to consume.
    #[arg(long, env = "QUEUE", value_enum, default_value = "cpu")]
    pub queue: QueueChoice,
    /// Compute backend: `cpu`, `cuda`, `wgpu` (Vulkan/Metal GPUs; builds with
    /// the `wgpu` feature), or `auto` (CUDA when a device answers, else CPU).
    #[arg(long, env = "BACKEND", default_value = "auto")]
    pub backend: BackendChoice,
    /// Long side of processed frames, unless a scan asks for less (seed 003).
    #[arg(long, env = "DOWNSCALE_MAX", default_value_t = 1280)]
    pub downscale_max: usize,
    /// Run a warm-up scan before consuming (seeds 003/004), so the first
    /// real scan does not pay for kernel compilation and allocation.
    #[arg(long, env = "WARM_MODEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub warm_model: bool,
    /// Hourly price of a CPU worker, for the cost reported per scan (seed 001).
    #[arg(long, env = "CPU_PRICE_PER_HOUR", default_value_t = 0.05)]
    pub cpu_price_per_hour: f64,
    /// Hourly price of a GPU worker.
    #[arg(long, env = "GPU_PRICE_PER_HOUR", default_value_t = 0.50)]
    pub gpu_price_per_hour: f64,
    /// Largest input a worker downloads from a `source_url`, in bytes; each
    /// kind's own limit (256 MiB for videos, 64 MiB for photos) applies
    /// below it.
    #[arg(long, env = "MAX_DOWNLOAD_BYTES", default_value_t = protocol::MAX_VIDEO_BYTES)]
    pub max_download_bytes: u64,
    /// Time limit for downloading one input.
    #[arg(long, env = "DOWNLOAD_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub download_timeout: Duration,
    /// Wall-clock limit of one scan, fetching its input included. A scan
    /// past it fails with `time_limit_exceeded` and frees its slot; size it
    /// well above the longest scan the input limits allow (a 600-frame 720p
    /// video takes about 30 s on 2 cores).
    #[arg(long, env = "SCAN_TIME_LIMIT", default_value = "10m", value_parser = parse_duration)]
    pub scan_time_limit: Duration,
    /// Allow plain-http source URLs (local use only).
    #[arg(long, env = "SOURCE_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub source_allow_http: bool,
    /// Hosts or IPs a source URL may point at although private (comma-separated).
    #[arg(long, env = "SOURCE_ALLOW_HOSTS", value_delimiter = ',')]
    pub source_allow_hosts: Vec<String>,
    /// Results kept in this worker's memory for identical scans (seed 003's
    /// EMBED_CACHE_MAX); Postgres is consulted on a memory miss. 0 turns the
    /// result cache off.
    #[arg(long, env = "RESULT_CACHE_MAX", default_value_t = 256)]
    pub result_cache_max: usize,
    /// How long a finished result may be served to identical scans (memory
    /// and Postgres alike). Results also expire when the pipeline version
    /// changes, whatever this says.
    #[arg(long, env = "RESULT_CACHE_TTL", default_value = "7d", value_parser = parse_duration)]
    pub result_cache_ttl: Duration,
    /// Scans run at once by this process (also the prefetch count).
    #[arg(long, env = "MAX_CONCURRENT_JOBS", default_value_t = 4)]
    pub max_concurrent_jobs: u16,
    /// On SIGTERM, how long in-flight scans may take to finish before they
    /// are handed back to the queue.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How often a running scan proves its worker is alive.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Name in scan records and logs (default: host name and process id).
    #[arg(long, env = "WORKER_NAME")]
    pub worker_name: Option<String>,
    /// Serve /healthz, /readyz and /metrics here (disabled when absent).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.service.validate()?;
        if self.max_concurrent_jobs == 0 {
            return Err("MAX_CONCURRENT_JOBS must be at least 1".into());
        }
        if !(64..=8192).contains(&self.downscale_max) {
            return Err("DOWNSCALE_MAX must be within 64–8192".into());
        }
        if self.cpu_price_per_hour < 0.0 || self.gpu_price_per_hour < 0.0 {
            return Err("prices must not be negative".into());
        }
        if self.scan_time_limit.is_zero() {
            return Err("SCAN_TIME_LIMIT must be positive".into());
        }
        if self.heartbeat_interval.is_zero() {
            return Err("HEARTBEAT_INTERVAL must be positive".into());
        }
        Ok(())
    }

    pub fn name(&self) -> String {
        self.worker_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn describe(&self) -> serde_json::Value {
        let mut described = self.service.describe();
        let extra = serde_json::json!({
            "queue": format!("{:?}", self.queue).to_lowercase(),
            "backend": self.backend.to_string(),
            "downscale_max": self.downscale_max,
            "warm_model": self.warm_model,
            "cpu_price_per_hour": self.cpu_price_per_hour,
            "gpu_price_per_hour": self.gpu_price_per_hour,
            "max_download_bytes": self.max_download_bytes,
            "download_timeout": humantime::format_duration(self.download_timeout).to_string(),
            "scan_time_limit": humantime::format_duration(self.scan_time_limit).to_string(),
            "source_allow_http": self.source_allow_http,
            "source_allow_hosts": self.source_allow_hosts,
            "result_cache_max": self.result_cache_max,
            "result_cache_ttl": humantime::format_duration(self.result_cache_ttl).to_string(),
            "max_concurrent_jobs": self.max_concurrent_jobs,
            "shutdown_grace": humantime::format_duration(self.shutdown_grace).to_string(),
            "heartbeat_interval": humantime::format_duration(self.heartbeat_interval).to_string(),
            "worker_name": self.name(),
            "metrics_addr": self.metrics_addr.map(|a| a.to_string()),
        });
        described
            .as_object_mut()
            .expect("describe is an object")
            .extend(extra.as_object().expect("object").clone());
        described
    }
}
