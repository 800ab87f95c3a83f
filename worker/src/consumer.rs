//! Consuming scans from RabbitMQ.
//!
//! Per delivery: claim the scan in Postgres (guarded update), run it with a
//! heartbeat, write the outcome in one transaction, then ack. Because the ack
//! comes after the commit, a crash anywhere before it redelivers the message,
//! and the claim sees a finished scan and acks without rework: at-least-once
//! delivery, exactly one result.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use protocol::backoff::Backoff;
use protocol::db::{self, Claim};
use protocol::supervise::panic_message;
use protocol::topology::{self, SessionRefused, Topology};
use protocol::{Route, RouteReason, ScanJob, ScanMessage};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::jobs::{self, JobContext, JobError};
use crate::metrics::WorkerMetrics;

/// How long a job waits for an unreachable database before handing its
/// message back (a restart should delay scans, not burn their deliveries).
const DATABASE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a consumer needs, shared by its job tasks.
pub struct Consumer {
    pub pool: PgPool,
    pub amqp_url: String,
    pub topology: Topology,
    pub route: Route,
    pub max_concurrent_jobs: u16,
    pub shutdown_grace: std::time::Duration,
    pub heartbeat_interval: std::time::Duration,
    pub job_context: JobContext,
    pub metrics: WorkerMetrics,
    /// Hourly price of this worker's backend, for the cost of each scan.
    pub price_per_hour: f64,
    /// Shares the worker's time among the scans it runs at once.
    pub cost_meter: crate::cost::CostMeter,
}

/// What to tell the broker about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Done with it (finished, failed for good, or nothing to do).
    Ack,
    /// Hand it back for another attempt (counts towards the delivery limit).
    Requeue,
    /// Give it to the queue's dead-letter exchange: from the GPU queue that
    /// is the CPU queue (the scan falls back to a CPU worker with reason
    /// `gpu_failure_fallback`), from the CPU queue it is `scans.dead`.
    DeadLetter,
}

impl Consumer {
    /// Consumes until `shutdown` fires, reconnecting after broker failures.
    /// On shutdown: stop taking work, give in-flight scans `shutdown_grace`
    /// to finish, then close the connection so the broker requeues the rest.
    /// Ends early only if the broker refuses the session for good (see
    /// [`topology::is_permanent`]); its supervisor then stops the worker.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), SessionRefused> {
        let mut backoff = Backoff::default();
        let permits = Arc::new(Semaphore::new(self.max_concurrent_jobs as usize));
        let queue = topology::queue_name(self.route);
        while !shutdown.is_cancelled() {
            let session = async {
                let connection = topology::connect(
                    &self.amqp_url,
                    &format!("scanfleet-worker {}", self.job_context.worker_name),
                )
                .await?;
                let channel =
                    topology::consumer_channel(&connection, self.max_concurrent_jobs).await?;
                self.topology.declare(&channel).await?;
                let deliveries = channel
                    .basic_consume(
                        queue,
                        &self.job_context.worker_name,
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                Ok::<_, lapin::Error>((connection, channel, deliveries))
            };
            let (connection, channel, mut deliveries) = match session.await {
                Ok(session) => session,
                Err(error) if topology::is_permanent(&error) => return Err(SessionRefused(error)),
                Err(error) => {
                    tracing::warn!(%error, queue, "cannot consume; retrying");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            tracing::info!(queue, "consuming");
            self.metrics.consumer_connected.set(1);
            backoff.reset();
            let mut jobs = JoinSet::new();
            let stopped = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break true,
                    Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
                    delivery = deliveries.next() => match delivery {
                        Some(Ok(delivery)) => {
                            let permit = permits.clone().acquire_owned().await.expect("semaphore never closed");
                            let consumer = self.clone();
                            jobs.spawn(async move {
                                consumer.handle(delivery).await;
                                drop(permit);
                            });
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "consumer failed; reconnecting");
                            break false;
                        }
                        None => {
                            tracing::warn!("consumer cancelled by the broker; reconnecting");
                            break false;
                        }
                    }
                }
            };
            self.metrics.consumer_connected.set(0);
            if stopped {
                let _ = channel
                    .basic_cancel(&self.job_context.worker_name, BasicCancelOptions::default())
                    .await;
                let in_flight = jobs.len();
                tracing::info!(in_flight, grace = ?self.shutdown_grace, "stopping: finishing in-flight scans");
                let drained = tokio::time::timeout(self.shutdown_grace, async {
                    while jobs.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::warn!(
                        left = jobs.len(),
                        "grace period over; unfinished scans go back to the queue"
                    );
                    jobs.abort_all();
                }
            } else {
                // Their acks cannot reach the broker any more; it redelivers them.
                jobs.abort_all();
            }
            let _ = connection.close(200, "worker stopping").await;
        }
        tracing::info!("consumer stopped");
        Ok(())
    }

