//! The dispatcher's configuration, from flags or environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::config::{parse_duration, ServiceConfig};
use protocol::Tier;

use crate::routing::{RoutingMode, RoutingPolicy, FULL_SHARE_BP};
use crate::sealing::Keyring;
use crate::settings::{DeliverySettings, Watermarks};
use protocol::netguard::DestinationPolicy;

#[derive(Debug, Clone, clap::Args)]
pub struct DispatcherConfig {
    #[command(flatten)]
    pub service: ServiceConfig,
    /// Address the HTTP API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Largest accepted upload, in bytes (the largest input of any kind; a
    /// scan checks its upload against its own kind's limit at submit).
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = protocol::MAX_VIDEO_BYTES as usize)]
    pub max_upload_bytes: usize,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "MAX_JSON_BYTES", default_value_t = 64 * 1024)]
    pub max_json_bytes: usize,
    /// API requests handled at once by this replica; more are answered `503`
    /// with `Retry-After` at once (load shedding) instead of queueing.
    /// Health, readiness and metrics are never shed.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Time limit for one API request other than an upload, body included (`408`).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Time limit for one upload, body included (`408`): MAX_UPLOAD_BYTES
    /// must arrive within it.
    #[arg(long, env = "UPLOAD_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub upload_timeout: Duration,
    /// Longest wait for the next bytes of a request body (`408`): a client
    /// that stops sending frees its slot after this.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// Routing mode (`cpu`, `gpu` or `auto`) used when none is stored yet;
    /// change it at run time with `PUT /v1/admin/routing`.
    #[arg(long, env = "ROUTING_MODE", value_enum, default_value = "auto")]
    pub routing_mode: RoutingMode,
    /// Percent of non-tier scans sent to GPU in `auto` (seed 002's canary),
    /// used when no policy is stored yet.
    #[arg(long, env = "CANARY_PERCENT", default_value_t = 0.0)]
    pub canary_percent: f64,
    /// How often the backlog monitor samples the queues.
    #[arg(long, env = "BACKLOG_POLL", default_value = "1s", value_parser = parse_duration)]
    pub backlog_poll: Duration,
    /// Escalate to GPU when more scans than this wait on the CPU queue.
    #[arg(long, env = "BACKLOG_HIGH_WATERMARK", default_value_t = 10)]
    pub backlog_high_watermark: u64,
    /// Stand down once fewer than this many wait (for `BACKLOG_HOLD`).
    #[arg(long, env = "BACKLOG_LOW_WATERMARK", default_value_t = 3)]
    pub backlog_low_watermark: u64,
    /// How long the CPU queue must stay under the low watermark before new
    /// scans go back to CPU.
    #[arg(long, env = "BACKLOG_HOLD", default_value = "30s", value_parser = parse_duration)]
    pub backlog_hold: Duration,
    /// Escalate when a new CPU scan's predicted wait exceeds this.
    #[arg(long, env = "LATENCY_TARGET", default_value = "2m", value_parser = parse_duration)]
    pub latency_target: Duration,
    /// How often the outbox relay looks for rows other replicas wrote.
    #[arg(long, env = "OUTBOX_POLL", default_value = "500ms", value_parser = parse_duration)]
    pub outbox_poll: Duration,
    /// Delay before each webhook attempt; the count is the number of attempts.
    #[arg(long, env = "WEBHOOK_SCHEDULE", value_delimiter = ',', value_parser = parse_duration,
          default_value = "0s,5s,5m,30m,2h,5h,10h,10h")]
    pub webhook_schedule: Vec<Duration>,
    /// Time a receiver has to answer one webhook.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// How often the deliverer looks for due webhooks.
    #[arg(long, env = "WEBHOOK_POLL", default_value = "250ms", value_parser = parse_duration)]
    pub webhook_poll: Duration,
    /// Webhooks in flight to one endpoint, across all replicas.
    #[arg(long, env = "WEBHOOK_PER_ENDPOINT", default_value_t = 4)]
    pub webhook_per_endpoint: u32,
    /// Webhooks in flight from this replica.
    #[arg(long, env = "WEBHOOK_MAX_IN_FLIGHT", default_value_t = 64)]
    pub webhook_max_in_flight: usize,
    /// Allow plain-http callback URLs (local use only).
    #[arg(long, env = "WEBHOOK_ALLOW_HTTP", default_value_t = false)]
    pub webhook_allow_http: bool,
    /// Hosts or IPs allowed as callback destinations although private
    /// (comma-separated, e.g. `127.0.0.1,localhost` for a local demo).
    #[arg(long, env = "WEBHOOK_ALLOW_HOSTS", value_delimiter = ',')]
    pub webhook_allow_hosts: Vec<String>,
    /// Allow plain-http `source_url`s at submit (local use only). Same
    /// variable as the worker's, which checks again when it downloads.
    #[arg(long, env = "SOURCE_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub source_allow_http: bool,
    /// Hosts or IPs a `source_url` may point at although private (comma-separated).
    #[arg(long, env = "SOURCE_ALLOW_HOSTS", value_delimiter = ',')]
    pub source_allow_hosts: Vec<String>,
    /// How long a rotated-out endpoint secret keeps signing.
    #[arg(long, env = "WEBHOOK_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    pub webhook_secret_overlap: Duration,
    /// Scans a tenant may submit per minute, by tier (`0`: no limit). A
    /// tenant past it gets `429` with `Retry-After` and `RateLimit` headers;
    /// other tenants are not slowed.
    #[arg(
        long,
        env = "SUBMIT_RATE_PER_MINUTE",
        default_value = "free=120,pro=1200,premium=6000"
    )]
    pub submit_rate_per_minute: PerTier,
    /// Uploads a tenant may make per minute, by tier (`0`: no limit).
    #[arg(
        long,
        env = "UPLOAD_RATE_PER_MINUTE",
        default_value = "free=30,pro=300,premium=1200"
    )]
    pub upload_rate_per_minute: PerTier,
    /// Scans a tenant may have queued or running at once, by tier (`0`: no
    /// limit); past it, submissions are answered `429 too_many_in_flight`.
    #[arg(
        long,
        env = "MAX_IN_FLIGHT_SCANS",
        default_value = "free=100,pro=1000,premium=5000"
    )]
    pub max_in_flight_scans: PerTier,
    /// Webhook endpoints a tenant may register, by tier (`0`: no limit):
    /// every event fans out to each of them.
    #[arg(
        long,
        env = "MAX_WEBHOOK_ENDPOINTS",
        default_value = "free=3,pro=10,premium=25"
    )]
    pub max_webhook_endpoints: PerTier,
    /// Queued CPU scans of one tenant that count toward the backlog that
    /// escalates to GPU, by tier (`0`: all of them). A tenant's scans beyond
    /// its share still run, in order, on CPU, but do not move everyone's
    /// new scans to the dearer GPU queue: one tenant flooding cannot
    /// escalate alone (with the defaults a free tenant's 5 stay under the
    /// high watermark of 10), several backed-up tenants together can.
    /// Single-tenant installs set it to `0` or above the high watermark.
    #[arg(
        long,
        env = "ESCALATION_SHARE",
        default_value = "free=5,pro=50,premium=250"
    )]
    pub escalation_share: PerTier,
    /// Database connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// How long an operator console login (`/ui`) lasts.
    #[arg(long, env = "CONSOLE_SESSION_TTL", default_value = "12h", value_parser = parse_duration)]
    pub console_session_ttl: Duration,
    /// Keys that seal webhook signing secrets at rest: `id:base64key,…`
    /// (32-byte AES-256 keys; the first seals, every one listed opens; make
    /// one with `dispatcher secrets new-key`). Without it secrets are stored
    /// in plain text and the dispatcher warns at start. Pass it in the
    /// environment, not on the command line.
    #[arg(long, env = "SECRETS_KEYS", hide_env_values = true)]
    pub secrets_keys: Option<Keyring>,
    /// Mark the console's session cookie `Secure` (sent over https only).
    /// Turn off only where the console is reached over plain http (a local
    /// demo or test); behind TLS termination keep it on.
    #[arg(long, env = "CONSOLE_SECURE_COOKIE", default_value_t = true, action = clap::ArgAction::Set)]
    pub console_secure_cookie: bool,
}

