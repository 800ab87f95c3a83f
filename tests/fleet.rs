//! End-to-end fleet tests: dispatcher → PostgreSQL + RabbitMQ → workers → result.
//! One test binary (faster to link); each module is one area.

mod api_fuzz;
mod console;
mod console_ops;
mod item_crop;
mod operate;
mod replicas;
mod routing;
mod video;
mod webhooks;

use futures::StreamExt;
use harness::{wait_for, Api, Dispatcher, TestEnv, Worker};
use lapin::options::BasicPublishOptions;
use protocol::Tier;
use serde_json::{json, Value};
use worker::config::QueueChoice;

fn mandatory() -> BasicPublishOptions {
    BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    }
}

fn probe() -> Value {
    json!({ "kind": "probe" })
}

async fn wait_for_status(env: &TestEnv, scan_id: &str, status: &str) {
    wait_for(&format!("scan {scan_id} to be {status}"), || async {
        (env.scan_status(scan_id).await == status).then_some(())
    })
    .await;
}

async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are RFC 9457 problem details"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code, "problem: {problem}");
    assert_eq!(problem["status"], status);
    assert!(
        problem["title"].is_string()
            && problem["detail"].is_string()
            && problem["type"].is_string()
    );
    problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_probes_each_succeed_exactly_once() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let workers = vec![
        Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await,
        Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-2")).await,
        Worker::start(env.worker_config(QueueChoice::Gpu, "gpu-1")).await,
    ];
    let free = Api::new(
        &dispatcher.base_url,
        &env.api_key("free-co", Tier::Free).await,
    );
    let premium = Api::new(
        &dispatcher.base_url,
        &env.api_key("premium-co", Tier::Premium).await,
    );

    // (premium?, scan id); completion order is arbitrary.
    let ids: Vec<(bool, String)> = futures::stream::iter(0..500)
        .map(|i| {
            let premium_scan = i % 5 == 0;
            let api = if premium_scan {
                premium.clone()
            } else {
                free.clone()
            };
            async move { (premium_scan, api.submit(probe()).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(ids.len(), 500);

    wait_for("500 scans to succeed", || async {
        (env.count("SELECT count(*) FROM scans WHERE status = 'succeeded'")
            .await
            == 500)
            .then_some(())
    })
    .await;
    // Exactly one result write per scan, and every scan ran where it was routed.
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'succeeded'")
            .await,
        500
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT scan_id) FROM scan_events WHERE event = 'succeeded'")
            .await,
        500
    );
    assert_eq!(
        env.count("SELECT count(*) FROM scans WHERE route = 'gpu' AND route_reason = 'tier'")
            .await,
        100
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM scans WHERE route = 'gpu' AND result->>'queue' <> 'scans.gpu'"
        )
        .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await,
        0
    );

    let free_scan = ids
        .iter()
        .find(|(premium_scan, _)| !premium_scan)
        .map(|(_, id)| id)
        .unwrap();
    let scan = free.scan(free_scan).await;
    assert_eq!(scan["status"], "succeeded");
    assert_eq!(scan["result"]["kind"], "probe");
    assert_eq!(scan["result"]["backend"], "cpu-ndarray");
    assert!(scan["result"]["cost_usd"].as_f64().unwrap() >= 0.0);
    assert!(scan["result"]["processing_ms"].is_number());
    assert_eq!(scan["attempts"], 1);

    for worker in workers {
        worker.stop().await;
    }
    dispatcher.stop().await;
    env.cleanup().await;
}

