//! Property tests of the text dialect's account and moderation commands:
//! every well-formed command parses into the request it names, with its
//! arguments intact, and no line starting with one of them panics the
//! parser or parses into anything but its own request or a usage error.

use chatroom_core::protocol::text::{TextInput, parse_line};
use chatroom_core::protocol::{ClientMessage, ErrorCode, Nickname, Password, RoomName};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

const NAME_RE: &str = "[A-Za-z0-9_][A-Za-z0-9_-]{0,31}";
/// A password as a person types it: one word of printable characters.
const WORD_RE: &str = "[!-~é🎉]{1,40}";

fn lobby() -> RoomName {
    RoomName::new("lobby").unwrap()
}

fn request(line: &str) -> ClientMessage {
    match parse_line(line, Some(&lobby())) {
        Ok(TextInput::Request(message)) => message,
        other => panic!("{line:?} gave {other:?}"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn account_commands_keep_their_arguments(
        nick in NAME_RE,
        old in WORD_RE,
        new in WORD_RE,
        upper in any::<bool>(),
    ) {
        let cmd = |c: &str| if upper { c.to_ascii_uppercase() } else { c.to_owned() };
        prop_assert_eq!(
            request(&format!("/{} {old}", cmd("register"))),
            ClientMessage::Register { password: Password::new(old.clone()) }
        );
        prop_assert_eq!(
            request(&format!("/{} {nick}  {old}\r\n", cmd("login"))),
            ClientMessage::Login {
                nick: Nickname::new(nick.as_str()).unwrap(),
                password: Password::new(old.clone()),
            }
        );
        prop_assert_eq!(
            request(&format!("/{} {old} {new}", cmd("password"))),
            ClientMessage::SetPassword {
                old: Password::new(old.clone()),
                new: Password::new(new.clone()),
            }
        );
        prop_assert_eq!(
            request(&format!("/{} {new}", cmd("dropaccount"))),
            ClientMessage::DropAccount { password: Password::new(new) }
        );
    }

    #[test]
    fn any_arguments_give_the_request_or_a_typed_error(
        command in prop::sample::select(&["register", "login", "identify", "password", "dropaccount"][..]),
        rest in "[ -~\t\u{1b}é]{0,60}",
    ) {
        let line = format!("/{command} {rest}");
        match parse_line(&line, Some(&lobby())) {
            Ok(TextInput::Request(message)) => {
                let same = matches!(
                    (command, &message),
                    ("register", ClientMessage::Register { .. })
                        | ("login" | "identify", ClientMessage::Login { .. })
                        | ("password", ClientMessage::SetPassword { .. })
                        | ("dropaccount", ClientMessage::DropAccount { .. })
                );
                prop_assert!(same, "{line:?} gave {message:?}");
            }
            Ok(other) => prop_assert!(false, "{line:?} gave {other:?}"),
            Err(e) => prop_assert!(
                matches!(e.code(), ErrorCode::UnknownCommand | ErrorCode::InvalidName),
                "{line:?}: {e}"
            ),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn moderation_commands_keep_their_arguments(
        nick in NAME_RE,
        reason in "[a-z][a-z !?.]{0,30}[a-z]",
        secs in 1u64..100_000,
        key in "[!-~]{1,20}",
        limit in 0u32..1000,
    ) {
        let nickname = Nickname::new(nick.as_str()).unwrap();
        prop_assert_eq!(
            request(&format!("/kick {nick} {reason}")),
            ClientMessage::Kick { room: lobby(), nick: nickname.clone(), reason: Some(reason.clone()) }
        );
        prop_assert_eq!(
            request(&format!("/ban {nick} {secs}s {reason}")),
            ClientMessage::Ban {
                room: Some(lobby()),
                mask: nick.clone(),
                duration_secs: Some(secs),
                reason: Some(reason.clone()),
            }
        );
        prop_assert_eq!(
            request(&format!("/gban account:{nick}")),
            ClientMessage::Ban { room: None, mask: format!("account:{nick}"), duration_secs: None, reason: None }
        );
        prop_assert_eq!(
            request(&format!("/topic {reason}")),
            ClientMessage::Topic { room: lobby(), topic: Some(reason.clone()) }
        );
        let expected_key = if key == "-" { String::new() } else { key.clone() };
        prop_assert_eq!(
            request(&format!("/key {key}")),
            ClientMessage::Mode { room: lobby(), key: Some(expected_key), moderated: None, invite_only: None, limit: None }
        );
        prop_assert_eq!(
            request(&format!("/limit {limit}")),
            ClientMessage::Mode { room: lobby(), key: None, moderated: None, invite_only: None, limit: Some(limit) }
        );
        prop_assert_eq!(
            request(&format!("/kill {nick} {reason}")),
            ClientMessage::Kill { nick: nickname, reason: Some(reason) }
        );
    }

    #[test]
    fn moderation_lines_never_panic_and_fail_only_with_typed_errors(
        command in prop::sample::select(&[
            "kick", "ban", "gban", "unban", "ungban", "topic", "op", "deop", "voice", "devoice",
            "key", "moderated", "inviteonly", "limit", "invite", "kill", "modlog",
        ][..]),
        rest in "[ -~\t\u{1b}é]{0,60}",
        in_room in any::<bool>(),
    ) {
        let room = lobby();
        let line = format!("/{command} {rest}");
        match parse_line(&line, in_room.then_some(&room)) {
            Ok(TextInput::Request(_)) => {}
            Ok(other) => prop_assert!(false, "{line:?} gave {other:?}"),
            Err(e) => prop_assert!(
                matches!(e.code(), ErrorCode::UnknownCommand | ErrorCode::InvalidName),
                "{line:?}: {e}"
            ),
        }
    }
}
