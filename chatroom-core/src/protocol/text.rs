//! The plain-text dialect, for people on `nc` or `telnet` and for the seed
//! tutorial's Python client.
//!
//! A line that does not start with `/` is a message to the client's current
//! room; a line starting with `/` is a command. Both map onto the same
//! [`ClientMessage`]s the native dialect sends, so the engine has one code
//! path. Server frames render as readable lines (`<alice> hi`,
//! `* bob joined #lobby`, `! nick bob is taken`).

use super::error::{CommandError, ProtocolError};
use super::{ClientMessage, MessageId, Nickname, Password, RoomName, ServerMessage};

/// What one typed line asks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TextInput {
    /// A request, as a native client would have sent it.
    Request(ClientMessage),
    /// `/join ROOM`: the text dialect keeps one current room, so joining
    /// also leaves the previous one.
    Switch(RoomName),
    /// `/join ROOM KEY`: as [`TextInput::Switch`], into a room with a key.
    SwitchKeyed(RoomName, String),
    /// `/help`: the session answers with [`HELP`].
    Help,
    /// `/history [N]`: the last N messages of the current room.
    History(Option<u32>),
    /// `/resume ID`: every message of the current room after id `ID`
    /// again, in order, then the live ones.
    Resume(MessageId),
    /// An empty line; nothing to do.
    Empty,
}

/// The help text sent for `/help`, one command per line.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME        change your nickname",
    "  /join ROOM [KEY]  switch to ROOM (created if needed)",
    "  /leave            leave the current room",
    "  /rooms            list rooms",
    "  /who [ROOM]       list who is in a room",
    "  /msg NICK TEXT    send a private message",
    "  /me ACTION        say an action (* you waves)",
    "  /history [N]      show the last N messages of the room",
    "  /resume ID        show every message of the room after id ID, then go on",
    "  /register PASSWORD          register your nickname (8+ bytes password)",
    "  /login NICK PASSWORD        log in to a registered nickname",
    "  /password OLD NEW           change your account's password",
    "  /dropaccount PASSWORD       delete your account (the nick becomes free)",
    "  /topic [TEXT]               show or set the room's topic",
    "  moderators: /kick NICK [REASON], /ban NICK|MASK [DURATION] [REASON], /unban MASK,",
    "    /op /deop /voice /devoice ACCOUNT, /key SECRET|-, /moderated on|off,",
    "    /inviteonly on|off, /invite NICK, /limit N; server operators: /kill NICK,",
    "    /gban /ungban MASK, /modlog [N]",
    "  /quit [REASON]    disconnect",
    "  /help             this list",
    "  anything else is said to your current room",
];

fn usage(text: &'static str) -> ProtocolError {
    CommandError::Usage(text).into()
}

fn no_room() -> ProtocolError {
    CommandError::NoRoom.into()
}

