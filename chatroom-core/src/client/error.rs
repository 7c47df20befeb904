//! Client errors.

use std::time::Duration;

use crate::protocol::{ClientMessage, ErrorCode, ProtocolError};
use crate::transport::TransportError;

/// What can go wrong when connecting or making a request.
///
/// Classes: [`ClientError::Server`] is a refused request and the connection
/// stays usable; [`ClientError::Protocol`] for a request the client refused
/// to send is the same. [`ClientError::Disconnected`] and
/// [`ClientError::Closed`] mean the connection is gone (for now, when the
/// client reconnects). The rest happen while connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Opening the connection, or reading or writing it during the
    /// handshake, failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A request's text or name breaks the protocol's rules, so it was not
    /// sent; or the server sent a frame this client cannot decode.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The server answered the request with an `error` frame.
    #[error("{message}")]
    Server {
        /// The machine-readable code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server said `bye` before it welcomed the client.
    #[error("the server closed the connection: {reason}")]
    Refused {
        /// The reason the server gave.
        reason: String,
    },
    /// The server closed the connection before it welcomed the client.
    #[error("the server closed the connection during the handshake")]
    HandshakeClosed,
    /// The server sent no `welcome` within the connect timeout.
    #[error("no welcome from the server within {timeout:?}")]
    HandshakeTimeout {
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The connection ended after the request was sent and before its
    /// reply arrived; the server may or may not have acted on it.
    #[error("the connection ended before the reply arrived")]
    Disconnected,
    /// The connection task has ended (after `quit`, or a disconnect with no
    /// reconnect left) or is reconnecting, so the request was not sent.
    /// The request is given back.
    #[error("not connected; the request was not sent")]
    Closed {
        /// The request that was not sent.
        request: Box<ClientMessage>,
    },
    /// No reply arrived within the request timeout. The request may still
    /// be answered later; that answer is dropped.
    #[error("no reply within {timeout:?}")]
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The request, encoded, is longer than the line limit the server
    /// announced, so it was not sent.
    #[error("request is {len} bytes, the server's limit is {max}")]
    TooLong {
        /// Length of the encoded request in bytes, without its newline.
        len: usize,
        /// The server's limit in bytes.
        max: usize,
    },
    /// [`Client::connect_any`](super::Client::connect_any) was given no
    /// server address.
    #[error("no server address to connect to")]
    NoServers,
    /// The server answered with a frame of the wrong kind for the request.
    #[error("unexpected reply from the server: {kind}")]
    UnexpectedReply {
        /// The `type` of the frame that arrived.
        kind: &'static str,
    },
}

impl ClientError {
    /// The server's error code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
