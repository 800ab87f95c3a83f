//! RabbitMQ topology, declared idempotently by every process at start.
//!
//! ```text
//!  exchange "scans" (direct) ── key "cpu" ──▶ quorum queue scans.cpu ──DLX──▶ scans.dlx ──▶ scans.dead
//!                            └─ key "gpu" ──▶ quorum queue scans.gpu ──TTL/limit──▶ "scans"/"cpu"
//! ```
//! A GPU message that waits longer than `GPU_MAX_WAIT` (no GPU worker came up)
//! or keeps failing on GPU workers is dead-lettered back onto the CPU queue, so
//! nothing is stranded; a CPU message past its delivery limit ends in
//! `scans.dead`, where the dispatcher marks its scan failed.
//! Both binaries must declare with the same settings: RabbitMQ refuses a
//! redeclaration with different arguments.

use std::time::Duration;

use lapin::options::{
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::message::Route;

pub const EXCHANGE: &str = "scans";
pub const DEAD_LETTER_EXCHANGE: &str = "scans.dlx";
pub const DEAD_LETTER_QUEUE: &str = "scans.dead";
const DEAD_LETTER_KEY: &str = "dead";

pub fn queue_name(route: Route) -> &'static str {
    match route {
        Route::Cpu => "scans.cpu",
        Route::Gpu => "scans.gpu",
    }
}

pub fn routing_key(route: Route) -> &'static str {
    route.as_str()
}

/// Settings that shape the queues (and so must agree across the fleet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Deliveries of one message before the broker dead-letters it.
    pub delivery_limit: u32,
    /// How long a scan may wait on the GPU queue before falling back to CPU.
    pub gpu_max_wait: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            delivery_limit: 5,
            gpu_max_wait: Duration::from_secs(120),
        }
    }
}

fn quorum_queue_args(
    delivery_limit: u32,
    dead_letter_exchange: &str,
    dead_letter_key: &str,
) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(delivery_limit as i32),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        long_string(dead_letter_exchange),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        long_string(dead_letter_key),
    );
    // Dead-lettering stays at RabbitMQ's default (at-most-once). The
    // at-least-once strategy would be safer across node failures, but on
    // RabbitMQ 3.10 its supervisor (rabbit_fifo_dlx_sup) does not come back
    // after `rabbitmqctl stop_app`/`start_app`, and every such queue then
    // stays down (found by bench/faults). On one node the dead-letter hop is
    // internal to the broker, so at-most-once loses nothing in practice.
    args
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

