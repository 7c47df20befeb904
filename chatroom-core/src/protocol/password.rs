//! A password as it crosses the wire: kept out of `Debug` output, so that
//! logging a request never logs one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A password in a `hello`, `register`, `login`, `set_password` or
/// `drop_account` request. Serializes as the plain string; prints as
/// `Password(<hidden>)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_text() {
        let p = Password::new("hunter22");
        assert!(!format!("{p:?}").contains("hunter22"));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"hunter22\"");
    }
}
