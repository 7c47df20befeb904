//! A room of N members without sockets or a runtime, for benchmarks of the
//! fanout path (re-exported as `testing::FanoutRig`).

use std::sync::Arc;

use crate::protocol::{Nickname, RoomName};

use super::{Backlog, OutboxReceiver, QueueBudget, Room, RoomRegistry, SessionId, outbox};

/// A room of `members` members plus one publisher, with every queue
/// drained of the presence frames the joins produced.
#[derive(Debug)]
pub struct FanoutRig {
    /// The room, as a session holds it to publish.
    pub room: Arc<Room>,
    /// The publishing session.
    pub publisher: SessionId,
    /// The publisher's nick.
    pub nick: Nickname,
    receivers: Vec<OutboxReceiver>,
    /// Kept so that the room keeps its members.
    _registry: RoomRegistry,
}

impl FanoutRig {
    /// Registers `members` members and a publisher in one room, each with
    /// a queue deep enough for every join announcement and then some.
    ///
    /// # Panics
    /// Never for a fresh registry; the names are valid and free.
    pub fn new(members: usize) -> Self {
        let registry = RoomRegistry::new();
        let name = RoomName::new("lobby").expect("valid literal");
        let capacity = members + 64;
        let mut receivers = Vec::with_capacity(members);
        for i in 0..members {
            let (tx, rx) = outbox(capacity, 1 << 30, QueueBudget::unlimited());
            let nick = Nickname::new(format!("m{i}")).expect("valid name");
            let id = registry.register(nick, tx).expect("a free nick");
            registry
                .join(id, &name, 8, Backlog::Last(0))
                .expect("room for one more");
            receivers.push(rx);
        }
        let nick = Nickname::new("publisher").expect("valid literal");
        let (tx, mut own) = outbox(capacity, 1 << 30, QueueBudget::unlimited());
        let publisher = registry.register(nick.clone(), tx).expect("a free nick");
        let room = registry
            .join(publisher, &name, 8, Backlog::Last(0))
            .expect("room for one more");
        while own.try_recv().is_some() {}
        for rx in &mut receivers {
            while rx.try_recv().is_some() {}
        }
        Self {
            room,
            publisher,
            nick,
            receivers,
            _registry: registry,
        }
    }

    /// Takes one queued frame off every member's queue, as their writers
    /// would; returns how many members had one.
    pub fn take_one_each(&mut self) -> usize {
        self.receivers
            .iter_mut()
            .filter_map(|rx| rx.try_recv())
            .map(std::hint::black_box)
            .count()
    }
}
