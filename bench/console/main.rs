//! bench/console: the operator console's server time per page with a million
//! scans in the table (issue 25's "< 100 ms per page at 1 M scans").
//!
//! The dispatcher runs as its own process (the optimised build the
//! benchmarks share). One million scans over 30 days are inserted with SQL
//! (a large tenant with 99.5 % of them and a small one; 1 % failed, 2 % routed
//! to the GPU for a backlog, each with a result and a cost), then every page
//! an operator opens is fetched over a logged-in session: warmed three
//! times, then timed `--requests` times each. Times are client-side over
//! loopback, so they bound the server time from above. Printed, never
//! asserted: `cargo run -p scanfleet-bench --bin console [-- --scans N]`.
//! There is no peer: the goal is an absolute budget, and the row count and
//! the machine's cores are printed with it.

use std::time::{Duration, Instant};

use clap::Parser;
use harness::processes::{FleetSettings, ProcessFleet};
use harness::TestEnv;
use protocol::Tier;

#[derive(Debug, Parser)]
struct Args {
    /// Scans in the table.
    #[arg(long, default_value_t = 1_000_000)]
    scans: i64,
    /// Timed requests per page (after three warm-up requests).
    #[arg(long, default_value_t = 20)]
    requests: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// Fills `scans` with `count` rows over the last 30 days.
async fn fill(
    env: &TestEnv,
    large: uuid::Uuid,
    small: uuid::Uuid,
    count: i64,
) -> anyhow::Result<()> {
    let seconds_per_scan = 30.0 * 86_400.0 / count as f64;
    sqlx::query(
        r#"INSERT INTO scans (id, tenant_id, kind, input, status, route, route_reason, attempts,
                              worker, backend, result, created_at, started_at, finished_at)
           SELECT gen_random_uuid(), CASE WHEN i % 200 = 1 THEN $2 ELSE $1 END,
                  CASE WHEN i % 3 = 0 THEN 'video_scan' ELSE 'probe' END, '{}'::jsonb,
                  CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'succeeded' END,
                  CASE WHEN i % 50 = 7 THEN 'gpu' ELSE 'cpu' END,
                  CASE WHEN i % 50 = 7 THEN 'backlog' ELSE 'default' END, 1,
                  'bench-worker', 'cpu-ndarray',
                  CASE WHEN i % 100 = 0 THEN NULL
                       ELSE jsonb_build_object('kind', 'probe', 'cost_usd', 0.0004) END,
                  t, t + interval '20 ms', t + interval '900 ms'
             FROM generate_series(1, $3) i,
                  LATERAL (SELECT now() - make_interval(secs => i * $4) AS t) at"#,
    )
    .bind(large)
    .bind(small)
    .bind(count)
    .bind(seconds_per_scan)
    .execute(&env.pool)
    .await?;
    sqlx::query("ANALYZE scans").execute(&env.pool).await?;
    Ok(())
}

async fn tenant_of(env: &TestEnv, name: &str) -> anyhow::Result<uuid::Uuid> {
    Ok(sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_one(&env.pool)
        .await?)
}

/// A logged-in console session's cookie.
async fn log_in(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/ui/login"))
        .form(&[("key", key)])
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 303,
        "login answered {}",
        response.status()
    );
    let cookie = response.headers()["set-cookie"].to_str()?;
    Ok(cookie.split(';').next().unwrap_or_default().to_string())
}

struct Timing {
    page: String,
    bytes: usize,
    p50: Duration,
    p95: Duration,
    max: Duration,
}

async fn time_page(
    client: &reqwest::Client,
    base: &str,
    cookie: &str,
    (label, path): (&str, String),
    requests: usize,
) -> anyhow::Result<Timing> {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for round in 0..requests + 3 {
        let started = Instant::now();
        let response = client
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "{path} answered {}",
            response.status()
        );
        bytes = response.bytes().await?.len();
        if round >= 3 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(Timing {
        page: format!("{label} (`{path}`)"),
        bytes,
        p50: at(0.5),
        p95: at(0.95),
        max: *times.last().expect("at least one request"),
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let admin_key = env.admin_key().await;
    let large_key = env.api_key("large-tenant", Tier::Pro).await;
    env.api_key("small-tenant", Tier::Free).await;
    let (large, small) = (
        tenant_of(&env, "large-tenant").await?,
        tenant_of(&env, "small-tenant").await?,
    );
    let started = Instant::now();
    fill(&env, large, small, args.scans).await?;
    eprintln!(
        "inserted {} scans in {:.1} s",
        args.scans,
        started.elapsed().as_secs_f64()
    );
    let one_scan: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM scans WHERE tenant_id = $1 ORDER BY created_at LIMIT 1 OFFSET 1000",
    )
    .bind(large)
    .fetch_one(&env.pool)
    .await?;
    let deep_cursor = dispatcher::console::scan_list::Cursor {
        created_at: chrono::Utc::now() - chrono::Duration::days(20),
        id: uuid::Uuid::max(),
    }
    .encode();

    let fleet = ProcessFleet::start(env, "console-bench", 0, FleetSettings::new(1)).await;
    let base = format!("http://127.0.0.1:{}", fleet.port);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let admin = log_in(&client, &base, &admin_key).await?;
    let tenant = log_in(&client, &base, &large_key).await?;
    let pages = [
        (&admin, ("overview, admin", "/ui".to_string())),
        (&tenant, ("overview, large tenant", "/ui".to_string())),
        (&admin, ("scans, all tenants", "/ui/scans".to_string())),
        (&tenant, ("scans, large tenant", "/ui/scans".to_string())),
        (
            &admin,
            ("scans, failed", "/ui/scans?status=failed".to_string()),
        ),
        (
            &admin,
            (
                "scans, routed for a backlog",
                "/ui/scans?route_reason=backlog".to_string(),
            ),
        ),
        (
            &admin,
            (
                "scans, the small tenant",
                "/ui/scans?tenant=small-tenant".to_string(),
            ),
        ),
        (
            &admin,
            (
                "scans, a page 20 days back",
                format!("/ui/scans?after={deep_cursor}"),
            ),
        ),
        (&tenant, ("one scan", format!("/ui/scans/{one_scan}"))),
        (&admin, ("webhooks", "/ui/webhooks".to_string())),
        (&admin, ("dead letters", "/ui/dead-letters".to_string())),
        (&admin, ("routing", "/ui/routing".to_string())),
    ];
    let mut rows = Vec::new();
    for (cookie, page) in pages {
        rows.push(time_page(&client, &base, cookie, page, args.requests).await?);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nConsole pages with {} scans in the table; {} timed requests per page after 3 warm-ups; \
         client-side over loopback; {cores} cores; dispatcher build: profile {}, opt-level {}\n",
        args.scans,
        args.requests,
        env!("BENCH_PROFILE"),
        env!("BENCH_OPT_LEVEL"),
    );
    println!("| page | bytes | p50 ms | p95 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for row in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            row.page,
            row.bytes,
            ms(row.p50),
            ms(row.p95),
            ms(row.max)
        );
    }
    let over: Vec<&str> = rows
        .iter()
        .filter(|row| row.p95 > Duration::from_millis(100))
        .map(|row| row.page.as_str())
        .collect();
    if over.is_empty() {
        println!("\nevery page's p95 is under the 100 ms budget");
    } else {
        println!("\nover the 100 ms budget at p95: {}", over.join(", "));
    }
    fleet.stop().await;
    Ok(())
}
