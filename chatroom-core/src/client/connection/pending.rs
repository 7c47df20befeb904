//! Requests in flight on the current connection, matched to their replies
//! by `ref`.

use tokio::sync::oneshot;

use crate::client::error::ClientError;
use crate::protocol::{ClientMessage, RoomName, ServerMessage};

/// A request sent and not yet answered.
pub(super) enum Pending {
    /// A caller's request; the caller holds the receiver.
    User {
        message: ClientMessage,
        reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
    },
    /// A join the task sent itself after reconnecting.
    Rejoin(RoomName),
}
