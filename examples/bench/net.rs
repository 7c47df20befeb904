//! Sockets and the four wire protocols the tool speaks: chatroom (native and
//! text dialect), the ceiling's raw lines, Redis pub/sub (RESP) and NATS.
//! Each protocol is reduced to what a benchmark needs: get ready to receive,
//! get ready to publish, encode one publish, and recognise an acknowledgement.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use clap::ValueEnum;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The room (or channel, or subject) every scenario uses. The chatroom text
/// dialect puts clients in `lobby`, so everyone meets there.
pub(crate) const ROOM: &str = "lobby";
/// NATS publishers send a `PING` after this many messages and count the
/// `PONG` as the acknowledgement of all of them.
pub(crate) const NATS_BATCH: u32 = 16;
/// Longest line a reader buffers; a longer one is a protocol error here.
const MAX_LINE: usize = 1 << 20;
/// A reader's buffer doubles up to this size while reads keep filling it,
/// so a receiver under load makes one read call per many lines, while an
/// idle one keeps its first 4 KiB.
const BUSY_BUFFER: usize = 64 << 10;
/// How long any handshake step may take.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// The chatroom engine, native (JSON) dialect.
    Chatroom,
    /// The chatroom engine; receivers speak the text dialect (publishers
    /// stay native, since `say` needs no parsing on the text side).
    ChatroomText,
    /// The reference broadcaster of this tool (`chatroom-bench ceiling`).
    Ceiling,
    /// redis-server, SUBSCRIBE and PUBLISH.
    Redis,
    /// nats-server, SUB and PUB.
    Nats,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Chatroom => "chatroom",
            Self::ChatroomText => "chatroom-text",
            Self::Ceiling => "ceiling",
            Self::Redis => "redis",
            Self::Nats => "nats",
        }
    }

    /// Messages one acknowledgement stands for; `None` when the target
    /// acknowledges nothing (the ceiling).
    pub(crate) fn ack_unit(self) -> Option<u32> {
        match self {
            Self::Chatroom | Self::ChatroomText | Self::Redis => Some(1),
            Self::Nats => Some(NATS_BATCH),
            Self::Ceiling => None,
        }
    }
}

/// Refuses anything but a loopback address: this tool generates load and
/// must never point it at another machine.
pub(crate) fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr}: not an IP:PORT address"))?;
    if !parsed.ip().is_loopback() {
        return Err(format!("{addr}: only loopback targets are allowed"));
    }
    Ok(parsed)
}

/// Opens a connection from `127.0.0.<1 + index % sources>`, so that many
/// connections do not run out of one address's ephemeral ports.
pub(crate) async fn connect(addr: SocketAddr, index: usize, sources: u8) -> io::Result<Conn> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if addr.is_ipv4() && sources > 1 {
        let last = 1 + (index % usize::from(sources)) as u8;
        socket.bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))?;
    }
    let stream = tokio::time::timeout(STEP_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    Ok(Conn {
        lines: Lines::new(rd),
        wr,
    })
}

/// A connection: a line reader and the write half.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) lines: Lines,
    pub(crate) wr: OwnedWriteHalf,
}

/// Splits what a socket delivers into lines without copying them.
#[derive(Debug)]
pub(crate) struct Lines {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Lines {
    fn new(rd: OwnedReadHalf) -> Self {
        Self {
            rd,
            buf: vec![0; 4096],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes. Returns false at end of stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: the bytes are only counted once the read returned.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let room = self.buf.len() - self.end;
        let n = self.rd.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        if n == room && self.buf.len() < BUSY_BUFFER {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Ok(n > 0)
    }

    /// The next complete line already buffered, without `\n` or `\r\n`.
    pub(crate) fn next_range(&mut self) -> Option<Range<usize>> {
        let at = memchr::memchr(b'\n', &self.buf[self.start..self.end])?;
        let line = self.start..self.start + at;
        self.start += at + 1;
        let end = if line.end > line.start && self.buf[line.end - 1] == b'\r' {
            line.end - 1
        } else {
            line.end
        };
        Some(line.start..end)
    }

    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Reads lines until `done` says yes, within [`STEP_TIMEOUT`].
    pub(crate) async fn until(&mut self, mut done: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                while let Some(r) = self.next_range() {
                    if done(&self.buf[r]) {
                        return Ok(());
                    }
                }
                if !self.fill().await? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed during handshake",
                    ));
                }
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))?
    }
}

fn contains(line: &[u8], needle: &str) -> bool {
    memchr::memmem::find(line, needle.as_bytes()).is_some()
}

fn chatroom_hello(nick: &str, room: &str) -> String {
    format!(
        "{{\"type\":\"hello\",\"version\":1,\"nick\":\"{nick}\"}}\n{{\"type\":\"join\",\"room\":\"{room}\"}}\n"
    )
}

