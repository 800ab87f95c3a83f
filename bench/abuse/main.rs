//! bench/abuse: the dispatcher (its own process, the optimised build the
//! benchmarks share) under the attacks issue 26 names, with the figures an
//! operator sizes a pod by. Three scenarios, one after the other:
//!
//! 1. **Flood.** A steady tenant submits below its rate limit, alone and then
//!    while a noisy tenant of the same tier submits at 10× the limit. The
//!    steady tenant must see no `429`; its submit p50/p99 are printed
//!    against the unloaded run (the goal: p99 within 2×).
//! 2. **Slow uploads.** 20 clients each stream a 200 MiB upload at a slow,
//!    steady pace. Every upload must succeed; the dispatcher's resident
//!    memory is sampled throughout (peak RSS printed; uploads are streamed
//!    to the blob store, never held whole).
//! 3. **Hostile webhook receiver.** 64 deliveries at once to a receiver that
//!    answers 200 and then streams an endless body: peak RSS again, and
//!    every attempt must be recorded with at most 1 KiB of the reply kept.
//!
//! Exits non-zero when a correctness check fails. Times are printed, never
//! asserted: `cargo run -p scanfleet-bench --bin abuse [-- --short]`.

use std::time::{Duration, Instant};

use clap::Parser;
use harness::processes::{FleetSettings, ProcessFleet};
use harness::{Api, TestEnv};
use protocol::Tier;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
struct Args {
    /// Fewer requests and smaller uploads (a smoke run, not the figures).
    #[arg(long)]
    short: bool,
}

