//! Publishing a `say`: checked and queued at once, in request order, then
//! settled once JetStream acknowledges it and this node has delivered the
//! room up to it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

use crate::protocol::{MessageId, Nickname, RoomName, Timestamp};
use crate::registry::{Published, SessionId, now_ms};

use super::{BrokerError, Inner, Wire, lock, outgoing};

/// A `say` queued for its room's stream, not yet acknowledged.
pub(super) struct Submitted {
    room: RoomName,
    token: u64,
    ts: Timestamp,
    /// The room's feed here: how far it has delivered.
    delivered: watch::Receiver<MessageId>,
    sent: oneshot::Receiver<Result<async_nats::jetstream::context::PublishAckFuture, String>>,
}

impl Inner {
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
        let key = room.key();
        let feed = lock(&self.feeds)
            .get(&key)
            .map(|f| (f.last.clone(), f.subject.clone()));
        let Some((delivered, subject)) = feed else {
            return Err(BrokerError::Unavailable(format!(
                "room {room} is not open on this node; join it again"
            )));
        };
        // While disconnected the client would buffer the publish and send
        // it on reconnection, after the sender was told it failed.
        self.connected()?;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let ts = now_ms();
        let wire = Wire {
            from,
            text,
            ts,
            action,
            node: self.instance.clone(),
            token,
        };
        let payload = serde_json::to_vec(&wire).expect("a message serializes");
        let (sent_tx, sent) = oneshot::channel();
        lock(&self.outgoing).insert(token, sender);
        let queued = self.publisher.try_send(outgoing::Outgoing {
            subject,
            payload: payload.into(),
            sent: sent_tx,
        });
        if queued.is_err() {
            lock(&self.outgoing).remove(&token);
            return Err(BrokerError::Unavailable(
                "too many messages waiting for NATS; nothing was sent".to_owned(),
            ));
        }
        Ok(Submitted {
            room,
            token,
            ts,
            delivered,
            sent,
        })
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
        } = submitted;
        let acked = timeout(self.config.request_timeout, async {
            let ack = sent
                .await
                .map_err(|_| "the node is stopping".to_owned())??;
            ack.await.map_err(|e| e.to_string())
        })
        .await;
        let ack = match acked {
            Ok(Ok(ack)) => ack,
            Ok(Err(e)) => {
                lock(&self.outgoing).remove(&token);
                return Err(BrokerError::Unavailable(format!(
                    "the message was not sent: {e}"
                )));
            }
            Err(_) => {
                lock(&self.outgoing).remove(&token);
                return Err(BrokerError::Unavailable(
                    "NATS did not acknowledge the message in time; it may not have been sent"
                        .to_owned(),
                ));
            }
        };
        // The `ok` must not overtake a message with a lower id: wait until
        // this node has delivered up to this one.
        let caught_up = timeout(
            self.config.request_timeout,
            delivered.wait_for(|last| *last >= ack.sequence),
        )
        .await;
        if matches!(caught_up, Ok(Ok(_))) {
            lock(&self.outgoing).remove(&token);
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
