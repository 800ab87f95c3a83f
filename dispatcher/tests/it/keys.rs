//! `dispatcher keys create | list | revoke | rotate`, run as the operator
//! runs them (the built binary), checked against the API.

use std::process::Output;

use dispatcher::keys::list_keys;

use crate::harness::{Dispatcher, TestEnv};

fn keys(env: &TestEnv, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dispatcher"))
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", &env.database_url)
        .env("RUST_LOG", "off")
        .output()
        .expect("dispatcher binary runs")
}

/// Runs a `keys` command that must succeed; returns its stdout, trimmed.
fn keys_ok(env: &TestEnv, args: &[&str]) -> String {
    let output = keys(env, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "keys {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Runs a `keys` command that must fail; returns its stderr.
fn keys_err(env: &TestEnv, args: &[&str]) -> String {
    let output = keys(env, args);
    assert!(!output.status.success(), "keys {args:?} should have failed");
    String::from_utf8(output.stderr).unwrap()
}

async fn answer(dispatcher: &Dispatcher, key: &str) -> u16 {
    let response = reqwest::Client::new()
        .get(dispatcher.url("/v1/scans"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn tier_of(env: &TestEnv, tenant: &str) -> String {
    sqlx::query_scalar("SELECT tier FROM tenants WHERE name = $1")
        .bind(tenant)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_are_listed_revoked_and_rotated_and_tiers_change_only_on_request() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;

    let first = keys_ok(&env, &["create", "--tenant", "acme", "--tier", "pro"]);
    assert!(
        first.starts_with("sf_") && !first.contains('\n'),
        "only the key on stdout: {first}"
    );
    assert_eq!(answer(&dispatcher, &first).await, 200);

    // A different tier for an existing tenant is refused, and changes nothing.
    let refused = keys_err(&env, &["create", "--tenant", "acme", "--tier", "free"]);
    assert!(
        refused.contains("--set-tier") && refused.contains("pro"),
        "{refused}"
    );
    assert_eq!(tier_of(&env, "acme").await, "pro");
    assert_eq!(
        list_keys(&env.pool, Some("acme")).await.unwrap().len(),
        1,
        "no key made by the refused create"
    );
    let second = keys_ok(&env, &["create", "--tenant", "acme", "--tier", "pro"]);
    keys_ok(
        &env,
        &[
            "create",
            "--tenant",
            "acme",
            "--tier",
            "premium",
            "--set-tier",
        ],
    );
    assert_eq!(tier_of(&env, "acme").await, "premium");
    keys_ok(&env, &["create", "--tenant", "other", "--admin"]);

    // The listing shows ids and prefixes, never a key.
    let listing = keys_ok(&env, &["list", "--tenant", "acme"]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "header and three keys: {listing}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PREFIX") && lines[0].contains("STATE")
    );
    assert!(
        !listing.contains(&first) && !listing.contains(&second),
        "{listing}"
    );
    assert!(
        listing.contains(&first[..9]) && !listing.contains("other"),
        "{listing}"
    );
    assert_eq!(
        keys_ok(&env, &["list"]).lines().count(),
        5,
        "every tenant's keys"
    );
    let ids: Vec<String> = list_keys(&env.pool, Some("acme"))
        .await
        .unwrap()
        .iter()
        .map(|k| k.id.to_string())
        .collect();

    // Rotation with a grace period: both keys work until the old one is revoked.
    let rotated = keys_ok(&env, &["rotate", &ids[0], "--grace", "1h"]);
    assert!(rotated.starts_with("sf_") && rotated != first);
    assert_eq!(
        (
            answer(&dispatcher, &first).await,
            answer(&dispatcher, &rotated).await
        ),
        (200, 200)
    );
    assert!(keys_ok(&env, &["list", "--tenant", "acme"]).contains("active until"));
    keys_ok(&env, &["revoke", &ids[0]]);
    assert_eq!(
        (
            answer(&dispatcher, &first).await,
            answer(&dispatcher, &rotated).await
        ),
        (401, 200)
    );
    assert!(keys_err(&env, &["revoke", &ids[0]]).contains("already revoked"));
    assert!(keys_err(&env, &["rotate", &ids[0]]).contains("already revoked"));

    // Rotation without grace stops the old key at once.
    let replacement = keys_ok(&env, &["rotate", &ids[1]]);
    assert_eq!(
        (
            answer(&dispatcher, &second).await,
            answer(&dispatcher, &replacement).await
        ),
        (401, 200)
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert!(keys_err(&env, &["revoke", &unknown]).contains("no API key"));
    assert!(keys_err(&env, &["revoke", "not-a-uuid"]).contains("invalid"));

    dispatcher.stop().await;
    env.cleanup().await;
}
