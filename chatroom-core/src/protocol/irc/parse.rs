//! A client's line, taken apart: tags, an ignored prefix, the command and
//! its parameters.

/// Why a client's line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IrcError {
    /// The line holds nothing but spaces; RFC 2812 says to ignore it.
    #[error("empty line")]
    Empty,
    /// The line without its tags is longer than IRC allows.
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The line's length with `\r\n`, tags not counted.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The tag section is longer than IRCv3 allows.
    #[error("tags longer than {max} bytes")]
    TagsTooLong {
        /// The limit.
        max: usize,
    },
    /// The line is not UTF-8; this server speaks UTF-8 only.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// The line has tags or a prefix but no command.
    #[error("no command")]
    NoCommand,
}

/// One client line. Borrowed from the line it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// The tag section without its `@`, if the line had one. Kept only to
    /// be ignored: no client tag changes what the server does.
    pub(crate) tags: Option<&'a str>,
    /// The command, upper-cased (`privmsg` and `PRIVMSG` are one command).
    pub(crate) command: String,
    /// The parameters, the trailing one (after ` :`) included as it was.
    pub(crate) params: Vec<&'a str>,
}

/// Parses one line (without its `\n`; a `\r` before it is dropped).
///
/// # Errors
/// See [`IrcError`]; each is answered and the connection goes on.
pub(crate) fn parse(line: &[u8]) -> Result<Message<'_>, IrcError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| IrcError::NotUtf8)?;
    let mut rest = line.trim_start_matches(' ');
    let mut tags = None;
    if let Some(tagged) = rest.strip_prefix('@') {
        let (section, after) = tagged.split_once(' ').unwrap_or((tagged, ""));
        if section.len() + 2 > super::MAX_TAGS_LEN {
            return Err(IrcError::TagsTooLong {
                max: super::MAX_TAGS_LEN,
            });
        }
        tags = Some(section);
        rest = after.trim_start_matches(' ');
        if rest.is_empty() {
            return Err(IrcError::NoCommand);
        }
    }
    if rest.trim_end_matches(' ').is_empty() {
        return Err(IrcError::Empty);
    }
    let len = rest.len() + 2;
    if len > super::MAX_LINE_LEN {
        return Err(IrcError::TooLong {
            len,
            max: super::MAX_LINE_LEN,
        });
    }
    // A client's prefix names itself, which the server already knows; it
    // is skipped, never believed.
    if rest.starts_with(':') {
        let (_, after) = rest.split_once(' ').unwrap_or((rest, ""));
        rest = after.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(IrcError::NoCommand);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        // The fifteenth parameter takes the rest of the line, as RFC 2812
        // says, whether or not it starts with ':'.
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        if params.len() + 1 == super::MAX_PARAMS {
            params.push(rest);
            break;
        }
        let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(param);
        rest = after;
    }
    Ok(Message {
        tags,
        command: command.to_ascii_uppercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(line: &str) -> Message<'_> {
        parse(line.as_bytes()).unwrap()
    }

    #[test]
    fn commands_and_params() {
        let m = ok("privmsg #lobby :hello there\r");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#lobby", "hello there"]);
        let m = ok("USER alice 0 * :Alice A");
        assert_eq!(m.params, ["alice", "0", "*", "Alice A"]);
        let m = ok("NICK  bob  ");
        assert_eq!(m.params, ["bob"]);
        let m = ok("PING :");
        assert_eq!(m.params, [""]);
    }

    #[test]
    fn tags_and_prefix_are_skipped() {
        let m = ok("@label=1;+x=y :me!u@h PRIVMSG bob :hi");
        assert_eq!(m.tags, Some("label=1;+x=y"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["bob", "hi"]);
        assert_eq!(parse(b"@a=b").unwrap_err(), IrcError::NoCommand);
        assert_eq!(parse(b"@a=b   ").unwrap_err(), IrcError::NoCommand);
    }

    #[test]
    fn empty_lines_are_told_apart() {
        assert_eq!(parse(b"").unwrap_err(), IrcError::Empty);
        assert_eq!(parse(b"   \r").unwrap_err(), IrcError::Empty);
    }

    #[test]
    fn the_line_limit_leaves_tags_out() {
        let at_limit = format!("PRIVMSG #a :{}", "x".repeat(510 - 12));
        assert!(parse(at_limit.as_bytes()).is_ok());
        let over = format!("{at_limit}x");
        assert!(matches!(
            parse(over.as_bytes()),
            Err(IrcError::TooLong { len: 513, .. })
        ));
        let tagged = format!("@t={} {at_limit}", "v".repeat(1000));
        assert!(parse(tagged.as_bytes()).is_ok());
    }

    #[test]
    fn the_fifteenth_param_takes_the_rest() {
        let many = (1..=20)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!("X {many}");
        let m = ok(&line);
        assert_eq!(m.params.len(), 15);
        assert_eq!(m.params[14], "15 16 17 18 19 20");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(parse(b"PRIVMSG #a :\xff").unwrap_err(), IrcError::NotUtf8);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(line in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse(&line);
        }

        #[test]
        fn params_hold_no_line_break_a_line_did_not(line in "[ -~]{0,600}") {
            if let Ok(m) = parse(line.as_bytes()) {
                prop_assert!(!m.command.is_empty());
                prop_assert!(m.params.len() <= crate::protocol::irc::MAX_PARAMS);
                for p in &m.params {
                    prop_assert!(!p.contains(['\r', '\n']));
                }
            }
        }
    }
}
