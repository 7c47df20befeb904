//! Reading a reply as the answer a request expects.

use crate::protocol::{MessageId, ServerMessage};

use super::error::ClientError;

/// The id in an `ok`, or the error for another frame.
pub(super) fn expect_ok(reply: ServerMessage) -> Result<Option<MessageId>, ClientError> {
    match reply {
        ServerMessage::Ok { id, .. } => Ok(id),
        other => Err(unexpected(&other)),
    }
}

/// The error for a reply of the wrong kind.
pub(super) fn unexpected(message: &ServerMessage) -> ClientError {
    ClientError::UnexpectedReply {
        kind: kind_of(message),
    }
}

/// The wire `type` of a server message, for error messages.
fn kind_of(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Welcome { .. } => "welcome",
        ServerMessage::Message { .. } => "message",
        ServerMessage::Private { .. } => "private",
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::Left { .. } => "left",
        ServerMessage::NickChanged { .. } => "nick_changed",
        ServerMessage::Rooms { .. } => "rooms",
        ServerMessage::Members { .. } => "members",
        ServerMessage::History { .. } => "history",
        ServerMessage::Ok { .. } => "ok",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Lagged { .. } => "lagged",
        ServerMessage::Notice { .. } => "notice",
        ServerMessage::LoggedIn { .. } => "logged_in",
        ServerMessage::Moderated(_) => "moderated",
        ServerMessage::Topic { .. } => "topic",
        ServerMessage::Ping => "ping",
        ServerMessage::Pong => "pong",
        ServerMessage::Bye { .. } => "bye",
    }
}
