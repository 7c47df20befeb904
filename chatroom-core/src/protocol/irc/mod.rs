//! The IRC dialect's lines (RFC 1459/2812, with IRCv3 message tags): what
//! a client's line says, and a server line built so that no value in it
//! can end the line or start another command.
//!
//! Pure functions and plain data: no I/O and nothing from the other layers.
//! The session glue lives in `server::irc`.

mod build;
mod parse;
pub(crate) mod sasl;
mod text;
mod time;

pub(crate) use build::{Line, split_text};
pub(crate) use parse::{IrcError, Message, parse};
pub(crate) use text::{Incoming, incoming, strip_formatting};
pub(crate) use time::server_time;

/// Longest line without its tags, `\r\n` included (RFC 1459 section 2.3).
pub(crate) const MAX_LINE_LEN: usize = 512;

/// Longest tag section a client may send, `@` and the space after it
/// included (IRCv3 message tags allow 4094 bytes of client tags, and
/// 8191 for the whole section).
pub(crate) const MAX_TAGS_LEN: usize = 8191;

/// Most parameters a command takes (RFC 2812 section 2.3).
pub(crate) const MAX_PARAMS: usize = 15;
