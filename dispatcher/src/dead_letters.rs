//! Watches `scans.dead`: a scan whose message ran out of deliveries (worker
//! crashes, repeated transient errors) or was rejected as undecodable is
//! marked failed, so no accepted scan stays `queued` or `running` forever.

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use protocol::backoff::Backoff;
use protocol::topology::{self, SessionRefused, Topology, DEAD_LETTER_QUEUE};
use protocol::ScanMessage;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Watches until `shutdown`; ends early only if the broker refuses the session.
pub async fn run(
    state: AppState,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), SessionRefused> {
    let amqp_url = state.config().service.amqp_url.clone();
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let session = match subscribe(amqp_url.expose_secret(), &topology).await {
            Ok(session) => session,
            Err(error) if topology::is_permanent(&error) => return Err(SessionRefused(error)),
            Err(error) => {
                tracing::warn!(%error, "dead-letter watcher cannot reach the broker; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        match watch(&state, session, &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "dead-letter watcher interrupted; reconnecting");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// A consumer on `scans.dead` with the connection and channel it lives on.
struct Session {
    connection: Connection,
    _channel: Channel,
    deliveries: Consumer,
}

async fn subscribe(amqp_url: &str, topology: &Topology) -> Result<Session, lapin::Error> {
    let connection = topology::connect(amqp_url, "scanfleet-dispatcher-dead-letters").await?;
    let channel = topology::consumer_channel(&connection, 16).await?;
    topology.declare(&channel).await?;
    let deliveries = channel
        .basic_consume(
            DEAD_LETTER_QUEUE,
            "scanfleet-dead-letter-watcher",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Session {
        connection,
        _channel: channel,
        deliveries,
    })
}

/// Handles deliveries until shutdown (Ok) or until the session breaks: lapin
/// ends the stream with an error, then `None`, when the connection or the
/// channel closes, so a broker that goes away cannot leave this waiting.
async fn watch(
    state: &AppState,
    mut session: Session,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = session.connection.close(200, "dispatcher stopping").await;
                return Ok(());
            }
            delivery = session.deliveries.next() => delivery,
        };
        let Some(delivery) = delivery else {
            return Err(lapin::Error::InvalidChannelState(
                lapin::ChannelState::Closed,
            ));
        };
        handle(state, delivery?).await?;
    }
}

async fn handle(state: &AppState, delivery: Delivery) -> Result<(), lapin::Error> {
    let reason = topology::first_death(&delivery.properties)
        .map(|(queue, reason)| format!("{reason} on {queue}"))
        .unwrap_or_else(|| "unknown".to_string());
    let reason_label = reason.split(' ').next().unwrap_or("unknown").to_string();
    let message = match ScanMessage::decode(&delivery.data) {
        Ok(message) => message,
        Err(error) => {
            // Nothing to mark: the payload names no scan we can read. Keep a
            // trace of it in the log and drop it so the queue keeps moving.
            let preview = String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(256)])
                .into_owned();
            tracing::error!(%error, %reason, %preview, "undecodable message dead-lettered; dropped");
            state
                .metrics()
                .dead_lettered
                .with_label_values(&["undecodable"])
                .inc();
            return delivery.ack(BasicAckOptions::default()).await;
        }
    };
    let scan_id = message.job().scan_id;
    let detail = format!("the scan's message was dead-lettered ({reason}) before it finished");
    let marked = async {
        let mut tx = state.pool().begin().await?;
        let marked =
            protocol::db::record_failure(&mut tx, scan_id, "dead_lettered", &detail).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(marked)
    }
    .await;
    match marked {
        Ok(marked) => {
            if marked {
                tracing::warn!(%scan_id, %reason, "scan failed: message dead-lettered");
            }
            state
                .metrics()
                .dead_lettered
                .with_label_values(&[&reason_label])
                .inc();
            delivery.ack(BasicAckOptions::default()).await
        }
        Err(error) => {
            // Keep the message until the database is back.
            tracing::warn!(%scan_id, %error, "cannot record dead-lettered scan yet");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    }
}
