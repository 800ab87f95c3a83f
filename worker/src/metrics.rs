//! The worker's Prometheus metrics.

use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};

/// Seconds, from a 5 ms probe to a 10-minute video.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    pub scans_finished: IntCounterVec,
    pub in_flight: IntGauge,
    pub processing_seconds: HistogramVec,
    pub queue_wait_seconds: HistogramVec,
    pub end_to_end_seconds: HistogramVec,
    pub stage_seconds: HistogramVec,
    pub cost_usd: CounterVec,
    pub errors: IntCounterVec,
    pub consumer_connected: IntGauge,
    pub cache_lookups: IntCounterVec,
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric")
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let scans_finished = IntCounterVec::new(
            Opts::new(
                "scanfleet_worker_scans_finished_total",
                "Scans this worker finished, by kind, route and outcome",
            ),
            &["kind", "route", "outcome"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "scanfleet_worker_scans_in_flight",
            "Scans running in this worker now",
        )
        .expect("valid metric");
        let processing_seconds = histogram(
            "scanfleet_worker_processing_seconds",
            "Time to run one scan, by kind and route",
            &["kind", "route"],
        );
        let queue_wait_seconds = histogram(
            "scanfleet_worker_queue_wait_seconds",
            "From submission to a worker starting the scan, by route",
            &["route"],
        );
        let end_to_end_seconds = histogram(
            "scanfleet_scan_end_to_end_seconds",
            "From submission to the result being committed, by route",
            &["route"],
        );
        let stage_seconds = histogram(
            "scanfleet_worker_stage_seconds",
            "Time per pipeline stage, by kind and stage",
            &["kind", "stage"],
        );
        let cost_usd = CounterVec::new(
            Opts::new(
                "scanfleet_worker_cost_usd_total",
                "Processing cost (seconds × hourly price of the backend), by route",
            ),
            &["route"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "scanfleet_worker_errors_total",
                "Failed scan attempts, by error code",
            ),
            &["code"],
        )
        .expect("valid metric");
        let consumer_connected = IntGauge::new(
            "scanfleet_worker_consumer_connected",
            "1 while the worker is consuming from its queue",
        )
        .expect("valid metric");
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "scanfleet_worker_result_cache_lookups_total",
                "Result cache lookups, by kind and outcome (miss = computed; memory or database = served from the cache)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(scans_finished.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(in_flight.clone()),
            Box::new(processing_seconds.clone()),
            Box::new(queue_wait_seconds.clone()),
            Box::new(end_to_end_seconds.clone()),
            Box::new(stage_seconds.clone()),
            Box::new(cost_usd.clone()),
            Box::new(errors.clone()),
            Box::new(consumer_connected.clone()),
            Box::new(cache_lookups.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        WorkerMetrics {
            registry,
            scans_finished,
            in_flight,
            processing_seconds,
            queue_wait_seconds,
            end_to_end_seconds,
            stage_seconds,
            cost_usd,
            errors,
            consumer_connected,
            cache_lookups,
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
