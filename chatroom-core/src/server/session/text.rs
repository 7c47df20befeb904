//! The plain-text dialect's lines: a line is said in the current room, a
//! `/command` becomes the request it names (see `protocol::text`).

use bytes::Bytes;

use crate::protocol::text::{self, TextInput};
use crate::protocol::{
    self, ClientFrame, ClientMessage, CommandError, ErrorCode, ProtocolError, RoomName,
    ServerMessage,
};

use super::super::rooms::Since;
use super::reply::{Failure, bye};
use super::state::{End, Flow, Session};

impl Session {
    pub(super) async fn on_text_line(&mut self, line: &Bytes) -> Flow {
        let Ok(line) = std::str::from_utf8(line) else {
            return self.reject(ProtocolError::InvalidUtf8.into(), None);
        };
        if is_native_hello(line) {
            return self.late_hello();
        }
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
            TextInput::Switch(room) => self.switch_checked(room, None).await,
            TextInput::SwitchKeyed(room, key) => self.switch_checked(room, Some(key)).await,
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

    /// A native client that said `hello` only after the sniff window was
    /// taken for a person and greeted in text. Its JSON must not go to the
    /// room as a chat line: it is told why, in the only dialect it can
    /// still be told in, and closed, so it reconnects and says `hello` at
    /// once.
    fn late_hello(&mut self) -> Flow {
        let window = self.shared.limits.sniff.as_millis();
        self.fail(
            Failure::new(
                ErrorCode::HandshakeRequired,
                format!(
                    "a native hello came after the {window} ms in which the dialect is chosen; \
                     this connection speaks text. Send hello right after connecting"
                ),
            ),
            None,
        );
        bye(&self.outbox, "native hello on a text connection");
        Flow::Close(End::LateHello)
    }

    async fn switch_checked(&mut self, room: RoomName, key: Option<String>) -> Flow {
        self.collect_evictions();
        if !self.take_rate_token() {
            return self.rate_limited(None);
        }
        match self.switch(room, key).await {
            Ok(()) => Flow::Continue,
            Err(failure) => self.reject(failure, None),
        }
    }

    /// The text dialect's `/join`: join the new room first, so a refused
    /// join leaves the user where they were, then leave the old one.
    async fn switch(&mut self, room: RoomName, key: Option<String>) -> Result<(), Failure> {
        if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
            return Ok(());
        }
        self.join_keyed(&room, Since::Recent(None), key.as_deref())
            .await?;
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

/// A line that is a native `hello` frame: no person types one.
fn is_native_hello(line: &str) -> bool {
    line.starts_with('{')
        && matches!(
            protocol::decode::<ClientFrame>(line.as_bytes()),
            Ok(ClientFrame {
                message: ClientMessage::Hello { .. },
                ..
            })
        )
}
