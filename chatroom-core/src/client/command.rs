//! The request a [`Client`](super::Client) handle hands the connection task.

use tokio::sync::oneshot;

use crate::protocol::{ClientMessage, ServerMessage};

use super::error::ClientError;

/// One request on its way to the connection task.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) message: ClientMessage,
    /// The caller waits on the other end; dropping it (a timed-out caller)
    /// makes the task discard the reply.
    pub(super) reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
}
