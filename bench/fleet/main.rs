//! bench/fleet: ScanFleet's probe throughput end to end and its workers'
//! drain rate, against Celery 5 doing the same job shape, measured in one run
//! on this machine with the same broker and database server; then submit
//! latency at fixed request rates.
//!
//! Like for like:
//! - both sides run as separate processes: the `dispatcher` and `worker`
//!   binaries built beside this one (every crate optimised, see the printed
//!   build line), Celery worker processes with the threads pool;
//! - in-flight work matches: W worker processes × J jobs at once on both
//!   sides (MAX_CONCURRENT_JOBS = J; Celery `--concurrency J`, prefetch J);
//! - both sides are warmed with the same number of jobs before timing;
//! - the ratio's base is Celery with a PostgreSQL result backend and
//!   publisher confirms (each result stored durably, as ScanFleet stores
//!   each result row); Celery's defaults without a result backend are a
//!   second peer, and raw lapin (no database, not ScanFleet) is the broker's
//!   ceiling on this machine.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use harness::processes::{FleetSettings, ProcessFleet};
use harness::{Api, TestEnv};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Jobs per measured run.
    #[arg(long, default_value_t = 3000)]
    jobs: usize,
    /// Jobs each side runs before timing starts.
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    /// Worker processes on each side.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs in flight per worker process (MAX_CONCURRENT_JOBS; Celery threads and prefetch).
    #[arg(long, default_value_t = 16)]
    jobs_in_flight: u16,
    /// Request rates for the submit-latency runs.
    #[arg(long, value_delimiter = ',', default_values_t = vec![100, 250, 500])]
    rates: Vec<u32>,
    #[arg(long, default_value_t = 5)]
    latency_seconds: u32,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn wait_succeeded(env: &TestEnv, total: i64) {
    while env
        .count("SELECT count(*) FROM scans WHERE status = 'succeeded'")
        .await
        < total
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn submit_all(api: &Api, jobs: usize) {
    futures::stream::iter(0..jobs)
        .map(|_| api.submit(json!({"kind": "probe"})))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// HTTP submit → PostgreSQL scan + outbox → relay → RabbitMQ → worker
/// process → result row: jobs/s from the first submit to the last result.
async fn end_to_end(fleet: &ProcessFleet, jobs: usize, already: i64) -> f64 {
    let started = Instant::now();
    submit_all(&fleet.api, jobs).await;
    wait_succeeded(&fleet.env, already + jobs as i64).await;
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// The workers alone: the queue is filled with the workers stopped, then
/// they drain it. The rate is taken between the first and the last result's
/// `finished_at`, so worker start-up is not counted.
async fn workers_only(fleet: &mut ProcessFleet, workers: usize, jobs: usize, already: i64) -> f64 {
    fleet.kill_workers().await;
    submit_all(&fleet.api, jobs).await;
    let relayed = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
    while fleet.env.count(relayed).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..workers {
        fleet.add_worker();
    }
    wait_succeeded(&fleet.env, already + jobs as i64).await;
    let (first, last): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM min(finished_at))::float8, extract(epoch FROM max(finished_at))::float8
         FROM (SELECT finished_at FROM scans WHERE status = 'succeeded'
               ORDER BY finished_at DESC LIMIT $1) AS drained",
    )
    .bind(jobs as i64)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("drain timestamps");
    (jobs as f64 - 1.0) / (last - first)
}

/// Publish→consume→ack with the fleet's broker settings (quorum queue,
/// persistent messages, publisher confirms, manual acks, same prefetch) and
/// no database: what the broker allows on this machine, not ScanFleet.
async fn raw_lapin(
    env: &TestEnv,
    jobs: usize,
    workers: usize,
    prefetch: u16,
) -> anyhow::Result<f64> {
    let queue = "bench.raw-lapin";
    let publisher = protocol::topology::connect(&env.amqp_url, "bench-publisher").await?;
    let channel = protocol::topology::confirm_channel(&publisher).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut consumers = Vec::new();
    for i in 0..workers {
        let connection = protocol::topology::connect(&env.amqp_url, "bench-consumer").await?;
        let channel = protocol::topology::consumer_channel(&connection, prefetch).await?;
        let mut deliveries = channel
            .basic_consume(
                queue,
                &format!("bench-{i}"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let done = done_tx.clone();
        consumers.push(tokio::spawn(async move {
            let _keep = connection;
            while let Some(Ok(delivery)) = deliveries.next().await {
                delivery.ack(BasicAckOptions::default()).await.expect("ack");
                let _ = done.send(());
            }
        }));
    }
    let payload = br#"{"version":"1","kind":"probe"}"#;
    let publish = |n: usize| {
        let channel = channel.clone();
        async move {
            let mut confirms = Vec::with_capacity(n);
            for _ in 0..n {
                let properties = lapin::BasicProperties::default().with_delivery_mode(2);
                confirms.push(
                    channel
                        .basic_publish(
                            "",
                            queue,
                            BasicPublishOptions::default(),
                            payload,
                            properties,
                        )
                        .await?,
                );
            }
            for confirm in confirms {
                confirm.await?;
            }
            anyhow::Ok(())
        }
    };
    publish(jobs / 10).await?; // warm-up
    for _ in 0..jobs / 10 {
        done_rx.recv().await;
    }
    let started = Instant::now();
    publish(jobs).await?;
    for _ in 0..jobs {
        done_rx.recv().await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    for consumer in consumers {
        consumer.abort();
    }
    Ok(rate)
}

fn celery(env: &TestEnv, backend: &str, args: &Args) -> anyhow::Result<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fleet/celery_peer.py");
    let output = std::process::Command::new(harness::venv_bin("python"))
        .args([
            script,
            "--backend",
            backend,
            &env.amqp_url,
            &args.jobs.to_string(),
            &args.workers.to_string(),
            &args.jobs_in_flight.to_string(),
            &args.warmup.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "celery peer ({backend}) failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    result["jobs_per_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("celery peer printed no jobs_per_s: {result}"))
}

struct Latency {
    rate: u32,
    achieved: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Submits at a fixed rate (open loop: a slow answer does not delay the
/// next request) and records each request's latency.
async fn submit_latency(api: &Api, rate: u32, seconds: u32) -> Latency {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..rate * seconds {
        ticks.tick().await;
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            api.submit(json!({"kind": "probe"})).await;
            started.elapsed()
        }));
    }
    let mut latencies: Vec<Duration> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("submit"))
        .collect();
    let achieved = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Latency {
        rate,
        achieved,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().expect("requests"),
    }
}

/// The first rate whose p99 is more than 3× the lowest rate's, or that the
/// dispatcher could not keep up with.
fn knee(rows: &[Latency]) -> Option<u32> {
    let base = rows.first()?.p99;
    rows.iter()
        .find(|r| r.p99 > base * 3 || r.achieved < 0.95 * r.rate as f64)
        .map(|r| r.rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench/fleet: {} jobs after {} warm-up jobs; {} worker processes × {} jobs in flight on each side; {cores} cores",
        args.jobs, args.warmup, args.workers, args.jobs_in_flight
    );
    println!(
        "build: profile {}, opt-level {}, debug assertions {} (every crate optimised: Cargo.toml [profile.dev.package])",
        env!("BENCH_PROFILE"),
        env!("BENCH_OPT_LEVEL"),
        cfg!(debug_assertions)
    );

    let settings = FleetSettings::new(args.jobs_in_flight)
        // Measure the CPU path only, one tenant flooding on purpose.
        .dispatcher_env("BACKLOG_HIGH_WATERMARK", "100000000")
        .dispatcher_env("SUBMIT_RATE_PER_MINUTE", "0")
        .dispatcher_env("MAX_IN_FLIGHT_SCANS", "0");
    let mut fleet =
        ProcessFleet::start(TestEnv::new().await, "bench", args.workers, settings).await;
    let warm = args.warmup as i64;
    end_to_end(&fleet, args.warmup, 0).await;
    let e2e = end_to_end(&fleet, args.jobs, warm).await;
    let drained = workers_only(&mut fleet, args.workers, args.jobs, warm + args.jobs as i64).await;
    let mut latencies = Vec::new();
    for &rate in &args.rates {
        latencies.push(submit_latency(&fleet.api, rate, args.latency_seconds).await);
    }
    let raw = raw_lapin(&fleet.env, args.jobs, args.workers, args.jobs_in_flight).await?;
    fleet.stop().await;

    let env = TestEnv::new().await;
    let celery_pg = celery(&env, "postgres", &args)?;
    let celery_plain = celery(&env, "none", &args)?;
    env.cleanup().await;

    let vs = |r: f64| format!("{:.2}×", r / celery_pg);
    println!();
    println!("| path | jobs/s | vs Celery + PostgreSQL results |");
    println!("|---|---:|---:|");
    println!("| ScanFleet end to end (HTTP submit → PostgreSQL scan + outbox → RabbitMQ → worker process → result row) | {e2e:.0} | {} |", vs(e2e));
    println!("| ScanFleet workers draining a filled queue (result rows in PostgreSQL) | {drained:.0} | {} |", vs(drained));
    println!("| Celery 5.4 + PostgreSQL result backend, publisher confirms (threads ×{}, {} processes) | {celery_pg:.0} | 1.00× |", args.jobs_in_flight, args.workers);
    println!("| Celery 5.4 defaults: no result backend, no confirms (Redis INCR) | {celery_plain:.0} | {} |", vs(celery_plain));
    println!("| raw lapin publish → consume → ack, quorum queue, no database (broker ceiling; not ScanFleet) | {raw:.0} | {} |", vs(raw));
    println!();
    println!(
        "submit latency, {} s per rate, workers in their own processes:",
        args.latency_seconds
    );
    println!("| target req/s | achieved req/s | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|");
    for l in &latencies {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            l.rate,
            l.achieved,
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    match knee(&latencies) {
        Some(rate) => println!(
            "knee: at {rate} req/s (p99 over 3× the lowest rate's, or the rate not kept up)"
        ),
        None => println!(
            "knee: none up to {} req/s",
            args.rates.last().copied().unwrap_or(0)
        ),
    }
    Ok(())
}
