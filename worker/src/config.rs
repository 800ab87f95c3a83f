//! The worker's configuration, from flags or environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::config::{parse_duration, ServiceConfig};
use protocol::Route;

use crate::backend::BackendChoice;

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
    /// Compute backend: `cpu`, `cuda`, or `auto` (CUDA when a device answers).
    #[arg(long, env = "BACKEND", value_enum, default_value = "auto")]
    pub backend: BackendChoice,
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
            "backend": format!("{:?}", self.backend).to_lowercase(),
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
