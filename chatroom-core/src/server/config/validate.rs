//! Checking a [`ServerConfig`] once, and converting it into the [`Limits`]
//! the sessions read. Errors name the operator-facing key, since that is
//! what a person fixes.

use std::time::Duration;

use crate::history::Retention;
use crate::protocol::{MAX_TEXT_LEN, RoomName};
use crate::server::error::ConfigError;

use super::{ClusterConfig, ServerConfig};

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
    pub(crate) queue_budget: usize,
    pub(crate) sniff: Duration,
    pub(crate) browser_sniff: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) text_idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Duration,
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
    // Without the `web` feature the settings still parse, so config files
    // keep working, but nothing reads them.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) web: bool,
    /// Allowed origins, lower-cased, without a trailing `/`.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) web_origins: Vec<String>,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) connect_rate_per_ip: f64,
    pub(crate) connect_burst_per_ip: u32,
    pub(crate) hash: crate::accounts::HashParams,
    pub(crate) login_attempts: u32,
    pub(crate) login_lockout: Duration,
    /// The server operators' folded account names.
    pub(crate) operators: Vec<String>,
    /// Declared owners: folded room name, folded account name.
    pub(crate) room_owners: Vec<(String, String)>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn positive(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(field, "must be greater than 0"));
    }
    Ok(())
}

fn positive_rate(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(field, "must be a number greater than 0"));
    }
    Ok(())
}

impl ClusterConfig {
    /// Checks the NATS servers, and that the credentials and TLS settings
    /// make one consistent whole: one way to log in, pairs complete.
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self
            .servers
            .iter()
            .find(|url| url.is_empty() || url.chars().any(|c| c.is_whitespace() || c == ','))
        {
            return Err(invalid(
                "cluster",
                format!("`{bad}` is not a NATS URL like nats://127.0.0.1:4222"),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid(
                "cluster_replicas",
                "must be between 1 and 5 (JetStream's limit)",
            ));
        }
        self.check_auth()?;
        if self.nick_lease_secs < 3 {
            return Err(invalid("nick_lease_secs", "must be at least 3"));
        }
        Ok(())
    }

