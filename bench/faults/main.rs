//! bench/faults: the fault-and-load suite. Each scenario streams probe scans
//! through real processes (dispatcher and worker binaries, RabbitMQ,
//! PostgreSQL, a webhook receiver) while something fails, then checks that
//! every accepted scan succeeded exactly once with exactly one webhook
//! delivery, and that poison messages were dead-lettered. Prints one table
//! and, below it, what failed; exits non-zero if anything did.
//!
//! It stops and restarts the machine's RabbitMQ and PostgreSQL, so it runs on
//! its own (scripts/test runs `--short` after the parallel test suite). The
//! cluster scenario runs its own 3-node RabbitMQ cluster beside the system
//! broker (see cluster.rs).

mod cluster;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use harness::processes::{FleetSettings, ProcessFleet};
use harness::{Api, Receiver, TestEnv};
use lapin::options::BasicPublishOptions;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Shortened run for the test command (fewer scans per scenario).
    #[arg(long)]
    short: bool,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

/// The fleet under test, as separate processes.
async fn start_fleet(env: TestEnv, workers: usize) -> ProcessFleet {
    let settings = FleetSettings::new(8)
        .dispatcher_env("WEBHOOK_SCHEDULE", "0s,200ms,500ms,1s,2s,4s,8s,10s,10s,10s")
        .dispatcher_env("WEBHOOK_POLL", "50ms")
        // A killed dispatcher's leased deliveries are retaken when the lease
        // (2 × timeout + 10 s) runs out.
        .dispatcher_env("WEBHOOK_TIMEOUT", "2s")
        .dispatcher_env("BACKLOG_HIGH_WATERMARK", "100000000")
        // This suite floods one tenant on purpose; it measures faults, not fairness.
        .dispatcher_env("SUBMIT_RATE_PER_MINUTE", "0")
        .dispatcher_env("UPLOAD_RATE_PER_MINUTE", "0")
        .dispatcher_env("MAX_IN_FLIGHT_SCANS", "0");
    ProcessFleet::start(env, "faults", workers, settings).await
}

/// Submits with an idempotency key and retries until accepted: a client that
/// gets no answer (dispatcher down) resubmits the same key.
async fn submit_until_accepted(api: &Api, key: String, body: serde_json::Value) -> String {
    loop {
        let response = api
            .post("/v1/scans")
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        if let Ok(response) = response {
            if response.status() == 202 {
                let accepted: serde_json::Value = response.json().await.unwrap();
                return accepted["id"].as_str().unwrap().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Undecodable messages the poison scenario publishes straight onto the CPU
/// queue. They are no scans: nothing accepted stands for them.
const POISON_MESSAGES: i64 = 5;
const POISON_SCENARIO: &str = "poison messages on the queue";
const CLUSTER_SCENARIO: &str = "RabbitMQ cluster loses a node, then another";
/// Submissions per second in the cluster scenario, which streams scans for
/// as long as its nodes are being stopped and started rather than a fixed
/// number: the losses must happen mid-burst.
const CLUSTER_SUBMIT_RATE: u64 = 20;

/// Duplicate webhook deliveries are allowed only where at-least-once makes
/// them expected: when the receiver has answered but the attempt cannot be
/// recorded — the dispatcher killed, or PostgreSQL gone — the delivery is
/// sent again once its lease runs out, with the same `webhook-id` (receivers
/// deduplicate on it). Only the same id counts as a duplicate here, and
/// everywhere else one is a defect.
fn duplicate_webhooks_allowed(scenario: &str) -> bool {
    matches!(
        scenario,
        "dispatcher SIGKILL during relay and delivery" | "PostgreSQL restarted"
    )
}

struct Row {
    scenario: &'static str,
    accepted: usize,
    succeeded: i64,
    /// Failed scans, by error code ("0" when none).
    failed: String,
    lost: i64,
    duplicate_results: i64,
    webhooks_missing: usize,
    duplicate_webhooks: usize,
    /// Poison messages the dead-letter watcher saw on `scans.dead`, of those
    /// published (poison scenario only).
    poison_dead_lettered: Option<(i64, i64)>,
    /// Each RabbitMQ node lost (cluster scenario only).
    node_losses: Vec<cluster::NodeLoss>,
    seconds: f64,
}

impl Row {
    /// What went wrong in this scenario; empty when it passed.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let not_succeeded = self.accepted as i64 - self.succeeded;
        if not_succeeded != 0 {
            problems.push(format!(
                "{not_succeeded} of {} accepted scans did not succeed (failed: {})",
                self.accepted, self.failed
            ));
        }
        if self.lost != 0 {
            problems.push(format!(
                "{} accepted scans never reached a final state",
                self.lost
            ));
        }
        if self.duplicate_results != 0 {
            problems.push(format!("{} duplicate results", self.duplicate_results));
        }
        if self.webhooks_missing != 0 {
            problems.push(format!(
                "{} scan.succeeded webhooks missing",
                self.webhooks_missing
            ));
        }
        if self.duplicate_webhooks != 0 && !duplicate_webhooks_allowed(self.scenario) {
            problems.push(format!(
                "{} duplicate webhook deliveries",
                self.duplicate_webhooks
            ));
        }
        if let Some((seen, published)) = self.poison_dead_lettered {
            if seen != published {
                problems.push(format!(
                    "{seen} of {published} poison messages reached the dead-letter queue"
                ));
            }
        }
        for loss in &self.node_losses {
            if loss.recovery.is_none() {
                problems.push(format!(
                    "no scan taken up after node {} was lost ever finished",
                    loss.node
                ));
            }
        }
        problems
    }
}

/// Undecodable messages the dispatcher's dead-letter watcher has taken off
/// `scans.dead`, from its metrics.
async fn undecodable_dead_lettered(port: u16) -> i64 {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(r#"scanfleet_scans_dead_lettered_total{reason="undecodable"} "#)
        })
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as i64)
}

fn shell(command: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .expect("sh");
    assert!(status.success(), "`{command}` failed");
}

fn postgres_cluster() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut versions| versions.next())
        .and_then(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| "15".into())
}

