//! The engine's settings, grouped by what they govern, each with its
//! default.
//!
//! Every group is `#[non_exhaustive]`, so a new setting is not a breaking
//! change: an embedder starts from [`Default`] and changes what it needs
//! with the chainable `with_*` setters (or by assigning a public field):
//!
//! ```
//! use chatroom_core::server::{HistoryConfig, HistoryKind, LimitsConfig, ServerConfig};
//!
//! let config = ServerConfig::default()
//!     .with_server_name("embedded")
//!     .with_limits(LimitsConfig::default().with_max_connections(500))
//!     .with_history(HistoryConfig::default().with_store(HistoryKind::Memory));
//! assert_eq!(config.limits.max_connections, 500);
//! ```
//!
//! Operators never see the groups: a config file, `--set` and the
//! `CHATROOM_*` variables name each setting by one flat key
//! (`max_connections`, `history_sync`, `cluster_user`), and [`ServerConfig`]
//! serializes to and from exactly those keys (see `keys.rs`).

mod accounts;
mod keys;
mod ops;
mod validate;

use crate::broker::Secret;
use crate::history::{Retention, SyncMode};
use crate::protocol::DEFAULT_MAX_LINE_LEN;

pub use accounts::AccountsConfig;
pub use ops::{LogFormat, OpsConfig};
pub(crate) use validate::Limits;

/// Writes one chainable setter per listed field: `with_x(value)` sets `x`
/// and hands the settings back. A field marked `[into]` takes anything that
/// converts into its type (`&str` for a `String`, say); the others take the
/// type itself, so that an integer literal needs no suffix.
macro_rules! setters {
    ($group:ty { $($setter:ident => $field:ident: $ty:ty $([$into:ident])?;)* }) => {
        impl $group {
            $(setters!(@one $setter, $field, $ty, $($into)?);)*
        }
    };
    (@one $setter:ident, $field:ident, $ty:ty, into) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub fn $setter(mut self, value: impl Into<$ty>) -> Self {
            self.$field = value.into();
            self
        }
    };
    (@one $setter:ident, $field:ident, $ty:ty,) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub fn $setter(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
    };
}

/// Everything the engine can be told, in groups. Each setting has a
/// default ([`ServerConfig::default`]); a config file or the environment
/// sets the rest. Durations are whole milliseconds or seconds, as the
/// field name says.
///
/// It (de)serializes as one flat table of the operator-facing keys, and
/// refuses a key it does not know.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "keys::FlatConfig", into = "keys::FlatConfig")]
#[non_exhaustive]
pub struct ServerConfig {
    /// The name the server gives itself in `welcome`.
    pub server_name: String,
    /// The room text-dialect clients join on connect.
    pub default_room: String,
    /// How long a graceful shutdown may take before connections are dropped.
    pub shutdown_timeout_secs: u64,
    /// What one connection, and one peer address, may do.
    pub limits: LimitsConfig,
    /// Where room messages are kept and how much of them.
    pub history: HistoryConfig,
    /// The web page and WebSocket endpoint on the chat port.
    pub web: WebConfig,
    /// TLS on the listen addresses.
    pub tls: TlsConfig,
    /// Sharing one room space with other nodes over NATS.
    pub cluster: ClusterConfig,
    /// The admin endpoint and the log format (read by the server binary).
    pub ops: OpsConfig,
    /// Registered nicknames, login throttling and server operators.
    pub accounts: AccountsConfig,
}

/// Limits on connections: sizes, timeouts and rates (keys as the field
/// names).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Longest line a client may send, in bytes before the newline.
    pub max_line_len: usize,
    /// Most connections open at once; more are refused with `server_full`.
    pub max_connections: usize,
    /// Most frames waiting in one connection's outbound queue.
    pub outbox_frames: usize,
    /// Most bytes waiting in one connection's outbound queue.
    pub outbox_bytes: usize,
    /// Most bytes all connections' outbound queues may hold together beyond
    /// the first 64 KiB of each. Past it, room traffic is held back from
    /// the members whose queues would grow (they catch up from the room's
    /// history as they read), so the server's queue memory stays bounded
    /// whatever the clients do.
    pub queue_budget_bytes: usize,
    /// How long the server waits for a first byte before it decides the
    /// client speaks the text dialect and greets it.
    pub sniff_ms: u64,
    /// The same wait for a connection from an address that asked for the
    /// web page within the last ten minutes: browsers open connections
    /// ahead of need and send their request on them later. A value below
    /// `sniff_ms` counts as `sniff_ms`.
    pub browser_sniff_ms: u64,
    /// How long a native client has to complete its `hello`.
    pub handshake_timeout_secs: u64,
    /// Silence after which a native client is sent a `ping`.
    pub ping_interval_secs: u64,
    /// Silence after which a native client is disconnected.
    pub idle_timeout_secs: u64,
    /// Silence after which a text-dialect client is disconnected (0: never).
    pub text_idle_timeout_secs: u64,
    /// How long one write to a client may wait for its socket to take
    /// bytes; a client that reads nothing for this long is closed as dead.
    /// A client that reads slowly is never closed for it: it falls behind
    /// and is caught up.
    pub write_timeout_secs: u64,
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
}