/// The steady tenant's rate limit (per minute) and pace.
const SUBMITS_PER_MINUTE: u32 = 1200;
const STEADY_PER_SECOND: f64 = 8.0;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Clients and the receiver on two threads; the dispatcher is its own process.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = FleetSettings::new(1)
        .dispatcher_env("SUBMIT_RATE_PER_MINUTE", SUBMITS_PER_MINUTE.to_string())
        .dispatcher_env("UPLOAD_RATE_PER_MINUTE", "0")
        // No worker runs: scans pile up, and escalation is not measured here.
        .dispatcher_env("MAX_IN_FLIGHT_SCANS", "0")
        .dispatcher_env("BACKLOG_HIGH_WATERMARK", "100000000")
        .dispatcher_env("WEBHOOK_PER_ENDPOINT", "64")
        .dispatcher_env("WEBHOOK_MAX_IN_FLIGHT", "64")
        .dispatcher_env("WEBHOOK_TIMEOUT", "5s")
        .dispatcher_env("WEBHOOK_SCHEDULE", "0s");
    let fleet = ProcessFleet::start(TestEnv::new().await, "steady", 0, settings).await;
    let pid = fleet.dispatcher_pid().expect("dispatcher running");
    let base = format!("http://127.0.0.1:{}", fleet.port);
    let mut failures = Vec::new();
    println!(
        "bench/abuse: dispatcher pid {pid} (profile {}, opt-level {}), client runtime 2 threads, {} cores",
        env!("BENCH_PROFILE"),
        env!("BENCH_OPT_LEVEL"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| scenario | figure | value |");
    println!("|---|---|---:|");
    let rss_start = memory(pid);
    row("start", "dispatcher RSS (MiB)", mib(rss_start.rss_kb));

    // 1. Flood.
    let seconds = if args.short { 5.0 } else { 25.0 };
    let alone = steady_submits(&fleet.api, seconds).await;
    let noisy = Api::new(&base, &fleet.env.api_key("noisy", Tier::Free).await);
    let flood_rate = 10.0 * SUBMITS_PER_MINUTE as f64 / 60.0;
    let flooding = tokio::spawn(flood(noisy, flood_rate, seconds));
    let loaded = steady_submits(&fleet.api, seconds).await;
    let (noisy_accepted, noisy_refused) = flooding.await?;
    row("flood", "steady alone p50 / p99 (ms)", alone.p50_p99());
    row(
        "flood",
        "steady during the flood p50 / p99 (ms)",
        loaded.p50_p99(),
    );
    row(
        "flood",
        "steady p99 ratio, flood / alone (goal ≤ 2)",
        format!("{:.2}", loaded.p99() / alone.p99()),
    );
    row(
        "flood",
        "steady refused (429) alone / during the flood",
        format!("{} / {}", alone.refused, loaded.refused),
    );
    row(
        "flood",
        &format!("noisy at {flood_rate:.0}/s: accepted / refused (429)"),
        format!("{noisy_accepted} / {noisy_refused}"),
    );
    if alone.refused + loaded.refused > 0 {
        failures.push("the steady tenant was refused".to_string());
    }

    // 2. Slow uploads.
    let (clients, size_mib) = if args.short { (4, 16) } else { (20, 200) };
    let uploader = fleet.env.api_key("uploader", Tier::Free).await;
    let before = memory(pid).rss_kb;
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let uploads = futures::future::join_all(
        (0..clients)
            .map(|_| slow_upload(&base, &uploader, size_mib << 20, Duration::from_secs(25))),
    )
    .await;
    let uploaded = uploads.iter().filter(|&&status| status == 201).count();
    let peak = sampler.stop().await;
    row(
        "slow uploads",
        &format!(
            "{clients} × {size_mib} MiB at ~{} MiB/s each: succeeded",
            size_mib / 25
        ),
        format!(
            "{uploaded} / {clients} in {:.0} s",
            started.elapsed().as_secs_f64()
        ),
    );
    row(
        "slow uploads",
        "dispatcher RSS before → peak during (MiB)",
        format!("{} → {}", mib(before), mib(peak)),
    );
    if uploaded != clients {
        failures.push(format!("uploads answered {uploads:?}"));
    }

    // 3. Hostile webhook receiver.
    let (receiver, streamed) = endless_receiver().await;
    let hooks = if args.short { 16 } else { 64 };
    let victim = Api::new(&base, &fleet.env.api_key("victim", Tier::Free).await);
    let registered = victim
        .post("/v1/webhook-endpoints")
        .json(&json!({ "url": receiver }))
        .send()
        .await?;
    if registered.status() != 201 {
        failures.push(format!("endpoint refused: {}", registered.status()));
    }
    let before = memory(pid).rss_kb;
    let sampler = RssSampler::start(pid);
    for _ in 0..hooks {
        // A canceled scan is an event: each queues one delivery.
        let id = victim.submit(json!({"kind": "probe"})).await;
        victim.delete(&format!("/v1/scans/{id}")).send().await?;
    }
    let attempts = wait_for_attempts(&fleet.env, hooks).await;
    let peak = sampler.stop().await;
    let longest_kept: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(octet_length(response_body)), 0)::bigint FROM webhook_attempts",
    )
    .fetch_one(&fleet.env.pool)
    .await?;
    row(
        "endless webhook reply",
        &format!("{hooks} deliveries: attempts recorded"),
        attempts.to_string(),
    );
    row(
        "endless webhook reply",
        "bytes the receiver pushed into its sockets (MiB)",
        format!(
            "{:.1}",
            streamed.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0
        ),
    );
    row(
        "endless webhook reply",
        "longest reply kept (bytes)",
        longest_kept.to_string(),
    );
    row(
        "endless webhook reply",
        "dispatcher RSS before → peak during (MiB)",
        format!("{} → {}", mib(before), mib(peak)),
    );
    // 1 KiB of the reply, plus the "…" that marks it as cut.
    if attempts < hooks as i64 || longest_kept > 1024 + '…'.len_utf8() as i64 {
        failures.push(format!("{attempts} attempts, {longest_kept} bytes kept"));
    }
    let end = memory(pid);
    row(
        "end",
        "dispatcher RSS / lifetime peak (VmHWM) (MiB)",
        format!("{} / {}", mib(end.rss_kb), mib(end.hwm_kb)),
    );

    fleet.stop().await;
    if failures.is_empty() {
        println!("\nall checks passed");
        Ok(())
    } else {
        anyhow::bail!("failed: {failures:?}")
    }
}

