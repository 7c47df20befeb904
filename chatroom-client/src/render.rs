//! Turning events into lines for a terminal, safely.
//!
//! Every string that came from the network passes through [`clean`] before
//! it is printed: nicknames and room names are validated ASCII, but text,
//! reasons and error messages are whatever the server sent, and a hostile
//! server or a bug must never be able to move the cursor, retitle the
//! window, or hide text behind a bidirectional override.

use std::fmt::Write as _;

use chatroom_core::client::{DisconnectReason, Event};
use chatroom_core::protocol::{Nickname, RoomInfo, RoomName};

/// Makes `s` inert on a terminal: C0 controls (ESC included) become caret
/// notation (`^[`), DEL becomes `^?`, C1 controls and the invisible
/// formatting characters that reorder or hide text become `\u{…}`, and a
/// tab becomes a space. Everything else is kept.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push(' '),
            '\u{0}'..='\u{1f}' => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            '\u{7f}' => out.push_str("^?"),
            c if c.is_control() || is_hidden_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Format characters that change how surrounding text is ordered or
/// broken, or that are invisible: bidi marks, embeddings, overrides and
/// isolates, zero-width characters, line and paragraph separators, and
/// interlinear annotation marks.
fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// How lines are styled.
#[derive(Debug, Clone)]
pub(crate) struct Style {
    /// Whether to colour nicknames with ANSI sequences (a terminal only).
    pub(crate) color: bool,
}

const PALETTE: [u8; 6] = [31, 32, 33, 34, 35, 36];

impl Style {
    /// A nickname, coloured by a hash of its folded form so it keeps its
    /// colour across messages.
    pub(crate) fn nick(&self, nick: &Nickname) -> String {
        let name = clean(nick.as_str());
        if !self.color {
            return name;
        }
        let hash = nick
            .key()
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let code = PALETTE[hash as usize % PALETTE.len()];
        format!("\x1b[{code}m{name}\x1b[0m")
    }

    /// The client's own name in its own lines.
    pub(crate) fn you(&self) -> String {
        if self.color {
            "\x1b[1mYou\x1b[0m".to_owned()
        } else {
            "You".to_owned()
        }
    }
}

pub(crate) fn room(room: &RoomName) -> String {
    format!("#{}", clean(room.as_str()))
}

pub(crate) fn members(style: &Style, r: &RoomName, members: &[Nickname]) -> String {
    let list: Vec<String> = members.iter().map(|n| style.nick(n)).collect();
    format!("* in {}: {}", room(r), list.join(", "))
}

pub(crate) fn rooms(list: &[RoomInfo]) -> String {
    if list.is_empty() {
        return "* no rooms".to_owned();
    }
    let list: Vec<String> = list
        .iter()
        .map(|r| format!("{} ({})", room(&r.name), r.members))
        .collect();
    format!("* rooms: {}", list.join(", "))
}

/// What the user reads when the connection ends, or `None` when they
/// asked for it.
pub(crate) fn disconnect(reason: &DisconnectReason) -> String {
    match reason {
        DisconnectReason::Bye { reason } => match reason.as_str() {
            "server shutting down" => "disconnected: the server is shutting down".to_owned(),
            "slow consumer" => "disconnected: this client read too slowly to keep up".to_owned(),
            "idle timeout" => "disconnected: idle for too long".to_owned(),
            "too many errors" => "disconnected: too many errors".to_owned(),
            other => format!("disconnected: {}", clean(other)),
        },
        DisconnectReason::Closed => "connection lost: the server closed the connection".to_owned(),
        DisconnectReason::Failed(e) => format!("connection lost: {}", clean(&e.to_string())),
        _ => "disconnected".to_owned(),
    }
}

