//! The line framer against a plain model of the framing rule, fed in
//! arbitrary chunks: same frames in the same order, and never more than one
//! line's worth of bytes buffered.
#![no_main]

use bytes::BytesMut;
use chatroom_core::transport::{Frame, LineFramer};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// The rule in docs/protocol.md, written the obvious way over the whole
/// input: lines up to `max` bytes pass, longer ones become one `TooLong`,
/// and a last line without a newline still counts unless it was too long.
fn model(input: &[u8], max: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut parts = input.split(|b| *b == b'\n').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if last && part.is_empty() {
            break;
        }
        if part.len() > max {
            out.push(Frame::TooLong { max });
        } else {
            out.push(Frame::Line(bytes::Bytes::copy_from_slice(part)));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first byte picks the limit, the second the chunk sizes.
    let max = usize::from(data[0] % 64) + 1;
    let chunk_seed = usize::from(data[1]);
    let input = &data[2..];

    let mut framer = LineFramer::new(max);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut at = 0;
    let mut round = 0;
    while at < input.len() {
        let size = 1 + (chunk_seed + round * 7) % 97;
        let end = (at + size).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        round += 1;
        while let Some(frame) = framer.decode(&mut buf).expect("framing never fails") {
            got.push(frame);
        }
        assert!(
            buf.len() <= max + 1,
            "{} bytes buffered with a limit of {max}",
            buf.len()
        );
    }
    while let Some(frame) = framer.decode_eof(&mut buf).expect("framing never fails") {
        got.push(frame);
    }
    assert_eq!(got, model(input, max));
});
