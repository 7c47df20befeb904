//! Publishing a `say`: checked and queued at once, in request order, then
//! settled once JetStream acknowledges it and this node has delivered the
//! room up to it.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::timeout;

use crate::history::{CommitSnapshot, CommitTimes};
use crate::protocol::{MessageId, Nickname, RoomName, Timestamp};
use crate::registry::{Published, SessionId, now_ms};

use super::feed::Feeds;
use super::link::Link;
use super::outgoing::{self, InFlight, Outgoing};
use super::wire::Wire;
use crate::broker::{BrokerError, Outage};

/// Where this node's `say`s go: into the one queue to JetStream.
pub(super) struct Publisher {
    link: Arc<Link>,
    feeds: Arc<Feeds>,
    in_flight: Arc<InFlight>,
    /// The queue of `say`s to JetStream (see `outgoing`).
    queue: mpsc::Sender<Outgoing>,
    /// From queueing a `say` to JetStream's acknowledgement, for metrics.
    times: CommitTimes,
}

/// A `say` queued for its room's stream, not yet acknowledged.
pub(super) struct Submitted {
    room: RoomName,
    token: u64,
    ts: Timestamp,
    /// The room's feed here: how far it has delivered.
    delivered: watch::Receiver<MessageId>,
    sent: oneshot::Receiver<Result<PublishAckFuture, PublishError>>,
    /// When it was queued.
    queued_at: Instant,
}

impl Publisher {
    /// A publisher and the receiving end of its queue, for
    /// [`outgoing::send_in_order`].
    pub(super) fn new(
        link: Arc<Link>,
        feeds: Arc<Feeds>,
        in_flight: Arc<InFlight>,
    ) -> (Self, mpsc::Receiver<Outgoing>) {
        let (queue, queued) = mpsc::channel(outgoing::QUEUE);
        let publisher = Self {
            link,
            feeds,
            in_flight,
            queue,
            times: CommitTimes::default(),
        };
        (publisher, queued)
    }

    /// Checks and queues a `say` for its room's stream, at once, so that
    /// the `say`s of a session leave in the order it asked for them.
    pub(super) fn submit(
        &self,
        room: RoomName,
        sender: SessionId,
        from: Nickname,
        text: String,
        action: bool,
    ) -> Result<Submitted, BrokerError> {
        let Some((delivered, subject)) = self.feeds.route(&room) else {
            return Err(Outage::RoomNotOpen(room).into());
        };
        // While disconnected the client would buffer the publish and send
        // it on reconnection, after the sender was told it failed.
        self.link.connected()?;
        let token = self.in_flight.add(sender);
        let ts = now_ms();
        let wire = Wire {
            from,
            text,
            ts,
            action,
            node: self.link.instance.clone(),
            token,
        };
        let payload = serde_json::to_vec(&wire).expect("a message serializes");
        let (sent_tx, sent) = oneshot::channel();
        let queued = self.queue.try_send(Outgoing {
            subject,
            payload: payload.into(),
            sent: sent_tx,
        });
        if queued.is_err() {
            self.in_flight.take(token);
            return Err(Outage::QueueFull.into());
        }
        Ok(Submitted {
            room,
            token,
            ts,
            delivered,
            sent,
            queued_at: Instant::now(),
        })
    }

    /// How long acknowledged publishes waited for JetStream.
    pub(super) fn times(&self) -> CommitSnapshot {
        self.times.snapshot()
    }

    /// Waits for a submitted `say`'s acknowledgement (its id), then until
    /// this node has delivered the room up to it.
    pub(super) async fn settle(
        self: Arc<Self>,
        submitted: Submitted,
    ) -> Result<Published, BrokerError> {
        let Submitted {
            room,
            token,
            ts,
            mut delivered,
            sent,
            queued_at,
        } = submitted;
        let acked = timeout(self.link.config.request_timeout, async {
            let ack = sent
                .await
                .map_err(|_| Outage::Stopping)?
                .map_err(|e| Outage::NotSent(e.into()))?;
            ack.await.map_err(|e| Outage::NotSent(e.into()))
        })
        .await;
        let ack = match acked {
            Ok(Ok(ack)) => {
                // Once per `say`, on the task that waits for it.
                self.times.record(queued_at.elapsed());
                ack
            }
            Ok(Err(outage)) => {
                self.in_flight.take(token);
                return Err(outage.into());
            }
            Err(_) => {
                self.in_flight.take(token);
                return Err(Outage::AckTimedOut.into());
            }
        };
        // The `ok` must not overtake a message with a lower id: wait until
        // this node has delivered up to this one.
        let caught_up = timeout(
            self.link.config.request_timeout,
            delivered.wait_for(|last| *last >= ack.sequence),
        )
        .await;
        if matches!(caught_up, Ok(Ok(_))) {
            self.in_flight.take(token);
        } else {
            // The feed delivers it later (after a NATS failover, say): the
            // token stays so that the sender is still left out then.
            tracing::warn!(%room, id = ack.sequence, "message committed but not yet delivered here");
        }
        Ok(Published {
            id: ack.sequence,
            ts,
            delivered: 0,
            slow: 0,
        })
    }
}
