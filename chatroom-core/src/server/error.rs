//! Server errors: what stops the engine, or keeps it from starting.

use std::path::PathBuf;

use crate::accounts::AccountError;
use crate::broker::BrokerError;
use crate::history::HistoryError;
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
    /// The history store the settings name could not be opened.
    #[error("cannot open the history store")]
    History(#[source] HistoryError),
    /// The account store could not be opened or read.
    #[error("cannot open the account store")]
    Accounts(#[source] AccountError),
    /// A password or token file the settings name could not be read.
    #[error("cannot read the file of setting {key}: {}", path.display())]
    SecretFile {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The cluster's NATS could not be reached, or refused this node.
    #[error("cannot join the cluster")]
    Cluster(#[source] BrokerError),
    /// A listener failed in a way retrying cannot fix.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// `run` was given no listener.
    #[error("no listener to serve")]
    NoListener,
}
