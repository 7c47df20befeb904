//! Line framing with a length limit enforced while reading.
//!
//! [`LineFramer`] is a [`Decoder`] that splits a byte stream at `\n`. It never
//! holds more than `max_len + 1` bytes of one line: when a line grows past the
//! limit it yields [`Frame::TooLong`] at once and then discards bytes up to
//! the next `\n`, so a peer that sends gigabytes without a newline costs a
//! bounded buffer, and the stream stays usable after the offending line.
//!
//! Bad lines are items, not stream errors: tokio-util ends a framed stream
//! after its first error, and the session wants to answer and carry on.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// One item from the framed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A complete line, without its `\n` (a trailing `\r` is kept; the
    /// protocol layer strips it).
    Line(Bytes),
    /// A line longer than the limit was dropped.
    TooLong {
        /// The limit, in bytes before the newline.
        max: usize,
    },
}

/// Splits a stream into lines of at most `max_len` bytes (not counting `\n`).
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_len: usize,
    /// How far the current buffer has been searched for `\n`, so that a line
    /// arriving in many small reads is scanned once, not once per read.
    scanned: usize,
    /// True while dropping the rest of an over-long line.
    discarding: bool,
}

impl LineFramer {
    /// A framer that accepts lines of up to `max_len` bytes before the `\n`.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
            discarding: false,
        }
    }

    /// The limit, in bytes before the newline.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Decoder for LineFramer {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            if self.discarding {
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                        self.scanned = 0;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // A line of exactly max_len bytes needs max_len + 1 with its '\n'.
            let window = buf.len().min(self.max_len + 1);
            if let Some(offset) = buf[self.scanned..window].iter().position(|b| *b == b'\n') {
                let end = self.scanned + offset;
                let mut line = buf.split_to(end + 1);
                line.truncate(end);
                self.scanned = 0;
                return Ok(Some(Frame::Line(line.freeze())));
            }
            if buf.len() > self.max_len {
                self.discarding = true;
                self.scanned = 0;
                return Ok(Some(Frame::TooLong { max: self.max_len }));
            }
            self.scanned = buf.len();
            // Ask for no more than the rest of one line, so a flood is never
            // buffered beyond the limit; and ask for nothing while the
            // buffer is empty, so an idle connection keeps the small buffer
            // it started with. (Reserving here unconditionally gave every
            // connection an 8 KiB buffer after its first line: most of an
            // idle connection's memory.)
            if !buf.is_empty() {
                buf.reserve((self.max_len + 1 - buf.len()).min(8 * 1024));
            }
            return Ok(None);
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A last line without its newline still counts: `printf 'hi' | nc`.
        if self.discarding || buf.is_empty() {
            buf.clear();
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(Frame::Line(buf.split().freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut LineFramer, buf: &mut BytesMut, bytes: &[u8]) -> Vec<Frame> {
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(f) = framer.decode(buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn a_line_split_across_reads_is_one_frame() {
        let mut f = LineFramer::new(64);
        let mut buf = BytesMut::new();
        assert!(feed(&mut f, &mut buf, b"hel").is_empty());
        assert!(feed(&mut f, &mut buf, b"lo wo").is_empty());
        assert_eq!(feed(&mut f, &mut buf, b"rld\n"), vec![line("hello world")]);
    }

    #[test]
    fn several_lines_in_one_read_are_several_frames() {
        let mut f = LineFramer::new(64);
        let mut buf = BytesMut::new();
        assert_eq!(
            feed(&mut f, &mut buf, b"a\nbb\r\nccc\nd"),
            vec![line("a"), line("bb\r"), line("ccc")]
        );
        assert_eq!(feed(&mut f, &mut buf, b"\n"), vec![line("d")]);
    }

    #[test]
    fn a_line_at_the_limit_passes_and_one_byte_over_is_refused() {
        let mut f = LineFramer::new(8);
        let mut buf = BytesMut::new();
        assert_eq!(
            feed(&mut f, &mut buf, b"12345678\n"),
            vec![line("12345678")]
        );
        assert_eq!(
            feed(&mut f, &mut buf, b"123456789\nok\n"),
            vec![Frame::TooLong { max: 8 }, line("ok")]
        );
    }

    #[test]
    fn a_flood_without_newline_is_never_buffered() {
        let mut f = LineFramer::new(16);
        let mut buf = BytesMut::new();
        let out = feed(&mut f, &mut buf, &[b'x'; 100]);
        assert_eq!(out, vec![Frame::TooLong { max: 16 }]);
        assert!(buf.is_empty());
        for _ in 0..1000 {
            assert!(feed(&mut f, &mut buf, &[b'x'; 1000]).is_empty());
            assert!(buf.is_empty());
        }
        assert_eq!(feed(&mut f, &mut buf, b"xx\nnext\n"), vec![line("next")]);
    }

    #[test]
    fn eof_yields_the_unterminated_last_line() {
        let mut f = LineFramer::new(16);
        let mut buf = BytesMut::from(&b"tail"[..]);
        assert_eq!(f.decode_eof(&mut buf).unwrap(), Some(line("tail")));
        assert_eq!(f.decode_eof(&mut buf).unwrap(), None);
    }
}
