//! bench/routing-sim: a day of traffic through a simulated fleet, routed by
//! the dispatcher's own policy code (`routing::decide` and the backlog
//! `Escalation`), so a user can pick watermarks before changing production.
//!
//! Service times per route (cpu, gpu) and kind (video_scan, item_crop, probe)
//! come from a JSON file (`--service-times`; default
//! `routing-sim/service_times.json`, measured, with the host, date and source
//! of every figure; `routing-sim/service_times_seed001.json` holds seed 001's
//! assumed 50 s CPU / 14 s GPU for comparison). CPU workers cost $0.05/h, GPU
//! workers $0.50/h (seed 001's prices); GPU workers scale from zero with a
//! 20 s cold start and scale back after 5 idle minutes; a GPU scan waiting
//! longer than GPU_MAX_WAIT falls back to CPU. Time advances in 1-second
//! steps, so a service time rounds up to a whole second.
//!
//! Common random numbers: the day's arrivals (time, tier, scan id, kind) come
//! from one seeded stream and each scan's work on either route from another,
//! drawn before any routing, so every policy sees the same arrivals and the
//! same per-scan work.
//!
//! Cost is the fleet's worker-hours × price over the scans finished, so a
//! worker's time is never charged twice however many scans it runs at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use clap::Parser;
use dispatcher::backlog::{Escalation, QueueSample};
use dispatcher::routing::{decide, RoutingMode, RoutingPolicy};
use dispatcher::settings::Watermarks;
use protocol::{Route, ScanKind, Tier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

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
    /// Service times per route and kind (JSON; see the module docs).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/routing-sim/service_times.json"))]
    service_times: std::path::PathBuf,
    /// Share of scans that are video_scan (an assumed mix, not measured).
    #[arg(long, default_value_t = 0.8)]
    video_share: f64,
    /// Share of scans that are probes; the rest are item_crop.
    #[arg(long, default_value_t = 0.0)]
    probe_share: f64,
}

/// One route's or kind's service-time distribution, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
enum Dist {
    Uniform { min_s: f64, max_s: f64 },
    Exponential { mean_s: f64 },
}

impl Dist {
    fn sample(&self, rng: &mut StdRng) -> f64 {
        match *self {
            Dist::Uniform { min_s, max_s } => min_s + (max_s - min_s) * rng.gen::<f64>(),
            Dist::Exponential { mean_s } => exponential(rng, mean_s),
        }
    }