/// Renders one event as lines; `me` is the client's nickname and
/// `current` the room plain lines go to, whose name is left out of its
/// messages.
pub(crate) fn event(
    style: &Style,
    event: &Event,
    me: &Nickname,
    current: Option<&RoomName>,
) -> Vec<String> {
    let is_me = |n: &Nickname| n.key() == me.key();
    let prefix = |r: &RoomName| {
        if current.is_some_and(|c| c.key() == r.key()) {
            String::new()
        } else {
            format!("{} ", room(r))
        }
    };
    let line = match event {
        Event::Message {
            room: r,
            from,
            text,
            action,
            ..
        } => {
            if *action {
                format!("{}* {} {}", prefix(r), style.nick(from), clean(text))
            } else {
                format!("{}<{}> {}", prefix(r), style.nick(from), clean(text))
            }
        }
        Event::Private { from, to, text, .. } => {
            if is_me(from) {
                format!("-> *{}* {}", style.nick(to), clean(text))
            } else {
                format!("*{}* {}", style.nick(from), clean(text))
            }
        }
        // The client's own joins and leaves are reported by the command.
        Event::Joined { nick, .. } | Event::Left { nick, .. } if is_me(nick) => return Vec::new(),
        Event::Joined { room: r, nick } => format!("* {} joined {}", style.nick(nick), room(r)),
        Event::Left {
            room: r,
            nick,
            reason,
        } => match reason {
            Some(why) => format!("* {} left {} ({})", style.nick(nick), room(r), clean(why)),
            None => format!("* {} left {}", style.nick(nick), room(r)),
        },
        Event::NickChanged { new, .. } if is_me(new) => {
            format!("* you are now known as {}", style.nick(new))
        }
        Event::NickChanged { old, new } => {
            format!("* {} is now known as {}", style.nick(old), style.nick(new))
        }
        Event::Notice { text } => {
            return text
                .split('\n')
                .map(|l| format!("* {}", clean(l)))
                .collect();
        }
        Event::Error { message, .. } => format!("! {}", clean(message)),
        Event::FellBehind {
            room: name,
            first,
            last,
        } => {
            let count = last.saturating_sub(*first) + 1;
            format!(
                "* you fell behind in {}: {count} messages from id {first} follow",
                room(name)
            )
        }
        Event::Lagged { missed } => {
            format!("! {missed} events were dropped because they were read too slowly")
        }
        Event::Disconnected { reason } => format!("! {}", disconnect(reason)),
        Event::Reconnecting { attempt, delay } => {
            format!(
                "* reconnecting in {:.1}s (attempt {attempt})",
                delay.as_secs_f64()
            )
        }
        Event::Reconnected { nick, rooms } => {
            let rooms: Vec<String> = rooms.iter().map(room).collect();
            if rooms.is_empty() {
                format!("* reconnected as {}", style.nick(nick))
            } else {
                format!(
                    "* reconnected as {}, back in {}",
                    style.nick(nick),
                    rooms.join(", ")
                )
            }
        }
        _ => return Vec::new(),
    };
    vec![line]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nickname {
        Nickname::new(s).unwrap()
    }

    #[test]
    fn clean_keeps_ordinary_text() {
        assert_eq!(clean("hello, wörld 🎉 <b>"), "hello, wörld 🎉 <b>");
    }

    #[test]
    fn clean_defuses_escape_sequences_and_controls() {
        let hostile = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\n\u{8}\u{7f}\u{9b}31m";
        let out = clean(hostile);
        assert_eq!(out, "^[[2J^[]0;pwned^G^M^J^H^?\\u{9b}31m");
        assert!(!out.chars().any(char::is_control), "{out:?}");
    }

    #[test]
    fn clean_shows_bidi_and_invisible_characters() {
        assert_eq!(clean("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(
            clean("a\u{200b}b\u{2066}c\u{feff}"),
            "a\\u{200b}b\\u{2066}c\\u{feff}"
        );
        assert_eq!(clean("tab\there"), "tab here");
    }

    #[test]
    fn events_render_as_plain_lines() {
        let style = Style { color: false };
        let me = nick("me");
        let lobby = RoomName::new("lobby").unwrap();
        let msg = Event::Message {
            room: lobby.clone(),
            id: 1,
            from: nick("alice"),
            text: "hi \u{1b}[31mred".into(),
            ts: 0,
            action: false,
        };
        assert_eq!(
            event(&style, &msg, &me, Some(&lobby)),
            ["<alice> hi ^[[31mred"]
        );
        assert_eq!(
            event(&style, &msg, &me, None),
            ["#lobby <alice> hi ^[[31mred"]
        );
        let joined = Event::Joined {
            room: lobby.clone(),
            nick: nick("bob"),
        };
        assert_eq!(
            event(&style, &joined, &me, Some(&lobby)),
            ["* bob joined #lobby"]
        );
        let own = Event::Joined {
            room: lobby.clone(),
            nick: nick("ME"),
        };
        assert!(event(&style, &own, &me, Some(&lobby)).is_empty());
        let notice = Event::Notice {
            text: "one\ntwo\u{7}".into(),
        };
        assert_eq!(event(&style, &notice, &me, None), ["* one", "* two^G"]);
    }

    #[test]
    fn colour_wraps_only_the_nick() {
        let style = Style { color: true };
        let n = style.nick(&nick("alice"));
        assert!(
            n.starts_with("\x1b[3") && n.ends_with("alice\x1b[0m"),
            "{n:?}"
        );
        assert_eq!(n, style.nick(&nick("ALICE")).replace("ALICE", "alice"));
    }
}
