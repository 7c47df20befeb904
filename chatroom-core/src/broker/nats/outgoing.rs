//! The node's one queue of `say`s to JetStream, so that they reach NATS in
//! the order the sessions asked for them.
//!
//! A session may have many `say`s in flight. Handing each its own task or
//! future to send with would let them reach the connection in any order
//! (a future that yields for its runtime budget goes behind the others),
//! so they are queued here at once, in request order, and one task sends
//! them one after the other. Only the send is in turn: the
//! acknowledgements are awaited by the sessions, side by side.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishError},
};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::registry::SessionId;

use super::lock::lock;

/// `say`s waiting for their turn on the wire, at most; past that a `say` is
/// refused as the cluster being unavailable.
pub(super) const QUEUE: usize = 8192;

/// One `say` on its way to its room's stream.
pub(super) struct Outgoing {
    pub(super) subject: async_nats::Subject,
    pub(super) payload: Bytes,
    /// Told when it is sent: the acknowledgement to wait for, or why not.
    pub(super) sent: oneshot::Sender<Result<PublishAckFuture, PublishError>>,
}

/// Sends the queued `say`s in their order.
pub(super) async fn send_in_order(js: jetstream::Context, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(outgoing) = queue.recv().await {
        let sent = js.publish(outgoing.subject, outgoing.payload).await;
        let _ = outgoing.sent.send(sent);
    }
}

/// This node's `say`s that its room's feed has not delivered back yet:
/// each one's token and sending session, so that the feed leaves the
/// sender out when the `say` comes round.
#[derive(Default)]
pub(super) struct InFlight {
    senders: Mutex<HashMap<u64, SessionId>>,
    next_token: AtomicU64,
}

impl InFlight {
    /// Records a `say` of `sender` and returns its token.
    pub(super) fn add(&self, sender: SessionId) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        lock(&self.senders).insert(token, sender);
        token
    }

    /// Forgets the `say` with `token` and returns its sender, if it is
    /// still recorded.
    pub(super) fn take(&self, token: u64) -> Option<SessionId> {
        lock(&self.senders).remove(&token)
    }
}
