//! Registered nicknames as the sessions use them: who holds which account,
//! logging in (hashing off the async threads, at most two at a time, and
//! failures throttled), and the check that keeps a registered nick from
//! anyone not logged in as it.
//!
//! Every account is held in memory (a few hundred bytes each) and written
//! through to the [`AccountStore`], so that the nick check on every
//! `hello` and rename is a map lookup. With no account registered the map
//! is empty and every check passes: the server behaves as it did before
//! accounts existed.

mod throttle;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::accounts::{Account, AccountError, AccountStore, HashParams, StoreChange, password};
use crate::protocol::{ErrorCode, Nickname, Password};
use crate::registry::now_ms;

use super::config::Limits;
use super::peers;
use throttle::Throttle;

/// Password hashes computed at once. Each takes `hash_memory_kib` of
/// memory and most of a core; two keep a 2-core server answering chat
/// while logins queue.
const CONCURRENT_HASHES: usize = 2;

/// Keys a failure on another node may name at most: the account and the
/// address, as [`throttle_keys`] makes them.
const MAX_REMOTE_KEYS: usize = 2;
/// The longest key a failure on another node may name (a folded nick or an
/// address, with its kind in front, is far shorter).
const MAX_REMOTE_KEY_LEN: usize = 128;

/// Where the keys of each failed login go to reach the other nodes of a
/// cluster (the engine sends them as a bulletin). Never waits.
pub(crate) type FailureSink = Box<dyn Fn(Vec<String>) + Send + Sync>;

/// The [`FailureSink`], set once by the engine.
#[derive(Default)]
struct Teller(OnceLock<FailureSink>);

impl fmt::Debug for Teller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Teller(set)"
        } else {
            "Teller(unset)"
        })
    }
}

/// Why an account request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountsError {
    #[error("nick {0} is registered; log in with /login {0} PASSWORD or pick another")]
    NickRegistered(Nickname),
    #[error("nick {0} is registered already")]
    Exists(Nickname),
    #[error("no such account, or a wrong password")]
    BadCredentials,
    #[error("too many failed logins; try again in {0} s")]
    Throttled(u64),
    #[error("you are not logged in to an account")]
    NotLoggedIn,
    #[error(transparent)]
    BadPassword(password::PasswordError),
    #[error("the account store failed; try again later")]
    Store(#[from] AccountError),
    #[error("the server is busy; try again")]
    Busy,
}

impl AccountsError {
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::NickRegistered(_) => ErrorCode::NickRegistered,
            Self::Exists(_) => ErrorCode::AccountExists,
            Self::BadCredentials => ErrorCode::BadCredentials,
            Self::Throttled(_) => ErrorCode::LoginThrottled,
            Self::NotLoggedIn => ErrorCode::NotLoggedIn,
            Self::BadPassword(_) => ErrorCode::BadPassword,
            Self::Store(_) | Self::Busy => ErrorCode::Internal,
        }
    }
}

