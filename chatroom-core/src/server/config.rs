//! The engine's settings: every limit with its default, validated once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::Secret;
use crate::history::{Retention, SyncMode};
use crate::protocol::{DEFAULT_MAX_LINE_LEN, MAX_TEXT_LEN, RoomName};

use super::error::ConfigError;

/// Everything the engine can be told. Each field has a default
/// ([`ServerConfig::default`]); a config file or the environment sets the
/// rest. Durations are whole milliseconds or seconds, as the field name says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The name the server gives itself in `welcome`.
    pub server_name: String,
    /// The room text-dialect clients join on connect.
    pub default_room: String,
    /// Longest line a client may send, in bytes before the newline.
    pub max_line_len: usize,
    /// Most connections open at once; more are refused with `server_full`.
    pub max_connections: usize,
    /// Most frames waiting in one connection's outbound queue.
    pub outbox_frames: usize,
    /// Most bytes waiting in one connection's outbound queue.
    pub outbox_bytes: usize,
    /// How long the server waits for a first byte before it decides the
    /// client speaks the text dialect and greets it.
    pub sniff_ms: u64,
    /// How long a native client has to complete its `hello`.
    pub handshake_timeout_secs: u64,
    /// Silence after which a native client is sent a `ping`.
    pub ping_interval_secs: u64,
    /// Silence after which a native client is disconnected.
    pub idle_timeout_secs: u64,
    /// Silence after which a text-dialect client is disconnected (0: never).
    pub text_idle_timeout_secs: u64,
    /// Most rooms one connection may be in.
    pub max_rooms_per_client: usize,
    /// Frames per second a connection may send, on average.
    pub rate_per_sec: f64,
    /// Frames a connection may send in a burst above the average rate.
    pub rate_burst: u32,
    /// Errors a connection may cause in a burst before it is disconnected;
    /// the allowance refills at one error per `error_refill_secs`.
    pub max_errors: u32,
    /// Seconds for one error of allowance to come back.
    pub error_refill_secs: u64,
    /// How long a graceful shutdown may take before connections are dropped.
    pub shutdown_timeout_secs: u64,
    /// Where the server binary keeps history: `sqlite` (durable, under
    /// `data_dir`) or `memory` (lost on restart). An embedder that calls
    /// `Server::new` gets memory; it passes its own store to
    /// `Server::with_history` otherwise.
    pub history: HistoryKind,
    /// The directory of the durable history store.
    pub data_dir: String,
    /// `normal`: a message survives the server being killed once committed;
    /// `full`: also a power loss (an fsync per commit).
    pub history_sync: SyncMode,
    /// Most messages kept per room; older ones are removed in the background.
    pub history_max_messages: u64,
    /// Oldest message kept, in seconds of age (0: no age limit).
    pub history_max_age_secs: u64,
    /// How often retention runs.
    pub history_sweep_secs: u64,
    /// Messages sent to a client when it joins a room (it may ask for fewer).
    pub history_on_join: u32,
    /// Most messages in one `history` reply.
    pub history_page_max: u32,
    /// Latest messages each live room keeps in memory for joins and resumes.
    pub recent_per_room: usize,
    /// Serve the web page at `/` and the WebSocket endpoint at `/ws` on the
    /// chat port (an HTTP `GET` is told apart from chat by its first line).
    pub web: bool,
    /// Origins (`scheme://host:port`) besides the server's own whose pages
    /// may open the WebSocket; empty allows the same origin only.
    pub web_origins: Vec<String>,
    /// PEM certificate chain: when set (with `tls_key`), the server binary
    /// speaks TLS on every listen address. Empty: plain TCP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Most connections open at once from one peer address; more are
    /// refused with `too_many_connections`. An IPv6 peer's /64 counts as
    /// one address, since one host usually holds a whole /64.
    pub max_connections_per_ip: usize,
    /// Connections per second one peer address may open, on average;
    /// faster attempts are refused with `connecting_too_fast`.
    pub connect_rate_per_ip: f64,
    /// Connections one peer address may open in a burst above
    /// `connect_rate_per_ip`.
    pub connect_burst_per_ip: u32,
    /// NATS servers (`nats://HOST:PORT`) of a cluster of chat nodes that
    /// share one room space (see docs/operations.md). Empty: this server is
    /// a node on its own, with no external service. Used by the server
    /// binary; an embedder passes its own broker to `Server::with_broker`.
    pub cluster: Vec<String>,
    /// This node's name in a cluster, in logs and nick claims (empty: from
    /// the process id).
    pub node_name: String,
    /// In a cluster, how long a nick claim outlives a node that stopped
    /// renewing it (died, or lost NATS).
    pub nick_lease_secs: u64,
    /// In a cluster, how many NATS servers keep a copy of each JetStream
    /// stream (rooms and nick claims): 1 for a single NATS server, 3 for a
    /// NATS cluster that must survive losing a server. Applies to streams
    /// the node creates; existing streams keep theirs.
    pub cluster_replicas: usize,
    /// In a cluster, the user this node logs in to NATS as (with
    /// `cluster_password` or `cluster_password_file`).
    pub cluster_user: String,
    /// The password of `cluster_user`. Never shown in logs or `Debug`.
    pub cluster_password: Secret,
    /// A file whose text (less a final line break) is the password of
    /// `cluster_user`, so that it is on no command line.
    pub cluster_password_file: String,
    /// In a cluster, the token this node logs in to NATS with. Never shown
    /// in logs or `Debug`.
    pub cluster_token: Secret,
    /// A file whose text (less a final line break) is the token.
    pub cluster_token_file: String,
    /// In a cluster, a NATS `.creds` file (user JWT and NKey seed), as
    /// operator mode hands out.
    pub cluster_creds: String,
    /// PEM CA certificates that NATS's certificate must chain to, instead
    /// of the system's roots. Implies `cluster_tls_required`.
    pub cluster_tls_ca: String,
    /// PEM client certificate this node shows NATS (mutual TLS), with
    /// `cluster_tls_key`.
    pub cluster_tls_cert: String,
    /// PEM private key of `cluster_tls_cert`.
    pub cluster_tls_key: String,
    /// Refuse a NATS server that does not speak TLS.
    pub cluster_tls_required: bool,
}

