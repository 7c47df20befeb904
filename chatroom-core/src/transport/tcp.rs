//! TCP: the transport the server listens on by default.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpStream, ToSocketAddrs};

use super::{Connection, Connector, Listener, PeerAddr, TransportError};

/// Kernel keepalive on accepted sockets: a peer that vanished without a FIN
/// (power loss, a dropped NAT entry) is found within about
/// `KEEPALIVE_IDLE + KEEPALIVE_PROBES * KEEPALIVE_INTERVAL` even when the
/// client speaks the text dialect and never answers an application ping.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
#[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
const KEEPALIVE_PROBES: u32 = 3;

/// Connections the kernel queues for `accept` before it drops new SYNs.
/// The standard library's 128 overflows when a few hundred clients connect
/// at once (every client reconnecting after a restart): each dropped SYN
/// costs its client a one-second retransmission. The kernel caps this at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;

/// A TCP listening socket.
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
    local: SocketAddr,
}

impl TcpListener {
    /// Binds `addr` (for example `127.0.0.1:7878`, or port 0 for any free port).
    ///
    /// # Errors
    /// [`TransportError::Bind`] when the address is in use, not local, or not permitted.
    pub async fn bind(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, TransportError> {
        let shown = addr.to_string();
        let bind_error = |source| TransportError::Bind {
            addr: shown.clone(),
            source,
        };
        // As std's bind: each resolved address in turn, the first that binds.
        let mut last = io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        );
        for candidate in tokio::net::lookup_host(addr).await.map_err(bind_error)? {
            match listen(candidate) {
                Ok(inner) => {
                    let local = inner.local_addr().map_err(bind_error)?;
                    return Ok(Self { inner, local });
                }
                Err(e) => last = e,
            }
        }
        Err(bind_error(last))
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_socket_addr(&self) -> SocketAddr {
        self.local
    }
}

fn listen(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std does for listeners on Unix: a restarted server can bind its
    // port while connections of the old one are still in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Errors after which accepting again can succeed.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 105)) // ENFILE, EMFILE, ENOBUFS
}

fn tune(stream: &TcpStream) {
    // Chat lines are small and latency matters more than packet count; the
    // writer already coalesces what is queued into one write.
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let keepalive = keepalive.with_retries(KEEPALIVE_PROBES);
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

impl TcpListener {
    /// Accepts the next TCP stream, tuned (no delay, keepalive), retrying
    /// transient failures with a short backoff.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`tokio::net::TcpListener::accept`].
    ///
    /// # Errors
    /// [`TransportError::Accept`] for failures retrying cannot fix.
    pub async fn accept_stream(&mut self) -> Result<(TcpStream, SocketAddr), TransportError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    tune(&stream);
                    return Ok((stream, peer));
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(TransportError::Accept(e)),
            }
        }
    }
}

impl Listener for TcpListener {
    async fn accept(&mut self) -> Result<Connection, TransportError> {
        let (stream, peer) = self.accept_stream().await?;
        let (r, w) = stream.into_split();
        Ok(Connection::new(r, w, PeerAddr::Net(peer)))
    }

    fn local_addr(&self) -> String {
        self.local.to_string()
    }
}

/// Opens TCP connections to one address.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    addr: String,
}

impl TcpConnector {
    /// A connector for `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

/// Opens a TCP stream to `addr` with Nagle off, returning it with the
/// peer's address; shared by the plain and TLS connectors.
pub(super) async fn connect_stream(addr: &str) -> Result<(TcpStream, SocketAddr), TransportError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| TransportError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_err(TransportError::Io)?;
    Ok((stream, peer))
}

impl Connector for TcpConnector {
    async fn connect(&self) -> Result<Connection, TransportError> {
        let (stream, peer) = connect_stream(&self.addr).await?;
        let (r, w) = stream.into_split();
        Ok(Connection::new(r, w, PeerAddr::Net(peer)))
    }

    fn describe(&self) -> String {
        self.addr.clone()
    }
}
