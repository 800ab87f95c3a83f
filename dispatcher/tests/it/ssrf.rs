//! `source_url` is checked at submit: every spelling of a private address is
//! refused with 422 `source_url_refused` before anything is stored; callback
//! and endpoint URLs likewise (`callback_url_refused`).

use protocol::Tier;
use serde_json::json;

use crate::harness::{expect_problem, Dispatcher, TestEnv};

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
            problem["detail"].as_str().unwrap().starts_with("source_url: "),
            "{problem}"
        );
    }
    for (source, code) in [
        ("ftp://example.com/v.mp4", "source_url_refused"),
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