impl DispatcherConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.service.validate()?;
        if self.max_upload_bytes == 0 || self.max_json_bytes == 0 {
            return Err("MAX_UPLOAD_BYTES and MAX_JSON_BYTES must be positive".into());
        }
        if self.max_concurrent_requests == 0 {
            return Err("MAX_CONCURRENT_REQUESTS must be positive".into());
        }
        if self.request_timeout.is_zero()
            || self.upload_timeout.is_zero()
            || self.body_read_timeout.is_zero()
        {
            return Err(
                "REQUEST_TIMEOUT, UPLOAD_TIMEOUT and BODY_READ_TIMEOUT must be positive".into(),
            );
        }
        if !(0.0..=100.0).contains(&self.canary_percent) {
            return Err("CANARY_PERCENT must be within 0–100".into());
        }
        if self.backlog_low_watermark > self.backlog_high_watermark {
            return Err("BACKLOG_LOW_WATERMARK must not exceed BACKLOG_HIGH_WATERMARK".into());
        }
        if self.backlog_poll.is_zero() {
            return Err("BACKLOG_POLL must be positive".into());
        }
        if self.webhook_schedule.is_empty() {
            return Err("WEBHOOK_SCHEDULE needs at least one delay".into());
        }
        if self.webhook_per_endpoint == 0 || self.webhook_max_in_flight == 0 {
            return Err("WEBHOOK_PER_ENDPOINT and WEBHOOK_MAX_IN_FLIGHT must be positive".into());
        }
        if self.console_session_ttl < Duration::from_secs(60) {
            return Err("CONSOLE_SESSION_TTL must be at least a minute".into());
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
            "max_concurrent_requests": self.max_concurrent_requests,
            "request_timeout": humantime::format_duration(self.request_timeout).to_string(),
            "upload_timeout": humantime::format_duration(self.upload_timeout).to_string(),
            "body_read_timeout": humantime::format_duration(self.body_read_timeout).to_string(),
            "routing_mode": self.routing_mode,
            "canary_percent": self.canary_percent,
            "backlog_poll": humantime::format_duration(self.backlog_poll).to_string(),
            "backlog_high_watermark": self.backlog_high_watermark,
            "backlog_low_watermark": self.backlog_low_watermark,
            "backlog_hold": humantime::format_duration(self.backlog_hold).to_string(),
            "latency_target": humantime::format_duration(self.latency_target).to_string(),
            "webhook_schedule": self.webhook_schedule.iter().map(|d| humantime::format_duration(*d).to_string()).collect::<Vec<_>>(),
            "webhook_timeout": humantime::format_duration(self.webhook_timeout).to_string(),
            "webhook_allow_http": self.webhook_allow_http,
            "webhook_allow_hosts": self.webhook_allow_hosts,
            "source_allow_http": self.source_allow_http,
            "source_allow_hosts": self.source_allow_hosts,
            "outbox_poll": humantime::format_duration(self.outbox_poll).to_string(),
            "database_max_connections": self.database_max_connections,
            "submit_rate_per_minute": self.submit_rate_per_minute.to_string(),
            "upload_rate_per_minute": self.upload_rate_per_minute.to_string(),
            "max_webhook_endpoints": self.max_webhook_endpoints.to_string(),
            "max_in_flight_scans": self.max_in_flight_scans.to_string(),
            "escalation_share": self.escalation_share.to_string(),
            "console_session_ttl": humantime::format_duration(self.console_session_ttl).to_string(),
            // Ids only: which keys are loaded, never their material.
            "secrets_keys": self.secrets_keys.as_ref().map(|k| k.key_ids()),
            "console_secure_cookie": self.console_secure_cookie,
        });
        described
            .as_object_mut()
            .expect("describe is an object")
            .extend(extra.as_object().expect("object").clone());
        described
    }

    pub fn routing_policy(&self) -> RoutingPolicy {
        RoutingPolicy {
            mode: self.routing_mode,
            canary_bp: percent_to_bp(self.canary_percent),
        }
    }

    pub fn delivery_settings(&self) -> DeliverySettings {
        DeliverySettings {
            schedule: self.webhook_schedule.clone(),
            timeout: self.webhook_timeout,
            poll: self.webhook_poll,
            per_destination: self.webhook_per_endpoint as i64,
            max_in_flight: self.webhook_max_in_flight,
            destinations: DestinationPolicy {
                allow_http: self.webhook_allow_http,
                allow_hosts: self
                    .webhook_allow_hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
            },
        }
    }

    /// Where a scan's `source_url` may point, checked at submit; the worker
    /// checks again (and pins the address) when it downloads.
    pub fn source_policy(&self) -> DestinationPolicy {
        DestinationPolicy {
            allow_http: self.source_allow_http,
            allow_hosts: self
                .source_allow_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn watermarks(&self) -> Watermarks {
        Watermarks {
            high_depth: self.backlog_high_watermark,
            latency_target: self.latency_target,
            low_depth: self.backlog_low_watermark,
            hold: self.backlog_hold,
        }
    }
}

/// One number per tier, written `free=120,pro=1200,premium=6000` (or one
/// number for every tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerTier {
    pub free: u32,
    pub pro: u32,
    pub premium: u32,
}

