//! Property tests for the wire codec, the text dialect parser and the line
//! framer: every valid frame survives a round trip as exactly one line, and
//! no input, however hostile, makes the decoders panic.

use bytes::BytesMut;
use chatroom_core::protocol::{
    ClientFrame, ClientMessage, ErrorCode, HistoryEntry, MAX_REF_LEN, Nickname, Password, RoomInfo,
    RoomName, ServerFrame, ServerMessage, decode, encode, text,
};
use chatroom_core::transport::{Frame, LineFramer};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Few cases: the suite runs on two cores and must finish in seconds.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

const NAME_RE: &str = "[A-Za-z0-9_][A-Za-z0-9_-]{0,31}";

fn nick() -> impl Strategy<Value = Nickname> {
    NAME_RE.prop_map(|s| Nickname::new(s).expect("the regex only makes valid nicks"))
}

fn room() -> impl Strategy<Value = RoomName> {
    NAME_RE.prop_map(|s| RoomName::new(s).expect("the regex only makes valid rooms"))
}

/// Any string, biased towards non-ASCII and characters JSON must escape.
fn text_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\PC]{0,40}",
        "[a-z \"\\\\\n\r\t\u{0}\u{1b}\u{7f}\u{202e}\u{fffd}é🎉ü]{0,40}",
    ]
}

fn password() -> impl Strategy<Value = Password> {
    text_string().prop_map(Password::new)
}

/// A `ref` of at most MAX_REF_LEN bytes, any characters.
fn reference() -> impl Strategy<Value = Option<String>> {
    option::of(text_string().prop_map(|s| truncate_to_char_boundary(s, MAX_REF_LEN)))
}

fn truncate_to_char_boundary(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            any::<u32>(),
            option::of(nick()),
            prop::collection::btree_map(room(), any::<u64>(), 0..4),
            option::of(password())
        )
            .prop_map(|(version, nick, resume, password)| ClientMessage::Hello {
                version,
                nick,
                resume,
                password,
            }),
        password().prop_map(|password| ClientMessage::Register { password }),
        (nick(), password()).prop_map(|(nick, password)| ClientMessage::Login { nick, password }),
        (password(), password()).prop_map(|(old, new)| ClientMessage::SetPassword { old, new }),
        password().prop_map(|password| ClientMessage::DropAccount { password }),
        (room(), option::of(text_string()), option::of(any::<u32>())).prop_map(
            |(room, key, history)| ClientMessage::Join {
                room,
                key,
                history,
                after: None,
            }
        ),
        room().prop_map(|room| ClientMessage::Leave { room }),
        (room(), text_string(), any::<bool>())
            .prop_map(|(room, text, action)| ClientMessage::Say { room, text, action }),
        (nick(), text_string()).prop_map(|(to, text)| ClientMessage::Whisper { to, text }),
        nick().prop_map(|nick| ClientMessage::Nick { nick }),
        Just(ClientMessage::Rooms),
        room().prop_map(|room| ClientMessage::Who { room }),
        (
            room(),
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            option::of(any::<u32>())
        )
            .prop_map(|(room, before, after, limit)| ClientMessage::History {
                room,
                before,
                after,
                limit,
            }),
        Just(ClientMessage::Ping),
        Just(ClientMessage::Pong),
        option::of(text_string()).prop_map(|reason| ClientMessage::Quit { reason }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL)
}

