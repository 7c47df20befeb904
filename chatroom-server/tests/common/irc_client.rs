//! An IRC client written for the tests: raw lines over a blocking socket,
//! each read with a deadline, so a test fails instead of hanging.

use std::net::SocketAddr;
use std::time::Duration;

use super::line_conn::LineConn;
use super::server::Server;

/// One IRC connection.
#[derive(Debug)]
pub(crate) struct IrcClient {
    conn: LineConn,
}

/// The IRC address of a server started with `irc_listen`: its log's
/// `listening … dialect=irc` line.
pub(crate) fn irc_addr(server: &mut Server) -> SocketAddr {
    let line = server.wait_for_log("dialect=irc", Duration::from_secs(10));
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    addr.parse().expect("a socket address after addr=")
}

impl IrcClient {
    /// Connects without saying anything; each read may wait `wait`.
    pub(crate) fn connect(addr: SocketAddr, wait: Duration) -> Self {
        Self {
            conn: LineConn::connect(addr, wait),
        }
    }

    /// Connects and registers as `nick`; returns once the greeting has
    /// ended (`422`, no MOTD).
    pub(crate) fn registered(addr: SocketAddr, nick: &str, wait: Duration) -> Self {
        let mut client = Self::connect(addr, wait);
        client.send(&format!("NICK {nick}"));
        client.send(&format!("USER {nick} 0 * :{nick} tester"));
        client.expect(" 001 ");
        client.expect(" 422 ");
        client
    }

    /// Registers, joins `channel` and reads up to the end of its names.
    pub(crate) fn joined(addr: SocketAddr, nick: &str, channel: &str, wait: Duration) -> Self {
        let mut client = Self::registered(addr, nick, wait);
        client.join(channel);
        client
    }

    /// Joins `channel` and reads up to the end of its names.
    pub(crate) fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}"));
        self.expect(" 366 ");
    }

    /// Sends `line` with `\r\n`.
    pub(crate) fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Sends `bytes` as they are.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.send_raw(bytes).expect("write to the irc socket");
    }

    /// The next line, which must end in `\r\n`, without it.
    pub(crate) fn line(&mut self) -> String {
        let line = self.conn.line_within(self.conn.wait());
        check_line(&line);
        line.trim_end_matches("\r\n").to_owned()
    }

    /// The next line, or `None` once the server closed the connection.
    pub(crate) fn try_line(&mut self) -> Option<String> {
        let line = self.conn.try_line()?;
        check_line(&line);
        Some(line.trim_end_matches("\r\n").to_owned())
    }

    /// The first line from now on that contains `needle`; every line on
    /// the way is checked to be well formed.
    pub(crate) fn expect(&mut self, needle: &str) -> String {
        loop {
            let line = self.line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every line up to (and including) the first that contains `needle`.
    pub(crate) fn lines_until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.contains(needle);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Reads until the server closes the connection; returns what came.
    pub(crate) fn until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.try_line() {
            lines.push(line);
        }
        lines
    }
}

/// A server line: `\r\n`-terminated, at most 512 bytes without its tags,
/// no stray `\r`, and `:source COMMAND …` after the tags.
fn check_line(line: &str) {
    let body = line
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("line without CRLF: {line:?}"));
    assert!(!body.contains(['\r', '\n', '\0']), "stray break: {line:?}");
    let untagged = match body.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
        None => body,
    };
    assert!(untagged.len() + 2 <= 512, "line too long: {line:?}");
    assert!(untagged.starts_with(':'), "no source: {line:?}");
    let command = untagged.split(' ').nth(1).unwrap_or("");
    assert!(
        !command.is_empty()
            && (command.chars().all(|c| c.is_ascii_uppercase())
                || (command.len() == 3 && command.chars().all(|c| c.is_ascii_digit()))),
        "bad command in {line:?}"
    );
}
