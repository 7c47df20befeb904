//! Settings for whoever runs the server (keys `admin_listen`,
//! `log_format`, `discovery` and `discovery_port`). The engine does not read them: the server binary binds
//! the admin endpoint and sets up logging from them, and an embedder does
//! as it likes with [`Admin`](crate::server::Admin).

use std::net::SocketAddr;

use crate::server::error::ConfigError;

/// The admin endpoint, the log format and LAN discovery.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OpsConfig {
    /// Where the server binary answers `/metrics`, `/healthz` and
    /// `/readyz`, as `IP:PORT` (`127.0.0.1:9187`, say). Empty: nowhere.
    /// The endpoints need no login, so keep it on loopback or a private
    /// network.
    pub admin_listen: String,
    /// How the server binary writes its log lines.
    pub log_format: LogFormat,
    /// Whether the server binary announces itself on the LAN by multicast
    /// DNS (DNS-SD service `_chatroom._tcp`).
    pub discovery: bool,
    /// The UDP port of that multicast DNS: 5353 everywhere but in tests
    /// kept apart from the network's own.
    pub discovery_port: u16,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            admin_listen: String::new(),
            log_format: LogFormat::default(),
            discovery: false,
            discovery_port: 5353,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl OpsConfig {
    /// The admin address, if one is set.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value that is not `IP:PORT`.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.admin_listen.is_empty() {
            return Ok(None);
        }
        self.admin_listen
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                field: "admin_listen",
                reason: format!(
                    "`{}` is not IP:PORT (127.0.0.1:9187, [::1]:9187)",
                    self.admin_listen
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_listen_is_an_ip_and_a_port_or_empty() {
        assert_eq!(OpsConfig::default().admin_addr().unwrap(), None);
        let on = OpsConfig {
            admin_listen: "127.0.0.1:9187".into(),
            ..OpsConfig::default()
        };
        assert_eq!(
            on.admin_addr().unwrap(),
            Some(([127, 0, 0, 1], 9187).into())
        );
        let bad = OpsConfig {
            admin_listen: "localhost".into(),
            ..OpsConfig::default()
        };
        assert!(
            bad.admin_addr()
                .unwrap_err()
                .to_string()
                .contains("admin_listen")
        );
    }
}
