use std::net::SocketAddr;
use std::time::Duration;

use chatroom_core::server::{Server, ServerConfig, ServerError};
use chatroom_core::transport::TcpListener;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something it expects before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A server on a free loopback port.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with(ServerConfig::default()).await
    }

    pub(crate) async fn with(config: ServerConfig) -> Self {
        Self::serve(Server::new(config).unwrap()).await
    }

    /// Runs an engine built by the caller (say, with a durable store).
    pub(crate) async fn serve(server: Server) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_socket_addr();
        Self::serve_on(server, listener, addr)
    }

    /// Runs `server` on a listener the caller made (say, a TLS one).
    pub(crate) fn serve_on<L: chatroom_core::transport::Listener>(
        server: Server,
        listener: L,
        addr: SocketAddr,
    ) -> Self {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(server.run(listener, stop.clone().cancelled_owned()));
        Self { addr, stop, handle }
    }

    /// Starts the graceful shutdown and waits for the server to return.
    pub(crate) async fn stop(self) -> Duration {
        let started = std::time::Instant::now();
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server result");
        started.elapsed()
    }
}

/// One raw TCP client that reads and writes lines.
pub(crate) struct Peer {
    lines: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub(crate) nick: String,
}

impl Peer {
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        Self {
            lines: BufReader::new(r),
            writer: w,
            nick: String::new(),
        }
    }

    /// A native client that said hello as `nick` and got its welcome.
    pub(crate) async fn native(addr: SocketAddr, nick: &str) -> Self {
        let mut peer = Self::connect(addr).await;
        peer.send_json(json!({"type": "hello", "version": 1, "nick": nick}))
            .await;
        let welcome = peer.frame().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        peer.nick = welcome["nick"].as_str().unwrap().to_owned();
        peer
    }

    /// A native client in `room`, with the join's replies consumed.
    pub(crate) async fn native_in(addr: SocketAddr, nick: &str, room: &str) -> Self {
        let mut peer = Self::native(addr, nick).await;
        peer.send_json(json!({"type": "join", "room": room})).await;
        peer.until_type("members").await;
        peer
    }

    /// A text client, greeted and in the default room; its nick is read
    /// from the welcome line.
    pub(crate) async fn text(addr: SocketAddr) -> Self {
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
        peer.nick = nick;
        peer
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    pub(crate) async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    pub(crate) async fn send_json(&mut self, value: Value) {
        self.send(&value.to_string()).await;
    }

    /// The next line, without its line ending. Panics on timeout or EOF.
    pub(crate) async fn line(&mut self) -> String {
        self.try_line()
            .await
            .unwrap_or_else(|| panic!("{}: connection closed", self.nick))
    }

    /// The next line, or `None` at EOF. Panics on timeout.
    pub(crate) async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.lines.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("{}: no line within {WAIT:?}", self.nick))
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    pub(crate) async fn frame(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
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

    /// Skips lines until one equal to `expected`.
    pub(crate) async fn until_line(&mut self, expected: &str) {
        loop {
            if self.line().await == expected {
                return;
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    pub(crate) async fn silent_for(&mut self, quiet: Duration) {
        let mut line = String::new();
        if let Ok(n) = tokio::time::timeout(quiet, self.lines.read_line(&mut line)).await {
            panic!("{}: expected silence, got {n:?} {line:?}", self.nick);
        }
    }

    /// Keeps only the writing half; what arrives is read and dropped in the
    /// background, so the server never sees this peer as a slow reader.
    pub(crate) fn into_talker(self) -> Talker {
        let mut lines = self.lines;
        tokio::spawn(async move {
            let mut line = String::new();
            while lines.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        Talker {
            writer: self.writer,
        }
    }

    /// Reads until the server closes; returns every line seen.
    pub(crate) async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.try_line().await {
            seen.push(line);
        }
        seen
    }
}

/// A peer that only sends (see [`Peer::into_talker`]).
pub(crate) struct Talker {
    writer: OwnedWriteHalf,
}

impl Talker {
    pub(crate) async fn send_json(&mut self, value: Value) {
        self.writer
            .write_all(format!("{value}\n").as_bytes())
            .await
            .unwrap();
    }
}
