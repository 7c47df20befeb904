//! The native dialect's decoder on arbitrary lines: it must never panic,
//! and whatever it accepts must survive a round trip through the encoder.
#![no_main]

use chatroom_core::protocol::{ClientFrame, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let Ok(frame) = decode::<ClientFrame>(line) else {
        return;
    };
    let encoded = encode(&frame);
    assert_eq!(encoded.last(), Some(&b'\n'));
    assert!(
        !encoded[..encoded.len() - 1].contains(&b'\n'),
        "an encoded frame is one line"
    );
    let again: ClientFrame = decode(&encoded).expect("an encoded frame decodes");
    assert_eq!(again, frame);
});