impl Topology {
    /// Declares exchanges, queues and bindings. Safe to call any number of times.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for exchange in [EXCHANGE, DEAD_LETTER_EXCHANGE] {
            channel
                .exchange_declare(
                    exchange,
                    ExchangeKind::Direct,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await?;
        }

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), long_string("quorum"));
        channel
            .queue_declare(DEAD_LETTER_QUEUE, durable_queue, dead_args)
            .await?;
        channel
            .queue_bind(
                DEAD_LETTER_QUEUE,
                DEAD_LETTER_EXCHANGE,
                DEAD_LETTER_KEY,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let cpu_args =
            quorum_queue_args(self.delivery_limit, DEAD_LETTER_EXCHANGE, DEAD_LETTER_KEY);
        let mut gpu_args =
            quorum_queue_args(self.delivery_limit, EXCHANGE, routing_key(Route::Cpu));
        gpu_args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(self.gpu_max_wait.as_millis() as i64),
        );
        for (route, args) in [(Route::Cpu, cpu_args), (Route::Gpu, gpu_args)] {
            channel
                .queue_declare(queue_name(route), durable_queue, args)
                .await?;
            channel
                .queue_bind(
                    queue_name(route),
                    EXCHANGE,
                    routing_key(route),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// How long one node of a list may take to accept a connection before the
/// next is tried: a node whose host is gone can leave a TCP connect hanging
/// for minutes, and the other nodes are serving meanwhile.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection whose I/O runs on the current tokio runtime.
///
/// `amqp_url` is one URL or a comma-separated list, one per node of a
/// RabbitMQ cluster (see [`crate::config::url_list`]). The nodes are tried in
/// turn from a starting node that moves on with every call and differs
/// between processes, so a fleet's connections spread over the cluster and a
/// reconnect after a node is lost begins at another one. A refusal that
/// [`is_permanent`] calls permanent ends the attempt at once (every node of
/// a cluster shares users, permissions and queues, so the next would say the
/// same); otherwise the last node's error is returned when none answered.
pub async fn connect(amqp_url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let nodes = crate::config::url_list(amqp_url);
    if nodes.len() <= 1 {
        return connect_node(amqp_url.trim(), connection_name).await;
    }
    let first = next_start(nodes.len());
    let mut last_error = None;
    for i in 0..nodes.len() {
        let node = nodes[(first + i) % nodes.len()];
        let attempt =
            tokio::time::timeout(NODE_CONNECT_TIMEOUT, connect_node(node, connection_name))
                .await
                .unwrap_or_else(|_| {
                    Err(lapin::Error::IOError(std::sync::Arc::new(
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"),
                    )))
                });
        match attempt {
            Ok(connection) => return Ok(connection),
            Err(error) if is_permanent(&error) => return Err(error),
            Err(error) => {
                tracing::warn!(
                    node = %crate::config::mask_url(node),
                    %error,
                    "RabbitMQ node unreachable; trying the next"
                );
                last_error = Some(error);
            }
        }
    }
    Err(last_error.expect("a list of at least two nodes was tried"))
}

/// The node a connection attempt starts at: a per-process counter from a
/// random origin (std's `RandomState` is seeded randomly per process, which
/// saves a dependency on `rand` for one number).
fn next_start(nodes: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static ORIGIN: OnceLock<usize> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let origin = *ORIGIN.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as usize
    });
    origin.wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed)) % nodes
}

async fn connect_node(amqp_url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let mut properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(connection_name.into());
    properties
        .client_properties
        .insert("product".into(), long_string("scanfleet"));
    Connection::connect(amqp_url, properties).await
}

/// A broker session refused for good (see [`is_permanent`]): the error a
/// supervised task ends with. When the queues exist with other arguments,
/// it names the setting that disagrees.
#[derive(Debug, thiserror::Error)]
#[error("the broker refuses this process's session; fix the configuration and restart: {error}{hint}", error = .0, hint = setting_hint(.0))]
pub struct SessionRefused(#[source] pub lapin::Error);

/// Which of this process's settings a queue argument comes from, for the
/// broker's "inequivalent arg" refusal: queue arguments are fixed when a
/// queue is first declared, so every process must agree on them.
fn setting_hint(error: &lapin::Error) -> String {
    let text = error.to_string();
    let setting = if text.contains("'x-message-ttl'") {
        "GPU_MAX_WAIT"
    } else if text.contains("'x-delivery-limit'") {
        "DELIVERY_LIMIT"
    } else {
        return String::new();
    };
    format!(
        " ({setting} differs from the value the queues were declared with: \
         give every dispatcher and worker the same {setting}, or delete the \
         queues to declare them anew)"
    )
}

/// Whether the broker refused to set up a session in a way that no retry
/// will change: these credentials or permissions are refused (403), or the
/// queues exist with other arguments than this process declares (406).
/// Retrying those only hides a misconfiguration behind a process that looks
/// alive, so the task ends and the process is restarted where an operator
/// sees it. Everything else is an outage that passes: connection refused or
/// reset, a broker shutting down (320), and a vhost not found or not yet
/// open to this user (530) — a vhost is created first and granted after, so
/// a process that connects in between must wait, not die (seen when a test
/// recreates its vhost). Only for errors while connecting and declaring: on
/// a session that ran, a 406 can also be the broker's consumer timeout,
/// which a reconnect resolves.
pub fn is_permanent(error: &lapin::Error) -> bool {
    let lapin::Error::ProtocolError(amqp) = error else {
        return false;
    };
    matches!(
        amqp.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED | AMQPSoftError::PRECONDITIONFAILED)
    )
}