/// Makes `conn` a subscriber of `room` and returns once the server says
/// it is one.
pub(crate) async fn subscribe(
    target: Target,
    conn: &mut Conn,
    nick: &str,
    room: &str,
) -> io::Result<()> {
    match target {
        Target::Chatroom => {
            conn.wr
                .write_all(chatroom_hello(nick, room).as_bytes())
                .await?;
            conn.lines
                .until(|l| contains(l, "\"type\":\"members\""))
                .await
        }
        // Silent for the sniff window, then greeted and put in `lobby`; the
        // first `joined` line is this client's own.
        Target::ChatroomText => conn.lines.until(|l| contains(l, " joined #")).await,
        Target::Ceiling => conn.lines.until(|l| l == b"ready").await,
        Target::Redis => {
            conn.wr
                .write_all(format!("SUBSCRIBE {room}\r\n").as_bytes())
                .await?;
            conn.lines.until(|l| l.first() == Some(&b':')).await
        }
        Target::Nats => {
            conn.lines.until(|l| l.starts_with(b"INFO")).await?;
            conn.wr
                .write_all(
                    format!(
                        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"{nick}\"}}\r\nSUB {room} 1\r\nPING\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
            conn.lines.until(|l| l == b"PONG").await
        }
    }
}

/// Makes `conn` ready to publish into `room`.
pub(crate) async fn prepare_publisher(
    target: Target,
    conn: &mut Conn,
    nick: &str,
    room: &str,
) -> io::Result<()> {
    match target {
        Target::Chatroom | Target::ChatroomText => {
            conn.wr
                .write_all(chatroom_hello(nick, room).as_bytes())
                .await?;
            conn.lines
                .until(|l| contains(l, "\"type\":\"members\""))
                .await
        }
        Target::Ceiling => conn.lines.until(|l| l == b"ready").await,
        Target::Redis => {
            conn.wr.write_all(b"PING\r\n").await?;
            conn.lines.until(|l| l == b"+PONG").await
        }
        Target::Nats => {
            conn.lines.until(|l| l.starts_with(b"INFO")).await?;
            conn.wr
                .write_all(
                    format!(
                        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"{nick}\"}}\r\nPING\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
            conn.lines.until(|l| l == b"PONG").await
        }
    }
}

/// Appends one publish of `payload` into `room`. `count` is the number of
/// messages this publisher sent before this one (NATS adds its `PING`).
pub(crate) fn encode_publish(
    target: Target,
    room: &str,
    payload: &[u8],
    count: u64,
    out: &mut Vec<u8>,
) {
    match target {
        Target::Chatroom | Target::ChatroomText => {
            out.extend_from_slice(b"{\"type\":\"say\",\"room\":\"");
            out.extend_from_slice(room.as_bytes());
            out.extend_from_slice(b"\",\"text\":\"");
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\"}\n");
        }
        Target::Ceiling => {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Target::Redis => {
            out.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{room}\r\n${}\r\n",
                    room.len(),
                    payload.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        Target::Nats => {
            out.extend_from_slice(format!("PUB {room} {}\r\n", payload.len()).as_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
            if (count + 1).is_multiple_of(u64::from(NATS_BATCH)) {
                out.extend_from_slice(b"PING\r\n");
            }
        }
    }
}

/// What a line read by a publisher means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Acknowledges this many messages.
    Ack(u32),
    /// The server refused a publish.
    Refused,
    /// Anything else (other publishers' messages, presence, pings).
    Other,
}

pub(crate) fn classify(target: Target, line: &[u8]) -> Reply {
    match target {
        Target::Chatroom | Target::ChatroomText => {
            if contains(line, "\"type\":\"ok\"") {
                Reply::Ack(1)
            } else if contains(line, "\"type\":\"error\"") {
                Reply::Refused
            } else {
                Reply::Other
            }
        }
        Target::Redis => match line.first() {
            Some(b':') => Reply::Ack(1),
            Some(b'-') => Reply::Refused,
            _ => Reply::Other,
        },
        Target::Nats => {
            if line == b"PONG" {
                Reply::Ack(NATS_BATCH)
            } else if line.starts_with(b"-ERR") {
                Reply::Refused
            } else {
                Reply::Other
            }
        }
        Target::Ceiling => Reply::Other,
    }
}

/// Answers what a subscriber must answer to stay connected (NATS `PING`).
pub(crate) fn keepalive_reply(target: Target, line: &[u8]) -> Option<&'static [u8]> {
    match target {
        Target::Nats if line == b"PING" => Some(b"PONG\r\n"),
        Target::Chatroom if contains(line, "\"type\":\"ping\"") => Some(b"{\"type\":\"pong\"}\n"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(loopback("127.0.0.1:7878").is_ok());
        assert!(loopback("[::1]:7878").is_ok());
        assert!(loopback("10.0.0.1:7878").is_err());
        assert!(loopback("example.com:80").is_err());
    }

    #[test]
    fn nats_publishers_ping_once_per_batch() {
        let mut out = Vec::new();
        for i in 0..u64::from(NATS_BATCH) * 2 {
            encode_publish(Target::Nats, ROOM, b"x", i, &mut out);
        }
        let pings = memchr::memmem::find_iter(&out, b"PING").count();
        assert_eq!(pings, 2);
    }
}
