//! Backlog escalation (seed 001 option 3): watch the CPU queue and send new
//! scans to the GPU queue while it is backed up.
//!
//! One dispatcher replica at a time is the monitor: it holds a Postgres
//! advisory lock on a dedicated connection, samples both queues every
//! `BACKLOG_POLL` with a passive queue declare, runs the hysteresis below and
//! writes the result to the `backlog_state` row that every replica reads when
//! routing. If the leader dies its connection closes, the lock is released and
//! another replica takes over from the stored state. A Postgres row was chosen
//! over each replica deciding alone so that replicas never disagree on the
//! route of a scan at the same moment.

use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use protocol::backoff::Backoff;
use protocol::topology::{self, SessionRefused, Topology};
use protocol::Route;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::settings::Watermarks;
use crate::state::AppState;

/// Advisory-lock key of the backlog monitor ("scanflt" in ASCII).
const MONITOR_LOCK_KEY: i64 = 0x0073_6361_6e66_6c74;

/// Watermarks an admin set at run time (`routing_policy`); `None` keeps
/// the deployment's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct WatermarkOverrides {
    pub high_depth: Option<i64>,
    pub low_depth: Option<i64>,
    pub hold_ms: Option<i64>,
    pub latency_target_ms: Option<i64>,
}

impl WatermarkOverrides {
    pub fn is_empty(&self) -> bool {
        *self == WatermarkOverrides::default()
    }

    /// `base` (the deployment's watermarks) with these overrides applied.
    pub fn apply(&self, base: Watermarks) -> Watermarks {
        let ms = |ms: i64| Duration::from_millis(ms.max(0) as u64);
        Watermarks {
            high_depth: self.high_depth.map_or(base.high_depth, |d| d.max(0) as u64),
            low_depth: self.low_depth.map_or(base.low_depth, |d| d.max(0) as u64),
            hold: self.hold_ms.map_or(base.hold, ms),
            latency_target: self.latency_target_ms.map_or(base.latency_target, ms),
        }
    }
}

pub async fn watermark_overrides<'e>(
    executor: impl sqlx::PgExecutor<'e>,
) -> Result<WatermarkOverrides, sqlx::Error> {
    let overrides: Option<WatermarkOverrides> = sqlx::query_as(
        r#"SELECT high_watermark AS high_depth, low_watermark AS low_depth, hold_ms, latency_target_ms
             FROM routing_policy"#,
    )
    .fetch_optional(executor)
    .await?;
    Ok(overrides.unwrap_or_default())
}

pub async fn set_watermark_overrides<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    overrides: &WatermarkOverrides,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"UPDATE routing_policy
              SET high_watermark = $1, low_watermark = $2, hold_ms = $3, latency_target_ms = $4"#,
    )
    .bind(overrides.high_depth)
    .bind(overrides.low_depth)
    .bind(overrides.hold_ms)
    .bind(overrides.latency_target_ms)
    .execute(executor)
    .await?;
    Ok(())
}

/// The watermarks in force: the deployment's, with run-time overrides.
pub async fn effective_watermarks(
    pool: &sqlx::PgPool,
    base: Watermarks,
) -> Result<Watermarks, sqlx::Error> {
    Ok(watermark_overrides(pool).await?.apply(base))
}

/// One look at the queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSample {
    pub cpu_depth: u64,
    pub cpu_consumers: u64,
    pub gpu_depth: u64,
    pub gpu_consumers: u64,
    /// Messages waiting on the dead-letter queue (the dispatcher's own
    /// watcher normally drains it at once).
    pub dead_depth: u64,
    pub dead_consumers: u64,
    /// Recent mean processing time of a CPU scan, if any finished lately.
    pub cpu_service_time: Option<Duration>,
    /// Queued CPU scans beyond their tenant's `ESCALATION_SHARE`, summed
    /// over tenants: left out of the depth that escalates.
    pub cpu_over_share: u64,
}

impl QueueSample {
    /// The CPU backlog that decides escalation: the queue's depth less what
    /// tenants have queued beyond their share.
    pub fn fair_cpu_depth(&self) -> u64 {
        self.cpu_depth.saturating_sub(self.cpu_over_share)
    }