async fn run(scenario: &'static str, scans: usize, hold_ms: u64, short: bool) -> Row {
    let started = Instant::now();
    let mut env = TestEnv::new().await;
    // The cluster is its own broker: its default vhost is this scenario's
    // alone, and the system broker's other users never see it.
    let rabbit_cluster = (scenario == CLUSTER_SCENARIO)
        .then(|| tokio::task::block_in_place(cluster::Cluster::start));
    if let Some(rabbit_cluster) = &rabbit_cluster {
        env.amqp_url = rabbit_cluster.urls.clone();
    }
    let mut fleet = start_fleet(env, 2).await;
    let receiver_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let response = fleet
        .api
        .post("/v1/webhook-endpoints")
        .json(&json!({"url": format!("http://127.0.0.1:{receiver_port}/hook")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let receiver_down_for_run = scenario == "webhook receiver down, then up";
    let receiver = if receiver_down_for_run {
        None
    } else {
        Some(Receiver::start_on(receiver_port, vec![]).await)
    };

    let api = fleet.api.clone();
    let body = json!({"kind": "probe", "params": {"hold_ms": hold_ms}});
    let fault_over = Arc::new(AtomicBool::new(false));
    let submissions = if scenario == CLUSTER_SCENARIO {
        let fault_over = fault_over.clone();
        tokio::spawn(async move {
            let pace = tokio::time::interval(Duration::from_millis(1000 / CLUSTER_SUBMIT_RATE));
            futures::stream::unfold((0usize, pace), |(i, mut pace)| async move {
                pace.tick().await;
                Some((i, (i + 1, pace)))
            })
            .take_while(|_| std::future::ready(!fault_over.load(Ordering::Relaxed)))
            .map(|i| submit_until_accepted(&api, format!("fault-{i}"), body.clone()))
            .buffer_unordered(16)
            .collect::<Vec<String>>()
            .await
        })
    } else {
        tokio::spawn(async move {
            futures::stream::iter(0..scans)
                .map(|i| submit_until_accepted(&api, format!("fault-{i}"), body.clone()))
                .buffer_unordered(16)
                .collect::<Vec<String>>()
                .await
        })
    };

    // The fault, while scans stream in.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut node_stops = Vec::new();
    match scenario {
        "worker SIGKILL mid-scan, repeatedly" => {
            for _ in 0..8 {
                fleet.replace_a_worker().await;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        "RabbitMQ restarted (stop_app/start_app)" => {
            shell("rabbitmqctl -q stop_app");
            tokio::time::sleep(Duration::from_secs(3)).await;
            shell("rabbitmqctl -q start_app");
        }
        "PostgreSQL restarted" => {
            shell(&format!(
                "pg_ctlcluster --skip-systemctl-redirect {} main restart",
                postgres_cluster()
            ));
        }
        "dispatcher SIGKILL during relay and delivery" => {
            for _ in 0..3 {
                fleet.kill_dispatcher().await;
                tokio::time::sleep(Duration::from_millis(700)).await;
                fleet.start_dispatcher().await;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        POISON_SCENARIO => {
            let connection = protocol::topology::connect(&fleet.env.amqp_url, "faults-poison")
                .await
                .unwrap();
            let channel = protocol::topology::confirm_channel(&connection)
                .await
                .unwrap();
            for _ in 0..POISON_MESSAGES {
                channel
                    .basic_publish(
                        "scans",
                        "cpu",
                        BasicPublishOptions::default(),
                        b"{not json",
                        Default::default(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            let _ = connection.close(200, "done").await;
        }
        CLUSTER_SCENARIO => {
            let between = Duration::from_secs(if short { 3 } else { 10 });
            node_stops = cluster::lose_nodes(&fleet.env.pool, between).await;
        }
        _ => {}
    }
    fault_over.store(true, Ordering::Relaxed);
    let ids = submissions.await.unwrap();
    let accepted: HashSet<String> = ids.iter().cloned().collect();

    // Settle: every accepted scan reaches a final state (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(180);
    let terminal_sql =
        "SELECT count(*) FROM scans WHERE status IN ('succeeded', 'failed', 'canceled')";
    while fleet.env.count(terminal_sql).await < accepted.len() as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let receiver = match receiver {
        Some(receiver) => receiver,
        None => Receiver::start_on(receiver_port, vec![]).await, // comes back after the run
    };
    let delivered_sql = "SELECT count(*) FROM webhook_deliveries WHERE status <> 'pending'";
    while fleet.env.count(delivered_sql).await < accepted.len() as i64 && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let env = &fleet.env;
    let succeeded = env
        .count("SELECT count(*) FROM scans WHERE status = 'succeeded'")
        .await;
    let failures: Vec<(String, i64)> =
        sqlx::query_as("SELECT coalesce(error_code, '?'), count(*) FROM scans WHERE status = 'failed' GROUP BY 1 ORDER BY 1")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let failed = if failures.is_empty() {
        "0".to_string()
    } else {
        failures
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lost = accepted.len() as i64 - env.count(terminal_sql).await;
    let duplicate_results = env
        .count("SELECT coalesce(sum(n - 1), 0)::bigint FROM (SELECT count(*) AS n FROM scan_events WHERE event IN ('succeeded', 'failed') GROUP BY scan_id) per_scan")
        .await;
    let received = receiver.received();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for request in &received {
        *per_id
            .entry(request.header("webhook-id").to_string())
            .or_default() += 1;
    }
    let expected_ids: HashSet<String> = accepted
        .iter()
        .map(|id| format!("msg_{}_succeeded", id.replace('-', "")))
        .collect();
    let webhooks_missing = expected_ids
        .iter()
        .filter(|id| !per_id.contains_key(*id))
        .count();
    let duplicate_webhooks = received.len() - per_id.len();
    receiver.stop();
    // The worker rejects each poison message without requeue, the broker
    // dead-letters it to `scans.dead`, and the dispatcher's watcher counts it
    // as undecodable. The dispatcher is never restarted in this scenario.
    let poison_dead_lettered = if scenario == POISON_SCENARIO {
        let mut seen = undecodable_dead_lettered(fleet.port).await;
        while seen < POISON_MESSAGES && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = undecodable_dead_lettered(fleet.port).await;
        }
        Some((seen, POISON_MESSAGES))
    } else {
        None
    };
    let node_losses = cluster::measure(&fleet.env.pool, &node_stops).await;
    fleet.stop().await;
    drop(rabbit_cluster);
    Row {
        scenario,
        accepted: accepted.len(),
        succeeded,
        failed,
        lost,
        duplicate_results,
        webhooks_missing,
        duplicate_webhooks,
        poison_dead_lettered,
        node_losses,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "error");
    }
    let (n, soak) = if args.short {
        (150, 1_000)
    } else {
        (600, 10_000)
    };
    let scenarios: [(&'static str, usize, u64); 8] = [
        ("worker SIGKILL mid-scan, repeatedly", n, 150),
        ("RabbitMQ restarted (stop_app/start_app)", n, 20),
        ("PostgreSQL restarted", n, 20),
        ("dispatcher SIGKILL during relay and delivery", n, 20),
        ("webhook receiver down, then up", n, 0),
        (POISON_SCENARIO, n, 0),
        // Scans stream for as long as the nodes take (CLUSTER_SUBMIT_RATE).
        (CLUSTER_SCENARIO, 0, 20),
        ("soak", soak, 0),
    ];
    let mut rows = Vec::new();
    for (scenario, scans, hold_ms) in scenarios {
        if args
            .only
            .as_deref()
            .is_some_and(|only| !scenario.contains(only))
        {
            continue;
        }
        if scenario == CLUSTER_SCENARIO {
            eprintln!(
                "running: {scenario} ({CLUSTER_SUBMIT_RATE} scans/s while nodes stop and start)"
            );
        } else {
            eprintln!("running: {scenario} ({scans} scans)");
        }
        rows.push(run(scenario, scans, hold_ms, args.short).await);
    }
    println!("| scenario | accepted | succeeded | failed | lost | duplicate results | webhooks missing | duplicate webhook deliveries | poison dead-lettered | s |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for row in &rows {
        let duplicate_webhooks = if duplicate_webhooks_allowed(row.scenario) {
            format!("{} (allowed: at-least-once)", row.duplicate_webhooks)
        } else {
            row.duplicate_webhooks.to_string()
        };
        let poison = row
            .poison_dead_lettered
            .map_or("–".to_string(), |(seen, published)| {
                format!("{seen}/{published}")
            });
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            row.scenario,
            row.accepted,
            row.succeeded,
            row.failed,
            row.lost,
            row.duplicate_results,
            row.webhooks_missing,
            duplicate_webhooks,
            poison,
            row.seconds
        );
        failures.extend(
            row.problems()
                .into_iter()
                .map(|problem| format!("{}: {problem}", row.scenario)),
        );
    }
    for row in &rows {
        if !row.node_losses.is_empty() {
            cluster::print(&row.node_losses);
        }
    }
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("FAILED: {failure}");
        }
        std::process::exit(1);
    }
    println!("\nclean: every accepted scan succeeded once, with one webhook each (duplicates only where allowed), and every poison message was dead-lettered");
}
