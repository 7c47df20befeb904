//! Registry errors.

use crate::protocol::{ErrorCode, Nickname, RoomName};

/// Why the registry refused a request. Each is answered with an `error`
/// frame; none ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Another session holds this nickname (ignoring case).
    #[error("nick {0} is taken")]
    NickTaken(Nickname),
    /// The session is not a member of the room.
    #[error("you are not in #{0}")]
    NotInRoom(RoomName),
    /// The session is in as many rooms as allowed.
    #[error("you are in {max} rooms already, the limit")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
    /// No session has this nickname.
    #[error("no user named {0}")]
    NoSuchNick(Nickname),
    /// The room does not exist.
    #[error("no room named #{0}")]
    NoSuchRoom(RoomName),
    /// A join's backlog is too long to hand over at once: stream the
    /// messages after `after` first, then join again.
    #[error("the backlog after id {after} must be streamed first")]
    Behind {
        /// The cursor the backlog starts after.
        after: crate::protocol::MessageId,
    },
    /// The session is not registered (it disconnected).
    #[error("session is not registered")]
    UnknownSession,
}

impl RegistryError {
    /// The wire code that reports this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NickTaken(_) => ErrorCode::NickTaken,
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::TooManyRooms { .. } => ErrorCode::TooManyRooms,
            Self::NoSuchNick(_) => ErrorCode::NoSuchNick,
            Self::NoSuchRoom(_) => ErrorCode::NoSuchRoom,
            Self::Behind { .. } | Self::UnknownSession => ErrorCode::Internal,
        }
    }
}