/// Which history store the server binary opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryKind {
    /// The durable SQLite store under `data_dir`.
    Sqlite,
    /// A bounded in-memory store, lost on restart.
    Memory,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_name: "chatroom".to_owned(),
            default_room: "lobby".to_owned(),
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_connections: 10_000,
            outbox_frames: 1024,
            outbox_bytes: 1024 * 1024,
            sniff_ms: 250,
            handshake_timeout_secs: 10,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            text_idle_timeout_secs: 3600,
            max_rooms_per_client: 32,
            rate_per_sec: 20.0,
            rate_burst: 40,
            max_errors: 20,
            error_refill_secs: 3,
            shutdown_timeout_secs: 5,
            history: HistoryKind::Sqlite,
            data_dir: "./chatroom-data".to_owned(),
            history_sync: SyncMode::Normal,
            history_max_messages: 100_000,
            history_max_age_secs: 30 * 24 * 3600,
            history_sweep_secs: 60,
            history_on_join: 20,
            history_page_max: 200,
            recent_per_room: 256,
            web: true,
            web_origins: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            max_connections_per_ip: 64,
            connect_rate_per_ip: 10.0,
            connect_burst_per_ip: 64,
            cluster: Vec::new(),
            node_name: String::new(),
            nick_lease_secs: 15,
            cluster_replicas: 1,
            cluster_user: String::new(),
            cluster_password: Secret::default(),
            cluster_password_file: String::new(),
            cluster_token: Secret::default(),
            cluster_token_file: String::new(),
            cluster_creds: String::new(),
            cluster_tls_ca: String::new(),
            cluster_tls_cert: String::new(),
            cluster_tls_key: String::new(),
            cluster_tls_required: false,
        }
    }
}