    fn check_auth(&self) -> Result<(), ConfigError> {
        let has_password = !self.password.is_empty() || !self.password_file.is_empty();
        let has_token = !self.token.is_empty() || !self.token_file.is_empty();
        if !self.password.is_empty() && !self.password_file.is_empty() {
            return Err(invalid(
                "cluster_password",
                "give cluster_password or cluster_password_file, not both",
            ));
        }
        if !self.token.is_empty() && !self.token_file.is_empty() {
            return Err(invalid(
                "cluster_token",
                "give cluster_token or cluster_token_file, not both",
            ));
        }
        if has_password && self.user.is_empty() {
            return Err(invalid(
                "cluster_user",
                "a cluster password needs cluster_user",
            ));
        }
        if !self.user.is_empty() && !has_password {
            return Err(invalid(
                "cluster_password",
                "cluster_user needs cluster_password or cluster_password_file",
            ));
        }
        let ways = [!self.user.is_empty(), has_token, !self.creds.is_empty()];
        if ways.into_iter().filter(|&w| w).count() > 1 {
            return Err(invalid(
                "cluster_creds",
                "give one of cluster_user, cluster_token and cluster_creds",
            ));
        }
        if ways.contains(&true) && self.servers.iter().any(|url| url.contains('@')) {
            return Err(invalid(
                "cluster",
                "credentials are in a cluster URL and in the settings; give them once",
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            let field = if self.tls_cert.is_empty() {
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
}

impl ServerConfig {
    /// Checks every value and converts it for the engine. The checks run in
    /// the order they always have, so the first error named is the same.
    pub(crate) fn validate(&self) -> Result<Limits, ConfigError> {
        let limits = &self.limits;
        let history = &self.history;
        let default_room = RoomName::parse_typed(&self.default_room)
            .map_err(|e| invalid("default_room", e.to_string()))?;
        if self.server_name.is_empty() || self.server_name.chars().any(char::is_control) {
            return Err(invalid("server_name", "must be non-empty printable text"));
        }
        // A line must fit the longest text plus its JSON envelope, or a
        // native client could never send a message of the promised size.
        let min_line = MAX_TEXT_LEN * 2;
        if limits.max_line_len < min_line || limits.max_line_len > 16 * 1024 * 1024 {
            return Err(invalid(
                "max_line_len",
                format!("must be between {min_line} and 16777216"),
            ));
        }
        positive("max_connections", limits.max_connections as u64)?;
        positive("outbox_frames", limits.outbox_frames as u64)?;
        positive("outbox_bytes", limits.outbox_bytes as u64)?;
        if limits.queue_budget_bytes < limits.outbox_bytes {
            return Err(invalid(
                "queue_budget_bytes",
                "must be at least outbox_bytes, or no queue could ever fill",
            ));
        }
        positive("sniff_ms", limits.sniff_ms)?;
        positive("handshake_timeout_secs", limits.handshake_timeout_secs)?;
        positive("ping_interval_secs", limits.ping_interval_secs)?;
        positive("max_rooms_per_client", limits.max_rooms_per_client as u64)?;
        positive("rate_burst", u64::from(limits.rate_burst))?;
        positive("max_errors", u64::from(limits.max_errors))?;
        positive("error_refill_secs", limits.error_refill_secs)?;
        positive("history_max_messages", history.max_messages)?;
        positive("history_sweep_secs", history.sweep_secs)?;
        positive("history_page_max", u64::from(history.page_max))?;
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            let field = if self.tls.cert.is_empty() {
                "tls_cert"
            } else {
                "tls_key"
            };
            return Err(invalid(field, "tls_cert and tls_key go together"));
        }
        if history.data_dir.is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        positive("write_timeout_secs", limits.write_timeout_secs)?;
        if limits.idle_timeout_secs <= limits.ping_interval_secs {
            return Err(invalid(
                "idle_timeout_secs",
                "must be longer than ping_interval_secs, so a live client can answer",
            ));
        }
        self.cluster.check()?;
        positive_rate("rate_per_sec", limits.rate_per_sec)?;
        positive(
            "max_connections_per_ip",
            limits.max_connections_per_ip as u64,
        )?;
        positive(
            "connect_burst_per_ip",
            u64::from(limits.connect_burst_per_ip),
        )?;
        positive_rate("connect_rate_per_ip", limits.connect_rate_per_ip)?;
        self.ops.admin_addr()?;
        let operators = self.accounts.check()?;
        let room_owners = self.accounts.owners()?;
        positive("discovery_port", u64::from(self.ops.discovery_port))?;
        Ok(Limits {
            server_name: self.server_name.clone(),
            default_room,
            max_line_len: limits.max_line_len,
            max_connections: limits.max_connections,
            outbox_frames: limits.outbox_frames,
            outbox_bytes: limits.outbox_bytes,
            queue_budget: limits.queue_budget_bytes,
            sniff: Duration::from_millis(limits.sniff_ms),
            // It lengthens the window for browsers, never shortens it: an
            // operator who raises `sniff_ms` alone raises both.
            browser_sniff: Duration::from_millis(limits.browser_sniff_ms.max(limits.sniff_ms)),
            handshake_timeout: Duration::from_secs(limits.handshake_timeout_secs),
            ping_interval: Duration::from_secs(limits.ping_interval_secs),
            idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
            text_idle_timeout: (limits.text_idle_timeout_secs > 0)
                .then(|| Duration::from_secs(limits.text_idle_timeout_secs)),
            write_timeout: Duration::from_secs(limits.write_timeout_secs),
            max_rooms: limits.max_rooms_per_client,
            rate_per_sec: limits.rate_per_sec,
            rate_burst: limits.rate_burst,
            max_errors: limits.max_errors,
            error_refill: Duration::from_secs(limits.error_refill_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            retention: history.retention(),
            sweep_every: Duration::from_secs(history.sweep_secs),
            history_on_join: u64::from(history.on_join),
            history_page_max: history.page_max as usize,
            recent_per_room: history.recent_per_room,
            web: self.web.enabled,
            web_origins: self
                .web
                .origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_connections_per_ip: limits.max_connections_per_ip,
            connect_rate_per_ip: limits.connect_rate_per_ip,
            connect_burst_per_ip: limits.connect_burst_per_ip,
            hash: self.accounts.hash_params(),
            login_attempts: self.accounts.login_attempts,
            login_lockout: Duration::from_secs(self.accounts.login_lockout_secs),
            operators,
            room_owners,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::server::{ClusterConfig, LimitsConfig, ServerConfig};

    fn with_limits(limits: LimitsConfig) -> ServerConfig {
        ServerConfig::default().with_limits(limits)
    }

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default().validate().unwrap();
    }

    #[test]
    fn the_browsers_window_is_never_shorter_than_everyones() {
        let raised = ServerConfig::default()
            .with_limits(LimitsConfig::default().with_sniff_ms(400))
            .validate()
            .unwrap();
        assert_eq!(raised.browser_sniff, Duration::from_millis(400));
        let defaults = ServerConfig::default().validate().unwrap();
        assert_eq!(defaults.sniff, Duration::from_millis(40));
        assert_eq!(defaults.browser_sniff, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_their_field() {
        let limits = LimitsConfig::default;
        let bad = [
            (
                ServerConfig::default().with_default_room("no spaces"),
                "default_room",
            ),
            (with_limits(limits().with_max_line_len(10)), "max_line_len"),
            (with_limits(limits().with_outbox_frames(0)), "outbox_frames"),
            (
                with_limits(limits().with_queue_budget_bytes(1024)),
                "queue_budget_bytes",
            ),
            (
                with_limits(
                    limits()
                        .with_idle_timeout_secs(5)
                        .with_ping_interval_secs(10),
                ),
                "idle_timeout_secs",
            ),
            (
                with_limits(limits().with_rate_per_sec(f64::NAN)),
                "rate_per_sec",
            ),
        ];
        for (config, field) in bad {
            let e = config.validate().unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn cluster_credentials_must_be_consistent() {
        let base = || ClusterConfig::default().with_servers(vec!["nats://127.0.0.1:4222".into()]);
        let cases = [
            (base().with_tls_cert("c.pem"), "cluster_tls_key"),
            (base().with_tls_key("k.pem"), "cluster_tls_cert"),
            (base().with_user("u"), "cluster_password"),
            (base().with_password("p"), "cluster_user"),
            (
                base()
                    .with_user("u")
                    .with_password("p")
                    .with_password_file("f"),
                "not both",
            ),
            (base().with_token("t").with_creds("c"), "one of"),
            (
                base()
                    .with_servers(vec!["nats://u:p@h:1".into()])
                    .with_token_file("t"),
                "once",
            ),
        ];
        for (cluster, needle) in cases {
            let config = ServerConfig::default().with_cluster(cluster);
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(
                !e.contains("p\"") && !format!("{config:?}").contains("\"p\""),
                "{e}"
            );
        }
        let good = base()
            .with_user("u")
            .with_password("p")
            .with_tls_ca("ca.pem")
            .with_tls_cert("c.pem")
            .with_tls_key("k.pem");
        ServerConfig::default()
            .with_cluster(good)
            .validate()
            .unwrap();
    }

    #[test]
    fn debug_output_never_shows_a_cluster_secret() {
        let config = ServerConfig::default().with_cluster(
            ClusterConfig::default()
                .with_password("pass-secret")
                .with_token("token-secret"),
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("pass-secret") && !shown.contains("token-secret"),
            "{shown}"
        );
    }

    #[test]
    fn per_address_limits_must_be_positive() {
        let limits = LimitsConfig::default;
        let bad = [
            (
                limits().with_max_connections_per_ip(0),
                "max_connections_per_ip",
            ),
            (
                limits().with_connect_rate_per_ip(-1.0),
                "connect_rate_per_ip",
            ),
            (
                limits().with_connect_rate_per_ip(f64::INFINITY),
                "connect_rate_per_ip",
            ),
            (
                limits().with_connect_burst_per_ip(0),
                "connect_burst_per_ip",
            ),
        ];
        for (limits, field) in bad {
            let e = with_limits(limits).validate().unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