    /// Expected wait of a new CPU scan on the fair backlog: depth × service
    /// time ÷ consumers. Unknown without consumers or without a
    /// service-time estimate; the depth watermark alone decides then.
    pub fn predicted_cpu_wait(&self) -> Option<Duration> {
        let service_time = self.cpu_service_time?;
        (self.cpu_consumers > 0)
            .then(|| service_time.mul_f64(self.fair_cpu_depth() as f64 / self.cpu_consumers as f64))
    }
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// The escalation state machine. Escalating is immediate; standing down needs
/// the queue calm for a whole hold time, so a depth that hovers around either
/// watermark cannot make routing flap.
#[derive(Debug, Clone, Default)]
pub struct Escalation {
    escalated: bool,
    calm_since: Option<Instant>,
}

impl Escalation {
    pub fn new(escalated: bool) -> Self {
        Escalation {
            escalated,
            calm_since: None,
        }
    }

    pub fn is_escalated(&self) -> bool {
        self.escalated
    }

    /// Why the state is what it is after `sample`, in words for the
    /// escalation timeline (called when [`Escalation::observe`] reports a change).
    pub fn reason(&self, sample: &QueueSample, marks: &Watermarks) -> String {
        let wait = sample.predicted_cpu_wait();
        let over_share = match sample.cpu_over_share {
            0 => String::new(),
            n => format!(" ({n} more queued beyond their tenants' share not counted)"),
        };
        if self.escalated {
            if sample.fair_cpu_depth() > marks.high_depth {
                format!(
                    "CPU queue depth {} above the high watermark {}{over_share}",
                    sample.fair_cpu_depth(),
                    marks.high_depth
                )
            } else {
                format!(
                    "predicted CPU wait {} above the latency target {}",
                    humantime::format_duration(round_to_ms(wait.unwrap_or_default())),
                    humantime::format_duration(marks.latency_target)
                )
            }
        } else {
            format!(
                "CPU queue depth below the low watermark {} for {}{over_share}",
                marks.low_depth,
                humantime::format_duration(marks.hold)
            )
        }
    }

