//! The operator's side of a running engine: its metrics in the
//! Prometheus text format, its health, and reloading the settings that
//! can change while it runs.
//!
//! [`Admin`] is a cheap handle taken from a [`Server`](super::Server)
//! before it runs. An embedder with an HTTP stack of its own serves
//! [`Admin::metrics`] and [`Admin::readiness`] from it; one without calls
//! [`Admin::serve`], a small HTTP/1.1 responder for `GET /metrics`,
//! `/healthz` and `/readyz` on a listener of its choice (the server binary
//! does this for `admin_listen`).
//!
//! May import the rest of the server, the history store and broker traits
//! and the transport; never a session's internals.

mod http;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::transport::Listener;

use super::config::ServerConfig;
use super::error::{ConfigError, ServerError};
use super::metrics;
use super::shared::Shared;
use super::tuning::Reloaded;

/// A handle to one engine for its operator. Cheap to clone; it keeps the
/// engine's shared state alive, not its sessions.
#[derive(Debug, Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

/// Whether the engine can serve clients now, check by check. `/readyz`
/// answers 200 when [`is_ready`](Self::is_ready), else 503.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The engine is accepting connections (it has started and is not
    /// shutting down).
    pub listening: bool,
    /// The history store takes writes: its last commit succeeded.
    pub history_writable: bool,
    /// In a cluster, whether the node is connected to NATS; `None` for a
    /// node on its own.
    pub cluster_connected: Option<bool>,
}

impl Readiness {
    /// True when every check passes.
    pub fn is_ready(&self) -> bool {
        self.listening && self.history_writable && self.cluster_connected != Some(false)
    }

    /// The small JSON body of `/readyz`: the status and each check.
    pub fn to_json(&self) -> String {
        let status = if self.is_ready() {
            "ready"
        } else {
            "not_ready"
        };
        let cluster = match self.cluster_connected {
            Some(true) => "true",
            Some(false) => "false",
            None => "null",
        };
        format!(
            "{{\"status\":\"{status}\",\"listening\":{},\"history_writable\":{},\"cluster_connected\":{cluster}}}",
            self.listening, self.history_writable
        )
    }
}

impl Admin {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Every metric, in the Prometheus text exposition format (0.0.4).
    pub fn metrics(&self) -> String {
        let shared = &self.shared;
        let history = shared.rooms.history();
        let queues = shared.rooms.queued_bytes();
        let readings = metrics::Readings {
            ready: self.readiness().is_ready(),
            outbox_bytes: queues.total,
            outbox_largest: queues.largest,
            queue_budget_reserved: shared.queue_budget.reserved(),
            queue_budget_peak: shared.queue_budget.peak(),
            history_queued: history.and_then(|h| h.queued()),
            commits: history.and_then(|h| h.commit_times()),
            publishes: shared.broker.publish_times(),
        };
        metrics::render(&shared.metrics, &readings)
    }

    /// The media type of [`Admin::metrics`], for a `Content-Type` header.
    pub fn metrics_content_type(&self) -> &'static str {
        metrics::CONTENT_TYPE
    }

    /// Whether the engine can serve clients now.
    pub fn readiness(&self) -> Readiness {
        let shared = &self.shared;
        Readiness {
            listening: shared.listening.load(Relaxed),
            history_writable: shared.rooms.history().is_none_or(|h| h.is_writable()),
            cluster_connected: shared.broker.is_connected(),
        }
    }

    /// Applies `config` to the running engine: the settings that can change
    /// at run time (`rate_per_sec`, `rate_burst`, `max_errors`,
    /// `error_refill_secs`, `operators`, `web_origins`) take effect, on live
    /// connections too (an operator's next request, the next WebSocket
    /// upgrade); every
    /// other setting whose value differs is named in
    /// [`Reloaded::needs_restart`] and keeps its old value.
    ///
    /// # Errors
    /// The first setting of `config` that is out of range; then nothing
    /// changes.
    pub fn reload(&self, config: &ServerConfig) -> Result<Reloaded, ConfigError> {
        let reloaded = self.shared.tuning.reload(config)?;
        if reloaded.applied.iter().any(|key| key == "operators") {
            self.shared
                .moderation
                .set_operators(config.validate()?.operators);
        }
        Ok(reloaded)
    }

    /// Answers HTTP/1.1 `GET /metrics`, `/healthz` and `/readyz` on
    /// `listener` until `shutdown` completes. Every request gets one
    /// response and the connection is closed; a request longer than 8 KiB
    /// or slower than 5 s is dropped, and at most 16 are served at once.
    ///
    /// Nothing it serves needs authentication, so `listener` should be on
    /// loopback or a private network.
    ///
    /// # Errors
    /// [`ServerError::Transport`] when the listener fails in a way retrying
    /// cannot fix.
    pub async fn serve<L: Listener>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        http::serve(self, listener, shutdown).await
    }
}