/// The accounts of one server.
#[derive(Debug)]
pub(crate) struct Accounts {
    store: Arc<dyn AccountStore>,
    /// Folded name → account.
    known: Mutex<HashMap<String, Account>>,
    hash: HashParams,
    hashing: Semaphore,
    throttle: Mutex<Throttle>,
    /// Tells the other nodes of a cluster of each failed login, so that
    /// each node's throttle counts the failures made on all of them.
    failures_out: Teller,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Accounts {
    /// Reads every account from `store`. Blocks briefly, at startup only.
    pub(crate) fn load(
        store: Arc<dyn AccountStore>,
        limits: &Limits,
    ) -> Result<Self, AccountError> {
        let known = store
            .accounts()?
            .into_iter()
            .map(|a| (a.name.key(), a))
            .collect();
        Ok(Self {
            store,
            known: Mutex::new(known),
            hash: limits.hash,
            hashing: Semaphore::new(CONCURRENT_HASHES),
            throttle: Mutex::new(Throttle::new(limits.login_attempts, limits.login_lockout)),
            failures_out: Teller::default(),
        })
    }

    /// The store behind the accounts, for the moderation rules and log.
    pub(crate) fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// Whether `nick` is a registered account's.
    pub(crate) fn is_registered(&self, nick: &Nickname) -> bool {
        lock(&self.known).contains_key(&nick.key())
    }

    /// Checks that a session logged in as `account` (or as no one) may
    /// use `nick`.
    pub(crate) fn may_use(
        &self,
        nick: &Nickname,
        account: Option<&Nickname>,
    ) -> Result<(), AccountsError> {
        if account.is_some_and(|a| a.key() == nick.key()) || !self.is_registered(nick) {
            return Ok(());
        }
        Err(AccountsError::NickRegistered(nick.clone()))
    }

    /// Registers `nick` with `password`. Returns the account's name.
    pub(crate) async fn register(
        &self,
        nick: &Nickname,
        password: &Password,
    ) -> Result<Nickname, AccountsError> {
        if self.is_registered(nick) {
            return Err(AccountsError::Exists(nick.clone()));
        }
        let hash = self.hash_new(password).await?;
        let account = Account {
            name: nick.clone(),
            hash,
            created: now_ms(),
        };
        {
            let mut known = lock(&self.known);
            if known.contains_key(&nick.key()) {
                return Err(AccountsError::Exists(nick.clone()));
            }
            known.insert(nick.key(), account.clone());
        }
        if let Err(e) = self
            .write(move |store| store.create_account(&account))
            .await
        {
            lock(&self.known).remove(&nick.key());
            // Another node sharing the store registered it first.
            if let AccountsError::Store(AccountError::Exists) = e {
                return Err(AccountsError::Exists(nick.clone()));
            }
            return Err(e);
        }
        tracing::info!(account = %nick, "account registered");
        Ok(nick.clone())
    }

    /// Checks `password` for the account `nick`, throttled per address and
    /// per account. Returns the account's name as registered.
    pub(crate) async fn login(
        &self,
        nick: &Nickname,
        password: &Password,
        peer: Option<IpAddr>,
    ) -> Result<Nickname, AccountsError> {
        let keys = throttle_keys(nick, peer);
        let now = Instant::now();
        {
            let mut throttle = lock(&self.throttle);
            if let Some(wait) = keys.iter().find_map(|k| throttle.wait(k, now)) {
                return Err(AccountsError::Throttled(wait.as_secs().max(1)));
            }
        }
        let stored = lock(&self.known).get(&nick.key()).cloned();
        let ok = match &stored {
            Some(account) => self.verify(password, &account.hash).await?,
            None => false,
        };
        let mut throttle = lock(&self.throttle);
        match stored {
            Some(account) if ok => {
                throttle.forget(&keys[0]);
                Ok(account.name)
            }
            _ => {
                let now = Instant::now();
                for key in &keys {
                    throttle.failed(key, now);
                }
                drop(throttle);
                tracing::info!(account = %nick, peer = ?peer, "failed login");
                if let Some(tell) = self.failures_out.0.get() {
                    tell(keys);
                }
                Err(AccountsError::BadCredentials)
            }
        }
    }

    /// Sends the keys of every failed login from now on to `sink` (the
    /// first call wins).
    pub(crate) fn tell_failures(&self, sink: FailureSink) {
        let _ = self.failures_out.0.set(sink);
    }

    /// Counts a failed login another node of the cluster saw against
    /// `keys`, as if it had failed here. Keys that no login here would
    /// make are ignored, and a few at most are taken, so that a damaged
    /// bulletin cannot fill the throttle.
    pub(crate) fn failed_elsewhere(&self, keys: &[String]) {
        let now = Instant::now();
        let mut throttle = lock(&self.throttle);
        for key in keys.iter().take(MAX_REMOTE_KEYS) {
            let known_kind = key.starts_with("account:") || key.starts_with("address:");
            if known_kind && key.len() <= MAX_REMOTE_KEY_LEN {
                throttle.failed(key, now);
            }
        }
    }

    /// Changes `account`'s password after checking the old one.
    pub(crate) async fn set_password(
        &self,
        account: &Nickname,
        old: &Password,
        new: &Password,
        peer: Option<IpAddr>,
    ) -> Result<(), AccountsError> {
        password::acceptable(new.expose()).map_err(AccountsError::BadPassword)?;
        let name = self.login(account, old, peer).await?;
        let hash = self.hash_new(new).await?;
        let updated = {
            let mut known = lock(&self.known);
            let entry = known
                .get_mut(&name.key())
                .ok_or(AccountsError::BadCredentials)?;
            entry.hash = hash;
            entry.clone()
        };
        self.write(move |store| store.put_account(&updated)).await?;
        tracing::info!(account = %name, "password changed");
        Ok(())
    }

    /// Deletes `account` after checking its password.
    pub(crate) async fn drop_account(
        &self,
        account: &Nickname,
        password: &Password,
        peer: Option<IpAddr>,
    ) -> Result<(), AccountsError> {
        let name = self.login(account, password, peer).await?;
        let key = name.key();
        lock(&self.known).remove(&key);
        self.write(move |store| store.remove_account(&key)).await?;
        tracing::info!(account = %name, "account dropped");
        Ok(())
    }

    /// Takes up an account another node registered, changed or dropped.
    pub(crate) fn apply(&self, change: StoreChange) {
        let mut known = lock(&self.known);
        match change {
            StoreChange::Account(account) => {
                known.insert(account.name.key(), account);
            }
            StoreChange::AccountRemoved(key) => {
                known.remove(&key);
            }
            _ => {}
        }
    }

    /// Runs a store write on a blocking-friendly thread.
    pub(crate) async fn write(
        &self,
        change: impl FnOnce(&dyn AccountStore) -> Result<(), AccountError> + Send + 'static,
    ) -> Result<(), AccountsError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || change(store.as_ref())).await {
            Ok(result) => result.map_err(|e| {
                tracing::error!(error = %e, "account store write failed");
                AccountsError::Store(e)
            }),
            Err(_) => Err(AccountsError::Busy),
        }
    }

    async fn hash_new(&self, password: &Password) -> Result<String, AccountsError> {
        password::acceptable(password.expose()).map_err(AccountsError::BadPassword)?;
        let params = self.hash;
        let text = password.expose().to_owned();
        self.slow(move || password::hash(&text, params))
            .await?
            .map_err(AccountsError::BadPassword)
    }

    async fn verify(&self, password: &Password, encoded: &str) -> Result<bool, AccountsError> {
        let text = password.expose().to_owned();
        let encoded = encoded.to_owned();
        match self.slow(move || password::verify(&text, &encoded)).await? {
            Ok(ok) => Ok(ok),
            Err(e) => {
                tracing::error!(error = %e, "a stored password hash cannot be read");
                Ok(false)
            }
        }
    }

    /// Runs a hash on a blocking thread, at most [`CONCURRENT_HASHES`] at
    /// once; the rest wait their turn here.
    async fn slow<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountsError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| AccountsError::Busy)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| AccountsError::Busy)
    }
}