/// Where history is kept, and how much. The operator's keys are `history`
/// (for [`store`](Self::store)), `data_dir`, `recent_per_room` and
/// `history_` followed by the field name for the rest.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Which store [`Server::builder`](super::Server::builder) opens:
    /// `sqlite` (durable, under `data_dir`) or `memory` (lost on restart).
    /// [`Server::new`](super::Server::new) always keeps history in memory;
    /// [`Server::with_history`](super::Server::with_history) takes a store
    /// of the embedder's own.
    pub store: HistoryKind,
    /// The directory of the durable history store.
    pub data_dir: String,
    /// `normal`: a message survives the server being killed once committed;
    /// `full`: also a power loss (an fsync per commit).
    pub sync: SyncMode,
    /// Most messages kept per room; older ones are removed in the background.
    pub max_messages: u64,
    /// Oldest message kept, in seconds of age (0: no age limit).
    pub max_age_secs: u64,
    /// How often retention runs.
    pub sweep_secs: u64,
    /// Messages sent to a client when it joins a room (it may ask for fewer).
    pub on_join: u32,
    /// Most messages in one `history` reply.
    pub page_max: u32,
    /// Latest messages each live room keeps in memory for joins and resumes.
    pub recent_per_room: usize,
}

/// Which history store [`Server::builder`](super::Server::builder) opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HistoryKind {
    /// The durable SQLite store under `data_dir` (feature `sqlite`).
    Sqlite,
    /// A bounded in-memory store, lost on restart.
    Memory,
}

/// The web page and WebSocket endpoint (keys `web` and `web_origins`).
///
/// They are served only where the crate is built with the `web` feature.
/// Without it both settings are still accepted, so the same config files
/// work with every build, but have no effect: an HTTP request line on the
/// chat port is read as a line of the text dialect, as with `web = false`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WebConfig {
    /// Serve the web page at `/` and the WebSocket endpoint at `/ws` on the
    /// chat port (an HTTP `GET` is told apart from chat by its first line).
    pub enabled: bool,
    /// Origins (`scheme://host:port`) besides the server's own whose pages
    /// may open the WebSocket; empty allows the same origin only.
    pub origins: Vec<String>,
}

/// TLS on the listen addresses (keys `tls_cert` and `tls_key`). The engine
/// serves whatever listener it is given; the server binary reads these to
/// wrap its listeners in TLS.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain: when set (with `key`), the server binary
    /// speaks TLS on every listen address. Empty: plain TCP.
    pub cert: String,
    /// PEM private key of `cert`.
    pub key: String,
}

/// A cluster of chat nodes sharing one room space over NATS (see
/// docs/operations.md). The operator's keys are `cluster` (for
/// [`servers`](Self::servers)), `node_name`, `nick_lease_secs` and
/// `cluster_` followed by the field name for the rest.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// NATS servers (`nats://HOST:PORT`). Empty: this server is a node on
    /// its own, with no external service. Read by
    /// [`Server::builder`](super::Server::builder); an embedder may instead
    /// pass its own broker to [`Server::with_broker`](super::Server::with_broker).
    pub servers: Vec<String>,
    /// This node's name in a cluster, in logs and nick claims (empty: from
    /// the process id).
    pub node_name: String,
    /// How long a nick claim outlives a node that stopped renewing it (died,
    /// or lost NATS).
    pub nick_lease_secs: u64,
    /// How many NATS servers keep a copy of each JetStream stream (rooms and
    /// nick claims): 1 for a single NATS server, 3 for a NATS cluster that
    /// must survive losing a server. Applies to streams the node creates;
    /// existing streams keep theirs.
    pub replicas: usize,
    /// The user this node logs in to NATS as (with `password` or
    /// `password_file`).
    pub user: String,
    /// The password of `user`. Never shown in logs or `Debug`.
    pub password: Secret,
    /// A file whose text (less a final line break) is the password of
    /// `user`, so that it is on no command line.
    pub password_file: String,
    /// The token this node logs in to NATS with. Never shown in logs or
    /// `Debug`.
    pub token: Secret,
    /// A file whose text (less a final line break) is the token.
    pub token_file: String,
    /// A NATS `.creds` file (user JWT and NKey seed), as operator mode
    /// hands out.
    pub creds: String,
    /// PEM CA certificates that NATS's certificate must chain to, instead
    /// of the system's roots. Implies `tls_required`.
    pub tls_ca: String,
    /// PEM client certificate this node shows NATS (mutual TLS), with
    /// `tls_key`.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Refuse a NATS server that does not speak TLS.
    pub tls_required: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_name: "chatroom".to_owned(),
            default_room: "lobby".to_owned(),
            shutdown_timeout_secs: 5,
            limits: LimitsConfig::default(),
            history: HistoryConfig::default(),
            web: WebConfig::default(),
            tls: TlsConfig::default(),
            cluster: ClusterConfig::default(),
            ops: OpsConfig::default(),
            accounts: AccountsConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_connections: 10_000,
            outbox_frames: 1024,
            outbox_bytes: 1024 * 1024,
            queue_budget_bytes: 512 * 1024 * 1024,
            sniff_ms: 40,
            browser_sniff_ms: 250,
            handshake_timeout_secs: 10,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            text_idle_timeout_secs: 3600,
            write_timeout_secs: 60,
            max_rooms_per_client: 32,
            rate_per_sec: 20.0,
            rate_burst: 40,
            max_errors: 20,
            error_refill_secs: 3,
            max_connections_per_ip: 64,
            connect_rate_per_ip: 10.0,
            connect_burst_per_ip: 64,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            store: HistoryKind::Sqlite,
            data_dir: "./chatroom-data".to_owned(),
            sync: SyncMode::Normal,
            max_messages: 100_000,
            max_age_secs: 30 * 24 * 3600,
            sweep_secs: 60,
            on_join: 20,
            page_max: 200,
            recent_per_room: 256,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            origins: Vec::new(),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            node_name: String::new(),
            nick_lease_secs: 15,
            replicas: 1,
            user: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            token: Secret::default(),
            token_file: String::new(),
            creds: String::new(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_required: false,
        }
    }
}

