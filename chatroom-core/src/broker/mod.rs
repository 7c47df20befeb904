//! Where a room's messages go to reach every node: the broker seam.
//!
//! A [`Broker`] stands between a session and its rooms for the few things
//! that must be agreed by every server node sharing one room space: the
//! order and ids of a room's messages, and who holds which nickname.
//!
//! - [`LocalBroker`], the default, is one node on its own. It keeps today's
//!   path and cost: [`Broker::publish`] calls [`Room::publish`], which stamps
//!   the id and fans the frame out under the room's lock, and the future it
//!   returns is already complete (no allocation, no task hop). Nick claims
//!   are the registry's own.
//! - `NatsBroker` (feature `cluster`, module `nats`) shares rooms between
//!   nodes through NATS JetStream: one stream per room gives the room's ids
//!   (the stream sequence) and its order, every node consumes the stream and
//!   delivers through [`Room::deliver_message`], and nicknames are claimed
//!   in a key-value bucket.
//!
//! This module may use `protocol`, `history` and `registry`; never `server`
//! or `transport`.

mod error;
#[cfg(feature = "cluster")]
pub mod nats;
#[cfg(feature = "cluster")]
mod presence;
mod secret;

pub use error::{BrokerError, Cause, Outage};
pub use secret::Secret;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::history::CommitSnapshot;
use crate::protocol::{MessageId, Nickname, RoomInfo, RoomName, Timestamp};
use crate::registry::{Published, RegistryError, Room, RoomRegistry, SessionId};

/// The answer of a broker call: already there (the single-node case, which
/// costs nothing more than a direct call), or a boxed future to wait for.
#[must_use = "a pending broker call does nothing unless awaited"]
pub enum Pending<T> {
    /// Done already.
    Ready(Option<T>),
    /// Still to wait for.
    Waiting(Pin<Box<dyn Future<Output = T> + Send + 'static>>),
}

impl<T> Pending<T> {
    /// An answer that is already known.
    pub fn ready(value: T) -> Self {
        Self::Ready(Some(value))
    }

    /// An answer to wait for.
    pub fn waiting(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self::Waiting(Box::pin(future))
    }
}

impl<T: Unpin> Future for Pending<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Self::Ready(value) => {
                Poll::Ready(value.take().expect("Pending polled after completion"))
            }
            Self::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(_) => f.write_str("Pending::Ready"),
            Self::Waiting(_) => f.write_str("Pending::Waiting"),
        }
    }
}

/// Where a broker hands the bulletins other nodes send (see
/// [`Broker::bulletin`]).
pub type BulletinSink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Where a broker asks the engine which ban mask fits the session of this
/// node that holds a nick, when another node wants to ban it (see
/// [`Broker::ban_mask`]): `None` when no session here holds the nick.
pub type MaskSource = Box<dyn Fn(&Nickname) -> Option<String> + Send + Sync>;

