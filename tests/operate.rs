//! What an operator relies on: metrics, readiness, JSON logs, graceful stop.

use std::process::Stdio;

use harness::{wait_for, Api, Dispatcher, TestEnv, Worker};
use protocol::Tier;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use worker::config::QueueChoice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_ran() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("counted", Tier::Free).await,
    );
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.submit(json!({"kind": "probe"})).await);
    }
    let not_a_video: Value = api
        .post("/v1/uploads")
        .body("not a video")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bad = api
        .submit(json!({"kind": "video_scan", "upload_id": not_a_video["id"]}))
        .await;
    for id in ids.iter().chain([&bad]) {
        wait_for("scans to finish", || async {
            matches!(env.scan_status(id).await.as_str(), "succeeded" | "failed").then_some(())
        })
        .await;
    }

    let text = reqwest::get(format!("{}/metrics", dispatcher.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dispatcher_metrics = harness::parse_metrics(&text);
    assert_eq!(
        dispatcher_metrics["scanfleet_scans_submitted_total{reason=default,route=cpu,tier=free}"],
        6.0
    );
    assert_eq!(
        dispatcher_metrics["scanfleet_outbox_published_total{}"],
        6.0
    );

    let worker_metrics = wait_for("worker counters", || async {
        let text = reqwest::get(format!("{}/metrics", worker.metrics_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let parsed = harness::parse_metrics(&text);
        (parsed
            .get("scanfleet_worker_scans_finished_total{kind=probe,outcome=succeeded,route=cpu}")
            == Some(&5.0))
        .then_some(parsed)
    })
    .await;
    assert_eq!(
        worker_metrics
            ["scanfleet_worker_scans_finished_total{kind=video_scan,outcome=failed,route=cpu}"],
        1.0
    );
    assert_eq!(
        worker_metrics["scanfleet_worker_errors_total{code=input_not_video}"],
        1.0
    );
    assert_eq!(
        worker_metrics["scanfleet_worker_processing_seconds_count{kind=probe,route=cpu}"],
        5.0
    );
    assert_eq!(
        worker_metrics["scanfleet_worker_queue_wait_seconds_count{route=cpu}"],
        6.0
    );
    assert_eq!(
        worker_metrics["scanfleet_scan_end_to_end_seconds_count{route=cpu}"],
        6.0
    );
    assert_eq!(
        worker_metrics["scanfleet_worker_stage_seconds_count{kind=probe,stage=probe}"],
        5.0
    );
    assert!(worker_metrics["scanfleet_worker_cost_usd_total{route=cpu}"] > 0.0);
    assert_eq!(worker_metrics["scanfleet_worker_scans_in_flight{}"], 0.0);
    assert_eq!(worker_metrics["scanfleet_worker_consumer_connected{}"], 1.0);
    assert!(
        !worker_metrics
            .keys()
            .any(|name| name.starts_with("scanfleet_gpu_")),
        "no GPU here: GPU metrics are absent, not zero"
    );

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database_going_away_and_coming_back() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let urls = [
        format!("{}/readyz", dispatcher.base_url),
        format!("{}/readyz", worker.metrics_url),
    ];
    for url in &urls {
        wait_for("ready", || async {
            (status_of(url).await == 200).then_some(())
        })
        .await;
    }

    // Take this test's database away: refuse new connections, cut the open ones.
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", harness::POSTGRES))
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        env.name
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&env.name)
        .execute(&admin)
        .await
        .unwrap();
    for url in &urls {
        wait_for("not ready without the database", || async {
            (status_of(url).await == 503).then_some(())
        })
        .await;
    }
    let body: Value = reqwest::get(&urls[1]).await.unwrap().json().await.unwrap();
    assert_ne!(body["database"], "ok");
    assert_eq!(
        reqwest::get(format!("{}/healthz", dispatcher.base_url))
            .await
            .unwrap()
            .status(),
        200,
        "still alive"
    );

    sqlx::query(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        env.name
    ))
    .execute(&admin)
    .await
    .unwrap();
    for url in &urls {
        wait_for("ready again", || async {
            (status_of(url).await == 200).then_some(())
        })
        .await;
    }
    admin.close().await;
    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

fn spawn_worker_process(
    env: &TestEnv,
    name: &str,
    extra_env: &[(&str, &str)],
) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(harness::worker_binary());
    command
        .args([
            "serve",
            "--queue",
            "cpu",
            "--backend",
            "cpu",
            "--worker-name",
            name,
            "--warm-model",
            "false",
        ])
        .env("DATABASE_URL", &env.database_url)
        .env("AMQP_URL", &env.amqp_url)
        .env("BLOB_STORE", &env.blob_dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command.spawn().expect("worker binary starts")
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_scan_id_and_sigterm_finishes_in_flight_work() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("logged", Tier::Free).await,
    );
    let mut worker = spawn_worker_process(
        &env,
        "json-logger",
        &[("LOG_FORMAT", "json"), ("SHUTDOWN_GRACE", "20s")],
    );
    let scan_id = api
        .submit(json!({"kind": "probe", "params": {"hold_ms": 1500}}))
        .await;
    wait_for("the scan to start", || async {
        (env.scan_status(&scan_id).await == "running").then_some(())
    })
    .await;

    // SIGTERM mid-scan: the scan still finishes on this worker, then it exits 0.
    sigterm(&worker);
    let status = worker.wait().await.unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    assert_eq!(env.scan_status(&scan_id).await, "succeeded");
    assert_eq!(api.scan(&scan_id).await["worker"], "json-logger");

    let mut lines = tokio::io::BufReader::new(worker.stdout.take().unwrap()).lines();
    let mut scan_lines = 0;
    while let Some(line) = lines.next_line().await.unwrap() {
        let entry: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry["timestamp"].is_string() && entry["level"].is_string(),
            "{line}"
        );
        if matches!(
            entry["message"].as_str(),
            Some("scan started" | "scan finished")
        ) {
            assert_eq!(entry["span"]["scan_id"], scan_id.as_str(), "{line}");
            assert!(entry["span"]["tenant_id"].is_string(), "{line}");
            scan_lines += 1;
        }
        assert!(
            !line.contains("guest:guest"),
            "no credentials in logs: {line}"
        );
    }
    assert_eq!(scan_lines, 2);
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_period_hands_the_scan_back_to_the_queue() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("impatient", Tier::Free).await,
    );
    let mut worker = spawn_worker_process(&env, "leaving", &[("SHUTDOWN_GRACE", "300ms")]);
    let scan_id = api
        .submit(json!({"kind": "probe", "params": {"hold_ms": 3000}}))
        .await;
    wait_for("the scan to start", || async {
        (env.scan_status(&scan_id).await == "running").then_some(())
    })
    .await;
    sigterm(&worker);
    assert!(worker.wait().await.unwrap().success());
    assert_eq!(
        env.scan_status(&scan_id).await,
        "running",
        "not finished: handed back"
    );

    let successor = Worker::start(env.worker_config(QueueChoice::Cpu, "successor")).await;
    wait_for("the successor to finish it", || async {
        (env.scan_status(&scan_id).await == "succeeded").then_some(())
    })
    .await;
    assert_eq!(api.scan(&scan_id).await["worker"], "successor");
    assert_eq!(
        env.count("SELECT count(*) FROM scan_events WHERE event = 'succeeded'")
            .await,
        1
    );
    successor.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_consumer_the_broker_refuses_exits_non_zero() {
    let env = TestEnv::new().await;
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let amqp_url = env.broker_user().await;
    let worker = spawn_worker_process(
        &env,
        "refused",
        &[
            ("AMQP_URL", &amqp_url),
            ("METRICS_ADDR", &metrics_addr),
            ("LOG_FORMAT", "json"),
        ],
    );
    let readyz = format!("http://{metrics_addr}/readyz");
    wait_for("the worker to consume", || async {
        let response = reqwest::get(&readyz).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    // The broker drops the worker's connection and refuses the next one.
    env.delete_broker_user().await;
    let output = tokio::time::timeout(harness::PATIENCE, worker.wait_with_output())
        .await
        .expect("the worker exits by itself")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a failure exit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failure = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["level"] == "ERROR" && entry["task"] == "consumer")
        .unwrap_or_else(|| panic!("no error naming the consumer task in: {stdout}"));
    assert!(
        failure["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("ACCESS_REFUSED")),
        "{failure}"
    );
    env.cleanup().await;
}

/// Queue arguments are fixed when a queue is first declared: a worker
/// started with another GPU_MAX_WAIT than the dispatcher declared the GPU
/// queue with cannot consume. It exits non-zero at once, naming the setting,
/// instead of retrying for ever and never getting ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_gpu_max_wait_exits_naming_the_setting() {
    let env = TestEnv::new().await;
    // The dispatcher declares the queues (GPU_MAX_WAIT 120 s in the harness).
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = spawn_worker_process(
        &env,
        "mismatched",
        &[("GPU_MAX_WAIT", "45s"), ("LOG_FORMAT", "json")],
    );
    let output = tokio::time::timeout(harness::PATIENCE, worker.wait_with_output())
        .await
        .expect("the worker exits by itself")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a failure exit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("GPU_MAX_WAIT differs from the value the queues were declared with"),
        "the refusal names GPU_MAX_WAIT: {stdout}"
    );
    dispatcher.stop().await;
    env.cleanup().await;
}