/// The throttle's keys for a login: the account first, then the address.
fn throttle_keys(nick: &Nickname, peer: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("account:{}", nick.key())];
    if let Some(ip) = peer {
        keys.push(format!("address:{}", peers::key(ip)));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::MemoryAccounts;
    use crate::server::{AccountsConfig, ServerConfig};

    fn accounts(attempts: u32) -> Accounts {
        let config = ServerConfig::default()
            .with_accounts(AccountsConfig::default().with_login_attempts(attempts));
        let limits = config.validate().unwrap();
        Accounts::load(Arc::new(MemoryAccounts::new()), &limits).unwrap()
    }

    #[tokio::test]
    async fn failed_logins_are_told_and_those_told_by_another_node_count_here() {
        let nick = Nickname::new("Ann").unwrap();
        let peer = "10.0.0.7".parse().ok();
        let wrong = Password::new("not-the-password");

        // A failure here is handed on with its keys.
        let here = accounts(2);
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = told.clone();
        here.tell_failures(Box::new(move |keys| lock(&sink).push(keys)));
        let failed = here.login(&nick, &wrong, peer).await;
        assert!(matches!(failed, Err(AccountsError::BadCredentials)));
        let keys = lock(&told).pop().expect("the failure was told");
        assert_eq!(keys, ["account:ann", "address:10.0.0.7"]);

        // Another node counts what it is told: two failures there lock
        // the account here, before any hashing.
        let there = accounts(2);
        there.failed_elsewhere(&keys);
        there.failed_elsewhere(&keys);
        let refused = there.login(&nick, &wrong, None).await;
        assert!(
            matches!(refused, Err(AccountsError::Throttled(_))),
            "{refused:?}"
        );

        // What no login makes, or too much of it, is not counted.
        let junk = vec![
            "nick:ann".to_owned(),
            format!("account:{}", "x".repeat(200)),
        ];
        for _ in 0..3 {
            there.failed_elsewhere(&junk);
        }
        let mut throttle = lock(&there.throttle);
        let now = Instant::now();
        assert!(junk.iter().all(|k| throttle.wait(k, now).is_none()));
    }
}
