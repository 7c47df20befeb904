//! Building a [`Server`] from its settings alone, as the server binary runs
//! it: the history store the settings name, or, in a cluster, the NATS
//! connection that carries rooms, history and nicks between nodes.

#[cfg(feature = "cluster")]
mod cluster;

use std::sync::Arc;

use crate::accounts::{AccountStore, MemoryAccounts};
use crate::broker::LocalBroker;
use crate::history::{HistoryStore, MemoryStore};

use super::Server;
use super::config::{HistoryConfig, HistoryKind, Limits, ServerConfig};
use super::error::{ConfigError, ServerError};

/// A [`ServerConfig`] that passed validation, ready to become a [`Server`]
/// with [`build`](Self::build). Made by [`Server::builder`].
///
/// What it builds depends on the settings:
/// - `cluster.servers` set (feature `cluster`): the node connects to NATS
///   with the credentials and TLS of [`ClusterConfig`](super::ClusterConfig),
///   reading a password or token file if one is named, and keeps history
///   in the rooms' JetStream streams;
/// - otherwise `history.store`: [`HistoryKind::Sqlite`] opens the durable
///   store in `history.data_dir` (feature `sqlite`), and
///   [`HistoryKind::Memory`] keeps history in memory.
///
/// # Examples
///
/// ```no_run
/// use chatroom_core::server::{ClusterConfig, Server, ServerConfig};
/// use chatroom_core::transport::TcpListener;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ServerConfig::default().with_cluster(
///     ClusterConfig::default()
///         .with_servers(vec!["nats://127.0.0.1:4222".to_owned()])
///         .with_node_name("n1"),
/// );
/// let server = Server::builder(config)?.build().await?;
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// server.run(listener, std::future::pending()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ServerBuilder {
    config: ServerConfig,
    limits: Limits,
}

impl ServerBuilder {
    /// Checks `config`; nothing is opened or connected yet.
    pub(super) fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        let limits = config.validate()?;
        Ok(Self { config, limits })
    }

    /// The settings the server will be built from.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Opens the history store, or joins the cluster, and builds the server.
    ///
    /// # Errors
    /// - [`ServerError::Config`] when the settings need a feature this
    ///   build of the crate lacks (`sqlite`, `cluster`);
    /// - [`ServerError::History`] when the SQLite store cannot be opened;
    /// - [`ServerError::SecretFile`] when a password or token file cannot
    ///   be read;
    /// - [`ServerError::Cluster`] when NATS cannot be reached or refuses
    ///   the node.
    pub async fn build(self) -> Result<Server, ServerError> {
        let Self { config, limits } = self;
        if !config.cluster.servers.is_empty() {
            #[cfg(feature = "cluster")]
            {
                // In a cluster, history is the rooms' JetStream streams,
                // and accounts and rules a bucket every node shares.
                let joined = cluster::join(&config).await?;
                return Server::assemble(
                    config,
                    limits,
                    joined.history,
                    joined.broker,
                    joined.accounts,
                );
            }
            #[cfg(not(feature = "cluster"))]
            return Err(missing_feature("cluster", "cluster").into());
        }
        let store = open_store(&config.history)?;
        let accounts = open_accounts(&config.history)?;
        Server::assemble(config, limits, store, Arc::new(LocalBroker), accounts)
    }
}

/// The store `history.store` names, outside a cluster.
fn open_store(history: &HistoryConfig) -> Result<Arc<dyn HistoryStore>, ServerError> {
    match history.store {
        HistoryKind::Memory => Ok(memory_store(history)),
        #[cfg(feature = "sqlite")]
        HistoryKind::Sqlite => {
            // Opening reads every room's last id once. It blocks the task
            // briefly, at startup only, before anything is served.
            let dir = std::path::Path::new(&history.data_dir);
            let store = crate::history::SqliteStore::open(dir, history.sync)
                .map_err(ServerError::History)?;
            tracing::info!(path = %store.path().display(), "history store opened");
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "sqlite"))]
        HistoryKind::Sqlite => Err(missing_feature("history", "sqlite").into()),
    }
}

/// Where accounts and room rules are kept: next to the history in its
/// SQLite file, or in memory with the memory store.
fn open_accounts(history: &HistoryConfig) -> Result<Arc<dyn AccountStore>, ServerError> {
    match history.store {
        #[cfg(feature = "sqlite")]
        HistoryKind::Sqlite => {
            let dir = std::path::Path::new(&history.data_dir);
            let store =
                crate::accounts::SqliteAccounts::open(dir).map_err(ServerError::Accounts)?;
            Ok(Arc::new(store))
        }
        _ => Ok(Arc::new(MemoryAccounts::new())),
    }
}

/// A bounded in-memory store that keeps `history.max_messages` per room.
pub(super) fn memory_store(history: &HistoryConfig) -> Arc<dyn HistoryStore> {
    let per_room = usize::try_from(history.max_messages).unwrap_or(usize::MAX);
    Arc::new(MemoryStore::new(per_room))
}

/// The error for a setting this build cannot honour.
#[cfg(not(all(feature = "sqlite", feature = "cluster")))]
fn missing_feature(field: &'static str, feature: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: format!("this build of chatroom-core lacks the `{feature}` feature"),
    }
}