fn row(scenario: &str, figure: &str, value: impl std::fmt::Display) {
    println!("| {scenario} | {figure} | {value} |");
}

fn mib(kb: u64) -> String {
    format!("{:.0}", kb as f64 / 1024.0)
}

/// Latencies of one tenant's paced submissions.
struct Latencies {
    ms: Vec<f64>,
    refused: usize,
}

impl Latencies {
    fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    fn p99(&self) -> f64 {
        self.quantile(0.99)
    }

    fn p50_p99(&self) -> String {
        format!("{:.1} / {:.1}", self.quantile(0.5), self.p99())
    }
}

/// Submits at `STEADY_PER_SECOND` for `seconds`, one request at a time.
async fn steady_submits(api: &Api, seconds: f64) -> Latencies {
    let count = (seconds * STEADY_PER_SECOND) as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / STEADY_PER_SECOND));
    let mut latencies = Latencies {
        ms: Vec::with_capacity(count),
        refused: 0,
    };
    for _ in 0..count {
        ticks.tick().await;
        let sent = Instant::now();
        let response = api
            .post("/v1/scans")
            .json(&json!({"kind": "probe"}))
            .send()
            .await
            .expect("the dispatcher answers");
        latencies.ms.push(sent.elapsed().as_secs_f64() * 1e3);
        if response.status() == 429 {
            latencies.refused += 1;
        }
    }
    latencies
}

/// Submits at `rate` per second for `seconds` without waiting for answers
/// (an open-loop flood); returns (accepted, refused).
async fn flood(api: Api, rate: f64, seconds: f64) -> (usize, usize) {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut sent = tokio::task::JoinSet::new();
    for _ in 0..(rate * seconds) as usize {
        ticks.tick().await;
        let request = api.post("/v1/scans").json(&json!({"kind": "probe"}));
        sent.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(done) = sent.join_next().await {
        match done {
            Ok(Ok(202)) => accepted += 1,
            Ok(Ok(429)) => refused += 1,
            _ => {}
        }
    }
    (accepted, refused)
}

/// Streams `size` bytes as one upload over `over`, in 256 KiB writes;
/// returns the status code.
async fn slow_upload(base: &str, key: &str, size: usize, over: Duration) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![0x5au8; 256 * 1024];
    let writes = size.div_ceil(chunk.len());
    let mut ticks = tokio::time::interval(over / writes as u32);
    let mut left = size;
    while left > 0 {
        ticks.tick().await;
        let n = left.min(chunk.len());
        if stream.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        left -= n;
    }
    let mut answer = vec![0u8; 512];
    let n = stream.read(&mut answer).await.unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A receiver on 127.0.0.1 that answers every request `200` with an
/// endless chunked body; returns its URL and a count of bytes it sent.
async fn endless_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let streamed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = streamed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 64 * 1024];
                // The head and the small JSON body arrive in the first reads.
                let _ = socket.read(&mut request).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head).await.is_err() {
                    return;
                }
                let chunk = [
                    format!("{:x}\r\n", 64 * 1024).into_bytes(),
                    vec![b'x'; 64 * 1024],
                    b"\r\n".to_vec(),
                ]
                .concat();
                while socket.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (url, streamed)
}

async fn wait_for_attempts(env: &TestEnv, at_least: usize) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let attempts = env.count("SELECT count(*) FROM webhook_attempts").await;
        if attempts >= at_least as i64 || Instant::now() > deadline {
            return attempts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

/// VmRSS and VmHWM (peak) of a process, from /proc.
fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    }
}

/// Samples a process's RSS every 100 ms until stopped; returns the peak
/// (VmHWM is the lifetime peak, so a window's peak needs sampling).
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(memory(pid).rss_kb);
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        RssSampler { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}
