//! One tenant cannot see or touch another's webhook endpoints, deliveries
//! or redeliveries: every such request answers as for something that does
//! not exist (404), and changes nothing.

use protocol::Tier;
use serde_json::{json, Value};

use crate::harness::{expect_problem, wait_for, Dispatcher, TestEnv};

/// A receiver that answers 200 to everything.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn webhook_endpoints_and_deliveries_are_private_to_their_tenant() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let (alice, bob) = (
        env.api_key("alice", Tier::Free).await,
        env.api_key("bob", Tier::Free).await,
    );
    let http = reqwest::Client::new();
    let receiver = receiver().await;

    // Alice: an endpoint, and a canceled scan whose webhooks go to it and to a callback URL.
    let endpoint: Value = http
        .post(dispatcher.url("/v1/webhook-endpoints"))
        .bearer_auth(&alice)
        .json(&json!({"url": format!("{receiver}/endpoint")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let scan: Value = http
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(&alice)
        .json(&json!({"kind": "probe", "callback_url": format!("{receiver}/callback")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scan_id = scan["id"].as_str().unwrap();
    let canceled = http
        .delete(dispatcher.url(&format!("/v1/scans/{scan_id}")))
        .bearer_auth(&alice)
        .send()
        .await;
    assert_eq!(canceled.unwrap().status(), 200);
    let deliveries_url = dispatcher.url(&format!("/v1/scans/{scan_id}/deliveries"));
    let deliveries: Vec<Value> = wait_for("both deliveries to be made", || async {
        let list: Vec<Value> = http
            .get(&deliveries_url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (list.len() == 2 && list.iter().all(|d| d["status"] == "delivered")).then_some(list)
    })
    .await;
    let delivery_id = deliveries[0]["id"].as_str().unwrap();
    let redeliver_url = dispatcher.url(&format!(
        "/v1/scans/{scan_id}/deliveries/{delivery_id}/redeliver"
    ));

    // Bob sees none of it and can change none of it.
    let listed: Vec<Value> = http
        .get(dispatcher.url("/v1/webhook-endpoints"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let endpoint_url = dispatcher.url(&format!("/v1/webhook-endpoints/{endpoint_id}"));
    expect_problem(
        http.delete(&endpoint_url)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let rotate = http
        .post(format!("{endpoint_url}/rotate-secret"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    expect_problem(rotate, 404, "not_found").await;
    expect_problem(
        http.get(&deliveries_url)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_problem(
        http.post(&redeliver_url)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // Not through one of his own scans either.
    let own: Value = http
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(&bob)
        .json(&json!({"kind": "probe"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own_id = own["id"].as_str().unwrap();
    let sideways = dispatcher.url(&format!(
        "/v1/scans/{own_id}/deliveries/{delivery_id}/redeliver"
    ));
    expect_problem(
        http.post(&sideways).bearer_auth(&bob).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let secret = |key: &str| {
        let request = http
            .get(dispatcher.url("/v1/webhook-endpoints/callback-secret"))
            .bearer_auth(key)
            .send();
        async move {
            request.await.unwrap().json::<Value>().await.unwrap()["secret"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_ne!(
        secret(&alice).await,
        secret(&bob).await,
        "each tenant signs with its own secret"
    );

    // Nothing changed; Alice can still do all of it.
    let (endpoints, pending): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_endpoints), (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending')",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((endpoints, pending), (1, 0));
    assert_eq!(
        http.post(&redeliver_url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let rotate = http
        .post(format!("{endpoint_url}/rotate-secret"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 200);
    assert_eq!(
        http.delete(&endpoint_url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    dispatcher.stop().await;
    env.cleanup().await;
}
