//! Settings for registered nicknames and moderation (keys `hash_memory_kib`,
//! `hash_iterations`, `hash_parallelism`, `login_attempts`,
//! `login_lockout_secs`, `operators`, `room_owners`).

use crate::accounts::HashParams;
use crate::protocol::{Nickname, RoomName};
use crate::server::error::ConfigError;

/// How passwords are hashed, how failed logins are throttled, and who the
/// server operators are.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AccountsConfig {
    /// argon2id memory per hash, in KiB.
    pub hash_memory_kib: u32,
    /// argon2id passes.
    pub hash_iterations: u32,
    /// argon2id lanes.
    pub hash_parallelism: u32,
    /// Failed logins one address, or one account, may make before further
    /// attempts are refused with `login_throttled`.
    pub login_attempts: u32,
    /// How long such a lockout lasts, counted from the first failure.
    pub login_lockout_secs: u64,
    /// Accounts that are server operators: they moderate every room.
    pub operators: Vec<String>,
    /// Rooms' owners, declared: `ROOM:ACCOUNT` each (`class:teacher`).
    pub room_owners: Vec<String>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        let hash = HashParams::default();
        Self {
            hash_memory_kib: hash.memory_kib,
            hash_iterations: hash.iterations,
            hash_parallelism: hash.parallelism,
            login_attempts: 5,
            login_lockout_secs: 60,
            operators: Vec::new(),
            room_owners: Vec::new(),
        }
    }
}

impl AccountsConfig {
    /// The hashing costs as argon2 takes them.
    pub fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.hash_memory_kib,
            iterations: self.hash_iterations,
            parallelism: self.hash_parallelism,
        }
    }

    /// The declared owners as (folded room, folded account).
    pub(super) fn owners(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.room_owners
            .iter()
            .map(|entry| {
                let bad = |reason: String| ConfigError::Invalid {
                    field: "room_owners",
                    reason: format!("`{entry}`: {reason}"),
                };
                let (room, account) = entry
                    .split_once(':')
                    .ok_or_else(|| bad("expected ROOM:ACCOUNT".to_owned()))?;
                let room = RoomName::parse_typed(room).map_err(|e| bad(e.to_string()))?;
                let account = Nickname::new(account).map_err(|e| bad(e.to_string()))?;
                Ok((room.key(), account.key()))
            })
            .collect()
    }

    /// Checks the values; returns the operators' folded names.
    pub(super) fn check(&self) -> Result<Vec<String>, ConfigError> {
        let invalid = |field, reason: String| ConfigError::Invalid { field, reason };
        self.hash_params()
            .check()
            .map_err(|e| invalid("hash_memory_kib", e.to_string()))?;
        if self.login_attempts == 0 {
            return Err(invalid("login_attempts", "must be greater than 0".into()));
        }
        if self.login_lockout_secs == 0 {
            return Err(invalid(
                "login_lockout_secs",
                "must be greater than 0".into(),
            ));
        }
        self.operators
            .iter()
            .map(|name| {
                Nickname::new(name.as_str())
                    .map(|n| n.key())
                    .map_err(|e| invalid("operators", format!("`{name}`: {e}")))
            })
            .collect()
    }
}
