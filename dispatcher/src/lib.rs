//! The ScanFleet dispatcher: accepts scans over HTTP, stores them in Postgres
//! with an outbox row, relays them to RabbitMQ, and marks dead-lettered scans
//! failed. See DESIGN.md ("Fleet behaviour").

pub mod admin;
pub mod api;
pub mod auth;
pub mod backlog;
pub mod body;
pub mod cli;
pub mod config;
pub mod console;
pub mod dead_letters;
pub mod http_metrics;
pub mod keys;
pub mod metrics;
pub mod problem;
pub mod rate_limit;
pub mod relay;
pub mod routing;
pub mod scans;
pub mod sealing;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
pub mod uploads;
pub mod webhooks;
