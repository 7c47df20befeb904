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
    if let Some(frame) = plain_say(line) {
        return Some(frame);
    }
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

/// `line` as a `say` frame when it is one in its plainest form: an object
/// of the `say` fields alone, each once, with string values that hold no
/// escape and no control character, and only blanks between the tokens.
/// That is what clients send; it is read in one pass over the bytes, where
/// serde's derived reader spent about 1,900 instructions a line on
/// matching field names and checking each byte of the text
/// (docs/benchmarks.md). Anything else is `None` and goes to serde, so
/// what this takes reads exactly as serde reads it (a property test
/// compares them).
fn plain_say(line: &str) -> Option<ClientFrame> {
    let mut scan = Scan {
        line,
        bytes: line.as_bytes(),
        at: 0,
    };
    let mut kind = None;
    let mut room = None;
    let mut text = None;
    let mut reference = None;
    let mut action = None;
    scan.expect(b'{')?;
    loop {
        let key = scan.key()?;
        scan.expect(b':')?;
        let fresh = match key {
            b"type" => kind.replace(scan.string()?).is_none(),
            b"room" => room.replace(scan.string()?).is_none(),
            b"text" => text.replace(scan.string()?).is_none(),
            b"ref" => reference.replace(scan.string()?).is_none(),
            b"action" => action.replace(scan.boolean()?).is_none(),
            _ => return None,
        };
        if !fresh {
            return None;
        }
        match scan.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    scan.blanks();
    if scan.at != scan.bytes.len() || kind? != "say" {
        return None;
    }
    Some(ClientFrame {
        reference: reference.map(str::to_owned),
        message: ClientMessage::Say {
            room: RoomName::try_from(room?).ok()?,
            text: text?.to_owned(),
            action: action.unwrap_or(false),
        },
    })
}

/// Bytes of a string [`Scan::string`] looks through before it hands the
/// rest to memchr.
const SHORT: usize = 24;

/// A cursor over a line for [`plain_say`].
struct Scan<'a> {
    line: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    /// Skips the blanks JSON allows between tokens (a line holds no `\n`).
    fn blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not a blank.
    fn next(&mut self) -> Option<u8> {
        self.blanks();
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// One of the `say` fields' names, matched in place: a quoted name
    /// that is none of them (or is escaped) is `None`.
    fn key(&mut self) -> Option<&'static [u8]> {
        self.expect(b'"')?;
        let rest = &self.bytes[self.at..];
        let key: &'static [u8] = [&b"type"[..], b"room", b"text", b"ref", b"action"]
            .into_iter()
            .find(|key| rest.starts_with(key) && rest.get(key.len()) == Some(&b'"'))?;
        self.at += key.len() + 1;
        Some(key)
    }

    /// A string with nothing escaped and no control character in it.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = &self.bytes[self.at..];
        // Keys and names are short: looked for byte by byte, which costs
        // less than setting up a SIMD search; the text's end, with memchr.
        let head = rest.len().min(SHORT);
        let len = match rest[..head].iter().position(|&b| b == b'"') {
            Some(len) => len,
            None => head + memchr::memchr(b'"', &rest[head..])?,
        };
        let start = self.at;
        // Both ends are at ASCII quotes, so on character boundaries.
        let value = self.line.get(start..start + len)?;
        // `\` starts an escape and JSON forbids raw controls: both go to
        // serde (the value holds no `"`, so this is the encoder's check).
        if !is_plain(value) {
            return None;
        }
        self.at += len + 1;
        Some(value)
    }

    fn boolean(&mut self) -> Option<bool> {
        self.blanks();
        let rest = &self.bytes[self.at..];
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.at += len;
        Some(value)
    }
}

