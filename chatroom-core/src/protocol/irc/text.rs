//! What an IRC client's message text means here: CTCP ACTION is `/me`,
//! other CTCP requests are not carried, and mIRC formatting codes are
//! dropped, because message text may hold no control character (so that
//! no dialect can be sent escape sequences).

/// A `PRIVMSG` or `NOTICE` text, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Text to say, and whether it is an action (`/me`).
    Say {
        /// The text, formatting codes removed.
        text: String,
        /// True for a CTCP ACTION.
        action: bool,
    },
    /// A CTCP request other than ACTION (VERSION, PING, …), which is not
    /// passed on.
    OtherCtcp,
}

/// Reads a message text.
pub(crate) fn incoming(text: &str) -> Incoming {
    if let Some(ctcp) = text.strip_prefix('\u{1}') {
        let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp);
        return match ctcp.strip_prefix("ACTION") {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => Incoming::Say {
                text: strip_formatting(rest.strip_prefix(' ').unwrap_or(rest)),
                action: true,
            },
            _ => Incoming::OtherCtcp,
        };
    }
    Incoming::Say {
        text: strip_formatting(text),
        action: false,
    }
}

/// `text` without mIRC formatting: bold, italics, underline, strike,
/// monospace, reverse, reset, and colours with their numbers (`\x03NN,NN`)
/// or hex values (`\x04RRGGBB,RRGGBB`).
pub(crate) fn strip_formatting(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{2}' | '\u{f}' | '\u{11}' | '\u{16}' | '\u{1d}' | '\u{1e}' | '\u{1f}' => {}
            '\u{3}' | '\u{4}' => {
                let (digits, is_digit): (usize, fn(&char) -> bool) = if c == '\u{3}' {
                    (2, |c| c.is_ascii_digit())
                } else {
                    (6, |c| c.is_ascii_hexdigit())
                };
                let mut took = 0;
                while took < digits && chars.next_if(is_digit).is_some() {
                    took += 1;
                }
                if took > 0 && chars.peek() == Some(&',') {
                    let mut ahead = chars.clone();
                    ahead.next();
                    if ahead.peek().is_some_and(is_digit) {
                        chars.next();
                        let mut took = 0;
                        while took < digits && chars.next_if(is_digit).is_some() {
                            took += 1;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &str, action: bool) -> Incoming {
        Incoming::Say {
            text: text.to_owned(),
            action,
        }
    }

    #[test]
    fn ctcp_action_is_me() {
        assert_eq!(incoming("\u{1}ACTION waves\u{1}"), say("waves", true));
        assert_eq!(incoming("\u{1}ACTION waves"), say("waves", true));
        assert_eq!(incoming("\u{1}VERSION\u{1}"), Incoming::OtherCtcp);
        assert_eq!(incoming("\u{1}ACTIONS\u{1}"), Incoming::OtherCtcp);
        assert_eq!(incoming("plain"), say("plain", false));
    }

    #[test]
    fn formatting_is_dropped() {
        assert_eq!(strip_formatting("\u{2}bold\u{2} \u{1d}it\u{f}"), "bold it");
        assert_eq!(strip_formatting("\u{3}4,12red\u{3} 5\u{3}03,x"), "red 5,x");
        assert_eq!(strip_formatting("\u{4}ff0000hex"), "hex");
        assert_eq!(strip_formatting("a\u{3},1b"), "a,1b");
    }
}
