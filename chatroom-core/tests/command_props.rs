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
