//! A person on `nc`: the plain-text dialect over a blocking socket, lines
//! in and out, line endings kept as the server sent them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::line_conn::LineConn;

/// One text client.
#[derive(Debug)]
pub(crate) struct TextClient {
    conn: LineConn,
    /// When it connected: the greeting is due within `sniff_ms` of this.
    connected: Instant,
}

impl TextClient {
    /// Connects and sends nothing; each read may wait `wait`.
    pub(crate) fn connect(addr: SocketAddr, wait: Duration) -> Self {
        Self {
            conn: LineConn::connect(addr, wait),
            connected: Instant::now(),
        }
    }

    /// Connects, sends nothing, and reads up to the greeting; returns the
    /// client and the nick the greeting gave it.
    pub(crate) fn greeted(addr: SocketAddr, wait: Duration) -> (Self, String) {
        let mut client = Self::connect(addr, wait);
        let greeting = client.line_where(|l| l.starts_with("* welcome"));
        let nick = greeting
            .split("you are ")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .next()
            })
            .unwrap_or_else(|| panic!("the greeting names no one: {greeting:?}"))
            .to_owned();
        (client, nick)
    }

    /// How long since it connected.
    pub(crate) fn connected_for(&self) -> Duration {
        self.connected.elapsed()
    }

    /// The nick the server derives from this client's address.
    pub(crate) fn address_nick(&self) -> String {
        format!("127-0-0-1-{}", self.conn.local_addr().port())
    }

    /// Sends `line` and a newline.
    pub(crate) fn send(&mut self, line: &str) {
        self.conn.send_line(line);
    }

    /// Sends `bytes` as they are.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.conn
            .send_raw(bytes)
            .expect("write to the text client's socket");
    }

    /// The next line, with its line ending; fails after `limit`.
    pub(crate) fn line_within(&mut self, limit: Duration) -> String {
        self.conn.line_within(limit)
    }

    /// The first line from now on that satisfies `wanted`, with its line
    /// ending; fails after the client's wait.
    pub(crate) fn line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        self.conn.line_where(wanted)
    }

    /// The first line from now on that contains `needle`.
    pub(crate) fn line_with(&mut self, needle: &str) -> String {
        self.line_where(|l| l.contains(needle))
    }

    /// Fails unless the server closes the connection in time.
    pub(crate) fn expect_closed(&mut self) {
        self.conn.expect_closed();
    }
}