    /// Feeds one sample; returns true when the state changed.
    pub fn observe(&mut self, sample: &QueueSample, marks: &Watermarks, now: Instant) -> bool {
        let wait = sample.predicted_cpu_wait();
        let late = wait.is_some_and(|wait| wait > marks.latency_target);
        if !self.escalated {
            if sample.fair_cpu_depth() > marks.high_depth || late {
                self.escalated = true;
                self.calm_since = None;
                return true;
            }
            return false;
        }
        if sample.fair_cpu_depth() < marks.low_depth && !late {
            let calm_since = *self.calm_since.get_or_insert(now);
            if now.duration_since(calm_since) >= marks.hold {
                self.escalated = false;
                self.calm_since = None;
                return true;
            }
        } else {
            self.calm_since = None;
        }
        false
    }
}

/// Monitors (or waits to) until `shutdown`; ends early only if the broker
/// refuses the session.
pub async fn run(
    state: AppState,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), SessionRefused> {
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        match lead_when_elected(&state, &topology, &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                state.metrics().backlog_leader.set(0);
                if let MonitorError::Refused(refused) = error {
                    return Err(refused);
                }
                tracing::warn!(%error, "backlog monitor interrupted; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum MonitorError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Refused(SessionRefused),
}

impl MonitorError {
    /// An error while opening the broker session: refused for good, or not.
    fn opening(error: lapin::Error) -> Self {
        if topology::is_permanent(&error) {
            MonitorError::Refused(SessionRefused(error))
        } else {
            MonitorError::Broker(error)
        }
    }
}

/// Waits for the monitor lock (refreshing this replica's gauges meanwhile),
/// then monitors until shutdown or an error.
async fn lead_when_elected(
    state: &AppState,
    topology: &Topology,
    shutdown: &CancellationToken,
) -> Result<(), MonitorError> {
    let poll = state.config().backlog_poll;
    let mut lock_conn =
        PgConnection::connect(state.config().service.database_url.expose_secret()).await?;
    loop {
        let elected: bool = sqlx::query_scalar!(
            "SELECT pg_try_advisory_lock($1) AS \"elected!\"",
            MONITOR_LOCK_KEY
        )
        .fetch_one(&mut lock_conn)
        .await?;
        if elected {
            break;
        }
        refresh_gauges(state).await?;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(poll) => {}
        }
    }
    tracing::info!("this replica now runs the backlog monitor");
    state.metrics().backlog_leader.set(1);
    let connection = topology::connect(
        state.config().service.amqp_url.expose_secret(),
        "scanfleet-dispatcher-backlog",
    )
    .await
    .map_err(MonitorError::opening)?;
    let channel = connection
        .create_channel()
        .await
        .map_err(MonitorError::opening)?;
    topology
        .declare(&channel)
        .await
        .map_err(MonitorError::opening)?;
    let stored = sqlx::query_scalar!("SELECT escalated FROM backlog_state")
        .fetch_one(state.pool())
        .await?;
    let mut escalation = Escalation::new(stored);
    let mut ticks = tokio::time::interval(poll);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // Losing the lock connection means another replica may lead now.
        sqlx::query("SELECT 1").execute(&mut lock_conn).await?;
        let sample = sample_queues(state, &channel).await?;
        // Read each time: an admin may change them at run time.
        let marks = effective_watermarks(state.pool(), state.config().watermarks()).await?;
        if escalation.observe(&sample, &marks, Instant::now()) {
            let reason = escalation.reason(&sample, &marks);
            tracing::warn!(
                escalated = escalation.is_escalated(),
                cpu_depth = sample.cpu_depth,
                cpu_over_share = sample.cpu_over_share,
                cpu_consumers = sample.cpu_consumers,
                predicted_wait_ms = sample.predicted_cpu_wait().map(|w| w.as_millis() as u64),
                %reason,
                "backlog escalation changed"
            );
            record_change(state, &sample, escalation.is_escalated(), &reason).await?;
        }
        store_state(state, &sample, escalation.is_escalated()).await?;
        refresh_gauges(state).await?;
    }
    state.metrics().backlog_leader.set(0);
    let _ = connection.close(200, "dispatcher stopping").await;
    Ok(())
}

async fn sample_queues(state: &AppState, channel: &Channel) -> Result<QueueSample, MonitorError> {
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let cpu = channel
        .queue_declare(
            topology::queue_name(Route::Cpu),
            passive,
            FieldTable::default(),
        )
        .await?;
    let gpu = channel
        .queue_declare(
            topology::queue_name(Route::Gpu),
            passive,
            FieldTable::default(),
        )
        .await?;
    let dead = channel
        .queue_declare(topology::DEAD_LETTER_QUEUE, passive, FieldTable::default())
        .await?;
    // Mean duration of the last 50 CPU scans: the service-time estimate.
    let service_seconds: Option<f64> = sqlx::query_scalar!(
        r#"SELECT avg(extract(epoch FROM finished_at - started_at))::float8 AS "seconds"
             FROM (SELECT finished_at, started_at FROM scans
                    WHERE route = 'cpu' AND status = 'succeeded'
                    ORDER BY finished_at DESC LIMIT 50) recent"#
    )
    .fetch_one(state.pool())
    .await?;
    let shares = state.config().escalation_share;
    // Per tenant, queued CPU scans beyond its tier's share (0: no share, all
    // count). The partial index scans_queued_cpu keeps this to the queued rows.
    let over_share: i64 = sqlx::query_scalar(
        r#"SELECT coalesce(sum(greatest(queued - share, 0)), 0)::bigint
             FROM (SELECT count(*) AS queued,
                          CASE t.tier WHEN 'free' THEN $1 WHEN 'pro' THEN $2 ELSE $3 END AS share
                     FROM scans s JOIN tenants t ON t.id = s.tenant_id
                    WHERE s.status = 'queued' AND s.route = 'cpu'
                    GROUP BY s.tenant_id, t.tier) per_tenant
            WHERE share > 0"#,
    )
    .bind(shares.free as i64)
    .bind(shares.pro as i64)
    .bind(shares.premium as i64)
    .fetch_one(state.pool())
    .await?;
    Ok(QueueSample {
        cpu_over_share: over_share.max(0) as u64,
        cpu_depth: cpu.message_count() as u64,
        cpu_consumers: cpu.consumer_count() as u64,
        gpu_depth: gpu.message_count() as u64,
        gpu_consumers: gpu.consumer_count() as u64,
        dead_depth: dead.message_count() as u64,
        dead_consumers: dead.consumer_count() as u64,
        cpu_service_time: service_seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64),
    })
}

