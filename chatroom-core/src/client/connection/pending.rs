//! Requests in flight on the current connection, matched to their replies
//! by `ref`.

use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::client::error::ClientError;
use crate::protocol::{ClientMessage, RoomName, ServerMessage};

/// Most pending requests kept before answers for callers that gave up are
/// swept out of the table.
const PENDING_SWEEP: usize = 1024;

/// Where a caller waits for its reply.
type ReplyTx = oneshot::Sender<Result<ServerMessage, ClientError>>;

/// A request sent and not yet answered.
pub(super) enum Pending {
    /// A caller's request; the caller holds the receiver.
    User {
        message: ClientMessage,
        reply: ReplyTx,
    },
    /// A join the task sent itself after reconnecting.
    Rejoin(RoomName),
}

/// The requests sent and not yet answered, by the `ref` each carries.
pub(super) struct InFlight {
    by_ref: HashMap<String, Pending>,
    /// Refs count up for the task's whole life, so a late reply from an
    /// earlier connection can never match a newer request.
    next_ref: u64,
}

impl InFlight {
    /// An empty table; the first ref is `1`.
    pub(super) fn new() -> Self {
        Self {
            by_ref: HashMap::new(),
            next_ref: 1,
        }
    }

    /// A ref not handed out before.
    pub(super) fn fresh_ref(&mut self) -> String {
        let r = self.next_ref;
        self.next_ref += 1;
        r.to_string()
    }

    /// Records a caller's request sent under `reference`. A large table is
    /// first swept of callers that gave up, whose replies nobody awaits.
    pub(super) fn track_user(&mut self, reference: String, message: ClientMessage, reply: ReplyTx) {
        if self.by_ref.len() >= PENDING_SWEEP {
            self.by_ref.retain(|_, p| match p {
                Pending::User { reply, .. } => !reply.is_closed(),
                Pending::Rejoin(_) => true,
            });
        }
        self.by_ref
            .insert(reference, Pending::User { message, reply });
    }

    /// Records a rejoin the task sent under `reference`.
    pub(super) fn track_rejoin(&mut self, reference: String, room: RoomName) {
        self.by_ref.insert(reference, Pending::Rejoin(room));
    }

    /// The request `reference` answers, removed from the table.
    pub(super) fn take(&mut self, reference: &str) -> Option<Pending> {
        self.by_ref.remove(reference)
    }

    /// Answers every `quit` in flight with a `bye` carrying `reason`.
    pub(super) fn answer_quits(&mut self, reason: &str) {
        let quits: Vec<String> = self
            .by_ref
            .iter()
            .filter(|(_, p)| {
                matches!(
                    p,
                    Pending::User {
                        message: ClientMessage::Quit { .. },
                        ..
                    }
                )
            })
            .map(|(r, _)| r.clone())
            .collect();
        for r in quits {
            if let Some(Pending::User { reply, .. }) = self.by_ref.remove(&r) {
                let _ = reply.send(Ok(ServerMessage::Bye {
                    reason: reason.to_owned(),
                }));
            }
        }
    }

    /// Answers every request in flight: the connection is gone. A `quit`
    /// in flight has what it asked for.
    pub(super) fn fail_all(&mut self) {
        for (_, pending) in self.by_ref.drain() {
            if let Pending::User { message, reply } = pending {
                let result = match message {
                    ClientMessage::Quit { .. } => Ok(ServerMessage::Bye {
                        reason: "connection closed".to_owned(),
                    }),
                    _ => Err(ClientError::Disconnected),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Forgets every request without answering: only rejoins are in
    /// flight when this is called, and nobody waits for those.
    pub(super) fn forget_all(&mut self) {
        self.by_ref.clear();
    }
}
