//! An async line client over plain TCP, below the client API: it writes
//! raw bytes, text lines or native frames, and reads each line with a
//! deadline, so that tests can say exactly what goes on the wire.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// How long a [`Peer`] waits for a connection or for one expected line
/// before the test fails, unless [`Peer::set_wait`] says otherwise. Long
/// enough for a debug build on a loaded 2-core machine running hundreds
/// of connections (the abuse suite); a passing test never waits it out.
pub const WAIT: Duration = Duration::from_secs(10);

/// One raw TCP client that reads and writes lines, in either dialect.
///
/// Every read waits at most [`Peer::wait`] and panics after it; failure
/// messages name the peer ([`Peer::name`]).
#[derive(Debug)]
pub struct Peer {
    lines: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Who this is in failure messages.
    name: String,
    /// The nick the server gave it, once greeted.
    nick: String,
    /// How long one read may take.
    wait: Duration,
}

impl Peer {
    /// A peer on a connected `stream` (one with unusual socket options,
    /// say), called `name` in failure messages.
    pub fn from_stream(stream: TcpStream, name: &str) -> Self {
        // Each write goes out as the test made it: a line split in two
        // writes arrives split.
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Self {
            lines: BufReader::new(r),
            writer: w,
            name: name.to_owned(),
            nick: String::new(),
            wait: WAIT,
        }
    }

    /// Connects to `addr` and sends nothing.
    ///
    /// # Panics
    /// When the connection fails or takes longer than [`WAIT`].
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Self::from_stream(stream, "raw")
    }

    /// Connects to `addr` from the loopback address `source` (any of
    /// 127.0.0.0/8), for tests of per-address limits.
    ///
    /// # Errors
    /// When `source` cannot be bound or the connection fails.
    pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        Ok(Self::from_stream(socket.connect(addr).await?, "raw"))
    }

    /// A native client past its handshake as `nick`.
    pub async fn native(addr: SocketAddr, nick: &str) -> Self {
        let mut peer = Self::connect(addr).await;
        peer.hello(nick).await;
        peer
    }

    /// A native client past its handshake as `nick` and in `room`, with
    /// the join's replies read.
    pub async fn native_in(addr: SocketAddr, nick: &str, room: &str) -> Self {
        let mut peer = Self::native(addr, nick).await;
        peer.join(room).await;
        peer
    }

    /// A text client, greeted and in the default room; its nick is read
    /// from the welcome line.
    ///
    /// # Panics
    /// When the greeting is not a welcome followed by the join of
    /// `#lobby`.
    pub async fn text(addr: SocketAddr) -> Self {
        let mut peer = Self::connect(addr).await;
        let welcome = peer.line().await;
        let nick = welcome
            .split("you are ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no nick in {welcome:?}"))
            .to_owned();
        let joined = peer.line().await;
        assert_eq!(joined, format!("* {nick} joined #lobby"));
        peer.name.clone_from(&nick);
        peer.nick = nick;
        peer
    }

    /// Says hello as `nick` and expects a welcome; [`Peer::nick`] is then
    /// the nick the welcome gives.
    ///
    /// # Panics
    /// When the reply is not a welcome.
    pub async fn hello(&mut self, nick: &str) {
        self.name = nick.to_owned();
        self.send_json(json!({"type": "hello", "version": 1, "nick": nick}))
            .await;
        let welcome = self.frame().await;
        assert_eq!(welcome["type"], "welcome", "{}: {welcome}", self.name);
        welcome["nick"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no nick in {welcome}", self.name))
            .clone_into(&mut self.nick);
    }

    /// Joins `room` (with the default backlog) and reads up to `members`.
    pub async fn join(&mut self, room: &str) {
        self.send_json(json!({"type": "join", "room": room})).await;
        self.until_type("members").await;
    }

    /// Who this is in failure messages: its nick once greeted, `raw` for
    /// a bare connection, unless [`Peer::set_name`] said otherwise.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names this peer in failure messages.
    pub fn set_name(&mut self, name: &str) {
        name.clone_into(&mut self.name);
    }

    /// The nick the server gave this peer (see [`Peer::hello`] and
    /// [`Peer::text`]); empty before.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// How long one read may take before the test fails.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Sets how long one read may take, for a test that expects a slow
    /// reply (or wants a hang caught sooner).
    pub fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
    }

    /// Writes `bytes` as they are.
    ///
    /// # Errors
    /// When the write fails (the server closed, say).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Writes `bytes` as they are.
    ///
    /// # Panics
    /// When the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        write_or_panic(&mut self.writer, &self.name, bytes).await;
    }

    /// Writes `line` and a newline.
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// Writes one frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send(&value.to_string()).await;
    }

    /// The next line without its line ending, or `None` at EOF or on a
    /// read error (a reset counts as a close).
    ///
    /// # Panics
    /// When nothing arrives within [`Peer::wait`].
    pub async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(self.wait, self.lines.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("{}: no line within {:?}", self.name, self.wait))
            .ok()?;
        (n > 0).then(|| line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The next line without its line ending.
    ///
    /// # Panics
    /// On timeout, or when the connection closes first.
    pub async fn line(&mut self) -> String {
        match self.try_line().await {
            Some(line) => line,
            None => panic!("{}: connection closed", self.name),
        }
    }

    /// The next line as a frame.
    ///
    /// # Panics
    /// On timeout, on close, or when the line is not JSON.
    pub async fn frame(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name))
    }

    /// Skips frames until one of type `kind`, and returns it.
    pub async fn until_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.frame().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Skips lines until one equal to `expected`.
    pub async fn until_line(&mut self, expected: &str) {
        self.until_line_where(|line| line == expected).await;
    }

    /// Skips lines until one that satisfies `wanted`, and returns it.
    pub async fn until_line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line().await;
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Every line until the server closes the connection.
    pub async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.try_line().await {
            seen.push(line);
        }
        seen
    }

    /// Asserts that nothing (not even a close) arrives for `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) {
        let mut line = String::new();
        if let Ok(n) = tokio::time::timeout(quiet, self.lines.read_line(&mut line)).await {
            panic!("{}: expected silence, got {n:?} {line:?}", self.name);
        }
    }

    /// Keeps only the writing half; what arrives is read and dropped in the
    /// background, so the server never sees this peer as a slow reader.
    pub fn into_talker(self) -> Talker {
        let mut lines = self.lines;
        tokio::spawn(async move {
            let mut line = String::new();
            while lines.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        Talker {
            writer: self.writer,
            name: self.name,
        }
    }

    /// The two halves, for a test that reads and writes below lines (both
    /// at once, say); dropping the writing half closes this side (FIN).
    pub fn into_parts(self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.lines, self.writer)
    }
}

/// A peer that only writes (see [`Peer::into_talker`]).
#[derive(Debug)]
pub struct Talker {
    writer: OwnedWriteHalf,
    name: String,
}

impl Talker {
    /// Writes `bytes` as they are.
    ///
    /// # Panics
    /// When the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        write_or_panic(&mut self.writer, &self.name, bytes).await;
    }

    /// Writes one frame and a newline.
    pub async fn send_json(&mut self, value: Value) {
        self.send_raw(format!("{value}\n").as_bytes()).await;
    }
}

/// Writes all of `bytes`; a failure fails the test, naming the peer.
async fn write_or_panic(writer: &mut OwnedWriteHalf, name: &str, bytes: &[u8]) {
    writer
        .write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("{name}: write failed: {e}"));
}