/// A [`ServerConfig`] that passed validation, with its values in the types
/// the engine uses.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) server_name: String,
    pub(crate) default_room: RoomName,
    pub(crate) max_line_len: usize,
    pub(crate) max_connections: usize,
    pub(crate) outbox_frames: usize,
    pub(crate) outbox_bytes: usize,
    pub(crate) sniff: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) text_idle_timeout: Option<Duration>,
    pub(crate) max_rooms: usize,
    pub(crate) rate_per_sec: f64,
    pub(crate) rate_burst: u32,
    pub(crate) max_errors: u32,
    pub(crate) error_refill: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) retention: Retention,
    pub(crate) sweep_every: Duration,
    pub(crate) history_on_join: u64,
    pub(crate) history_page_max: usize,
    pub(crate) recent_per_room: usize,
    pub(crate) web: bool,
    /// Allowed origins, lower-cased, without a trailing `/`.
    pub(crate) web_origins: Vec<String>,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) connect_rate_per_ip: f64,
    pub(crate) connect_burst_per_ip: u32,
}

fn positive(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            field,
            reason: "must be greater than 0".to_owned(),
        });
    }
    Ok(())
}

impl ServerConfig {
    /// The retention policy the `history_max_*` settings describe.
    pub fn retention(&self) -> Retention {
        Retention {
            max_messages: self.history_max_messages,
            max_age_ms: (self.history_max_age_secs > 0)
                .then(|| self.history_max_age_secs.saturating_mul(1000)),
        }
    }

    /// Checks that the NATS credentials and TLS settings make one
    /// consistent whole: one way to log in, pairs complete.
    fn check_cluster_auth(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let has_password =
            !self.cluster_password.is_empty() || !self.cluster_password_file.is_empty();
        let has_token = !self.cluster_token.is_empty() || !self.cluster_token_file.is_empty();
        if !self.cluster_password.is_empty() && !self.cluster_password_file.is_empty() {
            return Err(invalid(
                "cluster_password",
                "give cluster_password or cluster_password_file, not both",
            ));
        }
        if !self.cluster_token.is_empty() && !self.cluster_token_file.is_empty() {
            return Err(invalid(
                "cluster_token",
                "give cluster_token or cluster_token_file, not both",
            ));
        }
        if has_password && self.cluster_user.is_empty() {
            return Err(invalid(
                "cluster_user",
                "a cluster password needs cluster_user",
            ));
        }
        if !self.cluster_user.is_empty() && !has_password {
            return Err(invalid(
                "cluster_password",
                "cluster_user needs cluster_password or cluster_password_file",
            ));
        }
        let ways = [
            !self.cluster_user.is_empty(),
            has_token,
            !self.cluster_creds.is_empty(),
        ];
        if ways.into_iter().filter(|&w| w).count() > 1 {
            return Err(invalid(
                "cluster_creds",
                "give one of cluster_user, cluster_token and cluster_creds",
            ));
        }
        if ways.contains(&true) && self.cluster.iter().any(|url| url.contains('@')) {
            return Err(invalid(
                "cluster",
                "credentials are in a cluster URL and in the settings; give them once",
            ));
        }
        if self.cluster_tls_cert.is_empty() != self.cluster_tls_key.is_empty() {
            let field = if self.cluster_tls_cert.is_empty() {
                "cluster_tls_cert"
            } else {
                "cluster_tls_key"
            };
            return Err(invalid(
                field,
                "cluster_tls_cert and cluster_tls_key go together",
            ));
        }
        Ok(())
    }

