//! Fair tenants: one tenant flooding submissions or uploads is answered 429
//! (with Retry-After and the IETF RateLimit headers) while another tenant
//! of the same tier is not; webhook endpoints are capped per tier.

use dispatcher::config::PerTier;
use protocol::Tier;
use serde_json::json;

use crate::harness::{expect_problem, Dispatcher, TestEnv};

#[tokio::test]
async fn a_flooding_tenant_is_limited_and_a_steady_one_is_not() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.submit_rate_per_minute = PerTier {
        // One unit back every 20 s: far longer than the flood below takes.
        free: 3,
        pro: 50,
        premium: 0,
    };
    config.upload_rate_per_minute = PerTier::all(2);
    let dispatcher = Dispatcher::start(config).await;
    let (noisy, steady) = (
        env.api_key("noisy", Tier::Free).await,
        env.api_key("steady", Tier::Free).await,
    );
    let http = reqwest::Client::new();
    let submit = |key: &str| {
        http.post(dispatcher.url("/v1/scans"))
            .bearer_auth(key)
            .json(&json!({"kind": "probe"}))
            .send()
    };

    let mut remaining = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let response = submit(&noisy).await.unwrap();
        if response.status() == 202 {
            assert_eq!(
                response.headers()["ratelimit-policy"],
                "\"submit\";q=3;w=60"
            );
            remaining.push(
                response.headers()["ratelimit"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
            continue;
        }
        refused += 1;
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=20).contains(&retry_after),
            "one unit comes back every 20 s: {retry_after}"
        );
        let ratelimit = response.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(ratelimit, format!("\"submit\";r=0;t={retry_after}"));
        expect_problem(response, 429, "rate_limited").await;
    }
    assert_eq!(
        refused, 5,
        "the flooding tenant gets its 3 a minute and no more"
    );
    let left: Vec<&str> = remaining
        .iter()
        .map(|v| v.split(';').nth(1).unwrap())
        .collect();
    assert_eq!(left, ["r=2", "r=1", "r=0"]);
    for _ in 0..3 {
        assert_eq!(
            submit(&steady).await.unwrap().status(),
            202,
            "the steady tenant never sees a 429"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM scans")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 6);

    // Uploads have their own budget, checked before the body is read.
    let upload = |key: &str| {
        http.post(dispatcher.url("/v1/uploads"))
            .bearer_auth(key)
            .body(vec![7u8; 4096])
            .send()
    };
    for _ in 0..2 {
        let response = upload(&noisy).await.unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"upload\";q=2;w=60"
        );
    }
    let response = upload(&noisy).await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 429, "rate_limited").await;
    assert_eq!(upload(&steady).await.unwrap().status(), 201);
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn webhook_endpoints_are_capped_by_tier() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_webhook_endpoints = PerTier {
        free: 2,
        pro: 3,
        premium: 0,
    };
    let dispatcher = Dispatcher::start(config).await;
    let (free, pro) = (
        env.api_key("free-co", Tier::Free).await,
        env.api_key("pro-co", Tier::Pro).await,
    );
    let http = reqwest::Client::new();
    let create = |key: &str, n: usize| {
        http.post(dispatcher.url("/v1/webhook-endpoints"))
            .bearer_auth(key)
            .json(&json!({"url": format!("https://93.184.216.34/hook/{n}")}))
            .send()
    };
    let mut ids = Vec::new();
    for n in 0..2 {
        let response = create(&free, n).await.unwrap();
        assert_eq!(response.status(), 201);
        ids.push(
            response.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let problem = expect_problem(create(&free, 2).await.unwrap(), 409, "endpoint_limit").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("free tier allows 2"),
        "{problem}"
    );
    for n in 0..3 {
        assert_eq!(
            create(&pro, n).await.unwrap().status(),
            201,
            "the pro tier's cap is its own"
        );
    }
    expect_problem(create(&pro, 3).await.unwrap(), 409, "endpoint_limit").await;
    // Deleting one makes room again.
    let deleted = http
        .delete(dispatcher.url(&format!("/v1/webhook-endpoints/{}", ids[0])))
        .bearer_auth(&free)
        .send();
    assert_eq!(deleted.await.unwrap().status(), 204);
    assert_eq!(create(&free, 3).await.unwrap().status(), 201);
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn in_flight_scans_are_capped_per_tenant() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_in_flight_scans = PerTier {
        free: 2,
        pro: 0,
        premium: 0,
    };
    let dispatcher = Dispatcher::start(config).await;
    let (busy, other) = (
        env.api_key("busy", Tier::Free).await,
        env.api_key("other", Tier::Free).await,
    );
    let http = reqwest::Client::new();
    let submit = |key: &str, idempotency_key: &str| {
        http.post(dispatcher.url("/v1/scans"))
            .bearer_auth(key)
            .header("idempotency-key", idempotency_key)
            .json(&json!({"kind": "probe"}))
            .send()
    };
    // No worker runs: accepted scans stay queued.
    let mut ids = Vec::new();
    for n in ["a", "b"] {
        let response = submit(&busy, n).await.unwrap();
        assert_eq!(response.status(), 202);
        ids.push(
            response.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let response = submit(&busy, "c").await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let problem = expect_problem(response, 429, "too_many_in_flight").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("free tier may have 2"),
        "{problem}"
    );
    // A retry of an accepted submission still gets its scan back.
    let replay = submit(&busy, "a").await.unwrap();
    assert_eq!(replay.status(), 202);
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["id"],
        ids[0].as_str()
    );
    assert_eq!(
        submit(&other, "a").await.unwrap().status(),
        202,
        "another tenant is not held back"
    );
    // A finished (here: canceled) scan frees a place.
    let canceled = http
        .delete(dispatcher.url(&format!("/v1/scans/{}", ids[1])))
        .bearer_auth(&busy)
        .send();
    assert_eq!(canceled.await.unwrap().status(), 200);
    assert_eq!(submit(&busy, "c").await.unwrap().status(), 202);
    dispatcher.stop().await;
    env.cleanup().await;
}
