//! The frames of a `say`, both ways, without serde's `flatten`: the
//! request is read, and the `message` its room gets and the `ok` its sender
//! gets are encoded, by hand.
//!
//! `ClientFrame` and `ServerFrame` flatten their message into the frame;
//! serde reads a flattened enum by buffering every field first, and writes
//! one through a map of unknown length, field by field: most of the cost of
//! decoding and encoding a message, which every `say` pays
//! (docs/benchmarks.md). What these functions produce is exactly what serde
//! produces (property tests compare the two); anything else, including
//! every malformed line, goes through serde, which also words the errors.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ClientFrame, ClientMessage, RoomName, ServerFrame, ServerMessage};

/// A `say` request's fields, read without buffering. A line with any
/// other field is left to the general decoder: it ignores unknown fields,
/// but only after buffering them, which refuses nesting too deep (the
/// abuse suite sends such a line); a line of these scalar fields alone
/// reads the same both ways.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SayLine<'a> {
    /// Borrowed: a `type` written with escapes fails here and is left to
    /// the general decoder.
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "ref", default)]
    reference: Option<String>,
    room: RoomName,
    text: String,
    #[serde(default)]
    action: bool,
}

/// `line` as a `say` frame, or `None` when it is not a well-formed one
/// (then the general decoder reads it, or says what is wrong with it).
pub(super) fn decode_say(line: &str) -> Option<ClientFrame> {
    let say: SayLine<'_> = serde_json::from_str(line).ok()?;
    (say.kind == "say").then_some(ClientFrame {
        reference: say.reference,
        message: ClientMessage::Say {
            room: say.room,
            text: say.text,
            action: say.action,
        },
    })
}

