//! How a node joins the cluster: [`NatsConfig`].

use std::time::Duration;

use crate::history::Retention;

use super::connect::{NatsAuth, NatsTls};

/// How a node joins the cluster. Its `Debug` never shows a secret.
#[derive(Clone)]
pub struct NatsConfig {
    /// NATS server URLs (`nats://host:port`); the client fails over
    /// between them.
    pub servers: Vec<String>,
    /// This node's name, in logs and in nick claims.
    pub node: String,
    /// How long a nick claim lives without renewal (a dead node's nicks
    /// are free after this).
    pub nick_lease: Duration,
    /// The longest NATS may take to answer a request.
    pub request_timeout: Duration,
    /// Retention of each room's stream.
    pub retention: Retention,
    /// Copies of each stream the node creates (rooms, nick claims) kept by
    /// a NATS cluster: 1 on a single server, 3 to survive losing one.
    pub replicas: usize,
    /// How often the node says it is alive; a node silent for three of
    /// these is taken as gone, and its members leave.
    pub presence_interval: Duration,
    /// The credentials this node shows NATS.
    pub auth: NatsAuth,
    /// TLS towards NATS.
    pub tls: NatsTls,
}

impl NatsConfig {
    /// Defaults for `servers` and `node`: a 15 s nick lease, a 5 s request
    /// timeout, the default retention and one replica per stream.
    pub fn new(servers: Vec<String>, node: impl Into<String>) -> Self {
        Self {
            servers,
            node: node.into(),
            nick_lease: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
            retention: Retention::default(),
            replicas: 1,
            presence_interval: Duration::from_secs(1),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }
}
