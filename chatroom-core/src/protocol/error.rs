//! Protocol errors and the wire error codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The machine-readable `code` of an `error` frame.
///
/// docs/protocol.md lists each code with when it is sent and whether the
/// connection stays open. New codes may be added in a minor version, so
/// clients must treat an unknown code as a generic error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a JSON object of a known frame type with its fields.
    BadFrame,
    /// The line is not valid UTF-8.
    BadUtf8,
    /// The line is longer than the server's maximum line length.
    FrameTooLong,
    /// A message text is longer than [`crate::protocol::MAX_TEXT_LEN`].
    TextTooLong,
    /// A message text is empty or holds a control character other than tab.
    InvalidText,
    /// A nickname or room name breaks the naming rules.
    InvalidName,
    /// The nickname is held by another user (names compare ignoring case).
    NickTaken,
    /// The request names a room the client has not joined.
    NotInRoom,
    /// No user with that nickname is connected.
    NoSuchNick,
    /// The room does not exist (it has no members).
    NoSuchRoom,
    /// Joining would put the client in more rooms than the server allows.
    TooManyRooms,
    /// The client sends faster than its message rate allows; the frame was dropped.
    RateLimited,
    /// The first frame of a native connection was not `hello`, or `hello` came twice.
    HandshakeRequired,
    /// The `hello` asked for a protocol version the server does not speak.
    UnsupportedVersion,
    /// The request's `ref` is longer than [`crate::protocol::MAX_REF_LEN`].
    BadRef,
    /// The server cannot serve this request (for example history on a server without it).
    Unsupported,
    /// A history cursor or range is invalid (an id in the future, a bad limit).
    BadCursor,
    /// A text-dialect line started with `/` but named no known command, or
    /// its arguments were wrong.
    UnknownCommand,
    /// The client's outbound queue overflowed; it is being disconnected.
    SlowConsumer,
    /// The client made too many errors; it is being disconnected.
    TooManyErrors,
    /// The server has as many connections as it allows.
    ServerFull,
    /// The client sent nothing for longer than the idle timeout.
    IdleTimeout,
    /// Something failed inside the server; the request may be retried.
    Internal,
    /// The client's address already holds as many connections as the server
    /// allows one address.
    TooManyConnections,
    /// The client's address opens connections faster than the server allows
    /// one address.
    ConnectingTooFast,
    /// The nickname is a registered account's and the client is not logged in as it.
    NickRegistered,
    /// No account has that name, or the password is wrong.
    BadCredentials,
    /// Too many failed logins from this address or for this account; wait and retry.
    LoginThrottled,
    /// The nickname is registered already.
    AccountExists,
    /// The request needs the client to be logged in to an account.
    NotLoggedIn,
    /// A new password is too short, too long or holds a control character.
    BadPassword,
    /// The client may not do this: it is not an operator of the room (or of the server).
    NotPermitted,
    /// The client is banned from the room or the server.
    Banned,
    /// The room has a key and the join gave another, or none.
    BadKey,
    /// The room is invite-only and the client was not invited.
    InviteOnly,
    /// The room has as many members as its limit allows.
    RoomFull,
    /// The room is moderated and the client has no voice.
    Moderated,
    /// A server operator disconnected the client.
    Killed,
}

