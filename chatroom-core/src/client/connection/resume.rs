//! Resuming rooms after a reconnect: the cursor of each room, the rejoins
//! sent from it, and counting their answers.

use crate::client::event::Event;
use crate::client::link::{Link, write_frame};
use crate::protocol::{self, ClientFrame, ClientMessage, MessageId, RoomName};
use crate::transport::Connector;

use super::Task;

impl<C: Connector> Task<C> {
    /// Moves the resume cursor of `room` forward to `id`.
    pub(super) fn seen(&mut self, room: &RoomName, id: MessageId) {
        let cursor = self.cursors.entry(room.key()).or_insert(0);
        *cursor = (*cursor).max(id);
    }

    /// Counts one rejoin answered; announces the reconnect after the last.
    pub(super) fn rejoined(&mut self, room: RoomName, ok: bool) {
        if !ok {
            self.rooms.remove(&room.key());
        }
        let Some((left, rooms)) = self.rejoining.as_mut() else {
            return;
        };
        if ok {
            rooms.push(room);
        }
        *left -= 1;
        if *left == 0 {
            let rooms = std::mem::take(rooms);
            self.rejoining = None;
            self.emit(Event::Reconnected {
                nick: self.shared.nick(),
                rooms,
            });
        }
    }

    /// Sends a join for every room the client was in, resuming after the
    /// last message seen in each; [`Event::Reconnected`] follows once all
    /// are answered.
    pub(super) async fn rejoin(&mut self, link: &mut Link) -> std::io::Result<()> {
        let rooms: Vec<RoomName> = self.rooms.values().cloned().collect();
        if rooms.is_empty() {
            self.emit(Event::Reconnected {
                nick: self.shared.nick(),
                rooms: Vec::new(),
            });
            return Ok(());
        }
        self.rejoining = Some((rooms.len(), Vec::new()));
        self.plain_rejoins = rooms;
        let result = self.send_rejoins(link, true).await;
        if result.is_err() {
            self.in_flight.forget_all();
            self.rejoining = None;
        }
        result
    }

    /// Sends the joins queued in `plain_rejoins`, with their cursors when
    /// `resume` is true.
    pub(super) async fn send_rejoins(
        &mut self,
        link: &mut Link,
        resume: bool,
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        for room in std::mem::take(&mut self.plain_rejoins) {
            let reference = self.in_flight.fresh_ref();
            let after = if resume {
                self.cursors.get(&room.key()).copied()
            } else {
                None
            };
            let join = ClientMessage::Join {
                room: room.clone(),
                key: None,
                history: None,
                after,
            };
            protocol::encode_into(&ClientFrame::with_ref(join, reference.clone()), &mut out);
            self.in_flight.track_rejoin(reference, room);
        }
        write_frame(&mut link.writer, &out).await
    }
}
