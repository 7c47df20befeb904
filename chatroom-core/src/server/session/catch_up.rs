//! A member that fell behind in a room is caught up, not cut off.
//!
//! What the session queues here goes through `Outbox::push_paced`: other
//! rooms' live traffic fills the same queue meanwhile, and a plain push
//! that found it full would cut the session off.
//!
//! A room never waits for a slow reader: when a member's queue is full, the
//! room holds its traffic back from that member and wakes its session
//! (`Outbox::fell_behind`). The session waits until its writer has taken
//! half the queue out, tells the client it fell behind (`lagged`), streams
//! it the messages it missed at the pace it reads, and lets it back into
//! the live traffic under the room's lock, so that nothing is lost or
//! repeated and the order holds. A text client's `/resume ID` takes the
//! same path on purpose.

use std::sync::Arc;

use crate::protocol::{MessageId, RoomName, ServerMessage};
use crate::registry::{Outbound, Room};

use super::super::writer::Dialect;
use super::state::{Flow, Session};

impl Session {
    /// Catches the client up in every room that holds traffic back from it.
    pub(super) async fn on_behind(&mut self) -> Flow {
        let behind: Vec<(Arc<Room>, MessageId)> = self
            .rooms
            .values()
            .filter_map(|room| Some((room.clone(), room.behind(self.id)?)))
            .collect();
        for (room, after) in behind {
            let last = room.last_id();
            if last > after {
                let lagged = ServerMessage::Lagged {
                    room: room.name().clone(),
                    first: after + 1,
                    last,
                };
                if !self.queue_paced(lagged).await {
                    return Flow::Continue;
                }
            }
            if let Flow::Close(end) = self.catch_up(&room, after).await {
                return Flow::Close(end);
            }
        }
        Flow::Continue
    }

    /// The text dialect's `/resume ID`: the current room's messages after
    /// `after` again, in order, then the live ones.
    pub(super) async fn resume_text(&mut self, room: &RoomName, after: MessageId) -> Flow {
        let Some(handle) = self.rooms.get(&room.key()).cloned() else {
            return self.reject(
                crate::registry::RegistryError::NotInRoom(room.clone()).into(),
                None,
            );
        };
        if let Err(e) = handle.hold_back(self.id, after) {
            return self.reject(e.into(), None);
        }
        let after = handle.behind(self.id).unwrap_or(after);
        let text = format!("* #{}: the messages after id {after} follow", handle.name());
        if !self.queue_paced(ServerMessage::Notice { text }).await {
            return Flow::Continue;
        }
        self.catch_up(&handle, after).await
    }

    /// Queues `message` once the writer has made room; false when the
    /// session was cut off or its writer is gone (its loop then ends).
    async fn queue_paced(&mut self, message: ServerMessage) -> bool {
        let frame = Outbound::message(message);
        self.outbox.push_paced(&frame).await.is_ok()
    }

    async fn catch_up(&mut self, room: &Arc<Room>, after: MessageId) -> Flow {
        // Presence changes held back are not replayed; a program gets the
        // room's members as they are now, before the missed messages. (A
        // person on the text dialect asks with /who.)
        if self.dialect == Dialect::Native
            && let Ok(members) = self.shared.rooms.members(room.name())
        {
            let room = room.name().clone();
            let last_id = None;
            let members = ServerMessage::Members {
                room,
                members,
                last_id,
            };
            if !self.queue_paced(members).await {
                return Flow::Continue;
            }
        }
        match self.shared.rooms.catch_up(self.member(), room, after).await {
            Ok(()) => Flow::Continue,
            // Told what was skipped; the session goes on.
            Err(e) => {
                self.fail(e.into(), None);
                Flow::Continue
            }
        }
    }
}
