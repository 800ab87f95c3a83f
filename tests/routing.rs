//! Routing end to end: tier, canary, runtime mode switch across replicas,
//! backlog escalation with hysteresis.

use std::time::Duration;

use futures::StreamExt;
use harness::{wait_for, Api, Dispatcher, TestEnv, Worker};
use protocol::Tier;
use serde_json::{json, Value};
use worker::config::QueueChoice;

async fn route_of(env: &TestEnv, scan_id: &str) -> (String, String) {
    sqlx::query_as("SELECT route, route_reason FROM scans WHERE id = $1::uuid")
        .bind(scan_id)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

async fn escalated(env: &TestEnv) -> bool {
    sqlx::query_scalar("SELECT escalated FROM backlog_state")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

fn pair(route: &str, reason: &str) -> (String, String) {
    (route.to_string(), reason.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_backlog_escalates_new_scans_to_gpu_and_stands_down_after_the_hold() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.backlog_hold = Duration::from_secs(3);
    let dispatcher = Dispatcher::start(config).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("busy", Tier::Free).await);
    let probe = json!({ "kind": "probe" });

    // No CPU worker: the queue only grows. 11 > high watermark (10).
    let mut backlog = Vec::new();
    for _ in 0..11 {
        let id = api.submit(probe.clone()).await;
        assert_eq!(
            route_of(&env, &id).await,
            pair("cpu", "default"),
            "below the watermark"
        );
        backlog.push(id);
    }
    wait_for("escalation", || async {
        escalated(&env).await.then_some(())
    })
    .await;
    let mut escalated_ids = Vec::new();
    for _ in 0..5 {
        let id = api.submit(probe.clone()).await;
        assert_eq!(route_of(&env, &id).await, pair("gpu", "backlog"));
        escalated_ids.push(id);
    }
    let view: Value = Api::new(&dispatcher.base_url, &env.admin_key().await)
        .get("/v1/admin/routing")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["backlog"]["escalated"], true);
    assert!(view["backlog"]["cpu_depth"].as_i64().unwrap() > 10);
    let metrics = reqwest::get(format!("{}/metrics", dispatcher.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("scanfleet_routing_escalated 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "scanfleet_scans_submitted_total{reason=\"backlog\",route=\"gpu\",tier=\"free\"} 5"
    ));

    // A CPU worker drains the queue; routing stays escalated through the hold.
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    wait_for("the CPU backlog to drain", || async {
        let done = env
            .count("SELECT count(*) FROM scans WHERE route = 'cpu' AND status = 'succeeded'")
            .await;
        (done == backlog.len() as i64).then_some(())
    })
    .await;
    assert!(
        escalated(&env).await,
        "still escalated right after the drain (hold is 3 s)"
    );
    wait_for("de-escalation", || async {
        (!escalated(&env).await).then_some(())
    })
    .await;
    let calm = api.submit(probe.clone()).await;
    assert_eq!(route_of(&env, &calm).await, pair("cpu", "default"));
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'submitted'")
            .await,
        17
    );

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_share_holds_over_two_thousand_submissions() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    // No worker runs here: keep the growing queue from escalating to GPU.
    config.backlog_high_watermark = 1_000_000;
    let dispatcher = Dispatcher::start(config).await;
    let admin = Api::new(&dispatcher.base_url, &env.admin_key().await);
    let set = admin
        .http
        .put(format!("{}/v1/admin/routing", dispatcher.base_url))
        .bearer_auth(&admin.key);
    let response = set
        .json(&json!({"mode": "auto", "canary_percent": 20}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let api = Api::new(&dispatcher.base_url, &env.api_key("many", Tier::Free).await);
    let total = 2_000;
    let ids: Vec<String> = futures::stream::iter(0..total)
        .map(|_| {
            let api = api.clone();
            async move { api.submit(json!({"kind": "probe"})).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(ids.len(), total);
    let canary = env
        .count("SELECT count(*) FROM scans WHERE route = 'gpu' AND route_reason = 'canary'")
        .await as f64;
    let others = env
        .count("SELECT count(*) FROM scans WHERE route = 'cpu' AND route_reason = 'default'")
        .await as f64;
    assert_eq!(
        canary + others,
        total as f64,
        "every scan is canary or default"
    );
    // Binomial(2000, 0.2): mean 400, sd 17.9; ±5 sd.
    let sd = (total as f64 * 0.2 * 0.8).sqrt();
    assert!(
        (canary - 400.0).abs() <= 5.0 * sd,
        "canary share {canary} of {total}"
    );

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_runtime_mode_switch_applies_to_the_next_scan_on_every_replica_and_survives_restart() {
    let env = TestEnv::new().await;
    let replica_a = Dispatcher::start(env.dispatcher_config()).await;
    let replica_b = Dispatcher::start(env.dispatcher_config()).await;
    let admin_key = env.admin_key().await;
    let put = |base: &str, body: Value| {
        reqwest::Client::new()
            .put(format!("{base}/v1/admin/routing"))
            .bearer_auth(&admin_key)
            .json(&body)
            .send()
    };
    let premium_key = env.api_key("vip", Tier::Premium).await;
    let free_key = env.api_key("free", Tier::Free).await;
    let (premium_a, premium_b) = (
        Api::new(&replica_a.base_url, &premium_key),
        Api::new(&replica_b.base_url, &premium_key),
    );
    let free_a = Api::new(&replica_a.base_url, &free_key);

    let id = premium_b.submit(json!({"kind": "probe"})).await;
    assert_eq!(route_of(&env, &id).await, pair("gpu", "tier"));

    // Rollback to CPU on replica A; replica B's next scan obeys.
    assert_eq!(
        put(&replica_a.base_url, json!({"mode": "cpu"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let id = premium_b.submit(json!({"kind": "probe"})).await;
    assert_eq!(route_of(&env, &id).await, pair("cpu", "mode"));
    let id = premium_a.submit(json!({"kind": "probe"})).await;
    assert_eq!(route_of(&env, &id).await, pair("cpu", "mode"));

    // Everything to GPU, set on B, seen on A.
    assert_eq!(
        put(&replica_b.base_url, json!({"mode": "gpu"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let id = free_a.submit(json!({"kind": "probe"})).await;
    assert_eq!(route_of(&env, &id).await, pair("gpu", "mode"));
    let visible: Value = premium_a
        .get(&format!(
            "/v1/scans/{}",
            premium_a.submit(json!({"kind": "probe"})).await
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (visible["route"].as_str(), visible["route_reason"].as_str()),
        (Some("gpu"), Some("mode"))
    );

    // Only admins; bad bodies are problems.
    let tenant_put = reqwest::Client::new()
        .put(format!("{}/v1/admin/routing", replica_a.base_url))
        .bearer_auth(&free_key)
        .json(&json!({"mode": "cpu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant_put.status(), 403);
    assert_eq!(
        put(&replica_a.base_url, json!({"mode": "fast"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        put(
            &replica_a.base_url,
            json!({"mode": "auto", "canary_percent": 101})
        )
        .await
        .unwrap()
        .status(),
        422
    );

    // A restarted replica keeps the stored mode, not its configured `auto`.
    replica_a.stop().await;
    let replica_a = Dispatcher::start(env.dispatcher_config()).await;
    let view: Value = Api::new(&replica_a.base_url, &admin_key)
        .get("/v1/admin/routing")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["mode"], "gpu");

    replica_a.stop().await;
    replica_b.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_gpu_scan_that_no_gpu_worker_takes_completes_on_a_cpu_worker() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.service.gpu_max_wait = Duration::from_millis(300);
    let dispatcher = Dispatcher::start(config).await;
    let mut worker_config = env.worker_config(QueueChoice::Cpu, "cpu-1");
    worker_config.service.gpu_max_wait = Duration::from_millis(300);
    let worker = Worker::start(worker_config).await; // no GPU worker at all
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("vip", Tier::Premium).await,
    );

    let scan_id = api.submit(json!({"kind": "probe"})).await;
    assert_eq!(route_of(&env, &scan_id).await, pair("gpu", "tier"));
    wait_for("the fallback scan to succeed", || async {
        (env.scan_status(&scan_id).await == "succeeded").then_some(())
    })
    .await;
    let scan = api.scan(&scan_id).await;
    assert_eq!(
        (scan["route"].as_str(), scan["route_reason"].as_str()),
        (Some("cpu"), Some("gpu_timeout_fallback"))
    );
    assert_eq!(scan["result"]["queue"], "scans.cpu");
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'rerouted'")
            .await,
        1
    );

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// A scan that keeps failing on the GPU worker (here: its source answers 503
/// for every GPU delivery) is not failed there: after the last GPU delivery
/// it moves to the CPU queue and completes, reason `gpu_failure_fallback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_keeps_failing_on_the_gpu_worker_completes_on_a_cpu_worker() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let env = TestEnv::new().await;
    let delivery_limit = env.service_config().delivery_limit as usize;
    let video = {
        let dir = tempfile::tempdir().unwrap();
        let spec = vision::synth::SynthSpec {
            frames: 4,
            width: 320,
            height: 240,
            ..Default::default()
        };
        std::fs::read(vision::synth::generate(&spec, dir.path()).unwrap().video).unwrap()
    };
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let app = axum::Router::new().route(
        "/scan.avi",
        axum::routing::get(move || {
            let (counter, video) = (counter.clone(), video.clone());
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < delivery_limit {
                    Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                } else {
                    Ok(video)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = format!("http://{}/scan.avi", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let gpu_worker = Worker::start(env.worker_config(QueueChoice::Gpu, "gpu-1")).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("vip", Tier::Premium).await,
    );
    let scan_id = api
        .submit(json!({"kind": "video_scan", "source_url": source}))
        .await;
    assert_eq!(route_of(&env, &scan_id).await, pair("gpu", "tier"));
    // Only once every GPU delivery has failed does a CPU worker join.
    wait_for("every GPU delivery to be spent", || async {
        (requests.load(Ordering::SeqCst) >= delivery_limit).then_some(())
    })
    .await;
    let cpu_worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    wait_for("the fallback scan to succeed", || async {
        (env.scan_status(&scan_id).await == "succeeded").then_some(())
    })
    .await;
    let scan = api.scan(&scan_id).await;
    assert_eq!(
        (scan["route"].as_str(), scan["route_reason"].as_str()),
        (Some("cpu"), Some("gpu_failure_fallback"))
    );
    assert_eq!(
        scan["attempts"].as_i64().unwrap(),
        delivery_limit as i64 + 1
    );
    assert_eq!(requests.load(Ordering::SeqCst), delivery_limit + 1);
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'succeeded'")
            .await,
        1
    );
    let gpu_metrics = harness::parse_metrics(
        &reqwest::get(format!("{}/metrics", gpu_worker.metrics_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        gpu_metrics
            ["scanfleet_worker_scans_finished_total{kind=video_scan,outcome=fell_back,route=gpu}"],
        1.0
    );

    cpu_worker.stop().await;
    gpu_worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// Fair escalation: one tenant flooding the CPU queue does not move
/// everyone's new scans to GPU (its scans beyond its ESCALATION_SHARE do
/// not count), while several tenants backed up together do escalate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_flood_does_not_escalate_but_a_shared_backlog_does() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.escalation_share = dispatcher::config::PerTier::all(3);
    config.backlog_high_watermark = 5;
    let dispatcher = Dispatcher::start(config).await;
    let probe = json!({ "kind": "probe" });

    // No worker: the queue only grows. 20 queued, 17 beyond the share.
    let flooder = Api::new(
        &dispatcher.base_url,
        &env.api_key("flood", Tier::Free).await,
    );
    for _ in 0..20 {
        flooder.submit(probe.clone()).await;
    }
    // The monitor (polling every 100 ms here) sees the whole queue, and
    // for many samples after that it still does not escalate.
    wait_for("the monitor to see the flood", || async {
        let depth: i64 = sqlx::query_scalar("SELECT cpu_depth FROM backlog_state")
            .fetch_one(&env.pool)
            .await
            .unwrap();
        (depth >= 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!escalated(&env).await, "one tenant escalated for everyone");
    let id = flooder.submit(probe.clone()).await;
    assert_eq!(route_of(&env, &id).await, pair("cpu", "default"));

    // Two more tenants with 3 queued each: 3 + 3 + 3 = 9 fair > 5.
    for name in ["second", "third"] {
        let api = Api::new(&dispatcher.base_url, &env.api_key(name, Tier::Free).await);
        for _ in 0..3 {
            api.submit(probe.clone()).await;
        }
    }
    wait_for("escalation on the shared backlog", || async {
        escalated(&env).await.then_some(())
    })
    .await;
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM escalation_events WHERE escalated ORDER BY at DESC LIMIT 1",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        reason.contains("beyond their tenants' share not counted"),
        "{reason}"
    );

    dispatcher.stop().await;
    env.cleanup().await;
}
