//! Dispatcher integration tests against real PostgreSQL and RabbitMQ, with
//! real HTTP servers on 127.0.0.1 standing in for hostile receivers. One test
//! binary (modules below) so the dispatcher is linked once.

mod api_edges;
mod console;
mod cross_tenant;
mod harness;
mod health;
mod keys;
mod limits;
mod secrets;
mod ssrf;
mod statements;
mod supervision;
mod tenants;
mod uploads;
mod webhook_replies;