    fn mean(&self) -> f64 {
        match *self {
            Dist::Uniform { min_s, max_s } => (min_s + max_s) / 2.0,
            Dist::Exponential { mean_s } => mean_s,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct KindTimes {
    video_scan: Dist,
    item_crop: Dist,
    probe: Dist,
}

impl KindTimes {
    fn get(&self, kind: ScanKind) -> &Dist {
        match kind {
            ScanKind::VideoScan => &self.video_scan,
            ScanKind::ItemCrop => &self.item_crop,
            ScanKind::Probe => &self.probe,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RouteTimes {
    host: String,
    date: String,
    kinds: KindTimes,
}

#[derive(Debug, Clone, Deserialize)]
struct Routes {
    cpu: RouteTimes,
    gpu: RouteTimes,
}

/// The `--service-times` file.
#[derive(Debug, Clone, Deserialize)]
struct ServiceTimes {
    description: String,
    routes: Routes,
}

impl ServiceTimes {
    fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// One scan of the day, with its work on either route drawn up front.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Arrival {
    at: u64,
    tier: Tier,
    scan_id: uuid::Uuid,
    kind: ScanKind,
    cpu_service_s: u64,
    gpu_service_s: u64,
}

const CPU_PRICE_PER_H: f64 = 0.05;
const GPU_PRICE_PER_H: f64 = 0.50;
const GPU_COLD_START_S: u64 = 20;
const GPU_IDLE_SHUTDOWN_S: u64 = 300;
const DAY_S: u64 = 24 * 3600;

#[derive(Clone, Copy)]
struct Job {
    arrived: u64,
    cpu_service_s: u64,
    gpu_service_s: u64,
    /// Queued on the GPU queue at this second (for the GPU_MAX_WAIT fallback).
    queued_gpu_at: Option<u64>,
    ran_on_gpu: bool,
}

struct Outcome {
    latencies: Vec<f64>,
    /// Still waiting in a queue at the end of the day.
    queued_at_end: usize,
    /// Still running on a worker at the end of the day.
    running_at_end: usize,
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

/// Seed of the service-time stream, derived from `--seed` (the arrival
/// stream uses `--seed` itself).
fn service_seed(seed: u64) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15
}

fn kind_for(args: &Args, u: f64) -> ScanKind {
    if u < args.probe_share {
        ScanKind::Probe
    } else if u < args.probe_share + args.video_share {
        ScanKind::VideoScan
    } else {
        ScanKind::ItemCrop
    }
}

fn service_s(dist: &Dist, rng: &mut StdRng) -> u64 {
    (dist.sample(rng).ceil() as u64).max(1)
}

/// The day's scans: arrivals from one seeded stream, each scan's work on
/// either route from another, independent of any policy.
fn day_arrivals(args: &Args, times: &ServiceTimes) -> Vec<Arrival> {
    let mut arrivals_rng = StdRng::seed_from_u64(args.seed);
    let mut service_rng = StdRng::seed_from_u64(service_seed(args.seed));
    let burst_starts: Vec<u64> = (0..args.bursts)
        .map(|i| (i as u64 + 1) * DAY_S / (args.bursts as u64 + 1))
        .collect();
    let mut arrivals = Vec::new();
    for now in 0..DAY_S {
        let in_burst = burst_starts
            .iter()
            .any(|&start| now >= start && now < start + 20 * 60);
        let rate = args.rate_per_min / 60.0 * if in_burst { args.burst_factor } else { 1.0 };
        for _ in 0..poisson(&mut arrivals_rng, rate) {
            let tier = if arrivals_rng.gen::<f64>() < args.paid_share {
                Tier::Pro
            } else {
                Tier::Free
            };
            let scan_id = uuid_from(&mut arrivals_rng);
            let kind = kind_for(args, arrivals_rng.gen::<f64>());
            arrivals.push(Arrival {
                at: now,
                tier,
                scan_id,
                kind,
                cpu_service_s: service_s(times.routes.cpu.kinds.get(kind), &mut service_rng),
                gpu_service_s: service_s(times.routes.gpu.kinds.get(kind), &mut service_rng),
            });
        }
    }
    arrivals
}

/// Mean CPU service time over the kind mix (what the backlog monitor uses to
/// predict the wait).
fn mean_cpu_service_s(args: &Args, times: &ServiceTimes) -> f64 {
    let kinds = &times.routes.cpu.kinds;
    let item_share = (1.0 - args.video_share - args.probe_share).max(0.0);
    args.video_share * kinds.video_scan.mean()
        + item_share * kinds.item_crop.mean()
        + args.probe_share * kinds.probe.mean()
}

fn simulate(
    args: &Args,
    times: &ServiceTimes,
    arrivals: &[Arrival],
    policy: RoutingPolicy,
    backlog_enabled: bool,
) -> Outcome {
    let cpu_service_mean = mean_cpu_service_s(args, times);
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
    let mut next_arrival = 0;

    for now in 0..DAY_S {
        // Arrivals, routed by the dispatcher's code.
        while let Some(arrival) = arrivals.get(next_arrival).filter(|a| a.at == now) {
            next_arrival += 1;
            let job = Job {
                arrived: now,
                cpu_service_s: arrival.cpu_service_s,
                gpu_service_s: arrival.gpu_service_s,
                queued_gpu_at: None,
                ran_on_gpu: false,
            };
            match decide(
                policy,
                arrival.tier,
                arrival.scan_id,
                escalation.is_escalated(),
            )
            .0
            {
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
                            *slot = Some((
                                now + job.gpu_service_s,
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
                    *slot = Some((now + job.cpu_service_s, job));
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
            cpu_service_time: Some(Duration::from_secs_f64(cpu_service_mean)),
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
    let queued_at_end = cpu_queue.len() + gpu_queue.len();
    let running_at_end =
        cpu_busy_until.iter().flatten().count() + gpu_busy.iter().flatten().count();
    let gpu_share = on_gpu as f64 / latencies.len().max(1) as f64;
    Outcome {
        latencies,
        queued_at_end,
        running_at_end,
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

/// The policies compared, in table order.
fn policies(args: &Args) -> Vec<(&'static str, RoutingPolicy, bool)> {
    let canary_bp = dispatcher::config::percent_to_bp(args.canary_percent);
    vec![
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
    ]
}

/// The table of one simulated day per policy, as printed.
fn table(args: &Args, times: &ServiceTimes) -> String {
    let arrivals = day_arrivals(args, times);
    let mut out = String::new();
    out.push_str("| policy | scans done | queued at end | running at end | p50 s | p99 s | cost/scan $ | GPU share | escalations |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, policy, backlog) in policies(args) {
        let outcome = simulate(args, times, &arrivals, policy, backlog);
        let scans = outcome.latencies.len();
        out.push_str(&format!(
            "| {name} | {scans} | {} | {} | {:.0} | {:.0} | {:.5} | {:.1} % | {} |\n",
            outcome.queued_at_end,
            outcome.running_at_end,
            pct(&outcome.latencies, 0.5),
            pct(&outcome.latencies, 0.99),
            outcome.cost / scans.max(1) as f64,
            outcome.gpu_share * 100.0,
            outcome.escalations
        ));
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let times = ServiceTimes::load(&args.service_times)?;
    println!("service times: {}", args.service_times.display());
    println!("  {}", times.description);
    for (route, rt) in [("cpu", &times.routes.cpu), ("gpu", &times.routes.gpu)] {
        println!(
            "  {route}: {} ({}); mean s: video_scan {:.1}, item_crop {:.3}, probe {:.3}",
            rt.host,
            rt.date,
            rt.kinds.video_scan.mean(),
            rt.kinds.item_crop.mean(),
            rt.kinds.probe.mean()
        );
    }
    println!(
        "mix: video_scan {:.0} %, item_crop {:.0} %, probe {:.0} % (assumed)",
        args.video_share * 100.0,
        (1.0 - args.video_share - args.probe_share).max(0.0) * 100.0,
        args.probe_share * 100.0
    );
    println!(
        "routing-sim: one day, {:.1} scans/min base with {} bursts ×{}, {} CPU workers, {} GPU workers (scale from zero), latency target {} s",
        args.rate_per_min, args.bursts, args.burst_factor, args.cpu_workers, args.gpu_workers, args.latency_target_s
    );
    println!(
        "watermarks: high {} / low {}, hold {} s, GPU_MAX_WAIT {} s, seed {}\n",
        args.high_watermark, args.low_watermark, args.hold_s, args.gpu_max_wait_s, args.seed
    );
    print!("{}", table(&args, &times));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEASURED: &str = include_str!("service_times.json");
    const SEED001: &str = include_str!("service_times_seed001.json");

    fn args(extra: &[&str]) -> Args {
        Args::parse_from(std::iter::once("routing-sim").chain(extra.iter().copied()))
    }

    fn times(text: &str) -> ServiceTimes {
        serde_json::from_str(text).expect("service-times file parses")
    }

    #[test]
    fn both_service_time_files_parse_and_name_their_hosts() {
        for text in [MEASURED, SEED001] {
            let times = times(text);
            assert!(!times.routes.cpu.host.is_empty() && !times.routes.gpu.host.is_empty());
            assert!(!times.routes.cpu.date.is_empty() && !times.routes.gpu.date.is_empty());
        }
        // Measured: a 600-frame video_scan on the H200 takes 21-27 s, not the seed's 14 s.
        let measured = times(MEASURED);
        let gpu_video = measured.routes.gpu.kinds.video_scan.mean();
        assert!((21.0..=28.0).contains(&gpu_video), "{gpu_video}");
    }

    #[test]
    fn same_seed_gives_the_same_table() {
        let one = args(&["--rate-per-min", "1.0"]);
        let other_seed = args(&["--rate-per-min", "1.0", "--seed", "7"]);
        let times = times(MEASURED);
        assert_eq!(table(&one, &times), table(&one, &times));
        assert_ne!(table(&one, &times), table(&other_seed, &times));
    }

    #[test]
    fn arrivals_do_not_depend_on_service_times_or_policy() {
        // The arrival stream is the same whatever the service-time file (and
        // so whatever any policy does with the scans).
        let args = args(&[]);
        let measured = day_arrivals(&args, &times(MEASURED));
        let seed = day_arrivals(&args, &times(SEED001));
        assert!(!measured.is_empty());
        let key = |a: &Arrival| (a.at, a.tier, a.scan_id, a.kind);
        assert_eq!(
            measured.iter().map(key).collect::<Vec<_>>(),
            seed.iter().map(key).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_policy_sees_the_same_scans() {
        // Every policy finishes or still holds every arrival, each exactly once.
        let args = args(&["--rate-per-min", "1.0"]);
        let times = times(MEASURED);
        let arrivals = day_arrivals(&args, &times);
        for (name, policy, backlog) in policies(&args) {
            let outcome = simulate(&args, &times, &arrivals, policy, backlog);
            assert_eq!(
                outcome.latencies.len() + outcome.queued_at_end + outcome.running_at_end,
                arrivals.len(),
                "{name}"
            );
        }
        // Draws are per scan, before routing: redrawing gives the same work.
        assert_eq!(arrivals, day_arrivals(&args, &times));
    }

    #[test]
    fn an_overloaded_day_leaves_scans_queued() {
        let args = args(&["--rate-per-min", "20", "--cpu-workers", "1"]);
        let times = times(MEASURED);
        let arrivals = day_arrivals(&args, &times);
        let cpu_only = &policies(&args)[0];
        let outcome = simulate(&args, &times, &arrivals, cpu_only.1, cpu_only.2);
        assert!(outcome.queued_at_end > 0);
    }
}
