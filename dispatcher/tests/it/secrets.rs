//! Passwords in DATABASE_URL and AMQP_URL, and the keys in SECRETS_KEYS,
//! appear nowhere an operator or a log shipper reads: not in `--help` (clap
//! would print the environment's value), not in the start-up log, not in
//! `Debug` output.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{TestEnv, PATIENCE};

const DB_PASSWORD: &str = "hunter2-database-password";

fn database_url_with_password(env: &TestEnv) -> String {
    // The test server trusts local connections, so any password is accepted.
    env.database_url
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1)
}

#[tokio::test]
async fn passwords_stay_out_of_help_logs_and_debug_output() {
    let env = TestEnv::new().await;
    let database_url = database_url_with_password(&env);
    assert!(database_url.contains(DB_PASSWORD));
    let binary = env!("CARGO_BIN_EXE_dispatcher");
    let (_, key_material) = env.secrets_keys.split_once(':').unwrap();

    for args in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["keys", "list", "--help"],
    ] {
        let output = std::process::Command::new(binary)
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("AMQP_URL", &env.amqp_url)
            .env("SECRETS_KEYS", &env.secrets_keys)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("DATABASE_URL"), "{args:?}: {help}");
        assert!(
            !help.contains(DB_PASSWORD) && !help.contains(":guest@"),
            "{args:?} prints a password: {help}"
        );
        assert!(
            !help.contains(key_material),
            "{args:?} prints a key: {help}"
        );
    }

    // A real start-up, JSON logs at debug level: read until it listens.
    let mut child = tokio::process::Command::new(binary)
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("AMQP_URL", &env.amqp_url)
        .env("SECRETS_KEYS", &env.secrets_keys)
        .env("BLOB_STORE", env.blob_dir.to_string_lossy().as_ref())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let listening = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::select! {
                Ok(Some(line)) = lines.next_line() => { log.push(line); }
                Ok(Some(line)) = errors.next_line() => { log.push(line); }
            }
            if log
                .last()
                .is_some_and(|line| line.contains("dispatcher listening"))
            {
                break;
            }
        }
    })
    .await;
    // Let the background tasks connect (and log what they log) for a moment.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            tokio::select! {
                Ok(Some(line)) = lines.next_line() => { log.push(line); }
                Ok(Some(line)) = errors.next_line() => { log.push(line); }
            }
        }
    })
    .await;
    child.kill().await.unwrap();
    let log = log.join("\n");
    assert!(listening.is_ok(), "the dispatcher did not start: {log}");
    assert!(
        log.contains("dispatcher starting") && log.contains("postgres:****@"),
        "the masked URL is logged: {log}"
    );
    assert!(
        !log.contains(DB_PASSWORD) && !log.contains(":guest@"),
        "a password in the log: {log}"
    );
    assert!(
        !log.contains(key_material),
        "a SECRETS_KEYS key in the log: {log}"
    );
    assert!(
        log.contains(r#"\"secrets_keys\":[\"test\"]"#),
        "the loaded key ids are logged: {log}"
    );

    // Debug output of the parsed configuration masks both URLs.
    let cli = <dispatcher::cli::Cli as clap::Parser>::try_parse_from([
        "dispatcher",
        "serve",
        "--database-url",
        &database_url,
        "--amqp-url",
        &env.amqp_url,
        "--secrets-keys",
        &env.secrets_keys,
    ])
    .unwrap();
    let printed = format!("{cli:?}");
    assert!(
        !printed.contains(DB_PASSWORD) && !printed.contains(":guest@"),
        "{printed}"
    );
    assert!(!printed.contains(key_material), "{printed}");
    assert!(printed.contains(r#"key_ids: ["test"]"#), "{printed}");
    assert!(
        printed.contains("127.0.0.1:5432"),
        "the rest of the URL stays visible: {printed}"
    );
    env.cleanup().await;
}