async fn store_state(
    state: &AppState,
    sample: &QueueSample,
    escalated: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE backlog_state
              SET changed_at = CASE WHEN escalated <> $1 THEN now() ELSE changed_at END,
                  escalated = $1, observed_at = now(),
                  cpu_depth = $2, cpu_consumers = $3, gpu_depth = $4, gpu_consumers = $5,
                  predicted_wait_ms = $6"#,
        escalated,
        sample.cpu_depth as i64,
        sample.cpu_consumers as i64,
        sample.gpu_depth as i64,
        sample.gpu_consumers as i64,
        sample.predicted_cpu_wait().map(|w| w.as_millis() as i64)
    )
    .execute(state.pool())
    .await?;
    sqlx::query("UPDATE backlog_state SET dead_depth = $1, dead_consumers = $2")
        .bind(sample.dead_depth as i64)
        .bind(sample.dead_consumers as i64)
        .execute(state.pool())
        .await?;
    Ok(())
}

/// Appends to the escalation timeline the console shows.
async fn record_change(
    state: &AppState,
    sample: &QueueSample,
    escalated: bool,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO escalation_events (escalated, reason, cpu_depth, cpu_consumers, predicted_wait_ms)
           VALUES ($1, $2, $3, $4, $5)"#,
    )
    .bind(escalated)
    .bind(reason)
    .bind(sample.cpu_depth as i64)
    .bind(sample.cpu_consumers as i64)
    .bind(sample.predicted_cpu_wait().map(|w| w.as_millis() as i64))
    .execute(state.pool())
    .await?;
    Ok(())
}

