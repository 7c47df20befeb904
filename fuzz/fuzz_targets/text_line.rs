//! The text dialect's parser on arbitrary lines, with and without a current
//! room: it must never panic, and every name it hands on is valid.
#![no_main]

use chatroom_core::protocol::text::{self, TextInput};
use chatroom_core::protocol::{ClientMessage, Nickname, RoomName};
use libfuzzer_sys::fuzz_target;

fn check_name(room: &RoomName) {
    RoomName::new(room.as_str()).expect("a parsed room name is valid");
}

fn check_nick(nick: &Nickname) {
    Nickname::new(nick.as_str()).expect("a parsed nick is valid");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let line = String::from_utf8_lossy(rest);
    let lobby = RoomName::new("lobby").expect("valid literal");
    let room = (selector & 1 == 1).then_some(&lobby);
    match text::parse_line(&line, room) {
        Ok(TextInput::Switch(room)) => check_name(&room),
        Ok(TextInput::Request(message)) => match message {
            ClientMessage::Join { room, .. }
            | ClientMessage::Leave { room }
            | ClientMessage::Say { room, .. }
            | ClientMessage::Who { room } => check_name(&room),
            ClientMessage::Nick { nick } => check_nick(&nick),
            ClientMessage::Whisper { to, .. } => check_nick(&to),
            _ => {}
        },
        Ok(_) => {}
        Err(e) => {
            // Error messages are echoed to the client; they must not carry
            // control characters that could drive its terminal.
            let shown = e.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }
    let clean = text::sanitize(&line);
    assert!(!clean.chars().any(char::is_control));
});
