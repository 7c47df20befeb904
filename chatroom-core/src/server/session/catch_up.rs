//! A member that fell behind in a room is caught up, not cut off.
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
use std::time::Duration;

use crate::protocol::{MessageId, RoomName, ServerMessage};
use crate::registry::Room;

use super::super::writer::Dialect;
use super::state::{Flow, Session};

/// How often a session looks whether its writer has made room.
const DRAIN_POLL: Duration = Duration::from_millis(2);

impl Session {
    /// Catches the client up in every room that holds traffic back from it.
    pub(super) async fn on_behind(&mut self) -> Flow {
        while self.outbox.is_half_full() {
            if self.outbox.is_closed() {
                // Cut off or gone: the loop sees its writer end.
                return Flow::Continue;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
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
                self.reply(lagged, None);
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
        self.reply(ServerMessage::Notice { text }, None);
        self.catch_up(&handle, after).await
    }

    async fn catch_up(&mut self, room: &Arc<Room>, after: MessageId) -> Flow {
        match self.shared.rooms.catch_up(self.member(), room, after).await {
            Ok(()) => {
                // Presence changes held back are not replayed; a program
                // gets the room's members as they are now. (A person on
                // the text dialect asks with /who.)
                if self.dialect == Dialect::Native
                    && let Ok(members) = self.shared.rooms.members(room.name())
                {
                    let room = room.name().clone();
                    let last_id = None;
                    self.reply(
                        ServerMessage::Members {
                            room,
                            members,
                            last_id,
                        },
                        None,
                    );
                }
                Flow::Continue
            }
            // Told what was skipped; the session goes on.
            Err(e) => {
                self.fail(e.into(), None);
                Flow::Continue
            }
        }
    }
}
