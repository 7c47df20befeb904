//! Resuming rooms after a reconnect: sending the rejoins that [`Rooms`]
//! queues and announcing the reconnect once all are answered.
//!
//! [`Rooms`]: super::rooms::Rooms

use crate::client::event::Event;
use crate::client::link::{Link, write_frame};
use crate::protocol::{self, ClientFrame, ClientMessage, RoomName};
use crate::transport::Connector;

use super::Task;

impl<C: Connector> Task<C> {
    /// Counts one rejoin answered; announces the reconnect after the last.
    pub(super) fn rejoined(&mut self, room: RoomName, ok: bool) {
        if let Some(rooms) = self.rooms.rejoined(room, ok) {
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
        if !self.rooms.start_rejoin() {
            self.emit(Event::Reconnected {
                nick: self.shared.nick(),
                rooms: Vec::new(),
            });
            return Ok(());
        }
        let result = self.send_rejoins(link, true).await;
        if result.is_err() {
            self.in_flight.forget_all();
            self.rooms.abandon_rejoin();
        }
        result
    }

    /// Sends the rejoins [`Rooms`](super::rooms::Rooms) has queued, with
    /// their cursors when `resume` is true.
    pub(super) async fn send_rejoins(
        &mut self,
        link: &mut Link,
        resume: bool,
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        for (room, after) in self.rooms.take_unsent(resume) {
            let reference = self.in_flight.fresh_ref();
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
