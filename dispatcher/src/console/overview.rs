//! What the overview shows, read from the database: the queues as the
//! backlog monitor last sampled them, the routing policy and escalation state
//! with its 24 h timeline, workers, scans by status and cost per scan by
//! route.
//!
//! Queue numbers and workers are fleet-wide (every tenant shares the queues); scan
//! counts and costs are limited to the session's tenant unless it is an admin.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::workers::{self, WorkerRow};
use crate::admin::{self, RoutingView};
use crate::problem::ApiError;
use crate::state::AppState;

/// One queue's reading. `waiting` is the ready-message count from the
/// monitor's passive declare; `running` is scans of that route marked
/// running in the database (a message a worker holds unacknowledged).
#[derive(Debug, Clone)]
pub struct QueueReading {
    pub key: &'static str,
    pub name: &'static str,
    pub waiting: i64,
    pub consumers: i64,
    pub running: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CostRow {
    pub route: String,
    pub scans: i64,
    pub total_usd: f64,
    pub mean_processing_ms: Option<f64>,
}

impl CostRow {
    pub fn per_scan_usd(&self) -> f64 {
        if self.scans == 0 {
            0.0
        } else {
            self.total_usd / self.scans as f64
        }
    }
}

/// A stretch of the timeline in one escalation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub escalated: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EscalationEvent {
    pub at: DateTime<Utc>,
    pub escalated: bool,
    pub reason: String,
    pub cpu_depth: i64,
    pub cpu_consumers: i64,
    pub predicted_wait_ms: Option<i64>,
}

pub struct Overview {
    /// Policy, watermarks in force and the backlog monitor's last reading.
    pub routing: RoutingView,
    pub queues: Vec<QueueReading>,
    /// Scans created in the last 24 h, by status (every status listed).
    pub by_status: Vec<(&'static str, i64)>,
    /// Succeeded scans created today (UTC), by route.
    pub cost_today: Vec<CostRow>,
    pub window_start: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub timeline: Vec<Segment>,
    /// Escalation changes in the window, newest first.
    pub events: Vec<EscalationEvent>,
    /// Workers that reported recently (fleet-wide, like the queues).
    pub workers: Vec<WorkerRow>,
}

pub const TIMELINE_HOURS: i64 = 24;

impl Overview {
    pub async fn load(state: &AppState, scope: Option<Uuid>) -> Result<Overview, ApiError> {
        let pool = state.pool();
        let routing = admin::view(state).await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
        let window_start = now - Duration::hours(TIMELINE_HOURS);
        let queues = queues(pool, &routing).await?;
        let by_status = by_status(pool, scope).await?;
        let cost_today = cost_today(pool, scope).await?;
        let mut events: Vec<EscalationEvent> = sqlx::query_as(
            r#"SELECT at, escalated, reason, cpu_depth, cpu_consumers, predicted_wait_ms
                 FROM escalation_events WHERE at >= $1 ORDER BY at, id"#,
        )
        .bind(window_start)
        .fetch_all(pool)
        .await?;
        let before: Option<bool> = sqlx::query_scalar(
            "SELECT escalated FROM escalation_events WHERE at < $1 ORDER BY at DESC, id DESC LIMIT 1",
        )
        .bind(window_start)
        .fetch_optional(pool)
        .await?;
        // With no recorded change at all, the state has held since before the window.
        let initial = before.unwrap_or(if events.is_empty() {
            routing.backlog.escalated
        } else {
            !events[0].escalated
        });
        let changes: Vec<(DateTime<Utc>, bool)> =
            events.iter().map(|e| (e.at, e.escalated)).collect();
        let timeline = segments(window_start, now, initial, &changes);
        events.reverse();
        let workers = workers::recent(pool).await?;
        Ok(Overview {
            routing,
            queues,
            by_status,
            cost_today,
            window_start,
            now,
            timeline,
            events,
            workers,
        })
    }

    /// The numbers the page refreshes live, keyed as its `data-live` attributes.
    pub fn live_values(&self) -> Map<String, Value> {
        let mut values = Map::new();
        for queue in &self.queues {
            values.insert(format!("{}.waiting", queue.key), queue.waiting.into());
            values.insert(format!("{}.consumers", queue.key), queue.consumers.into());
            if let Some(running) = queue.running {
                values.insert(format!("{}.running", queue.key), running.into());
            }
        }
        let live_workers = self.workers.iter().filter(|w| w.live).count();
        values.insert("workers.live".into(), live_workers.into());
        for (status, count) in &self.by_status {
            values.insert(format!("status.{status}"), (*count).into());
        }
        values.insert(
            "escalation".into(),
            escalation_label(self.routing.backlog.escalated).into(),
        );
        values.insert(
            "predicted_wait".into(),
            predicted_wait_label(self.routing.backlog.predicted_wait_ms).into(),
        );
        values.insert(
            "observed_at".into(),
            self.routing
                .backlog
                .observed_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
                .into(),
        );
        // JSON numbers become text on the page; send strings for stability.
        values
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, Value::String(text))
            })
            .collect()
    }
}

pub fn escalation_label(escalated: bool) -> &'static str {
    if escalated {
        "escalated: new scans go to GPU"
    } else {
        "calm"
    }
}

