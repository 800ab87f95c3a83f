//! The RabbitMQ cluster scenario: the fleet is given the URLs of all three
//! nodes of a cluster that `scripts/rabbitmq-cluster` starts beside the
//! system broker, and loses one node mid-burst, gets it back, then loses
//! another. Its quorum queues keep a majority throughout, so every accepted
//! scan must still succeed exactly once; how long the fleet stalled after
//! each loss is measured and printed, not asserted.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The nodes stopped, in order; each is started again before the next stops,
/// so two of three replicas are always up.
pub const NODES_LOST: [u8; 2] = [2, 3];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/rabbitmq-cluster")
}

fn cluster(args: &[&str]) -> String {
    let output = Command::new(script())
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/rabbitmq-cluster runs");
    assert!(
        output.status.success(),
        "scripts/rabbitmq-cluster {} failed",
        args.join(" ")
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// A running 3-node cluster, removed (every node stopped, its files deleted)
/// when dropped, also when the scenario panics.
pub struct Cluster {
    /// `AMQP_URL` for the fleet: every node's URL, comma-separated.
    pub urls: String,
}

impl Cluster {
    pub fn start() -> Cluster {
        cluster(&["start"]);
        Cluster {
            urls: cluster(&["urls"]),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Not `cluster()`: no second panic while unwinding from a first.
        let _ = Command::new(script()).arg("down").status();
    }
}

/// One node's loss as the fleet saw it.
pub struct NodeLoss {
    pub node: u8,
    /// From asking the node to stop until its VM had exited (its clients
    /// were dropped at the start of that).
    pub stopping: Duration,
    /// From the node being gone until the first scan that a worker took up
    /// after that finished: how long until the fleet served again.
    pub recovery: Option<Duration>,
    /// The longest time without a finished scan from the stop until 30 s
    /// after the node was gone.
    pub longest_stall: Option<Duration>,
}

/// When a node was asked to stop and when it was gone, by the database's
/// clock, which also stamps the scans.
pub struct NodeStop {
    node: u8,
    asked: DateTime<Utc>,
    gone: DateTime<Utc>,
}

async fn database_now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(pool)
        .await
        .expect("database clock")
}

/// Stops each of [`NODES_LOST`] in turn while scans stream in, starting it
/// again (and waiting for it to boot) before the next, and lets the fleet
/// run on the remaining nodes for `between` after each change.
pub async fn lose_nodes(pool: &PgPool, between: Duration) -> Vec<NodeStop> {
    let mut stops = Vec::new();
    for node in NODES_LOST {
        let asked = database_now(pool).await;
        tokio::task::spawn_blocking(move || cluster(&["stop-node", &node.to_string()]))
            .await
            .expect("stop-node");
        let gone = database_now(pool).await;
        eprintln!("  node {node} stopped");
        tokio::time::sleep(between).await;
        tokio::task::spawn_blocking(move || cluster(&["start-node", &node.to_string()]))
            .await
            .expect("start-node");
        eprintln!("  node {node} running again");
        tokio::time::sleep(between).await;
        stops.push(NodeStop { node, asked, gone });
    }
    stops
}

/// Measures each loss from the scans' own timestamps, once every scan has
/// finished.
pub async fn measure(pool: &PgPool, stops: &[NodeStop]) -> Vec<NodeLoss> {
    let mut losses = Vec::new();
    for &NodeStop { node, asked, gone } in stops {
        let first_after: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(finished_at) FROM scans WHERE status = 'succeeded' AND started_at >= $1",
        )
        .bind(gone)
        .fetch_one(pool)
        .await
        .expect("first scan after the loss");
        let finished: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT finished_at FROM scans WHERE finished_at BETWEEN $1 AND $2 ORDER BY finished_at",
        )
        .bind(asked)
        .bind(gone + chrono::Duration::seconds(30))
        .fetch_all(pool)
        .await
        .expect("finish times around the loss");
        let longest_stall = std::iter::once(asked)
            .chain(finished)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .and_then(|gap| gap.to_std().ok());
        losses.push(NodeLoss {
            node,
            stopping: (gone - asked).to_std().unwrap_or_default(),
            recovery: first_after.and_then(|at| (at - gone).to_std().ok()),
            longest_stall,
        });
    }
    losses
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
}

pub fn print(losses: &[NodeLoss]) {
    println!("\n| RabbitMQ node lost | stopping took | recovery (node gone → next scan taken up finished) | longest stall without a finished scan |");
    println!("|---|---:|---:|---:|");
    for loss in losses {
        println!(
            "| sf-rabbit-{}@localhost | {:.1} s | {} | {} |",
            loss.node,
            loss.stopping.as_secs_f64(),
            seconds(loss.recovery),
            seconds(loss.longest_stall)
        );
    }
}
