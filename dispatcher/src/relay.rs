//! The outbox relay: publishes committed scans to RabbitMQ.
//!
//! Scans are committed with an outbox row; this task locks unsent rows,
//! publishes them with publisher confirms and marks them sent in the same
//! transaction. If the broker is away, rows wait in Postgres and go out when
//! it returns; if the process dies after the broker confirmed but before the
//! commit, rows are published again — workers ignore a duplicate of a
//! finished scan, so delivery is at-least-once with no duplicate results.
//! Replicas share the work through `FOR UPDATE SKIP LOCKED`.
//!
//! Broker outages are waited out (reconnecting with backoff); a broker that
//! refuses the session for good ends the task with [`SessionRefused`], and
//! its supervisor stops the process.

use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::Channel;
use protocol::backoff::Backoff;
use protocol::topology::{self, SessionRefused, Topology, EXCHANGE};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

const BATCH: i64 = 200;

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused message for scan {0}")]
    Refused(uuid::Uuid),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Relays until `shutdown`; ends early only if the broker refuses the session.
pub async fn run(
    state: AppState,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), SessionRefused> {
    let amqp_url = state.config().service.amqp_url.clone();
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let channel = match open_channel(amqp_url.expose_secret(), &topology).await {
            Ok(channel) => channel,
            Err(error) if topology::is_permanent(&error) => return Err(SessionRefused(error)),
            Err(error) => {
                tracing::warn!(%error, "outbox relay cannot reach the broker; scans wait in the outbox");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        tracing::info!("outbox relay connected");
        state.metrics().broker_connected.set(1);
        backoff.reset();
        let error = publish_until_error(&state, &channel, &shutdown).await;
        state.metrics().broker_connected.set(0);
        let _ = channel.close(200, "relay stopping").await;
        match error {
            None => break,
            Some(error) => {
                tracing::warn!(%error, "outbox relay interrupted; reconnecting");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("outbox relay stopped");
    Ok(())
}

async fn open_channel(amqp_url: &str, topology: &Topology) -> Result<Channel, lapin::Error> {
    let connection = topology::connect(amqp_url, "scanfleet-dispatcher-relay").await?;
    let channel = topology::confirm_channel(&connection).await?;
    topology.declare(&channel).await?;
    Ok(channel)
}

/// Publishes until shutdown (returns None) or a failure (returns it).
async fn publish_until_error(
    state: &AppState,
    channel: &Channel,
    shutdown: &CancellationToken,
) -> Option<RelayError> {
    let poll = state.config().outbox_poll;
    loop {
        // A broker that closed the connection while nothing was waiting
        // would otherwise go unnoticed until the next scan (and readiness
        // would claim a broker meanwhile): look before each batch.
        if !channel.status().connected() {
            return Some(RelayError::Broker(lapin::Error::InvalidChannelState(
                channel.status().state(),
            )));
        }
        match publish_batch(state, channel).await {
            // A full batch: more may be waiting.
            Ok(published) if published == BATCH as usize => continue,
            Ok(_) => {}
            Err(error) => return Some(error),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = state.outbox_wakeup().notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn publish_batch(state: &AppState, channel: &Channel) -> Result<usize, RelayError> {
    let mut tx = state.pool().begin().await?;
    let rows = crate::store::lock_unsent(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Publish the whole batch, then wait for all confirms: one round trip of
    // latency per batch instead of per message.
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let payload = serde_json::to_vec(&row.payload).expect("stored JSON serialises");
        let confirm = channel
            .basic_publish(
                EXCHANGE,
                &row.routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &payload,
                topology::scan_message_properties(row.scan_id),
            )
            .await?;
        confirms.push((row.scan_id, confirm));
    }
    for (scan_id, confirm) in confirms {
        match confirm.await? {
            // A returned message found no queue: do not mark it sent.
            Confirmation::Ack(Some(_)) | Confirmation::Nack(_) => {
                return Err(RelayError::Refused(scan_id))
            }
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
        }
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    crate::store::mark_sent(&mut tx, &ids).await?;
    tx.commit().await?;
    state.metrics().outbox_published.inc_by(rows.len() as u64);
    tracing::debug!(count = rows.len(), "published outbox batch");
    Ok(rows.len())
}