impl ErrorCode {
    /// Every code, in declaration order. Tests use it to check that
    /// docs/protocol.md lists each one; a new variant must be added here too
    /// (the unit test `all_lists_every_code_once` fails to compile until it
    /// is).
    pub const ALL: &[Self] = &[
        Self::BadFrame,
        Self::BadUtf8,
        Self::FrameTooLong,
        Self::TextTooLong,
        Self::InvalidText,
        Self::InvalidName,
        Self::NickTaken,
        Self::NotInRoom,
        Self::NoSuchNick,
        Self::NoSuchRoom,
        Self::TooManyRooms,
        Self::RateLimited,
        Self::HandshakeRequired,
        Self::UnsupportedVersion,
        Self::BadRef,
        Self::Unsupported,
        Self::BadCursor,
        Self::UnknownCommand,
        Self::SlowConsumer,
        Self::TooManyErrors,
        Self::ServerFull,
        Self::IdleTimeout,
        Self::Internal,
        Self::TooManyConnections,
        Self::ConnectingTooFast,
        Self::NickRegistered,
        Self::BadCredentials,
        Self::LoginThrottled,
        Self::AccountExists,
        Self::NotLoggedIn,
        Self::BadPassword,
        Self::NotPermitted,
        Self::Banned,
        Self::BadKey,
        Self::InviteOnly,
        Self::RoomFull,
        Self::Moderated,
        Self::Killed,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::BadUtf8 => "bad_utf8",
            Self::FrameTooLong => "frame_too_long",
            Self::TextTooLong => "text_too_long",
            Self::InvalidText => "invalid_text",
            Self::InvalidName => "invalid_name",
            Self::NickTaken => "nick_taken",
            Self::NotInRoom => "not_in_room",
            Self::NoSuchNick => "no_such_nick",
            Self::NoSuchRoom => "no_such_room",
            Self::TooManyRooms => "too_many_rooms",
            Self::RateLimited => "rate_limited",
            Self::HandshakeRequired => "handshake_required",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadRef => "bad_ref",
            Self::Unsupported => "unsupported",
            Self::BadCursor => "bad_cursor",
            Self::UnknownCommand => "unknown_command",
            Self::SlowConsumer => "slow_consumer",
            Self::TooManyErrors => "too_many_errors",
            Self::ServerFull => "server_full",
            Self::IdleTimeout => "idle_timeout",
            Self::Internal => "internal",
            Self::TooManyConnections => "too_many_connections",
            Self::ConnectingTooFast => "connecting_too_fast",
            Self::NickRegistered => "nick_registered",
            Self::BadCredentials => "bad_credentials",
            Self::LoginThrottled => "login_throttled",
            Self::AccountExists => "account_exists",
            Self::NotLoggedIn => "not_logged_in",
            Self::BadPassword => "bad_password",
            Self::NotPermitted => "not_permitted",
            Self::Banned => "banned",
            Self::BadKey => "bad_key",
            Self::InviteOnly => "invite_only",
            Self::RoomFull => "room_full",
            Self::Moderated => "moderated",
            Self::Killed => "killed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can be wrong with bytes or values at the protocol layer.
///
/// Every variant maps to a wire [`ErrorCode`] through [`ProtocolError::code`];
/// none of them ends a connection by itself (the framing layer may resync at
/// the next newline), but the session counts them against the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The line is not valid UTF-8.
    #[error("line is not valid utf-8")]
    InvalidUtf8,
    /// The line is not a known frame (bad JSON, unknown type, missing or mistyped field).
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
    /// A message text is too long.
    #[error("text is {len} bytes, the limit is {max}")]
    TextTooLong {
        /// Length of the text in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A message text is empty or holds a forbidden character.
    #[error("text {reason}")]
    InvalidText {
        /// Why the text was refused.
        reason: &'static str,
    },
    /// A nickname or room name breaks the naming rules.
    #[error("{kind} name {reason}")]
    InvalidName {
        /// `"nick"` or `"room"`.
        kind: &'static str,
        /// Why the name was refused.
        reason: String,
    },
    /// A `ref` is longer than allowed.
    #[error("ref is {len} bytes, the limit is {max}")]
    RefTooLong {
        /// Length of the ref in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A text-dialect command is unknown or misused.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Why a line of the text dialect could not be made into a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No such command; the name is shown with control characters
    /// replaced, so echoing it cannot drive the user's terminal.
    #[error("unknown command /{0}: try /help")]
    Unknown(String),
    /// The command's arguments are missing or malformed; this is how it
    /// is used.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A line or command that needs a current room, from a user in none.
    #[error("you are in no room: /join ROOM first")]
    NoRoom,
}

impl ProtocolError {
    /// The wire code that reports this error to a client.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidUtf8 => ErrorCode::BadUtf8,
            Self::Json(_) => ErrorCode::BadFrame,
            Self::TextTooLong { .. } => ErrorCode::TextTooLong,
            Self::InvalidText { .. } => ErrorCode::InvalidText,
            Self::InvalidName { .. } => ErrorCode::InvalidName,
            Self::RefTooLong { .. } => ErrorCode::BadRef,
            Self::Command(_) => ErrorCode::UnknownCommand,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_once() {
        // No wildcard arm: a new variant breaks this match until it is given
        // its place here, which is the reminder to add it to ALL as well.
        let index = |code: ErrorCode| match code {
            ErrorCode::BadFrame => 0,
            ErrorCode::BadUtf8 => 1,
            ErrorCode::FrameTooLong => 2,
            ErrorCode::TextTooLong => 3,
            ErrorCode::InvalidText => 4,
            ErrorCode::InvalidName => 5,
            ErrorCode::NickTaken => 6,
            ErrorCode::NotInRoom => 7,
            ErrorCode::NoSuchNick => 8,
            ErrorCode::NoSuchRoom => 9,
            ErrorCode::TooManyRooms => 10,
            ErrorCode::RateLimited => 11,
            ErrorCode::HandshakeRequired => 12,
            ErrorCode::UnsupportedVersion => 13,
            ErrorCode::BadRef => 14,
            ErrorCode::Unsupported => 15,
            ErrorCode::BadCursor => 16,
            ErrorCode::UnknownCommand => 17,
            ErrorCode::SlowConsumer => 18,
            ErrorCode::TooManyErrors => 19,
            ErrorCode::ServerFull => 20,
            ErrorCode::IdleTimeout => 21,
            ErrorCode::Internal => 22,
            ErrorCode::TooManyConnections => 23,
            ErrorCode::ConnectingTooFast => 24,
            ErrorCode::NickRegistered => 25,
            ErrorCode::BadCredentials => 26,
            ErrorCode::LoginThrottled => 27,
            ErrorCode::AccountExists => 28,
            ErrorCode::NotLoggedIn => 29,
            ErrorCode::BadPassword => 30,
            ErrorCode::NotPermitted => 31,
            ErrorCode::Banned => 32,
            ErrorCode::BadKey => 33,
            ErrorCode::InviteOnly => 34,
            ErrorCode::RoomFull => 35,
            ErrorCode::Moderated => 36,
            ErrorCode::Killed => 37,
        };
        assert_eq!(ErrorCode::ALL.len(), 38);
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(index(*code), i, "{code} is out of place in ALL");
        }
    }

    #[test]
    fn as_str_is_the_serde_name() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
            assert_eq!(code.to_string(), code.as_str());
        }
    }
}
