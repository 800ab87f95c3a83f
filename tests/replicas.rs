//! Several dispatchers against one database and broker. Two replicas (the
//! binary, as deployed) take a burst of scans; the one leading the backlog
//! monitor is SIGKILLed mid-burst. Every accepted scan must still finish
//! exactly once, with one result and its webhook: the relay claims outbox
//! rows with `SKIP LOCKED`, the deliverer leases deliveries, the backlog
//! monitor is led by whoever holds its advisory lock. A webhook may arrive
//! twice only where at-least-once allows it: the killed replica sent it and
//! died before recording the attempt.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use harness::{wait_for, Api, Receiver, TestEnv, Worker};
use protocol::Tier;
use serde_json::json;
use tokio::process::{Child, Command};
use worker::config::QueueChoice;

/// Scans in the burst; the leader dies once a third are accepted.
const BURST: usize = 60;

struct Replica {
    child: Child,
    api: Api,
}

impl Replica {
    fn spawn(env: &TestEnv, key: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(harness::binary("dispatcher"))
            .arg("serve")
            .env("DATABASE_URL", &env.database_url)
            .env("SECRETS_KEYS", &env.secrets_keys)
            .env("AMQP_URL", &env.amqp_url)
            .env("BLOB_STORE", &env.blob_dir)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("WEBHOOK_ALLOW_HTTP", "true")
            .env("WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
            .env("WEBHOOK_SCHEDULE", "0s,200ms,500ms,1s,2s,4s")
            .env("WEBHOOK_POLL", "50ms")
            // A killed replica's leased deliveries are retaken when the lease
            // (2 × timeout + 10 s) runs out.
            .env("WEBHOOK_TIMEOUT", "2s")
            .env("BACKLOG_POLL", "100ms")
            // Only a CPU worker runs here: never escalate.
            .env("BACKLOG_HIGH_WATERMARK", "100000000")
            .env("SUBMIT_RATE_PER_MINUTE", "0")
            .env("MAX_IN_FLIGHT_SCANS", "0")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("dispatcher binary starts");
        Replica {
            child,
            api: Api::new(&format!("http://127.0.0.1:{port}"), key),
        }
    }

    async fn ready(&self) -> bool {
        let url = format!("{}/readyz", self.api.base_url);
        matches!(reqwest::get(url).await, Ok(response) if response.status() == 200)
    }

    /// Whether this replica runs the backlog monitor now (its own gauge).
    async fn leads_backlog_monitor(&self) -> bool {
        let Ok(response) = reqwest::get(format!("{}/metrics", self.api.base_url)).await else {
            return false;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .any(|line| line.trim() == "scanfleet_backlog_monitor_leader 1")
    }
}

/// Submits through replica `first`, failing over to the other one with the
/// same idempotency key until accepted (as a client behind a load balancer
/// would); returns the scan id and the replica that accepted it.
async fn submit(
    apis: &[Api; 2],
    first: usize,
    key: String,
    body: serde_json::Value,
) -> (String, usize) {
    for attempt in 0.. {
        let replica = (first + attempt) % 2;
        let response = apis[replica]
            .post("/v1/scans")
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        if let Ok(response) = response {
            if matches!(response.status().as_u16(), 200 | 202) {
                let accepted: serde_json::Value = response.json().await.unwrap();
                return (accepted["id"].as_str().unwrap().to_string(), replica);
            }
        }
        assert!(attempt < 1_000, "submission {key} never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_lose_one_mid_burst_and_every_scan_finishes_once() {
    let env = TestEnv::new().await;
    let key = env.api_key("replicated", Tier::Free).await;
    let receiver = Receiver::start(vec![]).await;
    let mut replicas = [Replica::spawn(&env, &key), Replica::spawn(&env, &key)];
    wait_for("both replicas ready", || async {
        (replicas[0].ready().await && replicas[1].ready().await).then_some(())
    })
    .await;
    let response = replicas[0]
        .api
        .post("/v1/webhook-endpoints")
        .json(&json!({"url": receiver.url("/hook")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let leader = wait_for("one replica to lead the backlog monitor", || async {
        let leading = [
            replicas[0].leads_backlog_monitor().await,
            replicas[1].leads_backlog_monitor().await,
        ];
        match leading {
            [true, false] => Some(0),
            [false, true] => Some(1),
            _ => None,
        }
    })
    .await;
    let survivor = 1 - leader;

    let apis = Arc::new([replicas[0].api.clone(), replicas[1].api.clone()]);
    let accepted_count = Arc::new(AtomicUsize::new(0));
    let burst = tokio::spawn({
        let (apis, accepted_count) = (apis.clone(), accepted_count.clone());
        async move {
            futures::stream::iter(0..BURST)
                .map(|i| {
                    let (apis, accepted_count) = (apis.clone(), accepted_count.clone());
                    async move {
                        let body = json!({"kind": "probe", "params": {"hold_ms": 50}});
                        let accepted = submit(&apis, i % 2, format!("burst-{i}"), body).await;
                        accepted_count.fetch_add(1, Ordering::SeqCst);
                        accepted
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
        }
    });
    wait_for("a third of the burst to be accepted", || async {
        (accepted_count.load(Ordering::SeqCst) >= BURST / 3).then_some(())
    })
    .await;
    replicas[leader].child.start_kill().expect("SIGKILL");
    replicas[leader].child.wait().await.unwrap();
    let accepted = burst.await.unwrap();

    let mut ids: Vec<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), BURST, "one scan per idempotency key");
    assert!(
        accepted.iter().any(|(_, replica)| *replica == leader),
        "the killed replica took part"
    );
    wait_for("the survivor to take over the backlog monitor", || async {
        replicas[survivor]
            .leads_backlog_monitor()
            .await
            .then_some(())
    })
    .await;

    wait_for("every accepted scan to finish", || async {
        let finished = env
            .count("SELECT count(*) FROM scans WHERE status IN ('succeeded', 'failed', 'canceled')")
            .await;
        (finished == BURST as i64).then_some(())
    })
    .await;
    assert_eq!(env.count("SELECT count(*) FROM scans").await, BURST as i64);
    assert_eq!(
        env.count("SELECT count(*) FROM scans WHERE status = 'succeeded' AND result IS NOT NULL")
            .await,
        BURST as i64,
        "every scan succeeded with a result"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event IN ('succeeded', 'failed')")
            .await,
        BURST as i64,
        "exactly one final event per scan"
    );

    // Deliveries the killed replica had leased wait out their lease.
    wait_for("every webhook to be delivered", || async {
        let delivered = env
            .count("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
            .await;
        (delivered == BURST as i64).then_some(())
    })
    .await;
    assert_eq!(
        env.count(
            "SELECT count(*) FROM (SELECT delivery_id FROM webhook_attempts
                WHERE outcome = 'delivered' GROUP BY delivery_id HAVING count(*) <> 1) twice"
        )
        .await,
        0,
        "no delivery was recorded as delivered twice (no two replicas sent it)"
    );
    let recorded: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT d.message_id, count(a.id) FROM webhook_deliveries d
           LEFT JOIN webhook_attempts a ON a.delivery_id = d.id GROUP BY d.message_id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut received: HashMap<String, i64> = HashMap::new();
    for request in receiver.received() {
        *received
            .entry(request.header("webhook-id").to_string())
            .or_default() += 1;
    }
    for id in &ids {
        let webhook_id = format!("msg_{}_succeeded", id.replace('-', ""));
        let got = received.get(&webhook_id).copied().unwrap_or(0);
        let attempts = recorded.get(&webhook_id).copied().unwrap_or(0);
        assert!(got >= 1, "scan {id}: its webhook never arrived");
        // Each recorded attempt is one send; one more is allowed, by the
        // replica that was killed between sending and recording.
        assert!(
            got <= attempts + 1,
            "scan {id}: {got} deliveries of {webhook_id} for {attempts} recorded attempts"
        );
    }

    receiver.stop();
    worker.stop().await;
    replicas[survivor].child.start_kill().expect("SIGKILL");
    replicas[survivor].child.wait().await.unwrap();
    env.cleanup().await;
}
