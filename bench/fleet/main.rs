//! bench/fleet: ScanFleet's end-to-end probe throughput and its queue-only
//! throughput, against the same no-op job on Celery 5, measured in one run on
//! this machine with the same broker. Prints jobs/s, the ratio, and submit
//! latency percentiles at a fixed request rate.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use harness::{Api, Dispatcher, TestEnv, Worker};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use protocol::Tier;
use serde_json::json;
use worker::config::QueueChoice;

#[derive(Debug, Parser)]
struct Args {
    /// Jobs per measured run.
    #[arg(long, default_value_t = 3000)]
    jobs: usize,
    /// Worker processes (ScanFleet workers; Celery prefork children).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Unacknowledged messages per worker (MAX_CONCURRENT_JOBS; Celery's prefetch multiplier).
    #[arg(long, default_value_t = 16)]
    prefetch: u16,
    /// Requests per second for the submit-latency run.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 5)]
    latency_seconds: u32,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
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

async fn end_to_end(env: &TestEnv, api: &Api, jobs: usize, already: i64) -> f64 {
    let started = Instant::now();
    futures::stream::iter(0..jobs)
        .map(|_| api.submit(json!({"kind": "probe"})))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    wait_succeeded(env, already + jobs as i64).await;
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// Publish→consume→ack with the fleet's durability (quorum queue, persistent
/// messages, publisher confirms, manual acks), no database.
async fn queue_only(
    env: &TestEnv,
    jobs: usize,
    workers: usize,
    prefetch: u16,
) -> anyhow::Result<f64> {
    let queue = "bench.queue-only";
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
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(jobs);
    for _ in 0..jobs {
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
    for _ in 0..jobs {
        done_rx.recv().await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    for consumer in consumers {
        consumer.abort();
    }
    Ok(rate)
}

fn celery(env: &TestEnv, jobs: usize, workers: usize, prefetch: u16) -> anyhow::Result<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fleet/celery_peer.py");
    let python = std::env::var("SCANFLEET_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/scanfleet-venv")
        })
        .join("bin/python");
    let output = std::process::Command::new(python)
        .args([
            script,
            &env.amqp_url,
            "15",
            &jobs.to_string(),
            &workers.to_string(),
            &prefetch.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "celery peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(result["jobs_per_s"].as_f64().unwrap_or_default())
}

async fn submit_latency(api: &Api, rate: u32, seconds: u32) -> Vec<Duration> {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
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
    latencies.sort();
    latencies
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // Per-scan info lines would cost more than the scans themselves.
        std::env::set_var("RUST_LOG", "warn");
    }
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.backlog_high_watermark = u64::MAX / 2; // measure the CPU path only
    config.backlog_low_watermark = 0;
    let dispatcher = Dispatcher::start(config).await;
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let mut worker_config = env.worker_config(QueueChoice::Cpu, &format!("bench-{i}"));
        worker_config.max_concurrent_jobs = args.prefetch;
        workers.push(Worker::start(worker_config).await);
    }
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("bench", Tier::Free).await,
    );

    println!(
        "bench/fleet: {} jobs, {} workers, prefetch {} per worker, 2-core machine",
        args.jobs, args.workers, args.prefetch
    );
    end_to_end(&env, &api, 100, 0).await; // warm-up
    let e2e = end_to_end(&env, &api, args.jobs, 100).await;
    let latencies = submit_latency(&api, args.rate, args.latency_seconds).await;
    let queue = queue_only(&env, args.jobs, args.workers, args.prefetch).await?;
    for worker in workers {
        worker.stop().await;
    }
    dispatcher.stop().await;
    let peer = celery(&env, args.jobs, args.workers, args.prefetch)?;
    env.cleanup().await;

    println!();
    println!("| path | jobs/s | vs Celery |");
    println!("|---|---:|---:|");
    println!("| ScanFleet end to end (HTTP submit → Postgres + outbox → RabbitMQ → worker → result in Postgres) | {e2e:.0} | {:.2}× |", e2e / peer);
    println!("| ScanFleet queue only (quorum queue, persistent, confirms, manual ack) | {queue:.0} | {:.2}× |", queue / peer);
    println!(
        "| Celery 5.4 no-op (RabbitMQ, persistent, acks_late, prefork ×{}) | {peer:.0} | 1.00× |",
        args.workers
    );
    println!();
    println!(
        "submit latency at {} req/s for {} s: p50 {:.1} ms, p99 {:.1} ms ({} requests)",
        args.rate,
        args.latency_seconds,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
    Ok(())
}