/// `frame` as one JSON line, or `None` when it is not one of the two.
pub(super) fn encode(frame: &ServerFrame) -> Option<Bytes> {
    let mut out = Vec::with_capacity(match &frame.message {
        ServerMessage::Message { text, .. } => 96 + text.len(),
        ServerMessage::Ok { .. } => 64,
        _ => return None,
    });
    out.push(b'{');
    if let Some(reference) = &frame.reference {
        out.extend_from_slice(br#""ref":"#);
        string(&mut out, reference);
        out.push(b',');
    }
    match &frame.message {
        ServerMessage::Message {
            room,
            id,
            from,
            text,
            ts,
            action,
        } => {
            out.extend_from_slice(br#""type":"message","room":"#);
            name(&mut out, room.as_str());
            out.extend_from_slice(br#","id":"#);
            json(&mut out, id);
            out.extend_from_slice(br#","from":"#);
            name(&mut out, from.as_str());
            out.extend_from_slice(br#","text":"#);
            string(&mut out, text);
            out.extend_from_slice(br#","ts":"#);
            json(&mut out, ts);
            if *action {
                out.extend_from_slice(br#","action":true"#);
            }
        }
        ServerMessage::Ok { room, id } => {
            out.extend_from_slice(br#""type":"ok""#);
            if let Some(room) = room {
                out.extend_from_slice(br#","room":"#);
                name(&mut out, room.as_str());
            }
            if let Some(id) = id {
                out.extend_from_slice(br#","id":"#);
                json(&mut out, id);
            }
        }
        _ => return None,
    }
    out.extend_from_slice(b"}\n");
    Some(Bytes::from(out))
}

/// Appends one JSON string or number as serde_json writes it.
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).expect("strings and numbers always serialise");
}

/// Appends a JSON string as serde_json writes it. Most chat text has
/// nothing to escape: that is checked in one pass over the bytes (which
/// the compiler vectorises) and the text copied as it is; serde's escaper
/// looks up every byte in a table and was most of encoding a message.
fn string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes `"`, `\` and the C0 controls, nothing else.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json(out, s);
    }
}

/// Appends a room name or nickname: their characters (letters, digits,
/// `_`, `-`) never need escaping.
fn name(out: &mut Vec<u8>, s: &str) {
    debug_assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::Nickname;

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9_-]{0,15}"
    }

    fn message() -> impl Strategy<Value = ServerMessage> {
        // Any Unicode, and the printable ASCII most chat is (with quotes and
        // backslashes now and then), which takes the unescaped path.
        let text = prop_oneof![any::<String>(), "[ -~]{0,40}"];
        let said = (
            name(),
            any::<u64>(),
            name(),
            text,
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(
                |(room, id, from, text, ts, action)| ServerMessage::Message {
                    room: RoomName::new(&room).unwrap(),
                    id,
                    from: Nickname::new(&from).unwrap(),
                    text,
                    ts,
                    action,
                },
            );
        let ok = (
            proptest::option::of(name()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(room, id)| ServerMessage::Ok {
                room: room.map(|r| RoomName::new(&r).unwrap()),
                id,
            });
        prop_oneof![said, ok]
    }

    proptest! {
        /// Byte for byte what serde writes, for any text (quotes, escapes,
        /// control characters, any Unicode), names, numbers and `ref`.
        #[test]
        fn the_hand_encoding_is_serdes(
            message in message(),
            reference in proptest::option::of(any::<String>()),
        ) {
            let frame = ServerFrame { reference, message };
            let by_hand = encode(&frame).expect("a message or an ok");
            prop_assert_eq!(by_hand, crate::protocol::codec::encode(&frame));
        }
    }

    /// A `say` line, and whether it has a field of no `say`.
    fn say_line() -> impl Strategy<Value = (String, bool)> {
        // Fields in any order, with and without `ref` and `action`, and an
        // unknown field now and then (which leaves the line to serde).
        (
            name(),
            any::<String>(),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<u32>()),
            any::<u64>(),
        )
            .prop_map(|(room, text, reference, action, extra, order)| {
                let mut fields = vec![
                    format!(r#""type":"say""#),
                    format!(r#""room":{}"#, serde_json::to_string(&room).unwrap()),
                    format!(r#""text":{}"#, serde_json::to_string(&text).unwrap()),
                ];
                if let Some(r) = reference {
                    fields.push(format!(r#""ref":{}"#, serde_json::to_string(&r).unwrap()));
                }
                if let Some(a) = action {
                    fields.push(format!(r#""action":{a}"#));
                }
                if let Some(x) = &extra {
                    fields.push(format!(r#""extra":{x}"#));
                }
                let n = fields.len() as u64;
                fields.rotate_left((order % n) as usize);
                if order % 3 == 0 {
                    let other = (order as usize / 3) % fields.len();
                    fields.swap(0, other);
                }
                (format!("{{{}}}", fields.join(",")), extra.is_some())
            })
    }

    proptest! {
        /// A well-formed `say` of its own fields reads as serde reads it;
        /// one with another field is left to serde.
        #[test]
        fn a_say_reads_as_serde_reads_it((line, extra) in say_line()) {
            let general: ClientFrame = crate::protocol::codec::decode(line.as_bytes()).unwrap();
            let expected = (!extra).then_some(general);
            prop_assert_eq!(decode_say(&line), expected);
        }

        /// Anything the fast path takes, serde takes the same way; what it
        /// does not take is left to serde.
        #[test]
        fn any_line_the_fast_path_takes_serde_takes_alike(line in any::<String>()) {
            if let Some(fast) = decode_say(&line) {
                let general: ClientFrame = crate::protocol::codec::decode(line.as_bytes()).unwrap();
                prop_assert_eq!(fast, general);
            }
        }
    }

    #[test]
    fn other_requests_and_odd_says_are_left_to_serde() {
        for line in [
            r#"{"type":"join","room":"lobby"}"#,
            r#"{"type":"s\u0061y","room":"lobby","text":"hi"}"#,
            r#"{"type":"say","room":"lobby","text":"hi","text":"again"}"#,
            r#"{"type":"say","room":"no way","text":"hi"}"#,
            r#"{"type":"say","room":"lobby","text":"hi"} trailing"#,
            r#"{"type":"say","room":"lobby"}"#,
            r#"{"type":"say","room":"lobby","text":"x","extra":[[[[[[[[]]]]]]]]}"#,
        ] {
            assert_eq!(decode_say(line), None, "{line}");
        }
    }

    #[test]
    fn other_frames_are_left_to_serde() {
        assert!(encode(&ServerFrame::new(ServerMessage::Pong)).is_none());
    }
}
