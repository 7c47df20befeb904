//! The node's one queue of `say`s to JetStream, so that they reach NATS in
//! the order the sessions asked for them.
//!
//! A session may have many `say`s in flight. Handing each its own task or
//! future to send with would let them reach the connection in any order
//! (a future that yields for its runtime budget goes behind the others),
//! so they are queued here at once, in request order, and one task sends
//! them one after the other. Only the send is in turn: the
//! acknowledgements are awaited by the sessions, side by side.

use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// `say`s waiting for their turn on the wire, at most; past that a `say` is
/// refused as the cluster being unavailable.
pub(super) const QUEUE: usize = 8192;

/// One `say` on its way to its room's stream.
pub(super) struct Outgoing {
    pub(super) subject: async_nats::Subject,
    pub(super) payload: Bytes,
    /// Told when it is sent: the acknowledgement to wait for, or why not.
    pub(super) sent: oneshot::Sender<Result<PublishAckFuture, String>>,
}

/// Sends the queued `say`s in their order.
pub(super) async fn send_in_order(js: jetstream::Context, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(outgoing) = queue.recv().await {
        let sent = js
            .publish(outgoing.subject, outgoing.payload)
            .await
            .map_err(|e| e.to_string());
        let _ = outgoing.sent.send(sent);
    }
}
