//! How this server names itself and its users in IRC lines, and the
//! capabilities a connection asked for.

use std::sync::Arc;

/// The server's name as IRC shows it, and the `nick!user@host` of users.
///
/// Every user's source is `nick!nick@SERVER`: the other dialects have no
/// user name or host to show, and an address is not for others to see.
#[derive(Debug, Clone)]
pub(super) struct Names {
    server: Arc<str>,
}

impl Names {
    /// `server_name` with anything outside `A-Za-z0-9.-_` dropped (it is a
    /// free-form setting, and a source must be one token); `chatroom` if
    /// nothing is left.
    pub(super) fn new(server_name: &str) -> Self {
        let clean: String = server_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(63)
            .collect();
        let server = if clean.is_empty() {
            "chatroom".into()
        } else {
            clean.into()
        };
        Self { server }
    }

    /// The server's name, the source of numerics.
    pub(super) fn server(&self) -> &str {
        &self.server
    }

    /// A user's source: `nick!nick@server`.
    pub(super) fn user(&self, nick: &str) -> String {
        format!("{nick}!{nick}@{}", self.server)
    }
}

/// The IRCv3 capabilities a connection enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Caps {
    /// `server-time`: messages carry the time the server stamped.
    pub(super) server_time: bool,
    /// `echo-message`: the client's own messages come back to it.
    pub(super) echo_message: bool,
    /// `message-tags`: messages carry their id as `msgid`.
    pub(super) message_tags: bool,
    /// `batch`: history (the backlog of a join, a `CHATHISTORY` answer)
    /// comes in a `chathistory` batch.
    pub(super) batch: bool,
    /// `draft/chathistory`: the client asks for history with
    /// `CHATHISTORY` (answered whether or not it enabled this).
    pub(super) chathistory: bool,
    /// `away-notify`: `AWAY` changes of users sharing a room.
    pub(super) away_notify: bool,
    /// `sasl`: the client may log in with `AUTHENTICATE` while it
    /// registers (accepted whether or not it enabled this).
    pub(super) sasl: bool,
}

/// What `CAP LS 302` offers; `sasl` is named with its one mechanism.
pub(super) const SUPPORTED_CAPS: &str =
    "away-notify batch draft/chathistory echo-message message-tags sasl=PLAIN server-time";

/// [`SUPPORTED_CAPS`] as shown to a client that sent `CAP LS version`:
/// values (`sasl=PLAIN`) from version 302 on, bare names before.
pub(super) fn supported_caps(version: Option<&str>) -> String {
    let with_values = version
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| v >= 302);
    if with_values {
        SUPPORTED_CAPS.to_owned()
    } else {
        SUPPORTED_CAPS.replace("sasl=PLAIN", "sasl")
    }
}

impl Caps {
    /// Applies a `CAP REQ` list: all of it, or none of it when one name is
    /// unknown (as the spec says). True when it was applied.
    pub(super) fn request(&mut self, list: &str) -> bool {
        let mut next = *self;
        for item in list.split(' ').filter(|s| !s.is_empty()) {
            let (on, name) = match item.strip_prefix('-') {
                Some(name) => (false, name),
                None => (true, item),
            };
            match name {
                "server-time" => next.server_time = on,
                "echo-message" => next.echo_message = on,
                "message-tags" => next.message_tags = on,
                "batch" => next.batch = on,
                "away-notify" => next.away_notify = on,
                "draft/chathistory" => next.chathistory = on,
                "sasl" => next.sasl = on,
                _ => return false,
            }
        }
        *self = next;
        true
    }

    /// The enabled names, for `CAP LIST`.
    pub(super) fn list(self) -> String {
        let mut names = Vec::new();
        if self.away_notify {
            names.push("away-notify");
        }
        if self.batch {
            names.push("batch");
        }
        if self.chathistory {
            names.push("draft/chathistory");
        }
        if self.echo_message {
            names.push("echo-message");
        }
        if self.message_tags {
            names.push("message-tags");
        }
        if self.sasl {
            names.push("sasl");
        }
        if self.server_time {
            names.push("server-time");
        }
        names.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_one_token() {
        assert_eq!(Names::new("my chat\r\nX").server(), "mychatX");
        assert_eq!(Names::new(" :: ").server(), "chatroom");
        assert_eq!(Names::new("irc.example").user("bob"), "bob!bob@irc.example");
    }

    #[test]
    fn a_request_is_all_or_nothing() {
        let mut caps = Caps::default();
        assert!(!caps.request("server-time sasl-nope"));
        assert_eq!(caps, Caps::default());
        assert!(caps.request("server-time echo-message"));
        assert_eq!(caps.list(), "echo-message server-time");
        assert!(caps.request("-echo-message"));
        assert_eq!(caps.list(), "server-time");
    }
}