/// Every replica exports the shared state, whichever one measured it.
async fn refresh_gauges(state: &AppState) -> Result<(), sqlx::Error> {
    let row = sqlx::query!(
        "SELECT escalated, cpu_depth, cpu_consumers, gpu_depth, gpu_consumers FROM backlog_state"
    )
    .fetch_one(state.pool())
    .await?;
    let metrics = state.metrics();
    metrics.routing_escalated.set(row.escalated as i64);
    for (route, depth, consumers) in [
        (Route::Cpu, row.cpu_depth, row.cpu_consumers),
        (Route::Gpu, row.gpu_depth, row.gpu_consumers),
    ] {
        let queue = topology::queue_name(route);
        metrics
            .queue_messages
            .with_label_values(&[queue])
            .set(depth);
        metrics
            .queue_consumers
            .with_label_values(&[queue])
            .set(consumers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKS: Watermarks = Watermarks {
        high_depth: 10,
        latency_target: Duration::from_secs(60),
        low_depth: 3,
        hold: Duration::from_secs(30),
    };

    fn depth(cpu_depth: u64) -> QueueSample {
        QueueSample {
            cpu_depth,
            cpu_consumers: 1,
            ..Default::default()
        }
    }

    /// Feeds one sample per second; returns the state after each.
    fn run(samples: &[QueueSample]) -> Vec<bool> {
        let start = Instant::now();
        let mut escalation = Escalation::default();
        samples
            .iter()
            .enumerate()
            .map(|(second, sample)| {
                escalation.observe(sample, &MARKS, start + Duration::from_secs(second as u64));
                escalation.is_escalated()
            })
            .collect()
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        assert_eq!(WatermarkOverrides::default().apply(MARKS), MARKS);
        let overrides = WatermarkOverrides {
            high_depth: Some(40),
            hold_ms: Some(5_000),
            ..Default::default()
        };
        assert!(!overrides.is_empty());
        assert_eq!(
            overrides.apply(MARKS),
            Watermarks {
                high_depth: 40,
                hold: Duration::from_secs(5),
                ..MARKS
            }
        );
    }

    #[test]
    fn the_reason_names_the_watermark_that_decided() {
        let mut escalation = Escalation::default();
        let start = Instant::now();
        assert!(escalation.observe(&depth(12), &MARKS, start));
        assert_eq!(
            escalation.reason(&depth(12), &MARKS),
            "CPU queue depth 12 above the high watermark 10"
        );
        let slow = QueueSample {
            cpu_depth: 8,
            cpu_consumers: 2,
            cpu_service_time: Some(Duration::from_secs(20)),
            ..Default::default()
        };
        let mut late = Escalation::default();
        assert!(late.observe(&slow, &MARKS, start));
        assert_eq!(
            late.reason(&slow, &MARKS),
            "predicted CPU wait 1m 20s above the latency target 1m"
        );
        escalation.observe(&depth(1), &MARKS, start + Duration::from_secs(1));
        assert!(escalation.observe(&depth(1), &MARKS, start + Duration::from_secs(31)));
        assert_eq!(
            escalation.reason(&depth(1), &MARKS),
            "CPU queue depth below the low watermark 3 for 30s"
        );
    }

    #[test]
    fn scans_beyond_their_tenants_share_do_not_escalate() {
        // 40 queued, 35 of them one tenant's beyond its share: 5 count.
        let flood = QueueSample {
            cpu_over_share: 35,
            ..depth(40)
        };
        assert_eq!(flood.fair_cpu_depth(), 5);
        assert_eq!(run(&[flood, flood]), [false, false]);
        let shared = QueueSample {
            cpu_over_share: 25,
            ..depth(40)
        };
        let mut escalation = Escalation::default();
        assert!(escalation.observe(&shared, &MARKS, Instant::now()));
        assert_eq!(
            escalation.reason(&shared, &MARKS),
            "CPU queue depth 15 above the high watermark 10 (25 more queued beyond their tenants' share not counted)"
        );
        // The predicted wait is the fair backlog's too.
        let slow_flood = QueueSample {
            cpu_service_time: Some(Duration::from_secs(30)),
            ..flood
        };
        assert_eq!(
            slow_flood.predicted_cpu_wait(),
            Some(Duration::from_secs(150))
        );
    }

    #[test]
    fn escalates_past_the_high_watermark_only() {
        assert_eq!(run(&[depth(5), depth(10), depth(11)]), [false, false, true]);
    }

    #[test]
    fn escalates_on_predicted_wait_even_below_the_depth_watermark() {
        let slow = QueueSample {
            cpu_depth: 8,
            cpu_consumers: 2,
            cpu_service_time: Some(Duration::from_secs(20)),
            ..Default::default()
        };
        assert_eq!(slow.predicted_cpu_wait(), Some(Duration::from_secs(80)));
        assert_eq!(run(&[slow]), [true]);
        let no_consumers = QueueSample {
            cpu_depth: 8,
            cpu_service_time: Some(Duration::from_secs(20)),
            ..Default::default()
        };
        assert_eq!(no_consumers.predicted_cpu_wait(), None);
        assert_eq!(run(&[no_consumers]), [false]);
    }

    #[test]
    fn stands_down_only_after_a_full_calm_hold() {
        let mut samples = vec![depth(20)];
        samples.extend(std::iter::repeat_n(depth(1), 31));
        let states = run(&samples);
        assert!(
            states[..31].iter().all(|&s| s),
            "escalated through the hold"
        );
        assert!(!states[31], "stood down after 30 s of calm");
    }

    #[test]
    fn depth_oscillating_around_either_watermark_does_not_flap() {
        // Around the high watermark: escalates once and stays.
        let high: Vec<_> = (0..120)
            .map(|i| depth(if i % 2 == 0 { 9 } else { 11 }))
            .collect();
        let states = run(&high);
        let changes = states.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 1);
        // Around the low watermark: every excursion restarts the hold.
        let mut low = vec![depth(20)];
        low.extend((0..120).map(|i| depth(if i % 10 == 9 { 4 } else { 2 })));
        assert!(run(&low).iter().all(|&s| s));
    }
}
