//! What is said on the wire: frames, names, limits, error codes, the JSON
//! codec and the plain-text dialect.
//!
//! This layer is pure: no tokio, no sockets, nothing from the rest of the
//! crate. Its dependencies are serde, serde_json, bytes and thiserror, so it
//! can be tested (and fuzzed) without a runtime. docs/protocol.md is the
//! contract this module implements.

mod codec;
mod error;
mod hot;
pub(crate) mod irc;
mod moderation;
mod names;
mod password;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use codec::{decode, encode, encode_into};
pub(crate) use codec::{decode_client, encode_server};
pub use error::{CommandError, ErrorCode, ProtocolError};
pub use moderation::{ModAction, ModEvent, parse_duration};
pub use names::{MAX_NICK_LEN, MAX_ROOM_LEN, Nickname, RoomName};
pub use password::Password;

/// The protocol version this crate speaks; `hello` and `welcome` carry it.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest message text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest client-chosen `ref`, in bytes.
pub const MAX_REF_LEN: usize = 64;
/// Default longest line, in bytes before its newline (the framer's limit;
/// servers announce the limit in force as `welcome.max_line_len`).
pub const DEFAULT_MAX_LINE_LEN: usize = 16 * 1024;

/// A message id: assigned by the server, strictly increasing within a room.
pub type MessageId = u64;
/// A server timestamp: milliseconds since the Unix epoch.
pub type Timestamp = u64;

/// One frame from client to server: a request plus an optional `ref` that
/// the server echoes in the reply or error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Client-chosen correlation tag (at most [`MAX_REF_LEN`] bytes).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The request.
    #[serde(flatten)]
    pub message: ClientMessage,
}

impl ClientFrame {
    /// A frame without a `ref`.
    pub fn new(message: ClientMessage) -> Self {
        Self {
            reference: None,
            message,
        }
    }

    /// A frame with the given `ref`.
    pub fn with_ref(message: ClientMessage, reference: impl Into<String>) -> Self {
        Self {
            reference: Some(reference.into()),
            message,
        }
    }
}

