//! What the server says unasked: [`Event`], why a connection ended
//! ([`DisconnectReason`]), and the [`Events`] stream that carries them.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;

use crate::protocol::{ErrorCode, MessageId, Nickname, RoomName, Timestamp};

/// Why a connection ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server said `bye` (after [`Client::quit`](super::Client::quit) the reason is the
    /// server's farewell).
    Bye {
        /// The reason the server gave, as sent (not sanitised).
        reason: String,
    },
    /// The server closed the connection without a `bye`.
    Closed,
    /// Reading from or writing to the connection failed.
    Failed(Arc<std::io::Error>),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bye { reason } => write!(f, "the server said bye: {reason}"),
            Self::Closed => f.write_str("the server closed the connection"),
            Self::Failed(e) => write!(f, "connection lost: {e}"),
        }
    }
}

/// Something the server said that is not the reply to a request, or a
/// change in the connection's state.
///
/// Strings inside events are as the server sent them: check or escape them
/// before showing them on a terminal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A message said in a room the client is in (never the client's own).
    Message {
        /// The room.
        room: RoomName,
        /// Its id within the room.
        id: MessageId,
        /// The sender.
        from: Nickname,
        /// The text.
        text: String,
        /// When the server accepted it.
        ts: Timestamp,
        /// True for an action (`/me waves`).
        action: bool,
    },
    /// A private message, to the client or (a copy) from it.
    Private {
        /// The sender.
        from: Nickname,
        /// The recipient.
        to: Nickname,
        /// The text.
        text: String,
        /// When the server accepted it.
        ts: Timestamp,
    },
    /// Someone (perhaps the client) joined a room the client is in.
    Joined {
        /// The room.
        room: RoomName,
        /// Who joined.
        nick: Nickname,
    },
    /// Someone (perhaps the client) left a room the client is in.
    Left {
        /// The room.
        room: RoomName,
        /// Who left.
        nick: Nickname,
        /// Why, when known.
        reason: Option<String>,
    },
    /// Someone (perhaps the client) changed nickname.
    NickChanged {
        /// The old nickname.
        old: Nickname,
        /// The new nickname.
        new: Nickname,
    },
    /// The client fell behind in a room (the server's `lagged` frame): the
    /// messages `first` to `last` follow at once, in order, then the live
    /// ones; nothing is lost or repeated.
    FellBehind {
        /// The room.
        room: RoomName,
        /// The first message held back.
        first: MessageId,
        /// The room's last message when the catch-up began.
        last: MessageId,
    },
    /// Readable text from the server itself.
    Notice {
        /// The text; may hold several lines separated by `\n`.
        text: String,
    },
    /// An error that answers no pending request (for example a warning
    /// before the server disconnects a slow client).
    Error {
        /// The machine-readable code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The event channel was full and this many events were dropped.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// The connection ended. Without a reconnect policy this is the last
    /// event; with one, [`Event::Reconnecting`] follows.
    Disconnected {
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// The client waits `delay` and then tries to reconnect.
    Reconnecting {
        /// Which attempt this is, counting from 1.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// The client is connected again and has rejoined its rooms.
    Reconnected {
        /// The nickname the server gave this time.
        nick: Nickname,
        /// The rooms rejoined.
        rooms: Vec<RoomName>,
    },
}

/// The stream of [`Event`]s from one connection. It ends after the last
/// [`Event::Disconnected`] (the one not followed by a reconnect).
#[derive(Debug)]
pub struct Events {
    /// Filled by the connection task; dropping it only discards events.
    pub(super) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// Waits for the next event; `None` once the connection task has ended.
    ///
    /// # Cancel safety
    /// Cancel-safe: an event is never lost by dropping the future.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
