//! Reading the server: each line either answers a request (matched by
//! `ref`) or becomes an [`Event`].

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::client::error::ClientError;
use crate::client::event::{DisconnectReason, Event};
use crate::client::link::{Link, write_frame};
use crate::protocol::{self, ClientFrame, ClientMessage, ErrorCode, ServerFrame, ServerMessage};
use crate::transport::Connector;

use super::Task;
use super::pending::Pending;

/// Only the `ref` of a frame that failed to decode.
#[derive(Deserialize)]
struct RefOnly {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

impl<C: Connector> Task<C> {
    /// Handles one line from the server; returns how the connection ended
    /// when this line ends it.
    pub(super) async fn on_line(
        &mut self,
        link: &mut Link,
        line: &Bytes,
    ) -> Option<DisconnectReason> {
        let frame: ServerFrame = match protocol::decode(line) {
            Ok(frame) => frame,
            Err(e) => {
                // A frame from a newer server, or garbage. If it answers a
                // request, that request fails; otherwise it is skipped.
                let reference = serde_json::from_slice::<RefOnly>(line)
                    .ok()
                    .and_then(|r| r.reference);
                match reference.and_then(|r| self.in_flight.take(&r)) {
                    Some(Pending::User { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Protocol(e)));
                    }
                    Some(Pending::Rejoin(room)) => self.rejoined(room, false),
                    None => {
                        tracing::debug!(error = %e, "undecodable frame from the server skipped")
                    }
                }
                return None;
            }
        };
        let ServerFrame { reference, message } = frame;
        if let Some(pending) = reference.and_then(|r| self.in_flight.take(&r)) {
            // `bye` answers a `quit` with its ref, and still ends the link.
            let ended = match &message {
                ServerMessage::Bye { reason } => Some(DisconnectReason::Bye {
                    reason: reason.clone(),
                }),
                _ => None,
            };
            self.on_reply(pending, message);
            if ended.is_none()
                && self.rooms.has_unsent()
                && let Err(e) = self.send_rejoins(link, false).await
            {
                return Some(DisconnectReason::Failed(Arc::new(e)));
            }
            return ended;
        }
        match message {
            ServerMessage::Ping => {
                let pong = protocol::encode(&ClientFrame::new(ClientMessage::Pong));
                if let Err(e) = write_frame(&mut link.writer, &pong).await {
                    return Some(DisconnectReason::Failed(Arc::new(e)));
                }
            }
            ServerMessage::Bye { reason } => {
                // A `bye` without a ref: the server is closing on its own
                // (shutdown, a cut-off); any pending quit is answered too.
                self.in_flight.answer_quits(&reason);
                return Some(DisconnectReason::Bye { reason });
            }
            ServerMessage::NickChanged { old, new } => {
                if old.key() == self.shared.nick().key() {
                    self.shared.set_nick(new.clone());
                }
                self.emit(Event::NickChanged { old, new });
            }
            ServerMessage::Message { ref room, id, .. } => {
                if self.rooms.first_sight(room, id)
                    && let Some(event) = event_of(message)
                {
                    self.emit(event);
                }
            }
            other => {
                if let Some(event) = event_of(other) {
                    self.emit(event);
                }
            }
        }
        None
    }

    /// Routes a reply to whoever waits for it, and keeps the task's view of
    /// rooms and nickname current.
    pub(super) fn on_reply(&mut self, pending: Pending, reply: ServerMessage) {
        let (message, tx) = match pending {
            Pending::Rejoin(room) => {
                match &reply {
                    ServerMessage::Members { last_id, .. } => {
                        if let Some(id) = last_id {
                            self.rooms.seen(&room, *id);
                        }
                        self.rejoined(room, true);
                    }
                    ServerMessage::Error {
                        code: ErrorCode::BadCursor,
                        ..
                    } => {
                        // The server no longer has the room's past (it
                        // restarted without its history): join afresh.
                        self.rooms.cursor_refused(room);
                    }
                    ServerMessage::Error { code, message } => {
                        self.emit(Event::Error {
                            code: *code,
                            message: format!("cannot rejoin #{room}: {message}"),
                        });
                        self.rejoined(room, false);
                    }
                    _ => self.rejoined(room, false),
                }
                return;
            }
            Pending::User { message, reply } => (message, reply),
        };
        if let ServerMessage::Error { code, message } = reply {
            let _ = tx.send(Err(ClientError::Server { code, message }));
            return;
        }
        match (&message, &reply) {
            (ClientMessage::Join { room, .. }, ServerMessage::Members { last_id, .. }) => {
                self.rooms.joined(room, *last_id);
            }
            (
                ClientMessage::Say { .. },
                ServerMessage::Ok {
                    room: Some(room),
                    id: Some(id),
                },
            ) => {
                self.rooms.seen(room, *id);
            }
            (ClientMessage::Leave { room }, ServerMessage::Ok { .. }) => {
                self.rooms.left(room);
            }
            (ClientMessage::Nick { nick }, ServerMessage::Ok { .. }) => {
                self.shared.set_nick(nick.clone());
            }
            _ => {}
        }
        let _ = tx.send(Ok(reply));
    }
}

/// The event for a frame that answers no request; `None` for frames that
/// carry nothing for the application.
fn event_of(message: ServerMessage) -> Option<Event> {
    let event = match message {
        ServerMessage::Message {
            room,
            id,
            from,
            text,
            ts,
            action,
        } => Event::Message {
            room,
            id,
            from,
            text,
            ts,
            action,
        },
        ServerMessage::Private { from, to, text, ts } => Event::Private { from, to, text, ts },
        ServerMessage::Joined { room, nick } => Event::Joined { room, nick },
        ServerMessage::Left { room, nick, reason } => Event::Left { room, nick, reason },
        ServerMessage::NickChanged { old, new } => Event::NickChanged { old, new },
        ServerMessage::Lagged { room, first, last } => Event::FellBehind { room, first, last },
        ServerMessage::Notice { text } => Event::Notice { text },
        ServerMessage::Error { code, message } => Event::Error { code, message },
        // Replies whose caller gave up, and frames with no meaning here.
        _ => return None,
    };
    Some(event)
}
