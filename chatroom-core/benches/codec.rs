//! The codec per frame: decoding a client's `say` line, encoding the
//! `message` frame every member of a room receives, and splitting a read
//! buffer into lines.
//!
//! ```text
//! cargo bench -p chatroom-core --bench codec
//! ```
//!
//! Under `cargo test --benches` each benchmark runs once, as a test.

use bytes::BytesMut;
use chatroom_core::protocol::{
    self, ClientFrame, ClientMessage, Nickname, RoomName, ServerFrame, ServerMessage,
};
use chatroom_core::transport::{Frame, LineFramer};
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use tokio_util::codec::Decoder;

fn main() {
    divan::main();
}

const SAY: &[u8] = br#"{"ref":"17","type":"say","room":"lobby","text":"~B0.123.456789~xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

fn message(text_len: usize) -> ServerFrame {
    ServerFrame::new(ServerMessage::Message {
        room: RoomName::new("lobby").unwrap(),
        id: 123_456,
        from: Nickname::new("alice").unwrap(),
        text: "x".repeat(text_len),
        ts: 1_700_000_000_000,
        action: false,
    })
}

#[divan::bench]
fn decode_say(bencher: Bencher<'_, '_>) {
    bencher.counter(BytesCount::new(SAY.len())).bench(|| {
        let frame: ClientFrame = protocol::decode(divan::black_box(SAY)).unwrap();
        assert!(matches!(frame.message, ClientMessage::Say { .. }));
        frame
    });
}

#[divan::bench(args = [64, 1024])]
fn encode_message(bencher: Bencher<'_, '_>, text_len: usize) {
    let frame = message(text_len);
    bencher.bench(|| protocol::encode(divan::black_box(&frame)));
}

#[divan::bench]
fn frame_lines(bencher: Bencher<'_, '_>) {
    const LINES: usize = 64;
    let mut input = Vec::new();
    for _ in 0..LINES {
        input.extend_from_slice(SAY);
        input.push(b'\n');
    }
    bencher
        .counter(ItemsCount::new(LINES))
        .with_inputs(|| BytesMut::from(&input[..]))
        .bench_local_refs(|buf| {
            let mut framer = LineFramer::new(protocol::DEFAULT_MAX_LINE_LEN);
            let mut n = 0;
            while let Some(Frame::Line(_)) = framer.decode(buf).unwrap() {
                n += 1;
            }
            assert_eq!(n, LINES);
        });
}
