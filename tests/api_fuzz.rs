//! API fuzzing: schemathesis generates requests from the dispatcher's own
//! `/openapi.json` (valid ones, invalid ones, and the schema's boundaries)
//! and checks every response: no 5xx, status codes, content types and bodies
//! as documented, invalid data refused, auth enforced.

use harness::{Dispatcher, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    // An admin key reaches every operation, the routing policy included.
    let key = env.admin_key().await;
    let reports = tempfile::tempdir().unwrap();
    let schemathesis = harness::venv_bin("schemathesis");
    let run = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/openapi.json", dispatcher.base_url))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all"])
        .args(["--max-examples", "25", "--seed", "20261125", "--workers", "2"])
        .args(["--no-color", "--output-truncate", "false", "--report", "junit", "--report-dir"])
        .arg(reports.path())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} not runnable ({e}); scripts/test installs the venv", schemathesis.display()));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "schemathesis found problems:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    // It really exercised the API (a run that found no operations also passes).
    let junit = std::fs::read_to_string(reports.path().join("junit.xml")).unwrap();
    assert!(junit.matches("<testcase").count() >= 8, "too few operations tested:\n{junit}");

    dispatcher.stop().await;
    env.cleanup().await;
}
