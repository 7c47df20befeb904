//! Server errors: what stops the engine, and what ends one session.

use crate::protocol::ProtocolError;
use crate::registry::RegistryError;
use crate::transport::TransportError;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field holds a value outside its range.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// The setting's name, as in the config file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why the engine stopped or could not start. Only these are fatal to the
/// whole server; everything that goes wrong with one client ends that
/// client's session only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener failed in a way retrying cannot fix.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// `run` was given no listener.
    #[error("no listener to serve")]
    NoListener,
}

/// Why a session ended abnormally. Logged at the session's boundary and
/// never passed to the accept loop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Reading from or writing to the peer failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer broke the protocol in a way that ends the session.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The registry refused the session.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}
