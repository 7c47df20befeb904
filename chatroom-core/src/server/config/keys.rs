//! The operator-facing form of [`ServerConfig`]: one flat table whose keys
//! are the names a config file, `--set` and the `CHATROOM_*` variables use.
//!
//! The groups are for embedders; operators keep the flat names they have
//! always had. Listing every key once here, next to the field it stands
//! for, keeps the two forms from drifting apart, fixes the order keys are
//! printed in (`--print-config`, `--help`), and lets serde refuse unknown
//! keys, which it cannot do through `#[serde(flatten)]`.

use serde::{Deserialize, Serialize};

use crate::broker::Secret;
use crate::history::SyncMode;

use super::{HistoryKind, LogFormat, ServerConfig};

/// Declares `FlatConfig` with one field per `key: Type => path.in.config`
/// line, and the conversions both ways.
macro_rules! operator_keys {
    ($($key:ident: $ty:ty => $($path:ident).+;)*) => {
        /// Every setting under its operator-facing key.
        #[derive(Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub(super) struct FlatConfig {
            $($key: $ty,)*
        }

        impl From<FlatConfig> for ServerConfig {
            fn from(flat: FlatConfig) -> Self {
                let mut config = Self::default();
                $(config.$($path).+ = flat.$key;)*
                config
            }
        }

        impl From<ServerConfig> for FlatConfig {
            fn from(config: ServerConfig) -> Self {
                Self {
                    $($key: config.$($path).+,)*
                }
            }
        }
    };
}

// The order is the order of `--print-config` and of the `--help` table.
operator_keys! {
    server_name: String => server_name;
    default_room: String => default_room;
    max_line_len: usize => limits.max_line_len;
    max_connections: usize => limits.max_connections;
    outbox_frames: usize => limits.outbox_frames;
    outbox_bytes: usize => limits.outbox_bytes;
    queue_budget_bytes: usize => limits.queue_budget_bytes;
    sniff_ms: u64 => limits.sniff_ms;
    browser_sniff_ms: u64 => limits.browser_sniff_ms;
    handshake_timeout_secs: u64 => limits.handshake_timeout_secs;
    ping_interval_secs: u64 => limits.ping_interval_secs;
    idle_timeout_secs: u64 => limits.idle_timeout_secs;
    text_idle_timeout_secs: u64 => limits.text_idle_timeout_secs;
    write_timeout_secs: u64 => limits.write_timeout_secs;
    max_rooms_per_client: usize => limits.max_rooms_per_client;
    rate_per_sec: f64 => limits.rate_per_sec;
    rate_burst: u32 => limits.rate_burst;
    max_errors: u32 => limits.max_errors;
    error_refill_secs: u64 => limits.error_refill_secs;
    shutdown_timeout_secs: u64 => shutdown_timeout_secs;
    history: HistoryKind => history.store;
    data_dir: String => history.data_dir;
    history_sync: SyncMode => history.sync;
    history_max_messages: u64 => history.max_messages;
    history_max_age_secs: u64 => history.max_age_secs;
    history_sweep_secs: u64 => history.sweep_secs;
    history_on_join: u32 => history.on_join;
    history_page_max: u32 => history.page_max;
    recent_per_room: usize => history.recent_per_room;
    web: bool => web.enabled;
    web_origins: Vec<String> => web.origins;
    tls_cert: String => tls.cert;
    tls_key: String => tls.key;
    max_connections_per_ip: usize => limits.max_connections_per_ip;
    connect_rate_per_ip: f64 => limits.connect_rate_per_ip;
    connect_burst_per_ip: u32 => limits.connect_burst_per_ip;
    admin_listen: String => ops.admin_listen;
    log_format: LogFormat => ops.log_format;
    discovery: bool => ops.discovery;
    discovery_port: u16 => ops.discovery_port;
    cluster: Vec<String> => cluster.servers;
    node_name: String => cluster.node_name;
    nick_lease_secs: u64 => cluster.nick_lease_secs;
    cluster_replicas: usize => cluster.replicas;
    cluster_user: String => cluster.user;
    cluster_password: Secret => cluster.password;
    cluster_password_file: String => cluster.password_file;
    cluster_token: Secret => cluster.token;
    cluster_token_file: String => cluster.token_file;
    cluster_creds: String => cluster.creds;
    cluster_tls_ca: String => cluster.tls_ca;
    cluster_tls_cert: String => cluster.tls_cert;
    cluster_tls_key: String => cluster.tls_key;
    cluster_tls_required: bool => cluster.tls_required;
    hash_memory_kib: u32 => accounts.hash_memory_kib;
    hash_iterations: u32 => accounts.hash_iterations;
    hash_parallelism: u32 => accounts.hash_parallelism;
    login_attempts: u32 => accounts.login_attempts;
    login_lockout_secs: u64 => accounts.login_lockout_secs;
    operators: Vec<String> => accounts.operators;
    room_owners: Vec<String> => accounts.room_owners;
}

impl Default for FlatConfig {
    fn default() -> Self {
        ServerConfig::default().into()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::server::{ClusterConfig, HistoryConfig, LimitsConfig, ServerConfig, TlsConfig};

    #[test]
    fn the_keys_are_the_flat_names_operators_use() {
        let Value::Object(fields) = serde_json::to_value(ServerConfig::default()).unwrap() else {
            panic!("a config serializes as a table");
        };
        let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 61, "{keys:?}");
        for key in [
            "max_line_len",
            "history",
            "history_sync",
            "web",
            "tls_key",
            "cluster",
        ] {
            assert!(keys.contains(&key), "{key}");
        }
    }

    #[test]
    fn each_key_sets_its_own_field() {
        let config: ServerConfig = serde_json::from_value(json!({
            "tls_cert": "c.pem",
            "tls_key": "k.pem",
            "cluster_tls_cert": "cc.pem",
            "cluster_tls_key": "ck.pem",
            "history_max_messages": 7,
            "history_max_age_secs": 8,
            "max_connections": 9,
            "max_connections_per_ip": 10,
        }))
        .unwrap();
        let expected = ServerConfig::default()
            .with_tls(TlsConfig::default().with_cert("c.pem").with_key("k.pem"))
            .with_cluster(
                ClusterConfig::default()
                    .with_tls_cert("cc.pem")
                    .with_tls_key("ck.pem"),
            )
            .with_history(
                HistoryConfig::default()
                    .with_max_messages(7)
                    .with_max_age_secs(8),
            )
            .with_limits(
                LimitsConfig::default()
                    .with_max_connections(9)
                    .with_max_connections_per_ip(10),
            );
        assert_eq!(config, expected);
        let again: ServerConfig =
            serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let e = serde_json::from_value::<ServerConfig>(json!({"max_conections": 5})).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `max_conections`"),
            "{e}"
        );
    }
}
