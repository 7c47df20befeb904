//! A native-dialect (JSON lines) client over a blocking socket: hello, any
//! line or frame out, the next frame in with a deadline, and waits for the
//! frame a test is after.

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::line_conn::LineConn;

/// How long one read waits unless a test says otherwise.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A `hello` frame for `nick`.
pub(crate) fn hello_frame(nick: &str) -> Value {
    json!({"type": "hello", "version": 1, "nick": nick})
}

/// One native client.
#[derive(Debug)]
pub(crate) struct JsonClient {
    conn: LineConn,
}

impl JsonClient {
    /// Connects without saying anything; reads wait [`DEFAULT_WAIT`].
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        Self::connect_within(addr, DEFAULT_WAIT)
    }

    /// Connects without saying anything; reads wait `wait`.
    pub(crate) fn connect_within(addr: SocketAddr, wait: Duration) -> Self {
        Self {
            conn: LineConn::connect(addr, wait),
        }
    }

    /// As [`JsonClient::open`], from the local address `from` (see
    /// [`LineConn::connect_from`]).
    pub(crate) fn open_from(
        addr: SocketAddr,
        from: IpAddr,
        hello: &Value,
        wait: Duration,
    ) -> (Self, Value) {
        let mut client = Self {
            conn: LineConn::connect_from(addr, from, wait),
        };
        client.send(hello);
        let first = client.next();
        (client, first)
    }

    /// Connects, sends `hello` (any first frame), and returns the client
    /// with the first frame it got back, whatever it is.
    pub(crate) fn open(addr: SocketAddr, hello: &Value, wait: Duration) -> (Self, Value) {
        let mut client = Self::connect_within(addr, wait);
        client.send(hello);
        let first = client.next();
        (client, first)
    }

    /// Connects and says hello as `nick`; returns the client and its
    /// `welcome`.
    ///
    /// # Panics
    /// When the first frame back is not a `welcome`.
    pub(crate) fn hello(addr: SocketAddr, nick: &str, wait: Duration) -> (Self, Value) {
        let (client, welcome) = Self::open(addr, &hello_frame(nick), wait);
        assert_eq!(welcome["type"], "welcome", "{nick}: {welcome}");
        (client, welcome)
    }

    /// Connects, says hello as `nick` and joins `room` with no backlog.
    pub(crate) fn hello_in(addr: SocketAddr, nick: &str, room: &str, wait: Duration) -> Self {
        let (mut client, _) = Self::hello(addr, nick, wait);
        client.join(room);
        client
    }

    /// The connection underneath, for reads and writes below frames.
    pub(crate) fn conn(&mut self) -> &mut LineConn {
        &mut self.conn
    }

    /// Sends one frame.
    pub(crate) fn send(&mut self, frame: &Value) {
        self.conn.send_line(frame);
    }

    /// Sends `line` as it is, with a newline.
    pub(crate) fn send_line(&mut self, line: &str) {
        self.conn.send_line(line);
    }

    /// The next frame, or `None` once the server has closed the connection.
    ///
    /// # Panics
    /// When nothing arrives in time, or the line is not JSON.
    pub(crate) fn try_next(&mut self) -> Option<Value> {
        let line = self.conn.try_line()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
    }

    /// The next frame.
    ///
    /// # Panics
    /// When nothing arrives in time, or the server closed the connection.
    pub(crate) fn next(&mut self) -> Value {
        self.try_next()
            .unwrap_or_else(|| panic!("the server closed the connection"))
    }

    /// The first frame from now on that satisfies `wanted`.
    pub(crate) fn next_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.next();
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// The next frame of type `kind`; an `error` frame on the way fails the
    /// test (unless `error` is what is asked for).
    pub(crate) fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next();
            if frame["type"] == kind {
                return frame;
            }
            assert_ne!(frame["type"], "error", "waiting for {kind}: {frame}");
        }
    }

    /// Joins `room` with no backlog; returns the room's last id.
    pub(crate) fn join(&mut self, room: &str) -> u64 {
        self.send(&json!({"type": "join", "room": room, "history": 0}));
        self.next_of("members")["last_id"]
            .as_u64()
            .expect("a last_id in members")
    }

    /// Says `text` in `room`; returns the id of its `ok`.
    pub(crate) fn say(&mut self, room: &str, text: &str) -> u64 {
        self.send(&json!({"type": "say", "room": room, "text": text}));
        self.next_of("ok")["id"].as_u64().expect("an id in the ok")
    }

    /// Says `text` and returns the `ok` or `error` it is answered with.
    pub(crate) fn try_say(&mut self, room: &str, text: &str) -> Value {
        self.try_say_hearing(room, text, &mut Vec::new())
    }

    /// As [`JsonClient::try_say`], keeping the ids of the messages that
    /// arrive before the answer in `heard`.
    pub(crate) fn try_say_hearing(
        &mut self,
        room: &str,
        text: &str,
        heard: &mut Vec<u64>,
    ) -> Value {
        self.send(&json!({"type": "say", "room": room, "text": text}));
        loop {
            let frame = self.next();
            if frame["type"] == "ok" || frame["type"] == "error" {
                return frame;
            }
            if frame["type"] == "message" {
                heard.push(frame["id"].as_u64().expect("an id in a message"));
            }
        }
    }

    /// Asks `who` for `room` until it lists exactly `expected` (in the
    /// server's order, sorted ignoring case).
    ///
    /// # Panics
    /// When it still does not after `limit`.
    pub(crate) fn wait_for_members(&mut self, room: &str, expected: &[&str], limit: Duration) {
        let started = Instant::now();
        loop {
            self.send(&json!({"type": "who", "room": room}));
            let members = self.next_of("members")["members"].clone();
            if members == json!(expected) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "who #{room}: {members}, not {expected:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails unless the server closes the connection in time.
    pub(crate) fn expect_closed(&mut self) {
        self.conn.expect_closed();
    }
}
