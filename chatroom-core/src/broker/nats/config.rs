//! How a node joins the cluster: [`NatsConfig`].

use std::fmt;
use std::time::Duration;

use crate::history::Retention;

use super::connect::{NatsAuth, NatsTls, redact_url};

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

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers.iter().map(|url| redact_url(url)).collect();
        f.debug_struct("NatsConfig")
            .field("servers", &servers)
            .field("node", &self.node)
            .field("nick_lease", &self.nick_lease)
            .field("request_timeout", &self.request_timeout)
            .field("retention", &self.retention)
            .field("replicas", &self.replicas)
            .field("presence_interval", &self.presence_interval)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Secret;

    fn config(servers: &[&str]) -> NatsConfig {
        NatsConfig::new(servers.iter().map(|s| (*s).to_owned()).collect(), "n1")
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut c = config(&["nats://u:url-pass@127.0.0.1:4222", "nats://url-token@h:1"]);
        c.auth = NatsAuth::UserPassword {
            user: "chat".to_owned(),
            password: Secret::new("set-pass"),
        };
        let shown = format!("{c:?}");
        for secret in ["url-pass", "url-token", "set-pass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("chat") && shown.contains("127.0.0.1:4222"),
            "{shown}"
        );
        c.auth = NatsAuth::Token(Secret::new("set-token"));
        assert!(!format!("{c:?}").contains("set-token"));
    }
}
