//! An async (tokio) line client, for the cases that drive hundreds of
//! connections at once: raw bytes, text lines or native frames, each read
//! with a deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// The longest any single expected line may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// One raw TCP client that reads and writes lines.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The reading half, for cases that read below lines.
    pub(crate) lines: BufReader<OwnedReadHalf>,
    /// The writing half, for cases that write below lines.
    pub(crate) writer: OwnedWriteHalf,
    /// Who this is in failure messages.
    pub(crate) name: String,
}

impl Peer {
    /// A peer on a connected `stream`.
    pub(crate) fn from_stream(stream: TcpStream, name: &str) -> Self {
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Self {
            lines: BufReader::new(r),
            writer: w,
            name: name.to_owned(),
        }
    }

    /// Connects and sends nothing.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Self::from_stream(stream, "raw")
    }

    /// Connects from the loopback address `source` (any of 127.0.0.0/8).
    pub(crate) async fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        Ok(Self::from_stream(socket.connect(addr).await?, "raw"))
    }

    /// A native client past its handshake as `nick`.
    pub(crate) async fn native(addr: SocketAddr, nick: &str) -> Self {
        let mut peer = Self::connect(addr).await;
        peer.hello(nick).await;
        peer
    }

    /// Says hello as `nick` and expects a welcome.
    pub(crate) async fn hello(&mut self, nick: &str) {
        self.name = nick.to_owned();
        self.send_json(json!({"type": "hello", "version": 1, "nick": nick}))
            .await;
        let welcome = self.frame().await;
        assert_eq!(welcome["type"], "welcome", "{}: {welcome}", self.name);
    }

    /// Joins `room` (with the default backlog) and reads up to `members`.
    pub(crate) async fn join(&mut self, room: &str) {
        self.send_json(json!({"type": "join", "room": room})).await;
        self.until_type("members").await;
    }

    /// Writes `bytes` as they are.
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }

    /// Writes `line` and a newline.
    pub(crate) async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// Writes one frame.
    pub(crate) async fn send_json(&mut self, value: Value) {
        self.send(&value.to_string()).await;
    }

    /// The next line without its line ending, or `None` at EOF or on a
    /// read error (a reset counts as a close). Panics after [`WAIT`].
    pub(crate) async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.lines.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("{}: no line within {WAIT:?}", self.name))
            .ok()?;
        (n > 0).then(|| line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The next line without its line ending.
    pub(crate) async fn line(&mut self) -> String {
        match self.try_line().await {
            Some(line) => line,
            None => panic!("{}: connection closed", self.name),
        }
    }

    /// The next frame.
    pub(crate) async fn frame(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name))
    }

    /// Skips frames until one of type `kind`.
    pub(crate) async fn until_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.frame().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Skips lines until one that satisfies `wanted`.
    pub(crate) async fn until_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line().await;
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Every line until the server closes.
    pub(crate) async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.try_line().await {
            seen.push(line);
        }
        seen
    }

    /// Keeps the writing half; what arrives is read and dropped in the
    /// background, so this peer is never a slow reader.
    pub(crate) fn into_talker(self) -> OwnedWriteHalf {
        let mut lines = self.lines;
        tokio::spawn(async move {
            let mut line = String::new();
            while lines.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        self.writer
    }
}
