//! The dispatcher's configuration, from flags or environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::config::{parse_duration, ServiceConfig};

use crate::routing::RoutingMode;

#[derive(Debug, Clone, clap::Args)]
pub struct DispatcherConfig {
    #[command(flatten)]
    pub service: ServiceConfig,
    /// Address the HTTP API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "MAX_JSON_BYTES", default_value_t = 64 * 1024)]
    pub max_json_bytes: usize,
    /// Routing mode at start (`cpu`, `gpu` or `auto`).
    #[arg(long, env = "ROUTING_MODE", value_enum, default_value = "auto")]
    pub routing_mode: RoutingMode,
    /// How often the outbox relay looks for rows other replicas wrote.
    #[arg(long, env = "OUTBOX_POLL", default_value = "500ms", value_parser = parse_duration)]
    pub outbox_poll: Duration,
    /// Database connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

impl DispatcherConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.service.validate()?;
        if self.max_upload_bytes == 0 || self.max_json_bytes == 0 {
            return Err("MAX_UPLOAD_BYTES and MAX_JSON_BYTES must be positive".into());
        }
        if self.database_max_connections < 2 {
            return Err("DATABASE_MAX_CONNECTIONS must be at least 2".into());
        }
        Ok(())
    }

    pub fn describe(&self) -> serde_json::Value {
        let mut described = self.service.describe();
        let extra = serde_json::json!({
            "listen_addr": self.listen_addr.to_string(),
            "max_upload_bytes": self.max_upload_bytes,
            "max_json_bytes": self.max_json_bytes,
            "routing_mode": self.routing_mode,
            "outbox_poll": humantime::format_duration(self.outbox_poll).to_string(),
            "database_max_connections": self.database_max_connections,
        });
        described
            .as_object_mut()
            .expect("describe is an object")
            .extend(extra.as_object().expect("object").clone());
        described
    }
}