/// `frame` as one JSON line, or `None` when it is not one of the two.
pub(super) fn encode(frame: &ServerFrame) -> Option<Bytes> {
    // Sized to the byte when nothing needs escaping, which is most lines:
    // `Bytes` then takes the buffer as it is, where a buffer with room to
    // spare costs it a second allocation.
    let mut out = Vec::with_capacity(encoded_len(frame)?);
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

/// The length of [`encode`]'s line for `frame`, exact when its strings
/// need no escaping (a guess past that), or `None` for a frame it leaves
/// to serde.
fn encoded_len(frame: &ServerFrame) -> Option<usize> {
    let reference = frame
        .reference
        .as_ref()
        .map_or(0, |r| r#""ref":"#.len() + string_len(r) + 1);
    let body = match &frame.message {
        ServerMessage::Message {
            room,
            id,
            from,
            text,
            ts,
            action,
        } => {
            r#""type":"message","room":"#.len()
                + room.as_str().len()
                + 2
                + r#","id":"#.len()
                + digits(*id)
                + r#","from":"#.len()
                + from.as_str().len()
                + 2
                + r#","text":"#.len()
                + string_len(text)
                + r#","ts":"#.len()
                + digits(*ts)
                + if *action {
                    r#","action":true"#.len()
                } else {
                    0
                }
        }
        ServerMessage::Ok { room, id } => {
            r#""type":"ok""#.len()
                + room
                    .as_ref()
                    .map_or(0, |r| r#","room":"#.len() + r.as_str().len() + 2)
                + id.map_or(0, |id| r#","id":"#.len() + digits(id))
        }
        _ => return None,
    };
    Some("{".len() + reference + body + "}\n".len())
}

/// The decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The length of `s` as a JSON string with nothing to escape; a string
/// with escapes gets a little room to grow.
fn string_len(s: &str) -> usize {
    s.len() + 2 + if is_plain(s) { 0 } else { 16 }
}

/// True when serde_json writes `s` with no escape: no `"`, `\` or C0
/// control. One pass over the bytes, which the compiler vectorises.
fn is_plain(s: &str) -> bool {
    s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    })
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
    if is_plain(s) {
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
            // Sized to the byte when there is nothing to escape.
            let text = match &frame.message {
                ServerMessage::Message { text, .. } => text.as_str(),
                _ => "",
            };
            if is_plain(text) && frame.reference.as_deref().is_none_or(is_plain) {
                prop_assert_eq!(encoded_len(&frame), Some(by_hand.len()));
            }
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

    proptest! {
        /// Whatever the one-pass reader takes reads as serde's derived
        /// reader reads it, for well-formed `say`s and for any line.
        #[test]
        fn the_plain_reader_agrees_with_serde((line, _) in say_line(), other in any::<String>()) {
            for line in [line, other] {
                if let Some(plain) = plain_say(&line) {
                    let say: SayLine<'_> = serde_json::from_str(&line).unwrap();
                    prop_assert_eq!(say.kind, "say");
                    prop_assert_eq!(
                        plain,
                        ClientFrame {
                            reference: say.reference,
                            message: ClientMessage::Say { room: say.room, text: say.text, action: say.action },
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn what_clients_send_is_read_in_one_pass() {
        for (line, text, reference, action) in [
            (
                r#"{"type":"say","room":"lobby","text":"hi there"}"#,
                "hi there",
                None,
                false,
            ),
            (
                r#"{ "ref" : "7", "action":true, "text":"waves é ü", "room":"lobby", "type":"say" } "#,
                "waves é ü",
                Some("7"),
                true,
            ),
            (
                r#"{"type":"say","room":"lobby","text":"","action":false}"#,
                "",
                None,
                false,
            ),
        ] {
            let Some(frame) = plain_say(line) else {
                panic!("not taken: {line}")
            };
            assert_eq!(frame.reference.as_deref(), reference, "{line}");
            let ClientMessage::Say {
                room,
                text: said,
                action: acted,
            } = frame.message
            else {
                panic!()
            };
            assert_eq!(
                (room.as_str(), said.as_str(), acted),
                ("lobby", text, action),
                "{line}"
            );
        }
    }

    #[test]
    fn escapes_controls_nulls_and_strays_are_left_to_serde() {
        for line in [
            r#"{"type":"say","room":"lobby","text":"a \"quote\""}"#,
            "{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"tab\there\"}",
            r#"{"type":"say","room":"lobby","text":"hi","ref":null}"#,
            r#"{"type":"say","room":"lobby","text":"hi","action":1}"#,
            r#"{"type":"say","room":"lobby","text":"hi","action":truex}"#,
            r#"{"type":"say","room":"lobby","text":"hi",}"#,
            r#"{"type":"say","room":"lobby","text":"hi"}x"#,
            r#"{"type":"say","room":"lobby","text":"hi""#,
            r#"{"type":"say","room":"lobby","text":"hi"#,
            r#"{"type":"say","room":"lobby","room":"lobby","text":"hi"}"#,
            r#"{"type":"join","room":"lobby","text":"hi"}"#,
        ] {
            assert_eq!(plain_say(line), None, "{line}");
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
