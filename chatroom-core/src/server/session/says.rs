//! The `say` pipeline: on one node a `say` is answered at once; in a
//! cluster up to [`MAX_IN_FLIGHT`] of one connection's `say`s wait for the
//! broker together, and every answer (theirs and any other reply or error)
//! still leaves in request order.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;

use crate::broker::{BrokerError, Pending};
use crate::protocol::{RoomName, ServerMessage};
use crate::registry::Published;

use super::{Flow, Session};

/// Most `say`s of one connection waiting for the broker at once.
const MAX_IN_FLIGHT: usize = 64;

/// A `say` the broker answered: its outcome, room and `ref`.
pub(super) type SayDone = (Result<Published, BrokerError>, RoomName, Option<String>);

/// The `say`s waiting for the broker, oldest first. Always empty on one
/// node, whose broker answers at once.
///
/// Only `Send`, not `Sync`: the session reaches it through `&mut`, and no
/// `&Session` is held across an await, so the session's task stays `Send`.
#[derive(Default)]
pub(super) struct Says(FuturesOrdered<BoxFuture<'static, SayDone>>);

impl Says {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next `say` the broker answered (oldest first); pending forever
    /// while none waits, so it can sit in a `select!`.
    pub(super) async fn next(&mut self) -> SayDone {
        match self.0.next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }
}

impl Session {
    /// Sends a `say` on its way: answered now when nothing waits before
    /// it, else queued behind the others.
    pub(super) async fn send_say(
        &mut self,
        pending: Pending<Result<Published, BrokerError>>,
        room: RoomName,
        reference: Option<String>,
    ) -> Flow {
        match pending {
            Pending::Ready(Some(outcome)) if self.says.is_empty() => {
                self.on_said((outcome, room, reference))
            }
            pending => {
                let said = async move { (pending.await, room, reference) };
                self.queue_say(Box::pin(said)).await
            }
        }
    }

    async fn queue_say(&mut self, said: BoxFuture<'static, SayDone>) -> Flow {
        if self.says.0.len() >= MAX_IN_FLIGHT
            && let Some(oldest) = self.says.0.next().await
            && let Flow::Close(end) = self.on_said(oldest)
        {
            return Flow::Close(end);
        }
        self.says.0.push_back(said);
        Flow::Continue
    }

    /// Answers a `say` the broker is done with.
    pub(super) fn on_said(&mut self, (outcome, room, reference): SayDone) -> Flow {
        match outcome {
            Ok(published) => {
                self.reply(
                    ServerMessage::Ok {
                        room: Some(room),
                        id: Some(published.id),
                    },
                    reference,
                );
                Flow::Continue
            }
            Err(e) => self.reject(e.into(), reference),
        }
    }

    /// Waits for every `say` in flight and answers each, in order.
    pub(super) async fn drain_says(&mut self) -> Flow {
        while let Some(done) = self.says.0.next().await {
            if let Flow::Close(end) = self.on_said(done) {
                return Flow::Close(end);
            }
        }
        Flow::Continue
    }
}
