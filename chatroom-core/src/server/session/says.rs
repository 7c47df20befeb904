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
/// The list is made at the first `say` that waits: an empty
/// `FuturesOrdered` already holds two allocations (about 190 bytes), and
/// most connections, idle or on one node, never need one.
///
/// Only `Send`, not `Sync`: the session reaches it through `&mut`, and no
/// `&Session` is held across an await, so the session's task stays `Send`.
#[derive(Default)]
pub(super) struct Says(Option<FuturesOrdered<BoxFuture<'static, SayDone>>>);

impl Says {
    pub(super) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(FuturesOrdered::is_empty)
    }

    pub(super) fn is_full(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|says| says.len() >= MAX_IN_FLIGHT)
    }

    /// Queues a `say` behind the others.
    pub(super) fn push(&mut self, said: BoxFuture<'static, SayDone>) {
        self.0.get_or_insert_default().push_back(said);
    }

    /// The oldest `say`, once the broker answered it; `None` when none
    /// waits.
    pub(super) async fn oldest(&mut self) -> Option<SayDone> {
        match &mut self.0 {
            Some(says) => says.next().await,
            None => None,
        }
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

#[cfg(test)]
mod tests {
    use super::Says;

    /// Every session holds one from its start; most never queue a `say`.
    #[test]
    fn no_list_is_made_until_a_say_waits() {
        let says = Says::default();
        assert!(says.0.is_none());
        assert!(says.is_empty() && !says.is_full());
    }
}
