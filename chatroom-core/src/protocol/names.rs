//! Validated names: nicknames and room names.
//!
//! Both are restricted to a small ASCII alphabet on purpose: a name can then
//! never carry control characters, escape sequences, bidirectional overrides
//! or Unicode look-alikes of another user's name ("аlice" with a Cyrillic
//! `а`). Uniqueness is case-insensitive: [`Nickname::key`] and
//! [`RoomName::key`] give the folded form the registry compares.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::ProtocolError;

/// Longest nickname, in bytes (ASCII, so also characters).
pub const MAX_NICK_LEN: usize = 32;
/// Longest room name, in bytes (ASCII, so also characters).
pub const MAX_ROOM_LEN: usize = 32;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn validate(kind: &'static str, s: &str, max: usize) -> Result<(), ProtocolError> {
    if s.is_empty() || s.len() > max {
        return Err(ProtocolError::InvalidName {
            kind,
            reason: format!("must be 1 to {max} characters"),
        });
    }
    if !s.chars().all(is_name_char) {
        return Err(ProtocolError::InvalidName {
            kind,
            reason: "may only hold ASCII letters, digits, '_' and '-'".to_owned(),
        });
    }
    if s.starts_with('-') {
        return Err(ProtocolError::InvalidName {
            kind,
            reason: "must not start with '-'".to_owned(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            ///
            /// # Errors
            /// [`ProtocolError::InvalidName`] when `s` is empty, too long or
            /// holds a character outside the allowed alphabet.
            pub fn new(s: impl Into<String>) -> Result<Self, ProtocolError> {
                let s = s.into();
                validate($kind, &s, $max)?;
                Ok(Self(s))
            }

            /// The name as the user spelled it.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The case-folded form used for uniqueness and lookup.
            pub fn key(&self) -> String {
                self.0.to_ascii_lowercase()
            }

        }

        impl TryFrom<String> for $name {
            type Error = ProtocolError;
            fn try_from(s: String) -> Result<Self, ProtocolError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ProtocolError;
            fn try_from(s: &str) -> Result<Self, ProtocolError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A user's nickname: 1 to 32 ASCII letters, digits, `_` or `-`, not
    /// starting with `-`. Unique on a server, ignoring case.
    Nickname,
    "nick",
    MAX_NICK_LEN
);

name_type!(
    /// A room's name: 1 to 32 ASCII letters, digits, `_` or `-`, not starting
    /// with `-`. The text dialect shows it as `#name` and accepts an optional
    /// leading `#`; the `#` is not part of the name. Rooms compare ignoring case.
    RoomName,
    "room",
    MAX_ROOM_LEN
);

impl Nickname {
    /// `base` with the suffix `-n`, shortened at the end to fit the length
    /// limit: the name tried when `base` is taken (`bob-2`, `bob-3`, …).
    pub fn numbered(base: &Self, n: u64) -> Self {
        let suffix = format!("-{n}");
        let keep = base.0.len().min(MAX_NICK_LEN.saturating_sub(suffix.len()));
        // ASCII only, so any cut is on a character boundary; a base of
        // valid characters plus "-digits" is valid.
        Self(format!("{}{suffix}", &base.0[..keep]))
    }
}

impl RoomName {
    /// Parses a room as typed by a person: an optional leading `#`, then a name.
    ///
    /// # Errors
    /// As [`RoomName::new`].
    pub fn parse_typed(s: &str) -> Result<Self, ProtocolError> {
        Self::new(s.strip_prefix('#').unwrap_or(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_accepted() {
        for ok in ["alice", "Bob_2", "x", "a-b", "0day", &"n".repeat(32)] {
            Nickname::new(ok).unwrap();
            RoomName::new(ok).unwrap();
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            "-lead",
            "has space",
            "tab\t",
            "esc\u{1b}[31m",
            "bell\u{7}",
            "\u{430}lice", // Cyrillic a
            "zero\u{200b}width",
            "rtl\u{202e}",
            "caf\u{e9}",
            "a:b",
            "new\nline",
            &"n".repeat(33),
        ] {
            assert!(Nickname::new(bad).is_err(), "{bad:?} accepted");
            assert!(RoomName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_fold_case() {
        assert_eq!(
            Nickname::new("Alice").unwrap().key(),
            Nickname::new("aLICE").unwrap().key()
        );
    }

    #[test]
    fn typed_room_accepts_hash() {
        assert_eq!(RoomName::parse_typed("#lobby").unwrap().as_str(), "lobby");
        assert_eq!(RoomName::parse_typed("lobby").unwrap().as_str(), "lobby");
        assert!(RoomName::parse_typed("##x").is_err());
    }

    #[test]
    fn json_deserialisation_validates() {
        let r: Result<Nickname, _> = serde_json::from_str("\"ok_nick\"");
        assert!(r.is_ok());
        let r: Result<Nickname, _> = serde_json::from_str("\"bad nick\"");
        assert!(r.is_err());
    }
}
