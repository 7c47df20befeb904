//! How bytes move: listeners that accept connections, connectors that open
//! them, and line framing.
//!
//! This layer knows byte streams and lines, never messages: it imports
//! nothing from the rest of the crate. A [`Connection`] is a pair of boxed
//! halves plus the peer's address, so a TCP socket, an in-memory pipe, and
//! later a TLS or WebSocket stream all look the same to the engine. A new
//! transport implements [`Listener`] (server side) and [`Connector`] (client
//! side); nothing in the protocol or the registry changes.

mod error;
pub mod framing;
pub mod memory;
pub mod tcp;
#[cfg(feature = "tls")]
pub mod tls;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub use error::TransportError;
pub use framing::{Frame, LineFramer};
pub use memory::{MemoryConnector, MemoryListener};
pub use tcp::{TcpConnector, TcpListener};
#[cfg(feature = "tls")]
pub use tls::{ServerCert, TlsConnector, TlsListener};

/// The reading half of a connection.
pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
/// The writing half of a connection.
pub type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A network peer.
    Net(SocketAddr),
    /// An in-memory peer, numbered by its listener.
    Memory(u64),
}

impl PeerAddr {
    /// The peer's IP address, for network peers.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Net(a) => Some(a.ip()),
            Self::Memory(_) => None,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net(a) => a.fmt(f),
            Self::Memory(n) => write!(f, "memory-{n}"),
        }
    }
}

/// An established, bidirectional byte stream.
pub struct Connection {
    /// Bytes from the peer.
    pub reader: BoxReader,
    /// Bytes to the peer. Writers should use vectored writes where the
    /// stream supports them; TCP does.
    pub writer: BoxWriter,
    /// The peer's address.
    pub peer: PeerAddr,
}

impl Connection {
    /// A connection from separate halves (as `TcpStream::into_split` gives).
    pub fn new(
        reader: impl AsyncRead + Send + 'static,
        writer: impl AsyncWrite + Send + 'static,
        peer: PeerAddr,
    ) -> Self {
        Self {
            reader: Box::pin(reader),
            writer: Box::pin(writer),
            peer,
        }
    }

    /// A connection from one stream, split with [`tokio::io::split`].
    pub fn from_stream(
        stream: impl AsyncRead + AsyncWrite + Send + 'static,
        peer: PeerAddr,
    ) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self::new(r, w, peer)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Something that yields incoming connections: the server side of a transport.
pub trait Listener: Send + 'static {
    /// Waits for the next connection.
    ///
    /// Transient failures (the process is out of file descriptors, a peer
    /// reset before it was accepted) are retried inside, with a short
    /// backoff; only failures that retrying cannot fix are returned.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future loses no connection.
    ///
    /// # Errors
    /// [`TransportError::Accept`] or [`TransportError::ListenerClosed`].
    fn accept(&mut self) -> impl Future<Output = Result<Connection, TransportError>> + Send;

    /// Where this listener listens, for logs and for tests that bind port 0.
    fn local_addr(&self) -> String;
}

/// Something that opens connections: the client side of a transport.
pub trait Connector: Send + Sync + 'static {
    /// Opens one connection.
    ///
    /// # Errors
    /// [`TransportError::Connect`] when the peer cannot be reached.
    fn connect(&self) -> impl Future<Output = Result<Connection, TransportError>> + Send;

    /// The address this connector dials, for messages to the user.
    fn describe(&self) -> String;
}