pub fn predicted_wait_label(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => super::layout::duration_ms(ms as f64),
        None => "unknown (no recent CPU scans or no consumers)".into(),
    }
}

async fn queues(pool: &PgPool, routing: &RoutingView) -> Result<Vec<QueueReading>, sqlx::Error> {
    let (dead_depth, dead_consumers): (i64, i64) =
        sqlx::query_as("SELECT dead_depth, dead_consumers FROM backlog_state")
            .fetch_one(pool)
            .await?;
    let running: Vec<(String, i64)> =
        sqlx::query_as("SELECT route, count(*) FROM scans WHERE status = 'running' GROUP BY route")
            .fetch_all(pool)
            .await?;
    let running_on = |route: &str| {
        running
            .iter()
            .find(|(r, _)| r == route)
            .map_or(0, |(_, n)| *n)
    };
    let backlog = &routing.backlog;
    Ok(vec![
        QueueReading {
            key: "cpu",
            name: protocol::topology::queue_name(protocol::Route::Cpu),
            waiting: backlog.cpu_depth,
            consumers: backlog.cpu_consumers,
            running: Some(running_on("cpu")),
        },
        QueueReading {
            key: "gpu",
            name: protocol::topology::queue_name(protocol::Route::Gpu),
            waiting: backlog.gpu_depth,
            consumers: backlog.gpu_consumers,
            running: Some(running_on("gpu")),
        },
        QueueReading {
            key: "dead",
            name: protocol::topology::DEAD_LETTER_QUEUE,
            waiting: dead_depth,
            consumers: dead_consumers,
            running: None,
        },
    ])
}

fn push_scope(query: &mut QueryBuilder<'_, Postgres>, scope: Option<Uuid>) {
    if let Some(tenant_id) = scope {
        query.push(" AND tenant_id = ").push_bind(tenant_id);
    }
}

async fn by_status(
    pool: &PgPool,
    scope: Option<Uuid>,
) -> Result<Vec<(&'static str, i64)>, sqlx::Error> {
    let mut query = QueryBuilder::new(
        "SELECT status, count(*) FROM scans WHERE created_at > now() - interval '24 hours'",
    );
    push_scope(&mut query, scope);
    query.push(" GROUP BY status");
    let counts: Vec<(String, i64)> = query.build_query_as().fetch_all(pool).await?;
    Ok(protocol::ScanStatus::ALL
        .iter()
        .map(|status| {
            let name = status.as_str();
            let count = counts
                .iter()
                .find(|(s, _)| s == name)
                .map_or(0, |(_, n)| *n);
            (name, count)
        })
        .collect())
}

async fn cost_today(pool: &PgPool, scope: Option<Uuid>) -> Result<Vec<CostRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(
        r#"SELECT route, count(*) AS scans,
                  coalesce(sum((result ->> 'cost_usd')::float8), 0)::float8 AS total_usd,
                  avg(extract(epoch FROM finished_at - started_at) * 1000)::float8 AS mean_processing_ms
             FROM scans
            WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
              AND status = 'succeeded'"#,
    );
    push_scope(&mut query, scope);
    query.push(" GROUP BY route ORDER BY route");
    query.build_query_as().fetch_all(pool).await
}

/// Splits `[start, end]` into stretches of one escalation state, starting
/// in `initial` and flipping at each change (changes outside the window or
/// that do not change the state are ignored).
pub fn segments(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    initial: bool,
    changes: &[(DateTime<Utc>, bool)],
) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut from = start;
    let mut state = initial;
    for &(at, escalated) in changes {
        if at < start || at > end || escalated == state {
            continue;
        }
        if at > from {
            segments.push(Segment {
                start: from,
                end: at,
                escalated: state,
            });
        }
        from = at;
        state = escalated;
    }
    if end > from {
        segments.push(Segment {
            start: from,
            end,
            escalated: state,
        });
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(hour)
    }

    #[test]
    fn the_timeline_flips_at_each_change_inside_the_window() {
        let segs = segments(at(0), at(24), false, &[(at(3), true), (at(5), false)]);
        assert_eq!(
            segs,
            [
                Segment {
                    start: at(0),
                    end: at(3),
                    escalated: false
                },
                Segment {
                    start: at(3),
                    end: at(5),
                    escalated: true
                },
                Segment {
                    start: at(5),
                    end: at(24),
                    escalated: false
                },
            ]
        );
    }

    #[test]
    fn repeated_or_outside_changes_do_not_split_the_timeline() {
        let segs = segments(
            at(0),
            at(24),
            true,
            &[(at(-2), false), (at(1), true), (at(30), false)],
        );
        assert_eq!(
            segs,
            [Segment {
                start: at(0),
                end: at(24),
                escalated: true
            }]
        );
        assert!(segments(at(0), at(0), false, &[]).is_empty());
    }

    #[test]
    fn cost_per_scan_is_total_over_scans() {
        let row = CostRow {
            route: "cpu".into(),
            scans: 4,
            total_usd: 0.002,
            mean_processing_ms: Some(100.0),
        };
        assert!((row.per_scan_usd() - 0.0005).abs() < 1e-12);
        let none = CostRow { scans: 0, ..row };
        assert_eq!(none.per_scan_usd(), 0.0);
    }
}
