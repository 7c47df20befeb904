//! Server lines, built so that no value can break out of its place: a
//! middle parameter cannot hold a space or start with `:`, and no
//! parameter can hold `\r`, `\n` or NUL. Whatever a user typed (a message,
//! a quit reason, a topic) can therefore never end the line it is in and
//! start a command of its own on another client's connection.

/// A server line under construction: `[@tags ]:source COMMAND params`.
#[derive(Debug)]
pub(crate) struct Line {
    buf: String,
}

impl Line {
    /// Starts a line from `source` (the server's name or `nick!user@host`).
    pub(crate) fn new(source: &str, command: &str) -> Self {
        Self::tagged("", source, command)
    }

    /// Starts a line with a tag section (`key=value;…`, already escaped);
    /// an empty `tags` adds none.
    pub(crate) fn tagged(tags: &str, source: &str, command: &str) -> Self {
        let mut buf = String::with_capacity(64 + tags.len());
        if !tags.is_empty() {
            buf.push('@');
            push_clean(&mut buf, tags, '_', true);
            buf.push(' ');
        }
        buf.push(':');
        push_clean(&mut buf, source, '_', true);
        buf.push(' ');
        push_clean(&mut buf, command, '_', true);
        Self { buf }
    }

    /// Adds a middle parameter. An empty one is written `*`, a leading `:`
    /// and any space or line break become `_`.
    pub(crate) fn param(mut self, param: &str) -> Self {
        self.buf.push(' ');
        if param.is_empty() {
            self.buf.push('*');
            return self;
        }
        if let Some(rest) = param.strip_prefix(':') {
            self.buf.push('_');
            push_clean(&mut self.buf, rest, '_', true);
        } else {
            push_clean(&mut self.buf, param, '_', true);
        }
        self
    }

    /// Ends the line with a trailing parameter (which may hold spaces and
    /// start with `:`); line breaks and NUL in it become spaces.
    pub(crate) fn trailing(mut self, param: &str) -> String {
        self.buf.push_str(" :");
        push_clean(&mut self.buf, param, ' ', false);
        self.end()
    }

    /// Ends the line as it is.
    pub(crate) fn end(mut self) -> String {
        self.buf.push_str("\r\n");
        self.buf
    }
}

/// Appends `s`, with every character that would end the line (or, for
/// `middle`, end the parameter) replaced by `with`.
fn push_clean(buf: &mut String, s: &str, with: char, middle: bool) {
    for c in s.chars() {
        let breaks = matches!(c, '\r' | '\n' | '\0') || (middle && c == ' ');
        buf.push(if breaks { with } else { c });
    }
}

/// Cuts `text` into pieces of at most `budget` bytes, at character
/// boundaries, preferring the last space in a piece, so that a long
/// message from another dialect still fits IRC's line limit. A budget
/// below 4 bytes is raised to 4, so a character always fits.
pub(crate) fn split_text(text: &str, budget: usize) -> Vec<&str> {
    let budget = budget.max(4);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // A space in the second half of the piece is a nicer place to cut.
        if let Some(space) = rest[..cut].rfind(' ')
            && space > cut / 2
        {
            cut = space + 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_line_with_params_and_trailing() {
        let line = Line::new("srv", "353")
            .param("alice")
            .param("=")
            .param("#lobby")
            .trailing("alice bob");
        assert_eq!(line, ":srv 353 alice = #lobby :alice bob\r\n");
        assert_eq!(Line::new("srv", "PING").end(), ":srv PING\r\n");
        let tagged = Line::tagged("time=x", "a!a@h", "PRIVMSG")
            .param("#r")
            .trailing("hi");
        assert_eq!(tagged, "@time=x :a!a@h PRIVMSG #r :hi\r\n");
    }

    #[test]
    fn values_cannot_break_out() {
        let line = Line::new("a!a@h", "PRIVMSG")
            .param(":evil x\r\nQUIT")
            .trailing("hi\r\nKILL bob :\0x");
        assert_eq!(line, ":a!a@h PRIVMSG _evil_x__QUIT :hi  KILL bob : x\r\n");
        assert_eq!(Line::new("s", "X").param("").end(), ":s X *\r\n");
    }

    #[test]
    fn long_text_is_split_on_boundaries() {
        assert_eq!(split_text("", 10), [""]);
        assert_eq!(split_text("short", 10), ["short"]);
        assert_eq!(split_text("aaaa bbbb cccc", 10), ["aaaa bbbb ", "cccc"]);
        let pieces = split_text("ééééé", 5);
        assert_eq!(pieces, ["éé", "éé", "é"]);
    }

    proptest! {
        #[test]
        fn a_built_line_is_one_line(source in ".{0,40}", p in ".{0,40}", t in ".{0,80}") {
            let line = Line::new(&source, "PRIVMSG").param(&p).trailing(&t);
            let body = line.strip_suffix("\r\n").unwrap();
            prop_assert!(!body.contains(['\r', '\n', '\0']));
            let parsed = crate::protocol::irc::parse(body.as_bytes());
            if let Ok(m) = parsed {
                prop_assert_eq!(m.command, "PRIVMSG");
                prop_assert_eq!(m.params.len(), 2);
                prop_assert_eq!(m.params[1], t.replace(['\r', '\n', '\0'], " "));
            }
        }

        #[test]
        fn split_pieces_rejoin(text in ".{0,300}", budget in 1usize..64) {
            let pieces = split_text(&text, budget);
            prop_assert_eq!(pieces.concat(), text.clone());
            for p in pieces {
                prop_assert!(p.len() <= budget.max(4));
            }
        }
    }
}
