//! The node's live connection to NATS, which every part of the broker
//! uses: opened with the node's credentials, its losses and returns told
//! to this node's clients, its reconnections counted so that room feeds
//! start again after one.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::watch;

use crate::protocol::ServerMessage;
use crate::registry::{Outbound, RoomRegistry};

use async_nats::jetstream;

use super::config::NatsConfig;
use super::connect;
use crate::broker::{BrokerError, Outage};

/// This node on NATS: its settings, its identity and its connection.
pub(super) struct Link {
    pub(super) config: NatsConfig,
    /// This process's identity in the streams and subjects (unique even
    /// if two nodes share a name).
    pub(super) instance: String,
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    /// Set by `attach`; what the cluster tells this node's clients goes
    /// through it.
    pub(super) registry: Arc<OnceLock<RoomRegistry>>,
    /// Changed at every (re)connection to NATS.
    pub(super) connections: watch::Receiver<Connections>,
}

impl Link {
    /// Connects to NATS as `config` says.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the settings cannot be used or NATS
    /// cannot be reached.
    pub(super) async fn open(config: NatsConfig) -> Result<Self, BrokerError> {
        let registry = Arc::new(OnceLock::<RoomRegistry>::new());
        let (client, connections) = connect_client(&config, registry.clone()).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.request_timeout);
        // The inbox's unique token: a name safe in a subject.
        let inbox = client.new_inbox();
        let instance = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
        Ok(Self {
            config,
            instance,
            client,
            js,
            registry,
            connections,
        })
    }

    /// Refuses at once while NATS is unreachable.
    pub(super) fn connected(&self) -> Result<(), BrokerError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(Outage::Disconnected.into()),
        }
    }
}

/// The node's connections to NATS so far.
#[derive(Debug, Clone, Copy)]
pub(super) struct Connections {
    /// How many times it connected (the first time included).
    pub(super) count: u64,
    /// When it last connected.
    pub(super) since: Instant,
}

/// Connects the client, whose events are told to the clients of `registry`
/// once it is set; the receiver changes at every (re)connection.
async fn connect_client(
    config: &NatsConfig,
    registry: Arc<OnceLock<RoomRegistry>>,
) -> Result<(async_nats::Client, watch::Receiver<Connections>), BrokerError> {
    let node = config.node.clone();
    // Counts connections, so that room feeds start their consumers
    // again after a reconnection (perhaps to another server of a NATS
    // cluster, where the old ephemeral consumer does not exist).
    let (connections_tx, connections) = watch::channel(Connections {
        count: 0,
        since: Instant::now(),
    });
    let (options, servers) = connect::secure(
        async_nats::ConnectOptions::new(),
        &config.servers,
        &config.auth,
        &config.tls,
    )?;
    let options = options
        .name(format!("chatroom {node}"))
        .connection_timeout(config.request_timeout)
        .max_reconnects(None)
        .event_callback(move |event| {
            let node = node.clone();
            let connections_tx = connections_tx.clone();
            let told = registry.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(%node, "connected to NATS");
                        connections_tx.send_modify(|c| {
                            c.count += 1;
                            c.since = Instant::now();
                        });
                        if connections_tx.borrow().count > 1 {
                            notify(&told, "this server is connected to the cluster again");
                        }
                    }
                    async_nats::Event::Disconnected => {
                        tracing::error!(%node, "lost the NATS connection; reconnecting");
                        notify(
                            &told,
                            "this server lost its connection to the cluster; \
                             messages cannot be sent until it is back",
                        );
                    }
                    // Each failed reconnection attempt; the
                    // disconnection itself was logged above.
                    async_nats::Event::ClientError(e) => {
                        tracing::debug!(%node, error = %e, "NATS client error");
                    }
                    other => tracing::warn!(%node, event = %other, "NATS event"),
                }
            }
        });
    let client = options
        .connect(servers.as_slice())
        .await
        .map_err(|e| Outage::Connect(e.into()))?;
    Ok((client, connections))
}

/// Tells every client of this node, once the registry is attached.
fn notify(registry: &OnceLock<RoomRegistry>, text: &str) {
    if let Some(registry) = registry.get() {
        registry.broadcast_all(&Outbound::message(ServerMessage::Notice {
            text: text.to_owned(),
        }));
    }
}