/// A channel in publisher-confirm mode, for publishers that must not lose messages.
pub async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// A channel for consumers, with at most `prefetch` unacknowledged deliveries.
pub async fn consumer_channel(connection: &Connection, prefetch: u16) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(channel)
}

/// Properties of a scan message: persistent, JSON, identified by its scan id.
pub fn scan_message_properties(scan_id: uuid::Uuid) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(scan_id.to_string().into())
        .with_type("scan.v1".into())
}

/// The number of times the broker has delivered a message before, as counted
/// by quorum queues in the `x-delivery-count` header (absent on first delivery).
pub fn previous_deliveries(properties: &BasicProperties) -> u32 {
    header(properties, "x-delivery-count")
        .and_then(|value| match value {
            AMQPValue::LongLongInt(n) => Some(*n as u32),
            AMQPValue::LongInt(n) => Some(*n as u32),
            AMQPValue::ShortInt(n) => Some(*n as u32),
            AMQPValue::LongUInt(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0)
}

/// The queue a dead-lettered message was first dead-lettered from and why
/// (`expired`, `delivery_limit`, `rejected`), from the `x-death` header.
pub fn first_death(properties: &BasicProperties) -> Option<(String, String)> {
    let AMQPValue::FieldArray(deaths) = header(properties, "x-death")? else {
        return None;
    };
    // x-death lists the most recent death first; the original one is last.
    let AMQPValue::FieldTable(death) = deaths.as_slice().last()? else {
        return None;
    };
    let text = |key: &str| match death.inner().get(key) {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
        _ => None,
    };
    Some((text("queue")?, text("reason")?))
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPHardError};

    fn broker_said(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        lapin::Error::ProtocolError(AMQPError::new(kind, text.into()))
    }

    #[test]
    fn refusals_and_mismatched_queues_are_permanent() {
        for permanent in [
            broker_said(
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
                "ACCESS_REFUSED - Login was refused",
            ),
            broker_said(
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
                "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit'",
            ),
        ] {
            assert!(is_permanent(&permanent), "{permanent}");
        }
    }

    /// Real sockets, no broker needed: three "nodes" that accept a
    /// connection and close it at once. A list of them is walked through
    /// every node, once each, and fails with an outage, not a refusal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_list_of_failing_nodes_tries_every_node_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let mut urls = Vec::new();
        let mut hits = Vec::new();
        for _ in 0..3 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!(
                "amqp://guest:secret@127.0.0.1:{}/%2f",
                listener.local_addr().unwrap().port()
            ));
            let count = Arc::new(AtomicUsize::new(0));
            hits.push(count.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            });
        }
        let error = connect(&urls.join(","), "test").await.unwrap_err();
        assert!(!is_permanent(&error), "{error}");
        let hits: Vec<usize> = hits.iter().map(|n| n.load(Ordering::SeqCst)).collect();
        assert_eq!(hits, [1, 1, 1]);
    }

    #[test]
    fn a_mismatched_queue_argument_names_its_setting() {
        let ttl = broker_said(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'scans.gpu' in vhost '/': received the value '60000' of type 'signedint' but current is none",
        );
        let said = SessionRefused(ttl).to_string();
        assert!(said.contains("GPU_MAX_WAIT differs"), "{said}");
        let limit = broker_said(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'scans.cpu'",
        );
        assert!(SessionRefused(limit)
            .to_string()
            .contains("DELIVERY_LIMIT differs"));
        let refused = broker_said(
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            "ACCESS_REFUSED - Login was refused",
        );
        assert!(!SessionRefused(refused).to_string().contains("differs"));
    }

    #[test]
    fn outages_are_not_permanent() {
        for passing in [
            broker_said(
                AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED),
                "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
            ),
            broker_said(
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED),
                "NOT_ALLOWED - vhost v not found",
            ),
            broker_said(
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED),
                "NOT_ALLOWED - access to vhost 'v' refused for user 'u'",
            ),
            broker_said(
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
                "NOT_FOUND - no queue 'scans.cpu'",
            ),
            lapin::Error::IOError(std::sync::Arc::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
            lapin::Error::MissingHeartbeatError,
        ] {
            assert!(!is_permanent(&passing), "{passing}");
        }
    }
}
