//! What a connection's first bytes say it is.
//!
//! The chat port serves three kinds of peer: a program speaking the native
//! JSON dialect, a person (or the seed's client) speaking text, and a
//! browser asking for the page or a WebSocket. This module only tells them
//! apart; it hands the connection to neither, so the web side and the chat
//! side both start from here without knowing each other.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use tokio_util::codec::FramedRead;

use crate::transport::{BoxReader, Frame, LineFramer};

use super::super::writer::Dialect;

/// A connection's reader: lines, each at most the line limit.
pub(super) type Reader = FramedRead<BoxReader, LineFramer>;

/// What a connection's first bytes say it is.
#[derive(Debug)]
pub(super) enum Opening {
    /// A chat client, in this dialect, with the first line if one came.
    Chat(Dialect, Option<Frame>),
    /// An HTTP request (a browser): the request line read so far, with its
    /// line break.
    Http(Bytes),
    /// The peer closed before saying anything.
    Closed,
}

/// How long a connection may stay silent before it is taken for a text
/// client: `short`, or `long` for a connection that sent nothing at all
/// in `short` and `is_browser` says comes from a browser's address.
pub(super) struct Window<F> {
    pub(super) short: Duration,
    pub(super) long: Duration,
    pub(super) is_browser: F,
}

/// Decides the dialect from the first bytes, as docs/protocol.md states: a
/// `{` first is a native client; anything else, or silence for the sniff
/// window, is a person or the seed's client speaking text.
pub(super) async fn sniff(reader: &mut Reader, window: Window<impl FnOnce() -> bool>) -> Opening {
    let mut first = tokio::time::timeout(window.short, reader.next()).await;
    // Asked only now, when the short window is over: a browser's first
    // request, on another connection opened with this one, has come by
    // then.
    if first.is_err()
        && reader.read_buffer().is_empty()
        && window.long > window.short
        && (window.is_browser)()
    {
        first = tokio::time::timeout(window.long - window.short, reader.next()).await;
    }
    let first = match first {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(_)) | None) => return Opening::Closed,
        Err(_) => None,
    };
    if let Some(Frame::Line(line)) = &first
        && is_http_request_line(line)
    {
        let mut bytes = BytesMut::from(&line[..]);
        bytes.extend_from_slice(b"\n");
        return Opening::Http(bytes.freeze());
    }
    let first_byte = match &first {
        Some(Frame::Line(line)) => line.first().copied(),
        Some(Frame::TooLong { .. }) => None,
        None => reader.read_buffer().first().copied(),
    };
    let dialect = if first_byte == Some(b'{') {
        Dialect::Native
    } else {
        Dialect::Text
    };
    Opening::Chat(dialect, first)
}

/// `GET /path HTTP/1.x`: a browser, not a person typing.
fn is_http_request_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.starts_with(b"GET /") && (line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_request_line_is_http() {
        assert!(is_http_request_line(b"GET / HTTP/1.1\r"));
        assert!(is_http_request_line(b"GET /ws HTTP/1.0"));
        assert!(!is_http_request_line(b"GET / is what I typed"));
        assert!(!is_http_request_line(b"POST / HTTP/1.1"));
        assert!(!is_http_request_line(b"hello"));
    }
}
