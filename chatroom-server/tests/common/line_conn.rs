//! One blocking TCP connection that writes and reads lines, each read with
//! a deadline: the transport under [`JsonClient`](super::json_client::JsonClient)
//! and [`TextClient`](super::text_client::TextClient).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection to a server, read line by line.
#[derive(Debug)]
pub(crate) struct LineConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// How long one read may wait before the test fails.
    wait: Duration,
}

impl LineConn {
    /// Connects to `addr`; connecting and each later read may take `wait`.
    pub(crate) fn connect(addr: SocketAddr, wait: Duration) -> Self {
        let stream = TcpStream::connect_timeout(&addr, wait).expect("connect");
        Self::over(stream, wait)
    }

    /// As [`LineConn::connect`], from the local address `from` (on Linux
    /// any address of 127.0.0.0/8 is this host's): a test's second person
    /// with an address of their own, as the server sees it.
    pub(crate) fn connect_from(addr: SocketAddr, from: IpAddr, wait: Duration) -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("a socket");
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .unwrap_or_else(|e| panic!("bind to {from}: {e}"));
        socket.connect_timeout(&addr.into(), wait).expect("connect");
        Self::over(socket.into(), wait)
    }

    fn over(stream: TcpStream, wait: Duration) -> Self {
        stream
            .set_read_timeout(Some(wait))
            .expect("set a read timeout");
        Self {
            reader: BufReader::new(stream.try_clone().expect("clone the socket")),
            writer: stream,
            wait,
        }
    }

    /// How long one read may wait from now on.
    pub(crate) fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
        self.writer
            .set_read_timeout(Some(wait))
            .expect("set a read timeout");
    }

    /// How long one read may wait.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// A second handle on the socket, for writing from another thread
    /// while this one reads.
    pub(crate) fn writer(&self) -> TcpStream {
        self.writer.try_clone().expect("clone the socket")
    }

    /// This end's address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.writer.local_addr().expect("the local address")
    }

    /// Writes `bytes` as they are.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Writes `line` and a newline.
    ///
    /// # Panics
    /// When the write fails.
    pub(crate) fn send_line(&mut self, line: impl std::fmt::Display) {
        // Unbuffered, as `Display` hands out the pieces: one small write
        // per piece. The cluster tests' timing (the failover test's above
        // all) was tuned to this pace; one write per line publishes several
        // times faster and moves when a dead node's nick comes free.
        writeln!(self.writer, "{line}").expect("write a line");
    }

    /// The next line with its line ending, or `None` once the server has
    /// closed the connection (a reset counts as a close).
    ///
    /// # Panics
    /// When nothing arrives within `limit`, or on another read error.
    pub(crate) fn try_line_within(&mut self, limit: Duration) -> Option<String> {
        let other = limit != self.wait;
        if other {
            // A zero timeout means "block forever" to the socket.
            self.writer
                .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
                .expect("set a read timeout");
        }
        let mut line = String::new();
        let read = self.reader.read_line(&mut line);
        if other {
            self.writer
                .set_read_timeout(Some(self.wait))
                .expect("set a read timeout");
        }
        match read {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no line within {limit:?} (got {line:?} so far)")
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// The next line with its line ending, within the connection's wait;
    /// `None` once the server has closed the connection.
    pub(crate) fn try_line(&mut self) -> Option<String> {
        self.try_line_within(self.wait)
    }

    /// The next line with its line ending; fails after `limit` or on close.
    pub(crate) fn line_within(&mut self, limit: Duration) -> String {
        self.try_line_within(limit)
            .unwrap_or_else(|| panic!("connection closed while waiting for a line"))
    }

    /// The first line from now on that satisfies `wanted`, all within the
    /// connection's wait.
    pub(crate) fn line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + self.wait;
        loop {
            let line = self.line_within(end.saturating_duration_since(Instant::now()));
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Fails unless the server closes the connection within the wait.
    pub(crate) fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}
