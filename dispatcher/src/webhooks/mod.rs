//! Completion webhooks, per the Standard Webhooks spec (DESIGN.md "Callback").
//!
//! Deliveries are rows written in the same transaction as a scan's final
//! state (see `protocol::db::enqueue_webhooks`); the deliverer here sends them
//! with retries, so a crash anywhere between result and delivery loses nothing.

pub mod api;
pub mod deliverer;
pub mod rewrap;
pub mod signing;
