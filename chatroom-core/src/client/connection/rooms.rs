//! The rooms the client is in, how far it has read each, and the rejoins
//! of a reconnect: everything a resume needs, with no I/O.

use std::collections::{BTreeMap, HashMap};

use crate::protocol::{MessageId, RoomName};

/// Rooms joined and their resume cursors, kept across connections.
pub(super) struct Rooms {
    /// Rooms joined, by folded name, to rejoin after a reconnect.
    joined: BTreeMap<String, RoomName>,
    /// The last message id seen in each joined room, by folded name: where
    /// a rejoin resumes, so nothing said while away is missed or repeated.
    cursors: HashMap<String, MessageId>,
    /// Rejoins not yet sent: all of them right after a reconnect, then
    /// those whose cursor the server refused (it lost its history), which
    /// go again as plain joins.
    unsent: Vec<RoomName>,
    /// Rejoins still unanswered after a reconnect, and the rooms rejoined.
    rejoining: Option<(usize, Vec<RoomName>)>,
}

impl Rooms {
    /// No rooms.
    pub(super) fn new() -> Self {
        Self {
            joined: BTreeMap::new(),
            cursors: HashMap::new(),
            unsent: Vec::new(),
            rejoining: None,
        }
    }

    /// Records a join the server accepted, and the room's last message id.
    pub(super) fn joined(&mut self, room: &RoomName, last_id: Option<MessageId>) {
        self.joined.insert(room.key(), room.clone());
        if let Some(id) = last_id {
            self.seen(room, id);
        }
    }

    /// Forgets a room the client left.
    pub(super) fn left(&mut self, room: &RoomName) {
        self.joined.remove(&room.key());
        self.cursors.remove(&room.key());
    }

    /// Moves the resume cursor of `room` forward to `id`.
    pub(super) fn seen(&mut self, room: &RoomName, id: MessageId) {
        let cursor = self.cursors.entry(room.key()).or_insert(0);
        *cursor = (*cursor).max(id);
    }

    /// True when message `id` of `room` is new, and then moves the cursor
    /// to it. A message at or below the cursor was seen before the
    /// connection was lost; the resume must not show it twice.
    pub(super) fn first_sight(&mut self, room: &RoomName, id: MessageId) -> bool {
        let cursor = self.cursors.entry(room.key()).or_insert(0);
        if id > *cursor {
            *cursor = id;
            true
        } else {
            false
        }
    }

    /// Queues a rejoin of every room joined; false when there is none.
    pub(super) fn start_rejoin(&mut self) -> bool {
        let rooms: Vec<RoomName> = self.joined.values().cloned().collect();
        if rooms.is_empty() {
            return false;
        }
        self.rejoining = Some((rooms.len(), Vec::new()));
        self.unsent = rooms;
        true
    }

    /// Stops counting rejoins: their connection is gone.
    pub(super) fn abandon_rejoin(&mut self) {
        self.rejoining = None;
    }

    /// Whether rejoins wait to be sent.
    pub(super) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// The rejoins waiting to be sent, each with the cursor to resume
    /// from when `resume` is true.
    pub(super) fn take_unsent(&mut self, resume: bool) -> Vec<(RoomName, Option<MessageId>)> {
        std::mem::take(&mut self.unsent)
            .into_iter()
            .map(|room| {
                let after = if resume {
                    self.cursors.get(&room.key()).copied()
                } else {
                    None
                };
                (room, after)
            })
            .collect()
    }

    /// The server refused the cursor of `room` (it no longer has the
    /// room's past): the rejoin goes again, as a plain join.
    pub(super) fn cursor_refused(&mut self, room: RoomName) {
        self.cursors.remove(&room.key());
        self.unsent.push(room);
    }

    /// Counts one rejoin answered; after the last, the rooms rejoined.
    pub(super) fn rejoined(&mut self, room: RoomName, ok: bool) -> Option<Vec<RoomName>> {
        if !ok {
            self.joined.remove(&room.key());
        }
        let (left, rooms) = self.rejoining.as_mut()?;
        if ok {
            rooms.push(room);
        }
        *left -= 1;
        if *left == 0 {
            let rooms = std::mem::take(rooms);
            self.rejoining = None;
            return Some(rooms);
        }
        None
    }
}