/// Where a room's messages and the nick claims go to reach every node.
///
/// The engine calls these around the registry; none of them is called
/// under a registry or room lock.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Told the engine's registry once, before any session starts. A
    /// broker that delivers messages from other nodes finds the live rooms
    /// there.
    fn attach(&self, registry: &RoomRegistry) {
        let _ = registry;
    }

    /// Makes `room` ready on this node before a session joins it, reads
    /// its history or checks a cursor against it: a cluster broker learns
    /// the room's last id and starts receiving its messages.
    fn open(&self, room: &RoomName) -> Pending<Result<(), BrokerError>>;

    /// As [`Broker::open`], for reading only (a history page, a resume
    /// cursor): a room that never existed anywhere is left unmade, so that
    /// the registry answers `no_such_room` for it.
    fn open_existing(&self, room: &RoomName) -> Pending<Result<(), BrokerError>> {
        self.open(room)
    }

    /// Waits, briefly, until this node has received `room` up to `id`: a
    /// cursor handed out by another node may be ahead of this node's feed
    /// for a moment. Completes at once on one node, and after a bounded
    /// wait whatever happens; the caller checks the cursor again.
    fn catch_up(&self, room: &RoomName, id: MessageId) -> Pending<()> {
        let _ = (room, id);
        Pending::ready(())
    }

    /// Publishes a `say` of `sender` (a member of `room`): the message gets
    /// the room's next id and reaches every member on every node except the
    /// sender, in the room's one order. Completes once the message is
    /// committed, and (so that the sender's `ok` never overtakes an earlier
    /// message) after every earlier message of the room is in the sender's
    /// queue.
    fn publish(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>>;

    /// Publishes as [`Broker::publish`] does, for a sender with more
    /// `say`s already read: a broker may hold the message back from the
    /// members until the run ends, to hand them the run at once. The
    /// caller ends the run with [`Broker::publish`] or
    /// [`Room::flush_held`]. The default publishes at once; one node
    /// holds the message in the room (docs/architecture.md).
    fn publish_held(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        self.publish(room, sender, from, text, action)
    }

    /// Claims `nick` for a session of this node. Succeeds at once when no
    /// other node shares the nick space; the registry still decides between
    /// the sessions of this node.
    fn claim(&self, nick: &Nickname) -> Pending<Result<(), BrokerError>>;

    /// Gives up a claim made by [`Broker::claim`]. Never waits.
    fn release(&self, nick: &Nickname);

    /// Tells the other nodes that `nick`, a session of this node, is in
    /// `room` (after the registry let it join). Never waits.
    fn joined(&self, room: &RoomName, nick: &Nickname) {
        let _ = (room, nick);
    }

    /// Tells the other nodes that `nick` left `room`. Never waits.
    fn left(&self, room: &RoomName, nick: &Nickname, reason: Option<&str>) {
        let _ = (room, nick, reason);
    }

    /// Tells the other nodes that `old`, a session of this node, is now
    /// `new`. Never waits.
    fn renamed(&self, old: &Nickname, new: &Nickname) {
        let _ = (old, new);
    }

    /// Hands a private message from `from` (a session of this node) to
    /// `to`, held on another node; completes with `to` as its holder spells
    /// it. Called only when no session of this node holds `to`.
    fn whisper(
        &self,
        from: &Nickname,
        to: &Nickname,
        text: String,
        ts: Timestamp,
    ) -> Pending<Result<Nickname, BrokerError>> {
        let _ = (from, text, ts);
        Pending::ready(Err(RegistryError::NoSuchNick(to.clone()).into()))
    }

    /// Asks the node that holds `nick` which ban mask fits that session
    /// best (its engine knows the session's account and address; see
    /// [`Broker::answer_ban_masks`]). Called only when no session of this
    /// node holds `nick`. Completes with `None` when no other node holds
    /// it (always, for one node alone), and within a bounded wait
    /// whatever happens.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the holder's node cannot be asked
    /// or does not answer in time: only the nick is known then.
    fn ban_mask(&self, nick: &Nickname) -> Pending<Result<Option<String>, BrokerError>> {
        let _ = nick;
        Pending::ready(Ok(None))
    }

    /// Hands `source` the questions of [`Broker::ban_mask`] that other
    /// nodes ask about this node's sessions from now on.
    fn answer_ban_masks(&self, source: MaskSource) {
        let _ = source;
    }

    /// Called once the engine's sessions have ended, before it returns:
    /// what they told the other nodes last (their leaves, their released
    /// nicks) is sent before the process goes. Completes at once on one
    /// node, and within a bounded wait whatever happens.
    fn shutdown(&self) -> Pending<()> {
        Pending::ready(())
    }

    /// Hands `payload`, which the engine made and alone reads (a
    /// moderator's kick or ban, a line for a room's members), to every
    /// other node, in the order of the calls. Never waits; one node alone
    /// has nobody to tell.
    fn bulletin(&self, payload: Vec<u8>) {
        let _ = payload;
    }

    /// Hands `sink` every bulletin another node sends from now on.
    fn follow_bulletins(&self, sink: BulletinSink) {
        let _ = sink;
    }

    /// The members of `room` on the other nodes (none for one node alone).
    fn remote_members(&self, room: &RoomName) -> Vec<Nickname> {
        let _ = room;
        Vec::new()
    }

    /// The rooms with members on the other nodes, with how many there.
    fn remote_rooms(&self) -> Vec<RoomInfo> {
        Vec::new()
    }

    /// Whether the broker is connected to what carries rooms between
    /// nodes, for readiness checks; `None` (the default) for a broker with
    /// nothing to connect to.
    fn is_connected(&self) -> Option<bool> {
        None
    }

    /// How long publishes took to be acknowledged by what carries rooms
    /// between nodes, for metrics; `None` (the default) for a broker that
    /// publishes in place.
    fn publish_times(&self) -> Option<CommitSnapshot> {
        None
    }
}

/// One node on its own: the registry is the whole truth.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn open(&self, _room: &RoomName) -> Pending<Result<(), BrokerError>> {
        Pending::ready(Ok(()))
    }

    fn publish(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        // Nobody gets their own line back, as in the seed: a native client
        // learns the id from the `ok`.
        Pending::ready(
            room.publish(sender, from, text, action, false)
                .map_err(BrokerError::from),
        )
    }

    fn publish_held(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        Pending::ready(
            room.publish_held(sender, from, text, action)
                .map_err(BrokerError::from),
        )
    }

    fn claim(&self, _nick: &Nickname) -> Pending<Result<(), BrokerError>> {
        Pending::ready(Ok(()))
    }

    fn release(&self, _nick: &Nickname) {}
}