fn history_entry() -> impl Strategy<Value = HistoryEntry> {
    (
        any::<u64>(),
        nick(),
        text_string(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(id, from, text, ts, action)| HistoryEntry {
            id,
            from,
            text,
            ts,
            action,
        })
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            any::<u32>(),
            nick(),
            text_string(),
            any::<usize>(),
            any::<usize>()
        )
            .prop_map(|(version, nick, server, max_line_len, max_text_len)| {
                ServerMessage::Welcome {
                    version,
                    nick,
                    server,
                    max_line_len,
                    max_text_len,
                }
            }),
        (
            room(),
            any::<u64>(),
            nick(),
            text_string(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(
                |(room, id, from, text, ts, action)| ServerMessage::Message {
                    room,
                    id,
                    from,
                    text,
                    ts,
                    action,
                }
            ),
        (nick(), nick(), text_string(), any::<u64>())
            .prop_map(|(from, to, text, ts)| ServerMessage::Private { from, to, text, ts }),
        (room(), nick()).prop_map(|(room, nick)| ServerMessage::Joined { room, nick }),
        (room(), nick(), option::of(text_string()))
            .prop_map(|(room, nick, reason)| ServerMessage::Left { room, nick, reason }),
        (nick(), nick()).prop_map(|(old, new)| ServerMessage::NickChanged { old, new }),
        vec(
            (room(), any::<usize>()).prop_map(|(name, members)| RoomInfo { name, members }),
            0..4
        )
        .prop_map(|rooms| ServerMessage::Rooms { rooms }),
        (room(), vec(nick(), 0..4)).prop_map(|(room, members)| ServerMessage::Members {
            room,
            members,
            last_id: None,
        }),
        (room(), vec(history_entry(), 0..4), any::<bool>()).prop_map(|(room, messages, more)| {
            ServerMessage::History {
                room,
                messages,
                more,
            }
        }),
        (option::of(room()), option::of(any::<u64>()))
            .prop_map(|(room, id)| ServerMessage::Ok { room, id }),
        (error_code(), text_string())
            .prop_map(|(code, message)| ServerMessage::Error { code, message }),
        nick().prop_map(|account| ServerMessage::LoggedIn { account }),
        Just(ServerMessage::Ping),
        Just(ServerMessage::Pong),
        text_string().prop_map(|reason| ServerMessage::Bye { reason }),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (reference(), client_message())
        .prop_map(|(reference, message)| ClientFrame { reference, message })
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    (reference(), server_message())
        .prop_map(|(reference, message)| ServerFrame { reference, message })
}

/// The encoding is one line: a single `\n`, at the end.
fn assert_one_line(bytes: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(bytes.last(), Some(&b'\n'));
    let newlines = bytes.iter().filter(|b| **b == b'\n').count();
    prop_assert_eq!(newlines, 1, "encoded: {:?}", String::from_utf8_lossy(bytes));
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn every_client_frame_round_trips_as_one_line(frame in client_frame()) {
        let bytes = encode(&frame);
        assert_one_line(&bytes)?;
        let back: ClientFrame = decode(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn every_server_frame_round_trips_as_one_line(frame in server_frame()) {
        let bytes = encode(&frame);
        assert_one_line(&bytes)?;
        let back: ServerFrame = decode(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in vec(any::<u8>(), 0..256)) {
        let _ = decode::<ClientFrame>(&bytes);
        let _ = decode::<ServerFrame>(&bytes);
        let line = String::from_utf8_lossy(&bytes);
        let current = RoomName::new("lobby").unwrap();
        let _ = text::parse_line(&line, Some(&current));
        let _ = text::parse_line(&line, None);
    }

    #[test]
    fn json_shaped_garbage_never_panics_the_decoders(
        line in "[{}\\[\\]\":,a-z0-9 \\\\-]{0,80}",
        frame in client_frame(),
        cut in any::<prop::sample::Index>(),
    ) {
        let _ = decode::<ClientFrame>(line.as_bytes());
        let _ = decode::<ServerFrame>(line.as_bytes());
        // A valid frame cut short anywhere is an error, never a panic.
        let bytes = encode(&frame);
        let prefix = &bytes[..cut.index(bytes.len())];
        let _ = decode::<ClientFrame>(prefix);
        let _ = decode::<ServerFrame>(prefix);
    }

    #[test]
    fn slash_commands_never_panic_the_text_parser(
        command in "/{1,2}[a-zA-Z]{0,8}",
        rest in "[ \t\r\na-zA-Z0-9#_\u{0}\u{1b}é-]{0,30}",
    ) {
        let line = format!("{command} {rest}");
        let current = RoomName::new("lobby").unwrap();
        let _ = text::parse_line(&line, Some(&current));
        let _ = text::parse_line(&line, None);
    }
}

/// Lines without `\n` (a `\r` or any other byte may appear), lengths up to
/// twice `max`, plus the chunk sizes to feed their concatenation in.
fn lines_and_chunks() -> impl Strategy<Value = (usize, Vec<Vec<u8>>, Vec<usize>)> {
    (0usize..=24).prop_flat_map(|max| {
        let byte = prop_oneof![
            4 => b'a'..=b'z',
            1 => Just(b'\r'),
            1 => any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
        ];
        (
            Just(max),
            vec(vec(byte, 0..=2 * max), 0..12),
            vec(1usize..=2 * max + 3, 1..40),
        )
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn line_framer_yields_each_line_or_too_long_in_order_whatever_the_chunking(
        (max, lines, chunk_sizes) in lines_and_chunks()
    ) {
        let mut stream = Vec::new();
        for line in &lines {
            stream.extend_from_slice(line);
            stream.push(b'\n');
        }
        let expected: Vec<Frame> = lines
            .iter()
            .map(|l| {
                if l.len() <= max {
                    Frame::Line(l.clone().into())
                } else {
                    Frame::TooLong { max }
                }
            })
            .collect();

        let mut framer = LineFramer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = &stream[..];
        let mut sizes = chunk_sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            buf.extend_from_slice(chunk);
            while let Some(frame) = framer.decode(&mut buf).unwrap() {
                out.push(frame);
                prop_assert!(
                    buf.len() <= max + 1 + n,
                    "buffer holds {} bytes, max {} chunk {}", buf.len(), max, n
                );
            }
            // A line that grew past the limit is reported at once, so
            // between reads only a possible valid line waits for its newline.
            prop_assert!(buf.len() <= max, "{} bytes wait, max {}", buf.len(), max);
        }
        // Every line ended with its newline, so nothing is left over.
        prop_assert_eq!(framer.decode_eof(&mut buf).unwrap(), None);
        prop_assert_eq!(out, expected);
    }
}
