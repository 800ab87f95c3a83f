//! `source_url` is checked at submit: every spelling of a private address is
//! refused with 422 `source_url_refused` before anything is stored; callback
//! and endpoint URLs likewise (`callback_url_refused`).

use protocol::Tier;
use serde_json::json;

use crate::harness::{expect_problem, wait_for, Dispatcher, TestEnv};

#[tokio::test]
async fn private_source_urls_are_refused_at_submit() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.webhook_allow_hosts.clear();
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("attacker", Tier::Free).await;
    let http = reqwest::Client::new();
    for source in [
        "http://127.0.0.1/v.mp4",
        "http://2130706433/v.mp4",
        "http://0x7f000001/v.mp4",
        "http://0177.0.0.1/v.mp4",
        "http://127.1/v.mp4",
        "http://127.0.0.1./v.mp4",
        "http://good.example@127.0.0.1/v.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "http://[fec0::1]/",
        "http://localhost/v.mp4",
    ] {
        let response = http
            .post(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .json(&json!({"kind": "video_scan", "source_url": source}))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 422, "source_url_refused").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("source_url: "),
            "{problem}"
        );
    }
    for (source, code) in [
        ("ftp://example.com/v.mp4", "invalid_url"),
        ("http://", "invalid_url"),
    ] {
        let response = http
            .post(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .json(&json!({"kind": "video_scan", "source_url": source}))
            .send()
            .await
            .unwrap();
        expect_problem(response, 422, code).await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM scans")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no refused submission is stored");
    // A public address is accepted (the worker checks again when it fetches).
    let response = http
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(&key)
        .json(&json!({"kind": "video_scan", "source_url": "https://93.184.216.34/v.mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    // Callback and endpoint URLs meet the same check, names resolved too.
    for url in [
        "http://localhost:9/hook",
        "http://2130706433/hook",
        "http://[2002:7f00:1::]/hook",
    ] {
        let response = http
            .post(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .json(&json!({"kind": "probe", "callback_url": url}))
            .send()
            .await
            .unwrap();
        expect_problem(response, 422, "callback_url_refused").await;
        let response = http
            .post(dispatcher.url("/v1/webhook-endpoints"))
            .bearer_auth(&key)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        expect_problem(response, 422, "callback_url_refused").await;
    }
    dispatcher.stop().await;
    env.cleanup().await;
}

/// A name that passed at submit and resolves to a private address by the
/// time of delivery (DNS answers change) is refused before connecting. The
/// delivery row is written directly, as if `localhost` had been public at
/// submit.
#[tokio::test]
async fn names_are_checked_again_when_delivering() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.webhook_allow_hosts.clear();
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("rebinder", Tier::Free).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let response = reqwest::Client::new()
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(&key)
        .json(&json!({"kind": "probe"}))
        .send()
        .await
        .unwrap();
    let scan: serde_json::Value = response.json().await.unwrap();
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, message_id, scan_id, tenant_id, url, event_type, payload)
         SELECT gen_random_uuid(), 'msg_rebound', id, tenant_id, $2, 'scan.succeeded', '{}'::jsonb FROM scans WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(scan["id"].as_str().unwrap()).unwrap())
    .bind(format!("http://localhost:{port}/hook"))
    .execute(&env.pool)
    .await
    .unwrap();
    let (outcome, error): (String, String) = wait_for("the delivery attempt", || async {
        sqlx::query_as("SELECT outcome, error FROM webhook_attempts")
            .fetch_optional(&env.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(outcome, "blocked");
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing connected to the listener"
    );
    dispatcher.stop().await;
    env.cleanup().await;
}
