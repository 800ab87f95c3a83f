//! The worker's Prometheus metrics.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    pub scans_finished: IntCounterVec,
    pub in_flight: IntGauge,
    pub processing_seconds: HistogramVec,
    pub consumer_connected: IntGauge,
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let scans_finished = IntCounterVec::new(
            Opts::new("scanfleet_worker_scans_finished_total", "Scans this worker finished, by kind, route and outcome"),
            &["kind", "route", "outcome"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("scanfleet_worker_scans_in_flight", "Scans running in this worker now")
            .expect("valid metric");
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new("scanfleet_worker_processing_seconds", "Time to run one scan, by kind and route")
                .buckets(vec![0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
            &["kind", "route"],
        )
        .expect("valid metric");
        let consumer_connected = IntGauge::new(
            "scanfleet_worker_consumer_connected",
            "1 while the worker is consuming from its queue",
        )
        .expect("valid metric");
        for collector in [
            Box::new(scans_finished.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(in_flight.clone()),
            Box::new(processing_seconds.clone()),
            Box::new(consumer_connected.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        WorkerMetrics {
            registry,
            scans_finished,
            in_flight,
            processing_seconds,
            consumer_connected,
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
