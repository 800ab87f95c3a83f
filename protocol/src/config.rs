//! Helpers shared by the binaries' typed configurations (which are clap
//! structs read from flags and environment variables).

use std::time::Duration;

use crate::topology::Topology;

/// Parses `250ms`, `5s`, `2m`, `1h 30m` (humantime syntax) for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// A URL with its password replaced, safe to print.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparseable url>".to_string(),
    }
}

/// Settings every process needs: where the database and broker are, and the
/// queue arguments, which must agree across the fleet.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceConfig {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/scanfleet")]
    pub database_url: String,
    /// RabbitMQ connection URL (the vhost is the path, `%2f` for `/`).
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// Deliveries of one scan message before it is dead-lettered.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
    /// How long a scan waits on the GPU queue before falling back to CPU.
    #[arg(long, env = "GPU_MAX_WAIT", default_value = "2m", value_parser = parse_duration)]
    pub gpu_max_wait: Duration,
    /// Blob store: a directory, `file://` URL or `s3://bucket/prefix`.
    #[arg(long, env = "BLOB_STORE", default_value = "./data/blobs")]
    pub blob_store: String,
    /// `json` for production log shippers, `text` for people.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
}

impl ServiceConfig {
    pub fn topology(&self) -> Topology {
        Topology {
            delivery_limit: self.delivery_limit,
            gpu_max_wait: self.gpu_max_wait,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.delivery_limit == 0 {
            return Err("DELIVERY_LIMIT must be at least 1".into());
        }
        if self.gpu_max_wait.is_zero() {
            return Err("GPU_MAX_WAIT must be positive".into());
        }
        url::Url::parse(&self.amqp_url).map_err(|e| format!("AMQP_URL: {e}"))?;
        url::Url::parse(&self.database_url).map_err(|e| format!("DATABASE_URL: {e}"))?;
        Ok(())
    }

    /// The configuration as printed at start-up, secrets masked.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "database_url": mask_url(&self.database_url),
            "amqp_url": mask_url(&self.amqp_url),
            "delivery_limit": self.delivery_limit,
            "gpu_max_wait": humantime::format_duration(self.gpu_max_wait).to_string(),
            "blob_store": mask_url(&self.blob_store).replace("<unparseable url>", &self.blob_store),
            "log_format": format!("{:?}", self.log_format).to_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            mask_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:****@host:5672/%2f"
        );
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }
}
