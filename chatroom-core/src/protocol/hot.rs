//! The two frames every `say` makes, encoded by hand: the `message` its
//! room gets and the `ok` its sender gets.
//!
//! `ServerFrame` flattens its message into the frame, and serde serialises
//! a flattened enum through a map of unknown length, field by field: most
//! of the cost of encoding a message, which every `say` pays once per room
//! (docs/benchmarks.md). The bytes are exactly serde's (same field order,
//! strings and numbers written by serde_json itself); a property test
//! compares the two. Every other frame goes through serde.

use bytes::Bytes;
use serde::Serialize;

use super::{ServerFrame, ServerMessage};

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
        json(&mut out, reference);
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
            json(&mut out, room.as_str());
            out.extend_from_slice(br#","id":"#);
            json(&mut out, id);
            out.extend_from_slice(br#","from":"#);
            json(&mut out, from.as_str());
            out.extend_from_slice(br#","text":"#);
            json(&mut out, text);
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
                json(&mut out, room.as_str());
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::{Nickname, RoomName};

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9_-]{0,15}"
    }

    fn message() -> impl Strategy<Value = ServerMessage> {
        let said = (
            name(),
            any::<u64>(),
            name(),
            any::<String>(),
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

    #[test]
    fn other_frames_are_left_to_serde() {
        assert!(encode(&ServerFrame::new(ServerMessage::Pong)).is_none());
    }
}