    /// Checks every value and converts it for the engine.
    pub(crate) fn validate(&self) -> Result<Limits, ConfigError> {
        let default_room =
            RoomName::parse_typed(&self.default_room).map_err(|e| ConfigError::Invalid {
                field: "default_room",
                reason: e.to_string(),
            })?;
        if self.server_name.is_empty() || self.server_name.chars().any(char::is_control) {
            return Err(ConfigError::Invalid {
                field: "server_name",
                reason: "must be non-empty printable text".to_owned(),
            });
        }
        // A line must fit the longest text plus its JSON envelope, or a
        // native client could never send a message of the promised size.
        let min_line = MAX_TEXT_LEN * 2;
        if self.max_line_len < min_line || self.max_line_len > 16 * 1024 * 1024 {
            return Err(ConfigError::Invalid {
                field: "max_line_len",
                reason: format!("must be between {min_line} and 16777216"),
            });
        }
        positive("max_connections", self.max_connections as u64)?;
        positive("outbox_frames", self.outbox_frames as u64)?;
        positive("outbox_bytes", self.outbox_bytes as u64)?;
        positive("sniff_ms", self.sniff_ms)?;
        positive("handshake_timeout_secs", self.handshake_timeout_secs)?;
        positive("ping_interval_secs", self.ping_interval_secs)?;
        positive("max_rooms_per_client", self.max_rooms_per_client as u64)?;
        positive("rate_burst", u64::from(self.rate_burst))?;
        positive("max_errors", u64::from(self.max_errors))?;
        positive("error_refill_secs", self.error_refill_secs)?;
        positive("history_max_messages", self.history_max_messages)?;
        positive("history_sweep_secs", self.history_sweep_secs)?;
        positive("history_page_max", u64::from(self.history_page_max))?;
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(ConfigError::Invalid {
                field: if self.tls_cert.is_empty() {
                    "tls_cert"
                } else {
                    "tls_key"
                },
                reason: "tls_cert and tls_key go together".to_owned(),
            });
        }
        if self.data_dir.is_empty() {
            return Err(ConfigError::Invalid {
                field: "data_dir",
                reason: "must not be empty".to_owned(),
            });
        }
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(ConfigError::Invalid {
                field: "idle_timeout_secs",
                reason: "must be longer than ping_interval_secs, so a live client can answer"
                    .to_owned(),
            });
        }
        if let Some(bad) = self
            .cluster
            .iter()
            .find(|url| url.is_empty() || url.chars().any(|c| c.is_whitespace() || c == ','))
        {
            return Err(ConfigError::Invalid {
                field: "cluster",
                reason: format!("`{bad}` is not a NATS URL like nats://127.0.0.1:4222"),
            });
        }
        if !(1..=5).contains(&self.cluster_replicas) {
            return Err(ConfigError::Invalid {
                field: "cluster_replicas",
                reason: "must be between 1 and 5 (JetStream's limit)".to_owned(),
            });
        }
        self.check_cluster_auth()?;
        if self.nick_lease_secs < 3 {
            return Err(ConfigError::Invalid {
                field: "nick_lease_secs",
                reason: "must be at least 3".to_owned(),
            });
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return Err(ConfigError::Invalid {
                field: "rate_per_sec",
                reason: "must be a number greater than 0".to_owned(),
            });
        }
        positive("max_connections_per_ip", self.max_connections_per_ip as u64)?;
        positive("connect_burst_per_ip", u64::from(self.connect_burst_per_ip))?;
        if !(self.connect_rate_per_ip.is_finite() && self.connect_rate_per_ip > 0.0) {
            return Err(ConfigError::Invalid {
                field: "connect_rate_per_ip",
                reason: "must be a number greater than 0".to_owned(),
            });
        }
        Ok(Limits {
            server_name: self.server_name.clone(),
            default_room,
            max_line_len: self.max_line_len,
            max_connections: self.max_connections,
            outbox_frames: self.outbox_frames,
            outbox_bytes: self.outbox_bytes,
            sniff: Duration::from_millis(self.sniff_ms),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            text_idle_timeout: (self.text_idle_timeout_secs > 0)
                .then(|| Duration::from_secs(self.text_idle_timeout_secs)),
            max_rooms: self.max_rooms_per_client,
            rate_per_sec: self.rate_per_sec,
            rate_burst: self.rate_burst,
            max_errors: self.max_errors,
            error_refill: Duration::from_secs(self.error_refill_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            retention: self.retention(),
            sweep_every: Duration::from_secs(self.history_sweep_secs),
            history_on_join: u64::from(self.history_on_join),
            history_page_max: self.history_page_max as usize,
            recent_per_room: self.recent_per_room,
            web: self.web,
            web_origins: self
                .web_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_connections_per_ip: self.max_connections_per_ip,
            connect_rate_per_ip: self.connect_rate_per_ip,
            connect_burst_per_ip: self.connect_burst_per_ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad = [
            ServerConfig {
                default_room: "no spaces".into(),
                ..Default::default()
            },
            ServerConfig {
                max_line_len: 10,
                ..Default::default()
            },
            ServerConfig {
                outbox_frames: 0,
                ..Default::default()
            },
            ServerConfig {
                idle_timeout_secs: 5,
                ping_interval_secs: 10,
                ..Default::default()
            },
            ServerConfig {
                rate_per_sec: f64::NAN,
                ..Default::default()
            },
        ];
        let fields = [
            "default_room",
            "max_line_len",
            "outbox_frames",
            "idle_timeout_secs",
            "rate_per_sec",
        ];
        for (config, field) in bad.iter().zip(fields) {
            let e = config.validate().unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn cluster_credentials_must_be_consistent() {
        let base = || ServerConfig {
            cluster: vec!["nats://127.0.0.1:4222".to_owned()],
            ..Default::default()
        };
        let cases = [
            (
                ServerConfig {
                    cluster_tls_cert: "c.pem".into(),
                    ..base()
                },
                "cluster_tls_key",
            ),
            (
                ServerConfig {
                    cluster_tls_key: "k.pem".into(),
                    ..base()
                },
                "cluster_tls_cert",
            ),
            (
                ServerConfig {
                    cluster_user: "u".into(),
                    ..base()
                },
                "cluster_password",
            ),
            (
                ServerConfig {
                    cluster_password: "p".into(),
                    ..base()
                },
                "cluster_user",
            ),
            (
                ServerConfig {
                    cluster_user: "u".into(),
                    cluster_password: "p".into(),
                    cluster_password_file: "f".into(),
                    ..base()
                },
                "not both",
            ),
            (
                ServerConfig {
                    cluster_token: "t".into(),
                    cluster_creds: "c".into(),
                    ..base()
                },
                "one of",
            ),
            (
                ServerConfig {
                    cluster: vec!["nats://u:p@h:1".into()],
                    cluster_token_file: "t".into(),
                    ..base()
                },
                "once",
            ),
        ];
        for (config, needle) in cases {
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(
                !e.contains("p\"") && !format!("{config:?}").contains("\"p\""),
                "{e}"
            );
        }
        let good = ServerConfig {
            cluster_user: "u".into(),
            cluster_password: "p".into(),
            cluster_tls_ca: "ca.pem".into(),
            cluster_tls_cert: "c.pem".into(),
            cluster_tls_key: "k.pem".into(),
            ..base()
        };
        good.validate().unwrap();
    }

    #[test]
    fn debug_output_never_shows_a_cluster_secret() {
        let config = ServerConfig {
            cluster_password: "pass-secret".into(),
            cluster_token: "token-secret".into(),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("pass-secret") && !shown.contains("token-secret"),
            "{shown}"
        );
    }

    #[test]
    fn per_address_limits_must_be_positive() {
        let bad = [
            ServerConfig {
                max_connections_per_ip: 0,
                ..Default::default()
            },
            ServerConfig {
                connect_rate_per_ip: -1.0,
                ..Default::default()
            },
            ServerConfig {
                connect_rate_per_ip: f64::INFINITY,
                ..Default::default()
            },
            ServerConfig {
                connect_burst_per_ip: 0,
                ..Default::default()
            },
        ];
        let fields = [
            "max_connections_per_ip",
            "connect_rate_per_ip",
            "connect_rate_per_ip",
            "connect_burst_per_ip",
        ];
        for (config, field) in bad.iter().zip(fields) {
            let e = config.validate().unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
