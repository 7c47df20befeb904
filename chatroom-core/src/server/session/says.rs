//! The `say` pipeline: on one node a `say` is answered at once; in a
//! cluster up to [`MAX_IN_FLIGHT`] of one connection's `say`s wait for the
//! broker together, and every answer (theirs and any other reply or error)
//! still leaves in request order.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;

use crate::broker::BrokerError;
use crate::protocol::RoomName;
use crate::registry::Published;

/// Most `say`s of one connection waiting for the broker at once.
pub(super) const MAX_IN_FLIGHT: usize = 64;

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

    pub(super) fn is_full(&self) -> bool {
        self.0.len() >= MAX_IN_FLIGHT
    }

    /// Queues a `say` behind the others.
    pub(super) fn push(&mut self, said: BoxFuture<'static, SayDone>) {
        self.0.push_back(said);
    }

    /// The oldest `say`, once the broker answered it; `None` when none
    /// waits.
    pub(super) async fn oldest(&mut self) -> Option<SayDone> {
        self.0.next().await
    }

    /// The next `say` the broker answered (oldest first); pending forever
    /// while none waits, so it can sit in a `select!`.
    pub(super) async fn next(&mut self) -> SayDone {
        match self.oldest().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }
}