/// One frame from server to client: an event or reply, plus the `ref` of the
/// request it answers, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The `ref` of the request this frame answers.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The event or reply.
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerFrame {
    /// A frame that answers no particular request.
    pub fn new(message: ServerMessage) -> Self {
        Self {
            reference: None,
            message,
        }
    }

    /// A frame that answers the request tagged `reference`.
    pub fn reply(message: ServerMessage, reference: Option<String>) -> Self {
        Self { reference, message }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Requests, client to server. Named as verbs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// The first frame of a native connection.
    Hello {
        /// The protocol version the client speaks.
        version: u32,
        /// The nickname wanted; the server picks one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nick: Option<Nickname>,
        /// Resume cursors: for each room, the last message id the client saw.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        resume: BTreeMap<RoomName, MessageId>,
        /// The password of the account `nick` names: log in as it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Password>,
    },
    /// Register the current nickname as an account with this password, and
    /// log in as it.
    Register {
        /// The password (8 to 256 bytes).
        password: Password,
    },
    /// Log in as an account; the nickname becomes the account's.
    Login {
        /// The account.
        nick: Nickname,
        /// Its password.
        password: Password,
    },
    /// Change the password of the account one is logged in as.
    SetPassword {
        /// The password now.
        old: Password,
        /// The new one (8 to 256 bytes).
        new: Password,
    },
    /// Delete the account one is logged in as; the nickname stays, as a
    /// guest's.
    DropAccount {
        /// Its password.
        password: Password,
    },
    /// Remove someone from a room (room operators).
    Kick {
        /// The room.
        room: RoomName,
        /// Who.
        nick: Nickname,
        /// Shown to the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Keep a mask out of a room, or (server operators, no `room`) off the
    /// server. A mask is `account:NAME`, `nick:NAME`, `address:IP`, or the
    /// nick of someone connected (their account, else their address).
    Ban {
        /// The room; absent for a server-wide ban.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomName>,
        /// Whom.
        mask: String,
        /// How long; absent for good.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_secs: Option<u64>,
        /// Shown to the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift a ban.
    Unban {
        /// The room; absent for a server-wide ban.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomName>,
        /// The mask, as `ban` took it.
        mask: String,
    },
    /// Read a room's topic, or (room operators) set it.
    Topic {
        /// The room.
        room: RoomName,
        /// The new topic; absent to read it, empty to clear it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    /// Make an account a room operator (the room's owner).
    Op {
        /// The room.
        room: RoomName,
        /// The account.
        nick: Nickname,
    },
    /// Take room operator away from an account (the room's owner).
    Deop {
        /// The room.
        room: RoomName,
        /// The account.
        nick: Nickname,
    },
    /// Let an account or guest nick speak in a moderated room.
    Voice {
        /// The room.
        room: RoomName,
        /// The account or nick.
        nick: Nickname,
    },
    /// Take that away.
    Devoice {
        /// The room.
        room: RoomName,
        /// The account or nick.
        nick: Nickname,
    },
    /// Change a room's modes (room operators); only the fields given change.
    Mode {
        /// The room.
        room: RoomName,
        /// The key joining needs; empty to remove it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Only operators and voiced users speak.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderated: Option<bool>,
        /// Only invited users, and operators, join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite_only: Option<bool>,
        /// Most members; 0 for no limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Let someone into an invite-only room (room operators).
    Invite {
        /// The room.
        room: RoomName,
        /// Whom.
        nick: Nickname,
    },
    /// Disconnect someone (server operators).
    Kill {
        /// Whom.
        nick: Nickname,
        /// Shown to them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Read the moderation log (server operators).
    ModLog {
        /// At most this many of the newest lines (default 20).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Join a room, creating it if it does not exist.
    Join {
        /// The room.
        room: RoomName,
        /// Reserved for keyed rooms; servers of this version ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// How many recent messages to receive on join (at most the server's default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history: Option<u32>,
        /// Rejoin after a lost connection: every message with an id above
        /// this one, instead of the recent ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<MessageId>,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: RoomName,
    },
    /// Say something in a room the client has joined.
    Say {
        /// The room.
        room: RoomName,
        /// The message text.
        text: String,
        /// True for an action (`/me waves`), shown as `* nick waves`.
        #[serde(default, skip_serializing_if = "is_false")]
        action: bool,
    },
    /// Send a private message to one user.
    Whisper {
        /// The recipient.
        to: Nickname,
        /// The message text.
        text: String,
    },
    /// Change nickname.
    Nick {
        /// The new nickname.
        nick: Nickname,
    },
    /// List the rooms that exist.
    Rooms,
    /// List the members of a room.
    Who {
        /// The room.
        room: RoomName,
    },
    /// Fetch a page of a room's history.
    History {
        /// The room.
        room: RoomName,
        /// Only messages with an id below this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<MessageId>,
        /// Only messages with an id above this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<MessageId>,
        /// At most this many messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Ask for a `pong`.
    Ping,
    /// Answer to a server `ping`.
    Pong,
    /// Close the connection.
    Quit {
        /// Shown to the rooms the client leaves.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// One room in a `rooms` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: RoomName,
    /// How many members it has.
    pub members: usize,
}

/// One message as stored in history and sent in a `history` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The message id within its room.
    pub id: MessageId,
    /// Who said it.
    pub from: Nickname,
    /// The text.
    pub text: String,
    /// When the server accepted it.
    pub ts: Timestamp,
    /// True for an action.
    #[serde(default, skip_serializing_if = "is_false")]
    pub action: bool,
}

/// Events and replies, server to client. Named as facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// The handshake succeeded.
    Welcome {
        /// The protocol version the server speaks.
        version: u32,
        /// The nickname the client has now.
        nick: Nickname,
        /// The server's name.
        server: String,
        /// The longest line the server accepts, in bytes.
        max_line_len: usize,
        /// The longest text the server accepts, in bytes.
        max_text_len: usize,
    },
    /// A message said in a room.
    Message {
        /// The room.
        room: RoomName,
        /// Its id, strictly increasing within the room.
        id: MessageId,
        /// The sender.
        from: Nickname,
        /// The text.
        text: String,
        /// When the server accepted it.
        ts: Timestamp,
        /// True for an action (`/me`).
        #[serde(default, skip_serializing_if = "is_false")]
        action: bool,
    },
    /// A private message, sent to its recipient and echoed to its sender.
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
    /// Someone joined a room (also sent to the joiner).
    Joined {
        /// The room.
        room: RoomName,
        /// Who joined.
        nick: Nickname,
    },
    /// Someone left a room (also sent to the leaver).
    Left {
        /// The room.
        room: RoomName,
        /// Who left.
        nick: Nickname,
        /// Why, when known (a quit message, a disconnect).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Someone changed nickname; sent once to each client sharing a room
    /// with them, and to them.
    NickChanged {
        /// The old nickname.
        old: Nickname,
        /// The new nickname.
        new: Nickname,
    },
    /// The rooms that exist.
    Rooms {
        /// One entry per room, sorted by name.
        rooms: Vec<RoomInfo>,
    },
    /// The members of a room.
    Members {
        /// The room.
        room: RoomName,
        /// Its members' nicknames, sorted ignoring case.
        members: Vec<Nickname>,
        /// In the reply to a `join`: the room's last message id when the
        /// joiner became a member. Every later message reaches the joiner
        /// live, so this is where a resume cursor starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_id: Option<MessageId>,
    },
    /// A page of history.
    History {
        /// The room.
        room: RoomName,
        /// The messages, oldest first.
        messages: Vec<HistoryEntry>,
        /// True when more messages exist beyond this page.
        more: bool,
    },
    /// A request succeeded and has no other reply.
    Ok {
        /// The room, for a `say`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomName>,
        /// The id given to the message, for a `say`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<MessageId>,
    },
    /// A request failed, or the client broke a rule.
    Error {
        /// The machine-readable code.
        code: ErrorCode,
        /// A readable explanation.
        message: String,
    },
    /// The client fell behind in a room: its queue was full, so the room
    /// held its traffic back. The messages `first` to `last` follow this
    /// frame at once, in order, at the pace the client reads, then the live
    /// ones: nothing is lost or repeated. Presence changes held back are
    /// not replayed; a `members` frame for the room follows the catch-up.
    Lagged {
        /// The room.
        room: RoomName,
        /// The first message held back.
        first: MessageId,
        /// The room's last message when the catch-up began.
        last: MessageId,
    },
    /// Readable text from the server itself (help, notices), one or more
    /// lines separated by `\n`.
    Notice {
        /// The text.
        text: String,
    },
    /// A moderator acted; sent to the room.
    Moderated(ModEvent),
    /// A room's topic: sent on join when it has one, to the room when it
    /// changes, and in reply to `topic`.
    Topic {
        /// The room.
        room: RoomName,
        /// The topic; empty when there is none.
        topic: String,
        /// Who set it, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Nickname>,
    },
    /// The client is now logged in as an account (after `register`,
    /// `login`, or a `hello` with a password).
    LoggedIn {
        /// The account, as registered.
        account: Nickname,
    },
    /// The server checks that the client is alive; answer with `pong`.
    Ping,
    /// Answer to a client `ping`.
    Pong,
    /// The server closes the connection after this frame.
    Bye {
        /// Why.
        reason: String,
    },
}

/// Checks a message text: 1 to [`MAX_TEXT_LEN`] bytes, no control characters
/// except tab.
///
/// # Errors
/// [`ProtocolError::TextTooLong`] or [`ProtocolError::InvalidText`].
pub fn validate_text(text: &str) -> Result<(), ProtocolError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ProtocolError::TextTooLong {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    if text.trim().is_empty() {
        return Err(ProtocolError::InvalidText { reason: "is empty" });
    }
    // C0, DEL and C1 controls could drive a terminal; bidi overrides and
    // other format characters stay allowed in text because a client renders
    // text as text, never as names or commands.
    let control = if text.is_ascii() {
        // One pass the compiler vectorises, for the usual text.
        text.bytes().fold(false, |seen, b| {
            seen | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
        })
    } else {
        text.chars().any(|c| c.is_control() && c != '\t')
    };
    if control {
        return Err(ProtocolError::InvalidText {
            reason: "holds a control character",
        });
    }
    Ok(())
}

/// Checks a request's `ref`.
///
/// # Errors
/// [`ProtocolError::RefTooLong`] when it exceeds [`MAX_REF_LEN`].
pub fn validate_ref(reference: &str) -> Result<(), ProtocolError> {
    if reference.len() > MAX_REF_LEN {
        return Err(ProtocolError::RefTooLong {
            len: reference.len(),
            max: MAX_REF_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        validate_text("hello\tworld ünïcödé 🎉").unwrap();
        assert!(matches!(
            validate_text(""),
            Err(ProtocolError::InvalidText { .. })
        ));
        assert!(matches!(
            validate_text("   "),
            Err(ProtocolError::InvalidText { .. })
        ));
        assert!(matches!(
            validate_text("a\u{1b}[2J"),
            Err(ProtocolError::InvalidText { .. })
        ));
        assert!(matches!(
            validate_text("a\u{9b}b"),
            Err(ProtocolError::InvalidText { .. })
        ));
        assert!(matches!(
            validate_text("two\nlines"),
            Err(ProtocolError::InvalidText { .. })
        ));
        validate_text(&"x".repeat(MAX_TEXT_LEN)).unwrap();
        assert!(matches!(
            validate_text(&"x".repeat(MAX_TEXT_LEN + 1)),
            Err(ProtocolError::TextTooLong { .. })
        ));
    }

    #[test]
    fn ref_rules() {
        validate_ref(&"r".repeat(MAX_REF_LEN)).unwrap();
        assert!(validate_ref(&"r".repeat(MAX_REF_LEN + 1)).is_err());
    }
}