    async fn handle(&self, delivery: Delivery) {
        let message = match ScanMessage::decode(&delivery.data) {
            Ok(message) => message,
            Err(error) => {
                // A poison message: no redelivery can fix it. Rejecting without
                // requeue dead-letters it, and the consumer keeps going.
                tracing::error!(%error, "rejecting undecodable message");
                self.metrics
                    .scans_finished
                    .with_label_values(&["unknown", self.route.as_str(), "undecodable"])
                    .inc();
                if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!(%error, "reject failed");
                }
                return;
            }
        };
        let job = message.job();
        let span = tracing::info_span!("scan", scan_id = %job.scan_id, tenant_id = %job.tenant_id, kind = job.kind.as_str());
        async {
            // A panic must not leave the delivery unsettled (it would sit
            // unacked until the connection closes) nor kill the consumer.
            let disposition = match AssertUnwindSafe(self.process(job, &delivery)).catch_unwind().await {
                Ok(disposition) => disposition,
                Err(panic) => {
                    let why = panic_message(&*panic);
                    self.metrics.errors.with_label_values(&["panic"]).inc();
                    // On a GPU worker this is most often a device fault (burn
                    // surfaces CUDA out-of-memory as a panic): the same input
                    // would likely fail the same way here, so the scan moves
                    // to the CPU queue at once. On a CPU worker it is retried
                    // up to the delivery limit like any transient failure.
                    if self.route == Route::Gpu {
                        tracing::error!(panic = %why, "scan panicked on the GPU worker; handing it to the CPU queue");
                        Disposition::DeadLetter
                    } else {
                        tracing::error!(panic = %why, "scan panicked; requeueing");
                        Disposition::Requeue
                    }
                }
            };
            let settled = match disposition {
                Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
                Disposition::Requeue => {
                    delivery
                        .nack(BasicNackOptions { requeue: true, ..Default::default() })
                        .await
                }
                Disposition::DeadLetter => delivery.reject(BasicRejectOptions { requeue: false }).await,
            };
            if let Err(error) = settled {
                // The broker will redeliver; the claim makes that harmless.
                tracing::warn!(%error, ?disposition, "could not settle delivery");
            }
        }
        .instrument(span)
        .await;
    }

    async fn process(&self, job: &ScanJob, delivery: &Delivery) -> Disposition {
        let previous_deliveries = topology::previous_deliveries(&delivery.properties);
        let fallback = self.fallback_reason(delivery);
        let claim = db::retrying(DATABASE_PATIENCE, || {
            db::claim_scan(
                &self.pool,
                job.scan_id,
                &self.job_context.worker_name,
                self.job_context.backend_name(),
                fallback.map(|reason| (self.route, reason)),
            )
        })
        .await;
        let attempt = match claim {
            Ok(Claim::Running { attempt }) => attempt,
            Ok(Claim::AlreadyFinished(status)) => {
                tracing::info!(status = status.as_str(), "scan already finished; skipping");
                return Disposition::Ack;
            }
            Ok(Claim::Missing) => {
                tracing::warn!("scan not found; dropping its message");
                return Disposition::Ack;
            }
            Err(error) => return self.database_unavailable(error).await,
        };
        tracing::info!(attempt, previous_deliveries, "scan started");
        let kind = job.kind.as_str();
        let route = self.route.as_str();
        let waited = (chrono::Utc::now() - job.submitted_at)
            .to_std()
            .unwrap_or_default();
        self.metrics
            .queue_wait_seconds
            .with_label_values(&[route])
            .observe(waited.as_secs_f64());
        let started = Instant::now();
        let share = self.cost_meter.start(started);
        let outcome = {
            // Both guards end with the run, also when it panics.
            let _heartbeat = self.spawn_heartbeat(job.scan_id);
            let _in_flight = InFlight::enter(&self.metrics.in_flight);
            jobs::run(job, &self.job_context, attempt).await
        };
        let finished = Instant::now();
        let processing = finished - started;
        // With N scans in hand at once each is charged 1/N of the worker's time.
        let cost_usd =
            crate::cost::cost_usd(self.cost_meter.finish(share, finished), self.price_per_hour);
        self.metrics
            .processing_seconds
            .with_label_values(&[kind, route])
            .observe(processing.as_secs_f64());
        self.metrics
            .cost_usd
            .with_label_values(&[route])
            .inc_by(cost_usd);
        let outcome = outcome.map(|output| {
            for (stage, ms) in &output.stage_ms {
                self.metrics
                    .stage_seconds
                    .with_label_values(&[kind, stage])
                    .observe(ms / 1e3);
            }
            if let Some(cache) = &output.cache {
                let lookup = cache.hit.map_or("miss", |source| source.as_str());
                self.metrics
                    .cache_lookups
                    .with_label_values(&[kind, lookup])
                    .inc();
            }
            // Only computed results become cache entries, so `cached_from`
            // always names the scan that did the work.
            let cache_key = output
                .cache
                .filter(|cache| cache.hit.is_none())
                .map(|cache| cache.key);
            (
                self.with_accounting(output.result, processing, cost_usd),
                cache_key,
            )
        });
        if let Err(error) = &outcome {
            self.metrics.errors.with_label_values(&[error.code()]).inc();
        }

        let recorded = match &outcome {
            Ok((result, cache_key)) => {
                let wrote = self
                    .write_success(job.scan_id, result, cache_key.as_deref())
                    .await;
                if let (Ok(true), Some(key)) = (&wrote, cache_key) {
                    self.job_context
                        .cache
                        .remember(job.tenant_id, key, job.scan_id, result);
                }
                wrote
            }
            Err(JobError::BadInput { code, message }) => {
                tracing::warn!(code, %message, "scan failed: bad input");
                self.write_failure(job.scan_id, code, message).await
            }
            Err(error @ JobError::TimeLimit(limit)) => {
                tracing::warn!(%error, "scan failed: over its time limit");
                let message = format!(
                    "the scan ran longer than this worker's SCAN_TIME_LIMIT of {}",
                    humantime::format_duration(*limit)
                );
                self.write_failure(job.scan_id, error.code(), &message)
                    .await
            }
            Err(JobError::Transient(message)) => {
                if previous_deliveries + 1 < self.topology.delivery_limit {
                    tracing::warn!(%message, "transient failure; requeueing");
                    self.metrics
                        .scans_finished
                        .with_label_values(&[kind, self.route.as_str(), "retried"])
                        .inc();
                    return Disposition::Requeue;
                }
                if self.route == Route::Gpu {
                    tracing::warn!(%message, "transient failure on the last GPU delivery; handing the scan to the CPU queue");
                    self.metrics
                        .scans_finished
                        .with_label_values(&[kind, self.route.as_str(), "fell_back"])
                        .inc();
                    return Disposition::DeadLetter;
                }
                tracing::error!(%message, "transient failure on the last allowed delivery; failing the scan");
                let message = format!(
                    "gave up after {} deliveries: {message}",
                    previous_deliveries + 1
                );
                self.write_failure(job.scan_id, "retries_exhausted", &message)
                    .await
            }
        };
        match recorded {
            Ok(wrote) => {
                let outcome_label = match (&outcome, wrote) {
                    (_, false) => "duplicate",
                    (Ok(_), true) => "succeeded",
                    (Err(_), true) => "failed",
                };
                tracing::info!(
                    outcome = outcome_label,
                    elapsed_ms = processing.as_millis() as u64,
                    cost_usd,
                    "scan finished"
                );
                if wrote {
                    let total = (chrono::Utc::now() - job.submitted_at)
                        .to_std()
                        .unwrap_or_default();
                    self.metrics
                        .end_to_end_seconds
                        .with_label_values(&[route])
                        .observe(total.as_secs_f64());
                }
                self.metrics
                    .scans_finished
                    .with_label_values(&[kind, self.route.as_str(), outcome_label])
                    .inc();
                Disposition::Ack
            }
            Err(error) => self.database_unavailable(error).await,
        }
    }

    /// Adds what every result reports: backend, processing time and cost
    /// (the worker time this scan was charged, its processing seconds shared
    /// with the scans that ran beside it, × the backend's hourly price).
    fn with_accounting(
        &self,
        mut result: serde_json::Value,
        processing: std::time::Duration,
        cost_usd: f64,
    ) -> serde_json::Value {
        if let Some(fields) = result.as_object_mut() {
            fields.insert("backend".into(), self.job_context.backend_name().into());
            fields.insert(
                "processing_ms".into(),
                (processing.as_secs_f64() * 1e3).into(),
            );
            fields.insert("cost_usd".into(), cost_usd.into());
        }
        result
    }

    /// Commits a result (waiting out a database restart); true if this
    /// write finished the scan.
    async fn write_success(
        &self,
        scan_id: uuid::Uuid,
        result: &serde_json::Value,
        cache_key: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        db::retrying(DATABASE_PATIENCE, || async {
            let mut tx = self.pool.begin().await?;
            let wrote = db::record_success(&mut tx, scan_id, result, cache_key).await?;
            tx.commit().await?;
            Ok(wrote)
        })
        .await
    }

    /// Commits a failure (waiting out a database restart); true if this
    /// write finished the scan.
    async fn write_failure(
        &self,
        scan_id: uuid::Uuid,
        code: &str,
        message: &str,
    ) -> Result<bool, sqlx::Error> {
        db::retrying(DATABASE_PATIENCE, || async {
            let mut tx = self.pool.begin().await?;
            let wrote = db::record_failure(&mut tx, scan_id, code, message).await?;
            tx.commit().await?;
            Ok(wrote)
        })
        .await
    }

    /// The database is unreachable: hand the message back after a pause, so
    /// an outage does not spin through the delivery limit in milliseconds.
    async fn database_unavailable(&self, error: sqlx::Error) -> Disposition {
        tracing::warn!(%error, "database unavailable; requeueing the scan");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Disposition::Requeue
    }

    /// A message on the CPU queue that was dead-lettered off the GPU queue
    /// fell back: by timeout (no GPU worker took it) or by GPU failures.
    fn fallback_reason(&self, delivery: &Delivery) -> Option<RouteReason> {
        let (queue, reason) = topology::first_death(&delivery.properties)?;
        (queue == topology::queue_name(Route::Gpu)).then(|| {
            tracing::warn!(%reason, "scan fell back from the GPU queue");
            if reason == "expired" {
                RouteReason::GpuTimeoutFallback
            } else {
                RouteReason::GpuFailureFallback
            }
        })
    }

    /// Beats until the returned guard is dropped, however the scan ends.
    fn spawn_heartbeat(&self, scan_id: uuid::Uuid) -> AbortOnDropHandle<()> {
        let pool = self.pool.clone();
        let interval = self.heartbeat_interval;
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await; // the claim was the first beat
            loop {
                ticks.tick().await;
                if let Err(error) = db::heartbeat(&pool, scan_id).await {
                    tracing::warn!(%scan_id, %error, "heartbeat failed");
                }
            }
        }))
    }
}

/// Counts a running scan in the in-flight gauge while alive.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
