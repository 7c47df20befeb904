//! The plain-text dialect's lines: a line is said in the current room, a
//! `/command` becomes the request it names (see `protocol::text`).

use bytes::Bytes;

use crate::protocol::text::{self, TextInput};
use crate::protocol::{ClientMessage, CommandError, ProtocolError, RoomName, ServerMessage};

use super::super::rooms::Since;
use super::reply::Failure;
use super::state::{Flow, Session};

impl Session {
    pub(super) async fn on_text_line(&mut self, line: &Bytes) -> Flow {
        let Ok(line) = std::str::from_utf8(line) else {
            return self.reject(ProtocolError::InvalidUtf8.into(), None);
        };
        let input = match text::parse_line(line, self.current.as_ref()) {
            Ok(input) => input,
            Err(e) => return self.reject(e.into(), None),
        };
        match input {
            TextInput::Empty => Flow::Continue,
            TextInput::Help => {
                let text = text::HELP.join("\n");
                self.reply(ServerMessage::Notice { text }, None);
                Flow::Continue
            }
            TextInput::History(n) => {
                let Some(room) = self.current.clone() else {
                    return self.reject(ProtocolError::from(CommandError::NoRoom).into(), None);
                };
                let history = ClientMessage::History {
                    room,
                    before: None,
                    after: None,
                    limit: Some(n.unwrap_or(20)),
                };
                self.request(history, None).await
            }
            TextInput::Switch(room) => {
                if !self.take_rate_token() {
                    return self.rate_limited(None);
                }
                match self.switch(room).await {
                    Ok(()) => Flow::Continue,
                    Err(failure) => self.reject(failure, None),
                }
            }
            TextInput::Resume(after) => {
                if !self.take_rate_token() {
                    return self.rate_limited(None);
                }
                let Some(room) = self.current.clone() else {
                    return self.reject(ProtocolError::from(CommandError::NoRoom).into(), None);
                };
                self.resume_text(&room, after).await
            }
            TextInput::Request(message) => self.request(message, None).await,
            // TextInput is non_exhaustive for other crates, not this one.
        }
    }

    /// The text dialect's `/join`: join the new room first, so a refused
    /// join leaves the user where they were, then leave the old one.
    async fn switch(&mut self, room: RoomName) -> Result<(), Failure> {
        if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
            return Ok(());
        }
        self.join(&room, Since::Recent(None)).await?;
        if let Some(old) = self.current.take() {
            self.leave(&old)?;
        }
        let members = self.shared.rooms.members(&room)?;
        self.current = Some(room.clone());
        self.reply(
            ServerMessage::Members {
                room,
                members,
                last_id: None,
            },
            None,
        );
        Ok(())
    }
}