/// Seed 004's MAX_CONCURRENT_JOBS: with a limit of 2, the scans' running
/// intervals (claim to result, both written by the worker) never overlap
/// more than 2 deep, and do reach 2 (the limit is used, not undercut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_runs_more_scans_at_once_than_max_concurrent_jobs() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let mut config = env.worker_config(QueueChoice::Cpu, "cpu-1");
    config.max_concurrent_jobs = 2;
    let worker = Worker::start(config).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("bounded", Tier::Free).await,
    );
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            api.submit(json!({"kind": "probe", "params": {"hold_ms": 300}}))
                .await,
        );
    }
    for id in &ids {
        wait_for_status(&env, id, "succeeded").await;
    }
    let intervals: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT started_at, finished_at FROM scans")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(intervals.len(), 8);
    // Sweep the start and end instants; at a tie an end comes first (a
    // permit is released before the next scan can claim).
    let mut instants: Vec<_> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    instants.sort();
    let deepest = instants
        .iter()
        .scan(0, |running, &(_, step)| {
            *running += step;
            Some(*running)
        })
        .max();
    assert_eq!(deepest, Some(2), "{intervals:?}");

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn idempotency_key_replays_same_body_and_refuses_a_different_one() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);
    let submit = |body: Value, key: &str| {
        api.post("/v1/scans")
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };

    let first = submit(
        json!({"kind": "probe", "metadata": {"a": 1, "b": 2}}),
        "order-1",
    )
    .await
    .unwrap();
    assert_eq!(first.status(), 202);
    let location = first.headers()["location"].to_str().unwrap().to_string();
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/scans/{}", first["id"].as_str().unwrap())
    );

    // Same body (keys in another order) → the same scan, nothing new queued.
    let again = submit(
        json!({"metadata": {"b": 2, "a": 1}, "kind": "probe"}),
        "order-1",
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(env.count("SELECT count(*) FROM scans").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 1);

    let conflict = submit(json!({"kind": "probe", "metadata": {"a": 9}}), "order-1")
        .await
        .unwrap();
    assert_problem(conflict, 409, "idempotency_conflict").await;

    // Another tenant may use the same key for its own scan.
    let other = Api::new(
        &dispatcher.base_url,
        &env.api_key("other", Tier::Free).await,
    );
    let theirs = other
        .post("/v1/scans")
        .header("Idempotency-Key", "order-1")
        .json(&probe())
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 202);

    let bad_key = submit(probe(), &"x".repeat(300)).await.unwrap();
    assert_problem(bad_key, 400, "invalid_idempotency_key").await;
    let duplicate = api
        .post("/v1/scans")
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&probe())
        .send()
        .await
        .unwrap();
    assert_problem(duplicate, 400, "duplicate_header").await;

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn only_a_valid_key_gets_in_and_only_its_tenant_scans_are_visible() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let alice = Api::new(
        &dispatcher.base_url,
        &env.api_key("alice", Tier::Free).await,
    );
    let bob = Api::new(&dispatcher.base_url, &env.api_key("bob", Tier::Free).await);
    let scan_id = alice.submit(probe()).await;

    let http = reqwest::Client::new();
    let no_key = http
        .post(format!("{}/v1/scans", dispatcher.base_url))
        .json(&probe())
        .send()
        .await
        .unwrap();
    assert_problem(no_key, 401, "unauthorized").await;
    let bad_key = Api::new(&dispatcher.base_url, "sf_not-a-real-key")
        .post("/v1/scans")
        .json(&probe())
        .send()
        .await
        .unwrap();
    assert_problem(bad_key, 401, "unauthorized").await;
    let basic = http
        .get(format!("{}/v1/scans", dispatcher.base_url))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_problem(basic, 401, "unauthorized").await;

    // Bob cannot see, list or cancel Alice's scan: it does not exist for him.
    let peek = bob
        .get(&format!("/v1/scans/{scan_id}"))
        .send()
        .await
        .unwrap();
    assert_problem(peek, 404, "not_found").await;
    let cancel = bob
        .delete(&format!("/v1/scans/{scan_id}"))
        .send()
        .await
        .unwrap();
    assert_problem(cancel, 404, "not_found").await;
    let listed: Value = bob
        .get("/v1/scans")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    assert_eq!(alice.scan(&scan_id).await["status"], "queued");
    let garbage_id = alice.get("/v1/scans/not-a-uuid").send().await.unwrap();
    assert_problem(garbage_id, 404, "not_found").await;

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_scan_canceled_while_queued_is_skipped_and_running_ones_cannot_be_canceled() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);

    let canceled = api.submit(probe()).await;
    let response = api
        .delete(&format!("/v1/scans/{canceled}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "canceled");
    // Wait until its message is on the queue, so the worker really sees it.
    wait_for("the canceled scan to be published", || async {
        (env.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await
            == 0)
            .then_some(())
    })
    .await;

    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let later = api.submit(probe()).await;
    wait_for_status(&env, &later, "succeeded").await;
    // The worker consumed both messages (one queue, FIFO): the canceled scan
    // was acked without running.
    let skipped = api.scan(&canceled).await;
    assert_eq!(skipped["status"], "canceled");
    assert_eq!(skipped["attempts"], 0);
    assert!(skipped["result"].is_null());

    let too_late = api
        .delete(&format!("/v1/scans/{later}"))
        .send()
        .await
        .unwrap();
    assert_problem(too_late, 409, "not_cancelable").await;
    let twice = api
        .delete(&format!("/v1/scans/{canceled}"))
        .send()
        .await
        .unwrap();
    assert_problem(twice, 409, "not_cancelable").await;

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn list_pages_through_every_scan_once_and_filters_by_status() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);
    let mut submitted = Vec::new();
    for _ in 0..7 {
        submitted.push(api.submit(probe()).await);
    }
    let canceled = submitted[2].clone();
    assert_eq!(
        api.delete(&format!("/v1/scans/{canceled}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/scans?limit=3&cursor={cursor}"),
            None => "/v1/scans?limit=3".to_string(),
        };
        let page: Value = api.get(&path).send().await.unwrap().json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        page_sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(page_sizes, [3, 3, 1]);
    submitted.reverse(); // newest first
    assert_eq!(seen, submitted);

    let only_canceled: Value = api
        .get("/v1/scans?status=canceled")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = only_canceled["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [canceled.as_str()]);

    assert_problem(
        api.get("/v1/scans?status=lost").send().await.unwrap(),
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        api.get("/v1/scans?limit=0").send().await.unwrap(),
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        api.get("/v1/scans?limit=abc").send().await.unwrap(),
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        api.get("/v1/scans?cursor=zzz").send().await.unwrap(),
        400,
        "invalid_cursor",
    )
    .await;

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_requests_get_problem_details_and_create_nothing() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);
    let raw = |body: &'static str| {
        api.post("/v1/scans")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    assert_problem(
        raw("{\"kind\": \"probe\"").await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    assert_problem(raw("").await.unwrap(), 400, "malformed_json").await;
    // serde would fill a struct from an array, fields by position: refused.
    assert_problem(raw("[\"probe\"]").await.unwrap(), 422, "invalid_body").await;
    assert_problem(raw("{\"kind\": 7}").await.unwrap(), 422, "invalid_body").await;
    assert_problem(raw("[1, 2]").await.unwrap(), 422, "invalid_body").await;
    assert_problem(
        raw("{\"kind\": \"probe\", \"colour\": \"red\"}")
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    let unknown = assert_problem(
        raw("{\"kind\": \"teleport\"}").await.unwrap(),
        422,
        "unknown_kind",
    )
    .await;
    assert!(
        unknown["detail"].as_str().unwrap().contains("probe"),
        "lists the known kinds"
    );
    let submit = |body: Value| api.post("/v1/scans").json(&body).send();
    assert_problem(
        submit(json!({"kind": "video_scan"})).await.unwrap(),
        422,
        "invalid_source",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "video_scan", "source_url": "ftp://example.com/a.mp4"}))
            .await
            .unwrap(),
        422,
        "invalid_url",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "video_scan", "upload_id": uuid::Uuid::new_v4()}))
            .await
            .unwrap(),
        422,
        "unknown_upload",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "probe", "params": {"hold_ms": -1}}))
            .await
            .unwrap(),
        422,
        "invalid_params",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "probe", "metadata": {"blob": "x".repeat(20_000)}}))
            .await
            .unwrap(),
        422,
        "metadata_too_large",
    )
    .await;
    // Past the JSON body limit (64 KiB here) before parsing.
    assert_problem(
        submit(json!({"kind": "probe", "metadata": {"blob": "x".repeat(70_000)}}))
            .await
            .unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "probe", "callback_url": "not a url"}))
            .await
            .unwrap(),
        422,
        "callback_url_refused",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "probe", "item_type": "card\u{0}"}))
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert_problem(
        submit(json!({"kind": "probe", "metadata": {"k": "\u{0}"}}))
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    // Unicode that is fine is kept as sent.
    let unicode = json!({"kind": "probe", "item_type": "ポケモン 🃏 e\u{301}", "metadata": {"名前": "リザードン", "rtl": "\u{202e}abc"}});
    let scan_id = api.submit(unicode.clone()).await;
    let scan = api.scan(&scan_id).await;
    assert_eq!(scan["item_type"], unicode["item_type"]);
    assert_eq!(scan["metadata"], unicode["metadata"]);
    sqlx::query("DELETE FROM scans")
        .execute(&env.pool)
        .await
        .unwrap();
    assert_problem(
        api.get("/v2/nothing").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_eq!(env.count("SELECT count(*) FROM scans").await, 0);

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn uploads_are_stored_size_limited_and_usable_as_scan_input() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await; // 1 MiB upload limit
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);

    let content = vec![7u8; 300_000];
    let response = api
        .post("/v1/uploads")
        .header("content-type", "video/mp4")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let upload: Value = response.json().await.unwrap();
    assert_eq!(upload["size_bytes"], 300_000);
    let upload_id = upload["id"].as_str().unwrap();
    let stored = std::fs::read(
        env.blob_dir
            .join(format!("uploads/{}", {
                let tenant: uuid::Uuid = sqlx::query_scalar("SELECT tenant_id FROM uploads")
                    .fetch_one(&env.pool)
                    .await
                    .unwrap();
                tenant
            }))
            .join(upload_id),
    )
    .unwrap();
    assert_eq!(stored, content);

    let too_big = api
        .post("/v1/uploads")
        .body(vec![0u8; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_problem(too_big, 413, "payload_too_large").await;
    let empty = api
        .post("/v1/uploads")
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();
    assert_problem(empty, 400, "empty_upload").await;
    assert_eq!(env.count("SELECT count(*) FROM uploads").await, 1);

    let scan_id = api
        .submit(json!({"kind": "video_scan", "upload_id": upload_id, "item_type": "trading_card"}))
        .await;
    let scan = api.scan(&scan_id).await;
    assert_eq!(scan["input"]["upload_id"], upload_id);
    let other = Api::new(
        &dispatcher.base_url,
        &env.api_key("other", Tier::Free).await,
    );
    let foreign = other
        .post("/v1/scans")
        .json(&json!({"kind": "video_scan", "upload_id": upload_id}))
        .send()
        .await
        .unwrap();
    assert_problem(foreign, 422, "unknown_upload").await;

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn scans_accepted_while_the_broker_is_down_complete_when_it_returns() {
    let env = TestEnv::new().await;
    env.delete_vhost().await; // the broker is unreachable for this test's processes
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(api.submit(probe()).await);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await,
        20
    );
    let ready = reqwest::get(format!("{}/readyz", dispatcher.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready without a broker");

    env.create_vhost().await; // the broker is back
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    for id in &ids {
        wait_for_status(&env, id, "succeeded").await;
    }
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'succeeded'")
            .await,
        20
    );
    let ready = reqwest::get(format!("{}/readyz", dispatcher.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_scan_on_a_killed_worker_is_finished_by_another_with_one_result() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);

    let mut doomed = tokio::process::Command::new(harness::worker_binary())
        .args([
            "serve",
            "--queue",
            "cpu",
            "--backend",
            "cpu",
            "--worker-name",
            "doomed",
        ])
        .env("DATABASE_URL", &env.database_url)
        .env("AMQP_URL", &env.amqp_url)
        .env("BLOB_STORE", &env.blob_dir)
        .kill_on_drop(true)
        .spawn()
        .expect("worker binary starts");
    let scan_id = api
        .submit(json!({"kind": "probe", "params": {"hold_ms": 4_000}}))
        .await;
    wait_for("the doomed worker to start the scan", || async {
        let worker: Option<Option<String>> = sqlx::query_scalar(
            "SELECT worker FROM scans WHERE id = $1::uuid AND status = 'running'",
        )
        .bind(&scan_id)
        .fetch_optional(&env.pool)
        .await
        .unwrap();
        (worker.flatten().as_deref() == Some("doomed")).then_some(())
    })
    .await;
    doomed.start_kill().expect("SIGKILL"); // tokio's kill is SIGKILL on unix
    doomed.wait().await.unwrap();

    // The broker redelivers the unacked message; the survivor finishes it.
    let survivor = Worker::start(env.worker_config(QueueChoice::Cpu, "survivor")).await;
    wait_for_status(&env, &scan_id, "succeeded").await;
    let scan = api.scan(&scan_id).await;
    assert_eq!(scan["worker"], "survivor");
    assert_eq!(scan["attempts"], 2);
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'succeeded'")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'started'")
            .await,
        2
    );

    survivor.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_consumption_goes_on() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);

    let connection = protocol::topology::connect(&env.amqp_url, "test-poisoner")
        .await
        .unwrap();
    let channel = protocol::topology::confirm_channel(&connection)
        .await
        .unwrap();
    env.service_config()
        .topology()
        .declare(&channel)
        .await
        .unwrap();
    channel
        .basic_publish(
            "scans",
            "cpu",
            mandatory(),
            b"\x00 definitely not json",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let after = api.submit(probe()).await;
    wait_for_status(&env, &after, "succeeded").await;
    let metrics = wait_for(
        "the dead-letter watcher to count the poison message",
        || async {
            let text = reqwest::get(format!("{}/metrics", dispatcher.base_url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("scanfleet_scans_dead_lettered_total{reason=\"undecodable\"} 1")
                .then_some(text)
        },
    )
    .await;
    assert!(metrics.contains("scanfleet_outbox_published_total 1"));
    let worker_metrics = reqwest::get(format!("{}/metrics", worker.metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        worker_metrics.contains("kind=\"unknown\",outcome=\"undecodable\",route=\"cpu\"} 1"),
        "{worker_metrics}"
    );

    connection.close(200, "done").await.unwrap();
    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_dead_lettered_scan_is_marked_failed() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("acme", Tier::Free).await);
    let scan_id = api.submit(probe()).await;
    env.dead_letter(&scan_id).await;
    wait_for_status(&env, &scan_id, "failed").await;
    let scan = api.scan(&scan_id).await;
    assert_eq!(scan["error"]["code"], "dead_lettered");

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", dispatcher.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/v1/scans", "/v1/scans/{id}", "/v1/uploads"] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    assert!(doc["paths"]["/v1/scans"]["post"]["responses"]["202"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    assert_eq!(
        reqwest::get(format!("{}/healthz", dispatcher.base_url))
            .await
            .unwrap()
            .status(),
        200
    );
    dispatcher.stop().await;
    env.cleanup().await;
}
