//! Transport errors.

/// What can go wrong while accepting, opening or framing a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Binding a listening socket failed (address in use, no permission, bad address).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Accepting failed in a way retrying will not fix.
    #[error("accept failed")]
    Accept(#[source] std::io::Error),
    /// Opening a connection failed.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address that was dialled.
        addr: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The in-memory listener was dropped.
    #[error("the in-memory listener is gone")]
    ListenerClosed,
    /// A certificate, key or CA file could not be used.
    #[error("cannot use {path}: {reason}")]
    TlsFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or keys (a key that does not match
    /// its certificate, say).
    #[cfg(feature = "tls")]
    #[error("tls setup failed")]
    Tls(#[source] rustls::Error),
    /// A TLS connection was asked for a host that is neither a DNS name nor
    /// an IP address.
    #[error("{host} is not a valid TLS server name")]
    TlsName {
        /// The host part of the address.
        host: String,
    },
    /// Reading or writing an established connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
