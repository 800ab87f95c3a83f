//! What every ScanFleet process shares: the message contract between the
//! dispatcher and the workers, the RabbitMQ topology, Postgres access, the blob
//! store, configuration helpers, telemetry and the supervision of background
//! tasks.

pub mod backoff;
pub mod blob;
pub mod config;
pub mod db;
pub mod http;
pub mod message;
pub mod netguard;
pub mod supervise;
pub mod telemetry;
pub mod topology;

pub use message::{
    Route, RouteReason, ScanJob, ScanKind, ScanMessage, ScanStatus, Tier, MAX_PHOTO_BYTES,
    MAX_VIDEO_BYTES,
};
