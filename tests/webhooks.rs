//! Completion webhooks end to end: a real receiver on 127.0.0.1, signatures
//! checked with the reference `standardwebhooks` Python library.

use std::time::Duration;

use harness::{
    verify_with_standardwebhooks, wait_for, Api, Dispatcher, Receiver, Reply, TestEnv, Worker,
};
use protocol::Tier;
use serde_json::{json, Value};
use worker::config::QueueChoice;

/// Registers an endpoint; returns (endpoint id, secret).
pub(crate) async fn register(api: &Api, url: &str) -> (String, String) {
    let response = api
        .post("/v1/webhook-endpoints")
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// Rotates an endpoint's secret; returns the new one.
async fn rotate(api: &Api, endpoint_id: &str, overlap_seconds: u64) -> String {
    let response = api
        .post(&format!(
            "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"
        ))
        .json(&json!({ "overlap_seconds": overlap_seconds }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    rotated["secret"].as_str().unwrap().to_string()
}

/// The tenant's callback secret (signs deliveries to `callback_url`s).
async fn callback_secret(api: &Api) -> String {
    let answer: Value = api
        .get("/v1/webhook-endpoints/callback-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["secret"].as_str().unwrap().to_string()
}

async fn deliveries(api: &Api, scan_id: &str) -> Vec<Value> {
    api.get(&format!("/v1/scans/{scan_id}/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn settled_delivery(api: &Api, scan_id: &str) -> Value {
    wait_for("the delivery to settle", || async {
        let all = deliveries(api, scan_id).await;
        all.into_iter().find(|d| d["status"] != "pending")
    })
    .await
}

struct Fleet {
    env: TestEnv,
    dispatcher: Dispatcher,
    worker: Worker,
    api: Api,
}

impl Fleet {
    async fn start(configure: impl FnOnce(&mut dispatcher::config::DispatcherConfig)) -> Fleet {
        let env = TestEnv::new().await;
        let mut config = env.dispatcher_config();
        configure(&mut config);
        let dispatcher = Dispatcher::start(config).await;
        let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
        let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);
        Fleet {
            env,
            dispatcher,
            worker,
            api,
        }
    }

    async fn stop(self) {
        self.worker.stop().await;
        self.dispatcher.stop().await;
        self.env.cleanup().await;
    }
}

#[tokio::test]
async fn endpoint_and_callback_webhooks_are_signed_per_the_standard() {
    let fleet = Fleet::start(|_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let (_, endpoint_secret) = register(&fleet.api, &receiver.url("/endpoint")).await;
    assert!(endpoint_secret.starts_with("whsec_"));
    let callback_secret = callback_secret(&fleet.api).await;

    let scan_id = fleet
        .api
        .submit(json!({"kind": "probe", "callback_url": receiver.url("/callback"), "metadata": {"order": 42}}))
        .await;
    let received = receiver.wait_for(2).await;
    let endpoint_hit = received
        .iter()
        .find(|r| r.path == "/endpoint")
        .expect("endpoint delivery");
    let callback_hit = received
        .iter()
        .find(|r| r.path == "/callback")
        .expect("callback delivery");
    verify_with_standardwebhooks(&[&endpoint_secret], std::slice::from_ref(endpoint_hit));
    verify_with_standardwebhooks(&[&callback_secret], std::slice::from_ref(callback_hit));

    let event = endpoint_hit.json();
    assert_eq!(event["type"], "scan.succeeded");
    assert_eq!(event["version"], 1);
    assert_eq!(event["data"]["scan_id"], scan_id.as_str());
    assert_eq!(event["data"]["status"], "succeeded");
    assert_eq!(event["data"]["route"], "cpu");
    assert_eq!(event["data"]["metadata"]["order"], 42);
    assert_eq!(event["data"]["result"]["kind"], "probe");
    assert_eq!(
        event["data"]["links"]["scan"],
        format!("/v1/scans/{scan_id}")
    );
    assert!(event["data"]["processing_ms"].is_number());
    assert_eq!(
        endpoint_hit.header("webhook-id"),
        callback_hit.header("webhook-id"),
        "one message id per event"
    );
    assert!(endpoint_hit.header("webhook-id").starts_with("msg_"));

    let log = deliveries(&fleet.api, &scan_id).await;
    assert_eq!(log.len(), 2);
    for delivery in &log {
        wait_for("delivered status", || async {
            deliveries(&fleet.api, &scan_id)
                .await
                .iter()
                .all(|d| d["status"] == "delivered")
                .then_some(())
        })
        .await;
        assert_eq!(delivery["event_type"], "scan.succeeded");
    }

    // Canceling a queued scan is an event too.
    fleet.worker.stop().await;
    let canceled = fleet.api.submit(json!({"kind": "probe"})).await;
    assert_eq!(
        fleet
            .api
            .delete(&format!("/v1/scans/{canceled}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let received = receiver.wait_for(3).await;
    assert_eq!(received[2].json()["type"], "scan.canceled");
    verify_with_standardwebhooks(&[&endpoint_secret], &received[2..]);

    fleet.dispatcher.stop().await;
    fleet.env.cleanup().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_with_one_webhook_id() {
    let fleet = Fleet::start(|_| {}).await;
    let receiver = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(200),
    ])
    .await;
    let (_, secret) = register(&fleet.api, &receiver.url("/hook")).await;
    let scan_id = fleet.api.submit(json!({"kind": "probe"})).await;

    let received = receiver.wait_for(3).await;
    let delivery = settled_delivery(&fleet.api, &scan_id).await;
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempts"], 3);
    let outcomes: Vec<_> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["http_error", "http_error", "delivered"]);
    assert_eq!(delivery["attempt_log"][0]["status_code"], 500);
    let ids: std::collections::HashSet<_> = received
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "the same webhook-id on every attempt");
    assert_eq!(received.len(), 3);
    verify_with_standardwebhooks(&[&secret], &received);
    let metrics = reqwest::get(format!("{}/metrics", fleet.dispatcher.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("scanfleet_webhook_attempts_total{outcome=\"http_error\"} 2"),
        "{metrics}"
    );

    // Manual redelivery: same id, one more attempt.
    let redeliver = fleet
        .api
        .post(&format!(
            "/v1/scans/{scan_id}/deliveries/{}/redeliver",
            delivery["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(redeliver.status(), 202);
    let received = receiver.wait_for(4).await;
    assert_eq!(
        received[3].header("webhook-id"),
        received[0].header("webhook-id")
    );

    fleet.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_the_webhook() {
    let fleet = Fleet::start(|config| {
        config.webhook_schedule = vec![
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::from_millis(600),
            Duration::from_secs(1),
        ];
    })
    .await;
    // Reserve a port, then close it: connections are refused until the receiver starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, secret) = register(&fleet.api, &format!("http://127.0.0.1:{port}/hook")).await;
    let scan_id = fleet.api.submit(json!({"kind": "probe"})).await;
    wait_for("a refused attempt", || async {
        let log = deliveries(&fleet.api, &scan_id).await;
        log.first()
            .and_then(|d| (d["attempts"].as_i64() >= Some(1)).then_some(()))
    })
    .await;
    let receiver = Receiver::start_on(port, vec![]).await;
    let received = receiver.wait_for(1).await;
    verify_with_standardwebhooks(&[&secret], &received);
    let delivery = settled_delivery(&fleet.api, &scan_id).await;
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempt_log"][0]["outcome"], "connect_error");
    fleet.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint() {
    let fleet = Fleet::start(|_| {}).await;
    let receiver = Receiver::start(vec![Reply::Status(410)]).await;
    let (endpoint_id, _) = register(&fleet.api, &receiver.url("/hook")).await;
    let first = fleet.api.submit(json!({"kind": "probe"})).await;
    let delivery = settled_delivery(&fleet.api, &first).await;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attempt_log"][0]["outcome"], "gone");

    let endpoints: Vec<Value> = fleet
        .api
        .get("/v1/webhook-endpoints")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint = endpoints
        .iter()
        .find(|e| e["id"] == endpoint_id.as_str())
        .unwrap();
    assert!(endpoint["disabled_at"].is_string());
    let second = fleet.api.submit(json!({"kind": "probe"})).await;
    wait_for("the second scan", || async {
        (fleet.env.scan_status(&second).await == "succeeded").then_some(())
    })
    .await;
    assert!(
        deliveries(&fleet.api, &second).await.is_empty(),
        "nothing is sent to a disabled endpoint"
    );
    assert_eq!(receiver.received().len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_is_retried() {
    let fleet = Fleet::start(|config| config.webhook_timeout = Duration::from_millis(500)).await;
    let receiver = Receiver::start(vec![
        Reply::After(Duration::from_secs(3)),
        Reply::Status(200),
    ])
    .await;
    let (_, secret) = register(&fleet.api, &receiver.url("/hook")).await;
    let scan_id = fleet.api.submit(json!({"kind": "probe"})).await;
    let delivery = settled_delivery(&fleet.api, &scan_id).await;
    assert_eq!(delivery["status"], "delivered");
    let outcomes: Vec<_> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["timeout", "delivered"]);
    verify_with_standardwebhooks(&[&secret], &receiver.received());
    fleet.stop().await;
}

#[tokio::test]
async fn a_result_committed_while_the_dispatcher_is_down_is_delivered_after_restart() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(vec![]).await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);
    let (_, secret) = register(&api, &receiver.url("/hook")).await;
    let scan_id = api.submit(json!({"kind": "probe"})).await;
    wait_for("the scan to be published", || async {
        (env.count("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
            .await
            == 1)
            .then_some(())
    })
    .await;
    dispatcher.stop().await; // no deliverer anywhere now

    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    wait_for("the result", || async {
        (env.scan_status(&scan_id).await == "succeeded").then_some(())
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            .await,
        1
    );
    assert!(receiver.received().is_empty());

    let restarted = Dispatcher::start(env.dispatcher_config()).await;
    let received = receiver.wait_for(1).await;
    verify_with_standardwebhooks(&[&secret], &received);
    wait_for("delivered", || async {
        (env.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_attempts").await,
        1,
        "one attempt, one request"
    );
    assert_eq!(receiver.received().len(), 1);

    worker.stop().await;
    restarted.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn private_and_metadata_destinations_are_refused_and_never_contacted() {
    // No allow-list here: only public addresses pass.
    let fleet = Fleet::start(|config| config.webhook_allow_hosts.clear()).await;
    let listener = Receiver::start(vec![]).await;
    let port = listener.addr.port();
    for host in [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "127.0.0.1",
    ] {
        let url = format!("http://{host}:{port}/hook");
        let response = fleet
            .api
            .post("/v1/scans")
            .json(&json!({"kind": "probe", "callback_url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "callback_url_refused");
        assert!(
            problem["detail"].as_str().unwrap().contains("public"),
            "{problem}"
        );
        let endpoint = fleet
            .api
            .post("/v1/webhook-endpoints")
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(endpoint.status(), 422, "endpoint {url}");
    }
    // A name is resolved at submit too: localhost resolves to loopback. (That
    // it is checked again when delivering, for a name whose DNS answer has
    // changed since, is dispatcher/tests/it/ssrf.rs.)
    let url = format!("http://localhost:{port}/hook");
    let response = fleet
        .api
        .post("/v1/scans")
        .json(&json!({"kind": "probe", "callback_url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "{url}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "callback_url_refused");
    assert!(
        problem["detail"].as_str().unwrap().contains("loopback"),
        "{problem}"
    );
    assert!(
        listener.received().is_empty(),
        "no connection reached the listener"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn both_secrets_sign_during_a_rotation_overlap() {
    let fleet = Fleet::start(|_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let (endpoint_id, old_secret) = register(&fleet.api, &receiver.url("/hook")).await;
    let new_secret = &rotate(&fleet.api, &endpoint_id, 3600).await;
    assert_ne!(new_secret, &old_secret);
    fleet.api.submit(json!({"kind": "probe"})).await;
    let received = receiver.wait_for(1).await;
    assert_eq!(
        received[0].header("webhook-signature").split(' ').count(),
        2
    );
    verify_with_standardwebhooks(&[&old_secret, new_secret], &received);

    // Once the overlap is over, only the new secret signs.
    let newest = &rotate(&fleet.api, &endpoint_id, 0).await;
    fleet.api.submit(json!({"kind": "probe"})).await;
    let received = receiver.wait_for(2).await;
    assert_eq!(
        received[1].header("webhook-signature").split(' ').count(),
        1
    );
    verify_with_standardwebhooks(&[newest], &received[1..]);
    fleet.stop().await;
}

/// Webhook secrets are sealed in the database (AES-256-GCM under
/// SECRETS_KEYS), and a key rotation — new key first, `rewrap`, old key
/// dropped — keeps every delivery verifiable with the secrets the tenant has.
#[tokio::test]
async fn secrets_are_sealed_at_rest_and_survive_a_key_rotation() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let key = env.api_key("acme", Tier::Free).await;
    let api = Api::new(&dispatcher.base_url, &key);
    let receiver = Receiver::start(vec![]).await;
    let (endpoint_id, old_secret) = register(&api, &receiver.url("/endpoint")).await;
    let new_secret = rotate(&api, &endpoint_id, 3600).await;
    let callback_secret = callback_secret(&api).await;

    let stored = || async {
        let (secret, previous): (String, String) =
            sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints")
                .fetch_one(&env.pool)
                .await
                .unwrap();
        let callback: String = sqlx::query_scalar("SELECT callback_secret FROM tenants")
            .fetch_one(&env.pool)
            .await
            .unwrap();
        [secret, previous, callback]
    };
    for (value, plain) in stored()
        .await
        .iter()
        .zip([&new_secret, &old_secret, &callback_secret])
    {
        assert!(value.starts_with("sealed:v1:test:"), "{value}");
        let random_part = plain.trim_start_matches("whsec_");
        assert!(
            !value.contains(random_part),
            "the secret is readable at rest"
        );
    }

    // Rotation: the new key first, the old one still listed, then rewrap.
    dispatcher.stop().await;
    let new_key = dispatcher::sealing::Keyring::new_entry("k2");
    let both: dispatcher::sealing::Keyring =
        format!("{new_key},{}", env.secrets_keys).parse().unwrap();
    let sealer = dispatcher::sealing::Sealer::new(Some(both));
    let done = dispatcher::webhooks::rewrap::rewrap_all(&env.pool, &sealer)
        .await
        .unwrap();
    assert_eq!((done.resealed, done.current), (3, 0));
    let again = dispatcher::webhooks::rewrap::rewrap_all(&env.pool, &sealer)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 3));
    assert!(stored()
        .await
        .iter()
        .all(|value| value.starts_with("sealed:v1:k2:")));

    // The old key dropped: deliveries are still signed with the tenant's secrets.
    let mut config = env.dispatcher_config();
    config.secrets_keys = Some(new_key.parse().unwrap());
    let dispatcher = Dispatcher::start(config).await;
    let api = Api::new(&dispatcher.base_url, &key);
    api.submit(json!({"kind": "probe", "callback_url": receiver.url("/callback")}))
        .await;
    let received = receiver.wait_for(2).await;
    let hit = |path: &str| received.iter().find(|r| r.path == path).unwrap().clone();
    verify_with_standardwebhooks(&[&old_secret, &new_secret], &[hit("/endpoint")]);
    verify_with_standardwebhooks(&[&callback_secret], &[hit("/callback")]);

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}
