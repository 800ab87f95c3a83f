//! bench/routing-sim: a day of traffic through a simulated fleet, routed by
//! the dispatcher's own policy code (`routing::decide` and the backlog
//! `Escalation`), so a user can pick watermarks before changing production.
//!
//! Model (seed 001): CPU scans take 50 s on average at $0.05/h per worker,
//! GPU scans 14 s at $0.50/h; GPU workers scale from zero with a 20 s cold
//! start and scale back after 5 idle minutes; a GPU scan waiting longer than
//! GPU_MAX_WAIT falls back to CPU. Time advances in 1-second steps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use clap::Parser;
use dispatcher::backlog::{Escalation, QueueSample};
use dispatcher::routing::{decide, RoutingMode, RoutingPolicy};
use dispatcher::settings::Watermarks;
use protocol::{Route, Tier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
struct Args {
    /// Mean arrivals per minute outside bursts.
    #[arg(long, default_value_t = 2.0)]
    rate_per_min: f64,
    /// Bursts per day, each 20 minutes at `burst_factor` × the base rate.
    #[arg(long, default_value_t = 4)]
    bursts: u32,
    #[arg(long, default_value_t = 5.0)]
    burst_factor: f64,
    #[arg(long, default_value_t = 4)]
    cpu_workers: usize,
    /// GPU workers started when the GPU queue is non-empty.
    #[arg(long, default_value_t = 2)]
    gpu_workers: usize,
    /// Share of scans from pro/premium tenants.
    #[arg(long, default_value_t = 0.1)]
    paid_share: f64,
    #[arg(long, default_value_t = 10.0)]
    canary_percent: f64,
    #[arg(long, default_value_t = 10)]
    high_watermark: u64,
    #[arg(long, default_value_t = 3)]
    low_watermark: u64,
    #[arg(long, default_value_t = 120)]
    latency_target_s: u64,
    #[arg(long, default_value_t = 30)]
    hold_s: u64,
    #[arg(long, default_value_t = 120)]
    gpu_max_wait_s: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const CPU_SERVICE_S: f64 = 50.0;
const GPU_SERVICE_S: f64 = 14.0;
const CPU_PRICE_PER_H: f64 = 0.05;
const GPU_PRICE_PER_H: f64 = 0.50;
const GPU_COLD_START_S: u64 = 20;
const GPU_IDLE_SHUTDOWN_S: u64 = 300;
const DAY_S: u64 = 24 * 3600;

#[derive(Clone, Copy)]
struct Job {
    arrived: u64,
    /// Queued on the GPU queue at this second (for the GPU_MAX_WAIT fallback).
    queued_gpu_at: Option<u64>,
    ran_on_gpu: bool,
}

struct Outcome {
    latencies: Vec<f64>,
    cost: f64,
    gpu_share: f64,
    escalations: u32,
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    // Knuth's method; means here are well below 1 per step.
    let limit = (-mean).exp();
    let (mut k, mut p) = (0, 1.0);
    loop {
        p *= rng.gen::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn simulate(args: &Args, policy: RoutingPolicy, backlog_enabled: bool) -> Outcome {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let burst_starts: Vec<u64> = (0..args.bursts)
        .map(|i| (i as u64 + 1) * DAY_S / (args.bursts as u64 + 1))
        .collect();
    let marks = Watermarks {
        high_depth: if backlog_enabled {
            args.high_watermark
        } else {
            u64::MAX
        },
        latency_target: if backlog_enabled {
            Duration::from_secs(args.latency_target_s)
        } else {
            Duration::MAX
        },
        low_depth: args.low_watermark,
        hold: Duration::from_secs(args.hold_s),
    };
    let epoch = Instant::now();
    let mut escalation = Escalation::default();
    let mut escalations = 0;
    let (mut cpu_queue, mut gpu_queue) = (VecDeque::<Job>::new(), VecDeque::<Job>::new());
    let mut cpu_busy_until: Vec<Option<(u64, Job)>> = vec![None; args.cpu_workers];
    // GPU workers: (up since, ready at, busy until + job, idle since).
    let mut gpu_up_at: Option<u64> = None;
    let mut gpu_busy: Vec<Option<(u64, Job)>> = vec![None; args.gpu_workers];
    let mut gpu_idle_since: Option<u64> = None;
    let mut gpu_seconds = 0u64;
    let mut latencies = Vec::new();
    let mut on_gpu = 0usize;

    for now in 0..DAY_S {
        // Arrivals, routed by the dispatcher's code.
        let in_burst = burst_starts
            .iter()
            .any(|&start| now >= start && now < start + 20 * 60);
        let rate = args.rate_per_min / 60.0 * if in_burst { args.burst_factor } else { 1.0 };
        for _ in 0..poisson(&mut rng, rate) {
            let tier = if rng.gen::<f64>() < args.paid_share {
                Tier::Pro
            } else {
                Tier::Free
            };
            let scan_id = uuid_from(&mut rng);
            let job = Job {
                arrived: now,
                queued_gpu_at: None,
                ran_on_gpu: false,
            };
            match decide(policy, tier, scan_id, escalation.is_escalated()).0 {
                Route::Cpu => cpu_queue.push_back(job),
                Route::Gpu => gpu_queue.push_back(Job {
                    queued_gpu_at: Some(now),
                    ..job
                }),
            }
        }
        // GPU_MAX_WAIT: stranded GPU work falls back to CPU.
        while gpu_queue
            .front()
            .is_some_and(|job| now - job.queued_gpu_at.unwrap_or(now) > args.gpu_max_wait_s)
        {
            let job = gpu_queue.pop_front().expect("checked");
            cpu_queue.push_back(job);
        }
        // KEDA: scale GPU workers from zero when work waits, back to zero when idle.
        if gpu_up_at.is_none() && !gpu_queue.is_empty() {
            gpu_up_at = Some(now);
        }
        if let Some(up) = gpu_up_at {
            gpu_seconds += args.gpu_workers as u64;
            let ready = now >= up + GPU_COLD_START_S;
            let idle = gpu_busy.iter().all(Option::is_none) && gpu_queue.is_empty();
            if ready && idle {
                let since = *gpu_idle_since.get_or_insert(now);
                if now - since >= GPU_IDLE_SHUTDOWN_S {
                    gpu_up_at = None;
                    gpu_idle_since = None;
                }
            } else {
                gpu_idle_since = None;
            }
            if ready {
                for slot in gpu_busy.iter_mut() {
                    if slot.is_some_and(|(until, _)| until <= now) {
                        let (_, job) = slot.take().expect("checked");
                        latencies.push((now - job.arrived) as f64);
                        on_gpu += job.ran_on_gpu as usize;
                    }
                    if slot.is_none() {
                        if let Some(job) = gpu_queue.pop_front() {
                            let service = exponential(&mut rng, GPU_SERVICE_S).ceil() as u64;
                            *slot = Some((
                                now + service.max(1),
                                Job {
                                    ran_on_gpu: true,
                                    ..job
                                },
                            ));
                        }
                    }
                }
            }
        }
        for slot in cpu_busy_until.iter_mut() {
            if slot.is_some_and(|(until, _)| until <= now) {
                let (_, job) = slot.take().expect("checked");
                latencies.push((now - job.arrived) as f64);
            }
            if slot.is_none() {
                if let Some(job) = cpu_queue.pop_front() {
                    let service = exponential(&mut rng, CPU_SERVICE_S).ceil() as u64;
                    *slot = Some((now + service.max(1), job));
                }
            }
        }
        // The backlog monitor's once-a-second sample.
        let sample = QueueSample {
            cpu_depth: cpu_queue.len() as u64,
            cpu_consumers: args.cpu_workers as u64,
            gpu_depth: gpu_queue.len() as u64,
            gpu_consumers: if gpu_up_at.is_some() {
                args.gpu_workers as u64
            } else {
                0
            },
            cpu_service_time: Some(Duration::from_secs_f64(CPU_SERVICE_S)),
            ..Default::default()
        };
        if escalation.observe(&sample, &marks, epoch + Duration::from_secs(now))
            && escalation.is_escalated()
        {
            escalations += 1;
        }
    }
    let cost = args.cpu_workers as f64 * 24.0 * CPU_PRICE_PER_H
        + gpu_seconds as f64 / 3600.0 * GPU_PRICE_PER_H;
    latencies.sort_by(f64::total_cmp);
    let gpu_share = on_gpu as f64 / latencies.len().max(1) as f64;
    Outcome {
        latencies,
        cost,
        gpu_share,
        escalations,
    }
}

fn uuid_from(rng: &mut StdRng) -> uuid::Uuid {
    uuid::Uuid::from_u128(rng.gen())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args = Args::parse();
    let canary_bp = dispatcher::config::percent_to_bp(args.canary_percent);
    let policies = [
        (
            "cpu-only",
            RoutingPolicy {
                mode: RoutingMode::Cpu,
                canary_bp: 0,
            },
            false,
        ),
        (
            "gpu-only",
            RoutingPolicy {
                mode: RoutingMode::Gpu,
                canary_bp: 0,
            },
            false,
        ),
        (
            "tier",
            RoutingPolicy {
                mode: RoutingMode::Auto,
                canary_bp: 0,
            },
            false,
        ),
        (
            "canary",
            RoutingPolicy {
                mode: RoutingMode::Auto,
                canary_bp,
            },
            false,
        ),
        (
            "auto (tier + backlog)",
            RoutingPolicy {
                mode: RoutingMode::Auto,
                canary_bp: 0,
            },
            true,
        ),
    ];
    println!(
        "routing-sim: one day, {:.1} scans/min base with {} bursts ×{}, {} CPU workers, {} GPU workers (scale from zero), latency target {} s",
        args.rate_per_min, args.bursts, args.burst_factor, args.cpu_workers, args.gpu_workers, args.latency_target_s
    );
    println!(
        "watermarks: high {} / low {}, hold {} s, GPU_MAX_WAIT {} s\n",
        args.high_watermark, args.low_watermark, args.hold_s, args.gpu_max_wait_s
    );
    println!("| policy | scans | p50 s | p99 s | cost/scan $ | GPU share | escalations |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, policy, backlog) in policies {
        let outcome = simulate(&args, policy, backlog);
        let scans = outcome.latencies.len();
        println!(
            "| {name} | {scans} | {:.0} | {:.0} | {:.5} | {:.1} % | {} |",
            pct(&outcome.latencies, 0.5),
            pct(&outcome.latencies, 0.99),
            outcome.cost / scans.max(1) as f64,
            outcome.gpu_share * 100.0,
            outcome.escalations
        );
    }
}
