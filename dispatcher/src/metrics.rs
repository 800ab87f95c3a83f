//! The dispatcher's Prometheus metrics.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct DispatcherMetrics {
    pub registry: Registry,
    pub scans_submitted: IntCounterVec,
    pub outbox_published: IntCounter,
    pub broker_connected: IntGauge,
    pub dead_lettered: IntCounterVec,
    pub queue_messages: IntGaugeVec,
    pub queue_consumers: IntGaugeVec,
    pub routing_escalated: IntGauge,
    pub backlog_leader: IntGauge,
    pub webhook_attempts: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
}

impl DispatcherMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let scans_submitted = IntCounterVec::new(
            Opts::new(
                "scanfleet_scans_submitted_total",
                "Scans accepted, by tier, route and route reason",
            ),
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
            Opts::new(
                "scanfleet_scans_dead_lettered_total",
                "Scan messages that reached the dead-letter queue, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let queue_messages = IntGaugeVec::new(
            Opts::new(
                "scanfleet_queue_messages",
                "Scans waiting (ready) on each queue, as last sampled",
            ),
            &["queue"],
        )
        .expect("valid metric");
        let queue_consumers = IntGaugeVec::new(
            Opts::new(
                "scanfleet_queue_consumers",
                "Consumers (workers) on each queue, as last sampled",
            ),
            &["queue"],
        )
        .expect("valid metric");
        let routing_escalated = IntGauge::new(
            "scanfleet_routing_escalated",
            "1 while new scans are escalated to the GPU queue because of a CPU backlog",
        )
        .expect("valid metric");
        let backlog_leader = IntGauge::new(
            "scanfleet_backlog_monitor_leader",
            "1 on the dispatcher replica that currently runs the backlog monitor",
        )
        .expect("valid metric");
        let webhook_attempts = IntCounterVec::new(
            Opts::new(
                "scanfleet_webhook_attempts_total",
                "Webhook delivery attempts, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        // Labelled by route template (`/v1/scans/{id}`), never the raw path,
        // so a scanner probing random paths cannot blow up the series count.
        let http_requests = IntCounterVec::new(
            Opts::new(
                "scanfleet_http_requests_total",
                "HTTP requests answered, by method, route template and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "scanfleet_http_request_duration_seconds",
                "Time from request to response headers, by method and route template",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(scans_submitted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(outbox_published.clone()),
            Box::new(broker_connected.clone()),
            Box::new(dead_lettered.clone()),
            Box::new(queue_messages.clone()),
            Box::new(queue_consumers.clone()),
            Box::new(routing_escalated.clone()),
            Box::new(backlog_leader.clone()),
            Box::new(webhook_attempts.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        DispatcherMetrics {
            registry,
            scans_submitted,
            outbox_published,
            broker_connected,
            dead_lettered,
            queue_messages,
            queue_consumers,
            routing_escalated,
            backlog_leader,
            webhook_attempts,
            http_requests,
            http_duration,
        }
    }
}

impl Default for DispatcherMetrics {
    fn default() -> Self {
        Self::new()
    }
}
