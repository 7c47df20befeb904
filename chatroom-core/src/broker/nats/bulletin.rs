//! Bulletins: what the engine of one node asks every other node to do
//! (a moderator's kick or ban, a line for a room's members), carried on
//! core NATS as opaque bytes. The broker neither reads nor keeps them: a
//! node that is away when one is sent misses it, and learns the lasting
//! part (the rules) from the account bucket.
//!
//! One task sends them in the order they were made, so that a room hears
//! a kick's line before the member is removed.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::link::Link;
use crate::broker::{BrokerError, BulletinSink, Outage};

/// The subjects bulletins travel on, one per sending node.
const SUBJECTS: &str = "chatroom.bulletin.*";
/// Bulletins waiting to be handed to the NATS client; more are dropped
/// (moderation is rare; a flood is a bug, not a load).
const QUEUE: usize = 1024;

fn subject(instance: &str) -> String {
    format!("chatroom.bulletin.{instance}")
}

/// This node's side of the bulletins.
pub(super) struct Bulletins {
    queue: mpsc::Sender<Bytes>,
    sink: Arc<OnceLock<BulletinSink>>,
}

impl Bulletins {
    /// Subscribes to the other nodes' bulletins and starts the sender.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the subscription cannot be made.
    pub(super) async fn start(link: &Link) -> Result<(Self, Vec<JoinHandle<()>>), BrokerError> {
        let incoming = link
            .client
            .subscribe(SUBJECTS)
            .await
            .map_err(|e| Outage::Subscribe {
                what: "bulletins",
                source: e.into(),
            })?;
        let sink = Arc::new(OnceLock::<BulletinSink>::new());
        let (queue, queued) = mpsc::channel(QUEUE);
        let own = subject(&link.instance);
        let receive = {
            let sink = sink.clone();
            let own = own.clone();
            tokio::spawn(async move {
                let mut incoming = incoming;
                while let Some(message) = incoming.next().await {
                    if message.subject.as_str() == own {
                        continue;
                    }
                    if let Some(sink) = sink.get() {
                        sink(&message.payload);
                    }
                }
            })
        };
        let send = tokio::spawn(send_in_order(link.client.clone(), own, queued));
        Ok((Self { queue, sink }, vec![receive, send]))
    }

    /// Queues `payload` for every other node. Never waits.
    pub(super) fn send(&self, payload: Vec<u8>) {
        if self.queue.try_send(payload.into()).is_err() {
            tracing::warn!("a bulletin to the other nodes was dropped: the queue is full");
        }
    }

    /// Where the other nodes' bulletins go from now on (the first call
    /// wins).
    pub(super) fn follow(&self, sink: BulletinSink) {
        let _ = self.sink.set(sink);
    }
}

async fn send_in_order(
    client: async_nats::Client,
    subject: String,
    mut queued: mpsc::Receiver<Bytes>,
) {
    while let Some(payload) = queued.recv().await {
        if let Err(e) = client.publish(subject.clone(), payload).await {
            tracing::warn!(error = %e, "a bulletin to the other nodes was not sent");
        }
    }
}
