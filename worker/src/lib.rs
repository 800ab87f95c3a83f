//! The ScanFleet worker: consumes scans from `scans.cpu` or `scans.gpu`, runs
//! them on the backend chosen at start-up, and records results in Postgres.
//! See DESIGN.md ("Work").

pub mod cache;
pub mod config;
pub mod consumer;
pub mod cost;
pub mod gpu;
pub mod jobs;
pub mod metrics;
pub mod presence;
pub mod report;
pub mod startup;