/// Parses one line typed by a person. `room` is the client's current room.
///
/// A trailing `\r` or `\n` is ignored. The returned request is not yet
/// validated beyond its names (text length and characters are checked by the
/// engine, as for native frames).
///
/// # Errors
/// [`ProtocolError::Command`] (a [`CommandError`]) for an unknown command or wrong arguments,
/// [`ProtocolError::InvalidName`] for a bad nickname or room name.
pub fn parse_line(line: &str, room: Option<&RoomName>) -> Result<TextInput, ProtocolError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(TextInput::Empty);
    }
    // "//text" says a line that starts with a slash.
    let Some(command_line) = line.strip_prefix('/').filter(|l| !l.starts_with('/')) else {
        let text = line.strip_prefix('/').unwrap_or(line);
        let room = room.ok_or_else(no_room)?.clone();
        return Ok(TextInput::Request(ClientMessage::Say {
            room,
            text: text.to_owned(),
            action: false,
        }));
    };
    let (command, rest) = match command_line.split_once(' ') {
        Some((c, r)) => (c, r.trim_start()),
        None => (command_line, ""),
    };
    let mut args = rest.split_whitespace();
    let input = match command.to_ascii_lowercase().as_str() {
        "nick" => {
            let name = args.next().ok_or_else(|| usage("/nick NAME"))?;
            TextInput::Request(ClientMessage::Nick {
                nick: Nickname::new(name)?,
            })
        }
        "join" => {
            let name = args.next().ok_or_else(|| usage("/join ROOM [KEY]"))?;
            let room = RoomName::parse_typed(name)?;
            match args.next() {
                Some(key) => TextInput::SwitchKeyed(room, key.to_owned()),
                None => TextInput::Switch(room),
            }
        }
        "leave" | "part" => {
            let room = match args.next() {
                Some(name) => RoomName::parse_typed(name)?,
                None => room.ok_or_else(no_room)?.clone(),
            };
            TextInput::Request(ClientMessage::Leave { room })
        }
        "rooms" | "list" => TextInput::Request(ClientMessage::Rooms),
        "who" | "names" => {
            let room = match args.next() {
                Some(name) => RoomName::parse_typed(name)?,
                None => room.ok_or_else(no_room)?.clone(),
            };
            TextInput::Request(ClientMessage::Who { room })
        }
        "msg" | "whisper" => {
            let (to, text) = rest
                .split_once(' ')
                .map(|(n, t)| (n, t.trim_start()))
                .filter(|(_, t)| !t.is_empty())
                .ok_or_else(|| usage("/msg NICK TEXT"))?;
            TextInput::Request(ClientMessage::Whisper {
                to: Nickname::new(to)?,
                text: text.to_owned(),
            })
        }
        "me" => {
            if rest.is_empty() {
                return Err(usage("/me ACTION"));
            }
            TextInput::Request(ClientMessage::Say {
                room: room.ok_or_else(no_room)?.clone(),
                text: rest.to_owned(),
                action: true,
            })
        }
        "history" => {
            let n = match args.next() {
                Some(n) => Some(n.parse::<u32>().map_err(|_| usage("/history [N]"))?),
                None => None,
            };
            TextInput::History(n)
        }
        "resume" => {
            let id = args
                .next()
                .and_then(|n| n.parse::<MessageId>().ok())
                .ok_or_else(|| usage("/resume ID"))?;
            TextInput::Resume(id)
        }
        "quit" | "exit" => TextInput::Request(ClientMessage::Quit {
            reason: (!rest.is_empty()).then(|| rest.to_owned()),
        }),
        "register" => {
            let password = only_arg(rest).ok_or_else(|| usage("/register PASSWORD"))?;
            TextInput::Request(ClientMessage::Register { password })
        }
        "login" | "identify" => {
            let (nick, password) = rest
                .split_once(' ')
                .and_then(|(n, p)| Some((n, only_arg(p)?)))
                .ok_or_else(|| usage("/login NICK PASSWORD"))?;
            TextInput::Request(ClientMessage::Login {
                nick: Nickname::new(nick)?,
                password,
            })
        }
        "password" => {
            let (old, new) = match (args.next(), args.next(), args.next()) {
                (Some(old), Some(new), None) => (Password::new(old), Password::new(new)),
                _ => return Err(usage("/password OLD NEW")),
            };
            TextInput::Request(ClientMessage::SetPassword { old, new })
        }
        "dropaccount" => {
            let password = only_arg(rest).ok_or_else(|| usage("/dropaccount PASSWORD"))?;
            TextInput::Request(ClientMessage::DropAccount { password })
        }
        "help" => TextInput::Help,
        other => {
            if let Some(parsed) = super::moderation::parse(other, rest, room) {
                return parsed.map(TextInput::Request);
            }
            return Err(CommandError::Unknown(sanitize(other)).into());
        }
    };
    Ok(input)
}

/// The one word of `rest` as a password: passwords hold no spaces in the
/// text dialect, so that a second word is a mistake the user is told of.
fn only_arg(rest: &str) -> Option<Password> {
    let mut words = rest.split_whitespace();
    match (words.next(), words.next()) {
        (Some(word), None) => Some(Password::new(word)),
        _ => None,
    }
}