impl HistoryConfig {
    /// The retention policy `max_messages` and `max_age_secs` describe.
    pub fn retention(&self) -> Retention {
        Retention {
            max_messages: self.max_messages,
            max_age_ms: (self.max_age_secs > 0).then(|| self.max_age_secs.saturating_mul(1000)),
        }
    }
}

setters!(ServerConfig {
    with_server_name => server_name: String [into];
    with_default_room => default_room: String [into];
    with_shutdown_timeout_secs => shutdown_timeout_secs: u64;
    with_limits => limits: LimitsConfig;
    with_history => history: HistoryConfig;
    with_web => web: WebConfig;
    with_tls => tls: TlsConfig;
    with_cluster => cluster: ClusterConfig;
    with_ops => ops: OpsConfig;
    with_accounts => accounts: AccountsConfig;
});

setters!(LimitsConfig {
    with_max_line_len => max_line_len: usize;
    with_max_connections => max_connections: usize;
    with_outbox_frames => outbox_frames: usize;
    with_outbox_bytes => outbox_bytes: usize;
    with_queue_budget_bytes => queue_budget_bytes: usize;
    with_sniff_ms => sniff_ms: u64;
    with_browser_sniff_ms => browser_sniff_ms: u64;
    with_handshake_timeout_secs => handshake_timeout_secs: u64;
    with_ping_interval_secs => ping_interval_secs: u64;
    with_idle_timeout_secs => idle_timeout_secs: u64;
    with_text_idle_timeout_secs => text_idle_timeout_secs: u64;
    with_write_timeout_secs => write_timeout_secs: u64;
    with_max_rooms_per_client => max_rooms_per_client: usize;
    with_rate_per_sec => rate_per_sec: f64;
    with_rate_burst => rate_burst: u32;
    with_max_errors => max_errors: u32;
    with_error_refill_secs => error_refill_secs: u64;
    with_max_connections_per_ip => max_connections_per_ip: usize;
    with_connect_rate_per_ip => connect_rate_per_ip: f64;
    with_connect_burst_per_ip => connect_burst_per_ip: u32;
});

setters!(HistoryConfig {
    with_store => store: HistoryKind;
    with_data_dir => data_dir: String [into];
    with_sync => sync: SyncMode;
    with_max_messages => max_messages: u64;
    with_max_age_secs => max_age_secs: u64;
    with_sweep_secs => sweep_secs: u64;
    with_on_join => on_join: u32;
    with_page_max => page_max: u32;
    with_recent_per_room => recent_per_room: usize;
});

setters!(OpsConfig {
    with_admin_listen => admin_listen: String [into];
    with_log_format => log_format: LogFormat;
    with_discovery => discovery: bool;
    with_discovery_port => discovery_port: u16;
});

setters!(WebConfig {
    with_enabled => enabled: bool;
    with_origins => origins: Vec<String>;
});

setters!(TlsConfig {
    with_cert => cert: String [into];
    with_key => key: String [into];
});

setters!(ClusterConfig {
    with_servers => servers: Vec<String>;
    with_node_name => node_name: String [into];
    with_nick_lease_secs => nick_lease_secs: u64;
    with_replicas => replicas: usize;
    with_user => user: String [into];
    with_password => password: Secret [into];
    with_password_file => password_file: String [into];
    with_token => token: Secret [into];
    with_token_file => token_file: String [into];
    with_creds => creds: String [into];
    with_tls_ca => tls_ca: String [into];
    with_tls_cert => tls_cert: String [into];
    with_tls_key => tls_key: String [into];
    with_tls_required => tls_required: bool;
});

setters!(AccountsConfig {
    with_hash_memory_kib => hash_memory_kib: u32;
    with_hash_iterations => hash_iterations: u32;
    with_hash_parallelism => hash_parallelism: u32;
    with_login_attempts => login_attempts: u32;
    with_login_lockout_secs => login_lockout_secs: u64;
    with_operators => operators: Vec<String>;
    with_room_owners => room_owners: Vec<String>;
});