impl PerTier {
    /// The same number for every tier (`0` turns a limit off).
    pub const fn all(n: u32) -> Self {
        PerTier {
            free: n,
            pro: n,
            premium: n,
        }
    }

    pub fn get(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Free => self.free,
            Tier::Pro => self.pro,
            Tier::Premium => self.premium,
        }
    }
}

impl std::str::FromStr for PerTier {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(n) = text.trim().parse() {
            return Ok(PerTier::all(n));
        }
        let mut values: [Option<u32>; 3] = [None; 3];
        for part in text.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not tier=number"))?;
            let tier = Tier::parse(name.trim())
                .ok_or_else(|| format!("{:?} is not a tier (free, pro, premium)", name.trim()))?;
            let value = value
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a whole number", value.trim()))?;
            if values[tier as usize].replace(value).is_some() {
                return Err(format!("{} is given twice", tier.as_str()));
            }
        }
        match values {
            [Some(free), Some(pro), Some(premium)] => Ok(PerTier { free, pro, premium }),
            _ => Err("give a number for each of free, pro and premium".into()),
        }
    }
}

impl std::fmt::Display for PerTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "free={},pro={},premium={}",
            self.free, self.pro, self.premium
        )
    }
}

pub fn percent_to_bp(percent: f64) -> u16 {
    (percent.clamp(0.0, 100.0) * 100.0)
        .round()
        .min(FULL_SHARE_BP as f64) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_tier_numbers_parse_and_print() {
        let parsed: PerTier = "free=1, pro=20,premium=300".parse().unwrap();
        assert_eq!(
            parsed,
            PerTier {
                free: 1,
                pro: 20,
                premium: 300
            }
        );
        assert_eq!(parsed.to_string().parse::<PerTier>().unwrap(), parsed);
        assert_eq!("0".parse::<PerTier>().unwrap(), PerTier::all(0));
        assert_eq!(parsed.get(Tier::Pro), 20);
        for bad in [
            "free=1,pro=2",
            "free=1,pro=2,premium=x",
            "gold=1,pro=2,premium=3",
            "free=1,free=2,pro=2,premium=3",
            "",
        ] {
            assert!(bad.parse::<PerTier>().is_err(), "{bad:?}");
        }
    }
}
