//! Joining a cluster from the settings: the NATS connection, with the
//! credentials and TLS the settings name, whose broker and store the node
//! is built on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::AccountStore;
use crate::broker::nats::{ClientCert, NatsAuth, NatsBroker, NatsConfig, NatsTls, redact_url};
use crate::broker::{Broker, Secret};
use crate::history::HistoryStore;
use crate::server::config::{ClusterConfig, ServerConfig};
use crate::server::error::ServerError;

/// What a node of a cluster is built on: the broker that shares rooms and
/// nicks with the other nodes, the store that reads the rooms' streams,
/// and the account store every node shares.
pub(super) struct Joined {
    pub(super) broker: Arc<dyn Broker>,
    pub(super) history: Arc<dyn HistoryStore>,
    pub(super) accounts: Arc<dyn AccountStore>,
}

/// Connects to the cluster's NATS and opens what the node shares there.
pub(super) async fn join(config: &ServerConfig) -> Result<Joined, ServerError> {
    let cluster = &config.cluster;
    let node = if cluster.node_name.is_empty() {
        format!("node-{}", std::process::id())
    } else {
        cluster.node_name.clone()
    };
    let mut nats = NatsConfig::new(cluster.servers.clone(), node.clone());
    nats.nick_lease = Duration::from_secs(cluster.nick_lease_secs);
    nats.retention = config.history.retention();
    nats.replicas = cluster.replicas;
    nats.auth = auth(cluster)?;
    nats.tls = tls(cluster);
    let (broker, store) = NatsBroker::connect(nats)
        .await
        .map_err(ServerError::Cluster)?;
    let accounts = broker.accounts().await.map_err(ServerError::Cluster)?;
    let servers: Vec<String> = cluster.servers.iter().map(|url| redact_url(url)).collect();
    tracing::info!(%node, ?servers, "joined the cluster");
    Ok(Joined {
        broker,
        history: store,
        accounts: Arc::new(accounts),
    })
}

/// The credentials the settings name. A password or token file is read
/// here, so that the secret need be on no command line.
fn auth(cluster: &ClusterConfig) -> Result<NatsAuth, ServerError> {
    // Validation already made sure at most one way is set.
    Ok(if !cluster.user.is_empty() {
        NatsAuth::UserPassword {
            user: cluster.user.clone(),
            password: secret(
                &cluster.password,
                &cluster.password_file,
                "cluster_password_file",
            )?,
        }
    } else if !cluster.token.is_empty() || !cluster.token_file.is_empty() {
        NatsAuth::Token(secret(
            &cluster.token,
            &cluster.token_file,
            "cluster_token_file",
        )?)
    } else if !cluster.creds.is_empty() {
        NatsAuth::CredsFile(cluster.creds.clone().into())
    } else {
        NatsAuth::None
    })
}

/// TLS towards NATS: a private CA, a client certificate, or just "required".
fn tls(cluster: &ClusterConfig) -> NatsTls {
    let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    NatsTls {
        ca: path(&cluster.tls_ca),
        client_cert: path(&cluster.tls_cert)
            .zip(path(&cluster.tls_key))
            .map(|(cert, key)| ClientCert { cert, key }),
        required: cluster.tls_required,
    }
}

/// `value`, or the text of `file` (when set) less one final line break.
fn secret(value: &Secret, file: &str, key: &'static str) -> Result<Secret, ServerError> {
    if file.is_empty() {
        return Ok(value.clone());
    }
    let text = std::fs::read_to_string(file).map_err(|source| ServerError::SecretFile {
        key,
        path: file.into(),
        source,
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Secret::new(text.strip_suffix('\r').unwrap_or(text)))
}
