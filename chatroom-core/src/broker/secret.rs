//! A text that must never be shown: a password or a token for the shared
//! service a broker talks to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A password or token. Its [`Debug`] output never shows the value, and it
/// has no `Display`, so it cannot reach a log by accident; only
/// [`Secret::expose`] gives the text, where it is really needed.
///
/// It (de)serializes as the plain string, so that a config file can hold
/// it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text itself: pass it on, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whether one was given is useful when debugging a configuration;
        // its length or any part of it is not.
        if self.0.is_empty() {
            f.write_str("Secret(none)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let shown = format!("{:?}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(format!("{:?}", Secret::default()), "Secret(none)");
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let json = serde_json::to_string(&Secret::new("s3")).unwrap();
        assert_eq!(json, "\"s3\"");
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), "s3");
    }
}
