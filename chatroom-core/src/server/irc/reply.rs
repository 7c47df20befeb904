//! How an IRC session's own replies (numerics, `PONG`, `CAP`, echoes)
//! travel: as lines already rendered for this one connection, in a frame
//! of its own queue, so that they keep their place among the room traffic
//! the same queue carries.
//!
//! The lines ride in the frame's `ref`. Nothing else puts a `ref` into an
//! IRC session's queue: a `ref` only ever answers the request that carried
//! it, and an IRC session sends none to the rooms. So the writer can tell
//! the session's own lines from shared frames without a new kind of frame.

use std::sync::Arc;

use crate::protocol::irc::Line;
use crate::protocol::{ServerFrame, ServerMessage};
use crate::registry::{Outbound, Outbox};

use super::names::Names;

/// What an own frame asks of the writer besides writing its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mark<'a> {
    /// Nothing more.
    None,
    /// From now on the messages of the room whose key is `room` belong to
    /// the batch `id` (the lines opened it).
    Open {
        /// The room's key.
        room: &'a str,
        /// The batch's reference tag.
        id: &'a str,
    },
    /// The batch is over (the lines closed it).
    Close,
}

/// The carrier text of a [`Mark::Close`]; an open mark's text is
/// `open <room key> <id>`, and plain lines carry an empty text.
const CLOSE: &str = "close";

/// A frame that carries `lines` (each ending in `\r\n`) for this session.
pub(super) fn own(lines: String) -> Arc<Outbound> {
    marked(lines, Mark::None)
}

/// As [`own`], with a mark for the writer.
pub(super) fn marked(lines: String, mark: Mark<'_>) -> Arc<Outbound> {
    let text = match mark {
        Mark::None => String::new(),
        Mark::Open { room, id } => format!("open {room} {id}"),
        Mark::Close => CLOSE.to_owned(),
    };
    let carrier = ServerMessage::Notice { text };
    Outbound::new(ServerFrame::reply(carrier, Some(lines)))
}

/// The lines a frame carries and its mark, if it is one of the session's
/// own.
pub(super) fn own_lines(frame: &Outbound) -> Option<(&str, Mark<'_>)> {
    let lines = frame.frame().reference.as_deref()?;
    let text = match &frame.frame().message {
        ServerMessage::Notice { text } => text.as_str(),
        _ => "",
    };
    let mark = if text == CLOSE {
        Mark::Close
    } else if let Some((room, id)) = text.strip_prefix("open ").and_then(|r| r.split_once(' ')) {
        Mark::Open { room, id }
    } else {
        Mark::None
    };
    Some((lines, mark))
}

/// Queues `lines` for this session.
pub(super) fn send(outbox: &Outbox, lines: String) {
    if lines.is_empty() {
        return;
    }
    // A failed push means the queue overflowed (the session is being cut
    // off) or the writer is gone; the session's loop then ends.
    let _ = outbox.push(&own(lines));
}

/// Queues `lines` with `mark` for this session, even when empty.
pub(super) fn send_marked(outbox: &Outbox, lines: String, mark: Mark<'_>) {
    let _ = outbox.push(&marked(lines, mark));
}

/// Builds numerics addressed to one client.
pub(super) struct Numerics<'a> {
    pub(super) names: &'a Names,
    /// The client's nick, or `*` before it has one.
    pub(super) me: &'a str,
}

impl Numerics<'_> {
    /// `:server CODE me`, ready for more parameters.
    pub(super) fn start(&self, code: &str) -> Line {
        Line::new(self.names.server(), code).param(self.me)
    }

    /// A numeric with one middle parameter and a text.
    pub(super) fn about(&self, code: &str, subject: &str, text: &str) -> String {
        self.start(code).param(subject).trailing(text)
    }

    /// A numeric with only a text.
    pub(super) fn text(&self, code: &str, text: &str) -> String {
        self.start(code).trailing(text)
    }
}
