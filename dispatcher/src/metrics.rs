//! The dispatcher's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct DispatcherMetrics {
    pub registry: Registry,
    pub scans_submitted: IntCounterVec,
    pub outbox_published: IntCounter,
    pub broker_connected: IntGauge,
    pub dead_lettered: IntCounterVec,
}

impl DispatcherMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let scans_submitted = IntCounterVec::new(
            Opts::new("scanfleet_scans_submitted_total", "Scans accepted, by tier, route and route reason"),
            &["tier", "route", "reason"],
        )
        .expect("valid metric");
        let outbox_published = IntCounter::new(
            "scanfleet_outbox_published_total",
            "Scan messages published to RabbitMQ and confirmed by the broker",
        )
        .expect("valid metric");
        let broker_connected = IntGauge::new(
            "scanfleet_outbox_broker_connected",
            "1 while the outbox relay holds a broker connection",
        )
        .expect("valid metric");
        let dead_lettered = IntCounterVec::new(
            Opts::new("scanfleet_scans_dead_lettered_total", "Scan messages that reached the dead-letter queue, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(scans_submitted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(outbox_published.clone()),
            Box::new(broker_connected.clone()),
            Box::new(dead_lettered.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        DispatcherMetrics {
            registry,
            scans_submitted,
            outbox_published,
            broker_connected,
            dead_lettered,
        }
    }
}

impl Default for DispatcherMetrics {
    fn default() -> Self {
        Self::new()
    }
}
