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
    /// Reading or writing an established connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
