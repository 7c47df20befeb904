//! The settings that can change while the engine runs, and the reload
//! that changes them.
//!
//! Sessions read their rates once, when they start, and again only when
//! the generation number moves: one relaxed load per rate check, never a
//! lock on the path of a frame.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::config::{Limits, ServerConfig};
use super::error::ConfigError;

/// What a reload changed, and what it left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Reloaded {
    /// Settings whose new value now applies, to live connections too.
    pub applied: Vec<String>,
    /// Settings whose value differs in the new configuration but that only
    /// a restart can change; they keep their old value.
    pub needs_restart: Vec<String>,
}

/// The operator keys a reload applies. Every other key needs a restart:
/// it sized a queue, a table or a listener, or opened a store.
const RELOADABLE: [&str; 6] = [
    "rate_per_sec",
    "rate_burst",
    "max_errors",
    "error_refill_secs",
    "operators",
    "web_origins",
];

/// A session's per-connection rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    pub(crate) rate_per_sec: f64,
    pub(crate) rate_burst: u32,
    pub(crate) max_errors: u32,
    pub(crate) error_refill: Duration,
}

impl From<&Limits> for Rates {
    fn from(limits: &Limits) -> Self {
        Self {
            rate_per_sec: limits.rate_per_sec,
            rate_burst: limits.rate_burst,
            max_errors: limits.max_errors,
            error_refill: limits.error_refill,
        }
    }
}

/// The reloadable settings in effect, shared by every session.
#[derive(Debug)]
pub(crate) struct Tuning {
    /// Moves at every reload that changes [`Rates`].
    generation: AtomicU64,
    rates: RwLock<Rates>,
    /// The WebSocket origins allowed, as validated (lower-cased).
    web_origins: RwLock<Vec<String>>,
    /// The settings in effect: the engine's first configuration with every
    /// reload's applied keys. A reload is compared against this.
    in_effect: Mutex<ServerConfig>,
}

impl Tuning {
    pub(crate) fn new(config: ServerConfig, limits: &Limits) -> Self {
        Self {
            generation: AtomicU64::new(0),
            rates: RwLock::new(limits.into()),
            web_origins: RwLock::new(limits.web_origins.clone()),
            in_effect: Mutex::new(config),
        }
    }

    /// Changes at every reload that changed the rates.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The rates in effect.
    pub(crate) fn rates(&self) -> Rates {
        *self.rates.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The WebSocket origins allowed now.
    #[cfg(feature = "web")]
    pub(crate) fn web_origins(&self) -> Vec<String> {
        self.web_origins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn reload(&self, new: &ServerConfig) -> Result<Reloaded, ConfigError> {
        let limits = new.validate()?;
        let mut in_effect = self
            .in_effect
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (Ok(Value::Object(old)), Ok(Value::Object(mut wanted))) =
            (serde_json::to_value(&*in_effect), serde_json::to_value(new))
        else {
            // Both are the same struct of scalars and lists; they always
            // serialize to a table.
            return Ok(Reloaded::default());
        };
        let mut reloaded = Reloaded::default();
        for (key, was) in &old {
            let Some(now) = wanted.get_mut(key) else {
                continue;
            };
            if now == was {
                continue;
            }
            if RELOADABLE.contains(&key.as_str()) {
                reloaded.applied.push(key.clone());
            } else {
                reloaded.needs_restart.push(key.clone());
                // Kept as it is, so the next reload names it again.
                *now = was.clone();
            }
        }
        if !reloaded.applied.is_empty() {
            if let Ok(kept) = serde_json::from_value::<ServerConfig>(Value::Object(wanted)) {
                *in_effect = kept;
            }
            *self.rates.write().unwrap_or_else(PoisonError::into_inner) = (&limits).into();
            *self
                .web_origins
                .write()
                .unwrap_or_else(PoisonError::into_inner) = limits.web_origins.clone();
            self.generation.fetch_add(1, Relaxed);
        }
        Ok(reloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::LimitsConfig;

    fn tuning() -> Tuning {
        let config = ServerConfig::default();
        let limits = config.validate().unwrap();
        Tuning::new(config, &limits)
    }

    #[test]
    fn rates_apply_and_other_settings_wait_for_a_restart() {
        let t = tuning();
        let new = ServerConfig::default()
            .with_server_name("renamed")
            .with_limits(
                LimitsConfig::default()
                    .with_rate_per_sec(2.5)
                    .with_max_connections(7),
            );
        let r = t.reload(&new).unwrap();
        assert_eq!(r.applied, ["rate_per_sec"]);
        let mut restart = r.needs_restart.clone();
        restart.sort();
        assert_eq!(restart, ["max_connections", "server_name"]);
        assert_eq!(t.generation(), 1);
        assert!((t.rates().rate_per_sec - 2.5).abs() < f64::EPSILON);
        // The same file again: the rate is in effect, the rest still waits.
        let again = t.reload(&new).unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.needs_restart.len(), 2);
        assert_eq!(t.generation(), 1);
    }

    #[test]
    fn a_bad_value_changes_nothing() {
        let t = tuning();
        let bad = ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_rate_per_sec(-1.0)
                .with_rate_burst(3),
        );
        let e = t.reload(&bad).unwrap_err();
        assert!(e.to_string().contains("rate_per_sec"), "{e}");
        assert_eq!(t.generation(), 0);
        assert_eq!(t.rates().rate_burst, 40);
    }
}
