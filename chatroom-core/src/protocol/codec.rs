//! The newline-delimited JSON codec: one frame is one JSON object on one line.
//!
//! These are plain functions over byte slices. Splitting a stream into lines,
//! and bounding a line's length while it is read, is the transport's job
//! (`transport::framing`); this module sees one complete line at a time.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ProtocolError;

/// Encodes `frame` as one line: compact JSON followed by `\n`.
///
/// The result is a [`Bytes`], so one encoding can be shared by every
/// recipient of a room message without copying.
pub fn encode<T: Serialize>(frame: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(128).writer();
    // Serialising our own frame types into memory cannot fail: every map key
    // is a string and no Serialize impl here returns an error.
    serde_json::to_writer(&mut buf, frame).expect("frames always serialise");
    let mut buf = buf.into_inner();
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Encodes a server frame as one line, as [`encode`] does, the frames of a
/// `say` by hand (see `hot.rs`).
pub(crate) fn encode_server(frame: &super::ServerFrame) -> Bytes {
    super::hot::encode(frame).unwrap_or_else(|| encode(frame))
}

/// Appends `frame` as one line to `out`.
pub fn encode_into<T: Serialize>(frame: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, frame).expect("frames always serialise");
    out.push(b'\n');
}

/// Decodes one line (with or without its `\n` or `\r\n`) into a frame.
///
/// # Errors
/// [`ProtocolError::InvalidUtf8`] for bytes that are not UTF-8,
/// [`ProtocolError::InvalidName`] for a frame whose only fault is a bad
/// nickname or room name, and [`ProtocolError::Json`] for anything else that
/// is not a known frame with its fields.
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, ProtocolError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::InvalidUtf8)?;
    serde_json::from_str(text).map_err(|e| {
        // Name newtypes validate inside serde, which flattens their error into
        // a serde_json message. Recover the precise code for the client; the
        // prefix is the Display of ProtocolError::InvalidName.
        let msg = e.to_string();
        for kind in ["nick", "room"] {
            if let Some(rest) = msg
                .strip_prefix(kind)
                .and_then(|m| m.strip_prefix(" name "))
            {
                let reason = rest.split(" at line ").next().unwrap_or(rest).to_owned();
                return ProtocolError::InvalidName { kind, reason };
            }
        }
        ProtocolError::Json(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::*;

    fn room(s: &str) -> RoomName {
        RoomName::new(s).unwrap()
    }
    fn nick(s: &str) -> Nickname {
        Nickname::new(s).unwrap()
    }

    #[test]
    fn golden_client_frames() {
        let cases: Vec<(&str, ClientFrame)> = vec![
            (
                r#"{"type":"hello","version":1,"nick":"alice"}"#,
                ClientFrame::new(ClientMessage::Hello {
                    version: 1,
                    nick: Some(nick("alice")),
                    resume: Default::default(),
                }),
            ),
            (
                r#"{"ref":"1","type":"join","room":"lobby"}"#,
                ClientFrame::with_ref(
                    ClientMessage::Join {
                        room: room("lobby"),
                        key: None,
                        history: None,
                        after: None,
                    },
                    "1",
                ),
            ),
            (
                r#"{"type":"say","room":"lobby","text":"hi"}"#,
                ClientFrame::new(ClientMessage::Say {
                    room: room("lobby"),
                    text: "hi".into(),
                    action: false,
                }),
            ),
            (r#"{"type":"ping"}"#, ClientFrame::new(ClientMessage::Ping)),
        ];
        for (json, frame) in cases {
            assert_eq!(decode::<ClientFrame>(json.as_bytes()).unwrap(), frame);
            assert_eq!(&encode(&frame)[..], format!("{json}\n").as_bytes());
        }
    }

    #[test]
    fn golden_server_message() {
        let frame = ServerFrame::new(ServerMessage::Message {
            room: room("lobby"),
            id: 7,
            from: nick("bob"),
            text: "hi".into(),
            ts: 1700000000000,
            action: false,
        });
        assert_eq!(
            &encode(&frame)[..],
            &b"{\"type\":\"message\",\"room\":\"lobby\",\"id\":7,\"from\":\"bob\",\"text\":\"hi\",\"ts\":1700000000000}\n"[..]
        );
    }

    #[test]
    fn crlf_and_lf_are_stripped() {
        let a: ClientFrame = decode(b"{\"type\":\"ping\"}\r\n").unwrap();
        let b: ClientFrame = decode(b"{\"type\":\"ping\"}\n").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_inputs_have_typed_errors() {
        let e = decode::<ClientFrame>(b"{\"type\":\"say\",\"text\":\"\xff\"}").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadUtf8);
        let e = decode::<ClientFrame>(b"{not json").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame);
        let e = decode::<ClientFrame>(b"{\"type\":\"dance\"}").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame);
        let e = decode::<ClientFrame>(b"{\"type\":\"say\",\"room\":\"lobby\"}").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame);
        assert!(e.to_string().contains("text"), "{e}");
        let e = decode::<ClientFrame>(b"[1,2]").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame);
        let e = decode::<ClientFrame>(b"").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame);
    }

    #[test]
    fn bad_names_inside_frames_are_invalid_name() {
        let e = decode::<ClientFrame>(b"{\"type\":\"nick\",\"nick\":\"bad nick\"}").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidName, "{e}");
        let e = decode::<ClientFrame>(b"{\"type\":\"join\",\"room\":\"\\u001b[31m\"}").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidName, "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut s = String::from("{\"type\":\"say\",\"room\":\"a\",\"text\":\"x\",\"extra\":");
        s.push_str(&"[".repeat(100_000));
        let e = decode::<ClientFrame>(s.as_bytes()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadFrame);
    }
}
