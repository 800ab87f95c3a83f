//! `/readyz` on the public port says `ok` or `unavailable`, never the
//! database driver's error text (which names hosts, databases and users).

use crate::harness::{wait_for, Dispatcher, TestEnv, POSTGRES};

async fn readiness(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn readyz_says_unavailable_without_the_drivers_text() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let url = dispatcher.url("/readyz");
    wait_for("ready", || async {
        (readiness(&url).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(
        readiness(&url).await.1,
        serde_json::json!({"ready": true, "database": "ok", "broker": "ok"})
    );

    // Take this test's database away: refuse new connections, cut the open ones.
    let admin = sqlx::PgPool::connect(&format!("{POSTGRES}/postgres"))
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
    let body = wait_for("not ready without the database", || async {
        let (status, body) = readiness(&url).await;
        (status == 503 && body["database"] != "ok").then_some(body)
    })
    .await;
    assert_eq!(body["database"], "unavailable");
    assert_eq!(body["ready"], false);
    let text = body.to_string();
    for leak in [env.name.as_str(), "postgres", "connection", "127.0.0.1"] {
        assert!(!text.contains(leak), "/readyz leaks {leak:?}: {text}");
    }

    sqlx::query(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        env.name
    ))
    .execute(&admin)
    .await
    .unwrap();
    wait_for("ready again", || async {
        (readiness(&url).await.0 == 200).then_some(())
    })
    .await;
    admin.close().await;
    dispatcher.stop().await;
    env.cleanup().await;
}