/// Replaces control characters so that echoing user input back can never
/// drive the reader's terminal.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Renders a server frame as one readable line, without its line ending.
///
/// Returns `None` for frames a person does not need to see (`ok`, `pong`,
/// `ping`).
pub fn render(message: &ServerMessage) -> Option<String> {
    let line = match message {
        ServerMessage::Welcome { nick, server, .. } => {
            format!("* welcome to {server}, you are {nick}; type /help for commands")
        }
        ServerMessage::Message {
            from, text, action, ..
        } => {
            if *action {
                format!("* {from} {text}")
            } else {
                format!("<{from}> {text}")
            }
        }
        ServerMessage::Private { from, to, text, .. } => format!("*{from}* -> *{to}* {text}"),
        ServerMessage::Joined { room, nick } => format!("* {nick} joined #{room}"),
        ServerMessage::Left { room, nick, reason } => match reason {
            Some(r) => format!("* {nick} left #{room} ({})", sanitize(r)),
            None => format!("* {nick} left #{room}"),
        },
        ServerMessage::NickChanged { old, new } => format!("* {old} is now known as {new}"),
        ServerMessage::Rooms { rooms } => {
            if rooms.is_empty() {
                "* no rooms".to_owned()
            } else {
                let list: Vec<String> = rooms
                    .iter()
                    .map(|r| format!("#{} ({})", r.name, r.members))
                    .collect();
                format!("* rooms: {}", list.join(", "))
            }
        }
        ServerMessage::Members { room, members, .. } => {
            let list: Vec<&str> = members.iter().map(Nickname::as_str).collect();
            format!("* in #{room}: {}", list.join(", "))
        }
        ServerMessage::History {
            room,
            messages,
            more,
        } => {
            let mut out = format!(
                "* history of #{room}: {} message{}{}",
                messages.len(),
                if messages.len() == 1 { "" } else { "s" },
                if *more { " (more exist)" } else { "" }
            );
            for m in messages {
                out.push_str("\r\n");
                if m.action {
                    out.push_str(&format!("* {} {}", m.from, m.text));
                } else {
                    out.push_str(&format!("<{}> {}", m.from, m.text));
                }
            }
            out
        }
        ServerMessage::Error { message, .. } => format!("! {}", sanitize(message)),
        ServerMessage::LoggedIn { account } => format!("* you are logged in as {account}"),
        ServerMessage::Moderated(event) => sanitize(&event.render()),
        ServerMessage::Topic { room, topic, by } => match (topic.is_empty(), by) {
            (true, _) => format!("* #{room} has no topic"),
            (false, Some(by)) => format!("* topic of #{room}: {} (set by {by})", sanitize(topic)),
            (false, None) => format!("* topic of #{room}: {}", sanitize(topic)),
        },
        ServerMessage::Lagged { room, first, last } => {
            let count = last.saturating_sub(*first) + 1;
            let plural = if count == 1 { "" } else { "s" };
            format!(
                "* you fell behind in #{room}: {count} message{plural} from id {first} follow now \
                 (/resume {} shows them again)",
                first.saturating_sub(1)
            )
        }
        ServerMessage::Notice { text } => text
            .split('\n')
            .map(sanitize)
            .collect::<Vec<_>>()
            .join("\r\n"),
        ServerMessage::Bye { reason } => format!("* bye: {}", sanitize(reason)),
        ServerMessage::Ok { .. } | ServerMessage::Ping | ServerMessage::Pong => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    fn lobby() -> RoomName {
        RoomName::new("lobby").unwrap()
    }

    #[test]
    fn plain_line_says_to_current_room() {
        assert_eq!(
            parse_line("hello there\r\n", Some(&lobby())).unwrap(),
            TextInput::Request(ClientMessage::Say {
                room: lobby(),
                text: "hello there".into(),
                action: false
            })
        );
    }

    #[test]
    fn double_slash_escapes_a_leading_slash() {
        assert_eq!(
            parse_line("//etc/passwd", Some(&lobby())).unwrap(),
            TextInput::Request(ClientMessage::Say {
                room: lobby(),
                text: "/etc/passwd".into(),
                action: false
            })
        );
    }

    #[test]
    fn commands_parse() {
        let r = Some(lobby());
        let r = r.as_ref();
        assert!(matches!(
            parse_line("/nick bob", r).unwrap(),
            TextInput::Request(ClientMessage::Nick { .. })
        ));
        assert_eq!(
            parse_line("/join #rust", r).unwrap(),
            TextInput::Switch(RoomName::new("rust").unwrap())
        );
        assert!(matches!(
            parse_line("/msg bob hi there", r).unwrap(),
            TextInput::Request(ClientMessage::Whisper { text, .. }) if text == "hi there"
        ));
        assert!(matches!(
            parse_line("/me waves", r).unwrap(),
            TextInput::Request(ClientMessage::Say { action: true, .. })
        ));
        assert_eq!(
            parse_line("/history 5", r).unwrap(),
            TextInput::History(Some(5))
        );
        assert_eq!(parse_line("/HELP", r).unwrap(), TextInput::Help);
        assert_eq!(parse_line("   ", r).unwrap(), TextInput::Empty);
        assert!(matches!(
            parse_line("/quit gone fishing", r).unwrap(),
            TextInput::Request(ClientMessage::Quit { reason: Some(q) }) if q == "gone fishing"
        ));
    }

    #[test]
    fn bad_commands_are_readable_errors() {
        let r = Some(lobby());
        let e = parse_line("/frobnicate", r.as_ref()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::UnknownCommand);
        assert!(e.to_string().contains("/help"));
        let e = parse_line("/msg bob", r.as_ref()).unwrap_err();
        assert!(e.to_string().contains("usage"));
        let e = parse_line("/nick bad\u{1b}name", r.as_ref()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidName);
        let e = parse_line("hello", None).unwrap_err();
        assert!(e.to_string().contains("/join"));
    }

    #[test]
    fn rendering_is_readable() {
        let nick = |s: &str| Nickname::new(s).unwrap();
        assert_eq!(
            render(&ServerMessage::Message {
                room: lobby(),
                id: 1,
                from: nick("alice"),
                text: "hi".into(),
                ts: 0,
                action: false
            })
            .unwrap(),
            "<alice> hi"
        );
        assert_eq!(
            render(&ServerMessage::Joined {
                room: lobby(),
                nick: nick("bob")
            })
            .unwrap(),
            "* bob joined #lobby"
        );
        assert_eq!(
            render(&ServerMessage::Error {
                code: ErrorCode::NickTaken,
                message: "nick bob is taken".into()
            })
            .unwrap(),
            "! nick bob is taken"
        );
        assert!(render(&ServerMessage::Pong).is_none());
    }
}
