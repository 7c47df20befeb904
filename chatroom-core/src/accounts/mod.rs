//! Registered nicknames and what moderators decide, kept across restarts:
//! the account seam.
//!
//! The engine keeps every account and every room's rules in memory and
//! writes each change through an [`AccountStore`]; the store only has to
//! remember. Two come with the crate: [`MemoryAccounts`], which forgets at
//! exit (for tests and embedders that want no files), and (with the
//! `sqlite` feature) [`SqliteAccounts`], tables next to the history in the
//! same SQLite file.
//!
//! Passwords are hashed here ([`password`]) with argon2id; a store only
//! ever sees the encoded hash.
//!
//! This module may use `protocol` and nothing else from the crate.

mod error;
mod memory;
pub mod password;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::protocol::{Nickname, Timestamp};

pub use error::AccountError;
pub use memory::MemoryAccounts;
pub use password::{HashParams, PasswordError};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteAccounts;

/// One registered nickname.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The nickname as it was registered (its folded form is the key).
    pub name: Nickname,
    /// The argon2id hash of its password, in the PHC string format.
    pub hash: String,
    /// When it was registered, in milliseconds since the Unix epoch.
    pub created: Timestamp,
}

impl fmt::Debug for Account {
    // The hash stays out of logs and panics: it is what a guesser works on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// One line of the moderation log: who did what, where, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When, in milliseconds since the Unix epoch.
    pub ts: Timestamp,
    /// Who did it (an account or nickname).
    pub by: String,
    /// The room, or `*` for the whole server.
    pub room: String,
    /// What was done, in words (`ban account:bob 1h spam`).
    pub action: String,
}

/// A change another node made to the store, as the engine takes it up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreChange {
    /// An account was registered or its password changed.
    Account(Account),
    /// The account with this folded name was dropped.
    AccountRemoved(String),
    /// A room's rules (`*`: the server's) are now `encoded`; an empty text
    /// means none are left.
    Rules {
        /// The folded room name, or `*`.
        key: String,
        /// The rules as the engine encoded them.
        encoded: String,
    },
}

/// Where a store hands the changes it hears of (see
/// [`AccountStore::follow`]).
pub type ChangeSink = Box<dyn Fn(StoreChange) + Send + Sync>;

/// Where accounts, room rules and the moderation log are remembered.
///
/// Every method may block on I/O; the engine calls them from a
/// blocking-friendly thread, one change at a time.
pub trait AccountStore: Send + Sync + fmt::Debug + 'static {
    /// Every account, read once when the engine starts.
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be read.
    fn accounts(&self) -> Result<Vec<Account>, AccountError>;

    /// Stores `account`, replacing the one with the same folded name.
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be written.
    fn put_account(&self, account: &Account) -> Result<(), AccountError>;

    /// Stores a new account unless one with the same folded name exists:
    /// the check and the write are one step, so that two nodes sharing
    /// the store cannot both register one nick.
    ///
    /// # Errors
    /// [`AccountError::Exists`] when the name is taken, else as
    /// [`AccountStore::put_account`].
    fn create_account(&self, account: &Account) -> Result<(), AccountError> {
        // One engine is the only writer of a store that is not shared, and
        // it checked the name under its own lock.
        self.put_account(account)
    }

    /// Hands `sink` every change the store learns of that the engine did
    /// not make itself (another node's), from now on; first, everything
    /// the store holds, so that nothing changed since the engine read it
    /// is missed. A store only this engine writes (the default) has
    /// nothing to tell.
    fn follow(&self, sink: ChangeSink) {
        let _ = sink;
    }

    /// Forgets the account with this folded name, if there is one.
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be written.
    fn remove_account(&self, key: &str) -> Result<(), AccountError>;

    /// Every room's rules as the engine encoded them, by folded room name
    /// (`*` holds the server-wide ones).
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be read.
    fn rules(&self) -> Result<Vec<(String, String)>, AccountError>;

    /// Stores one room's encoded rules; an empty text forgets them.
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be written.
    fn put_rules(&self, key: &str, encoded: &str) -> Result<(), AccountError>;

    /// Adds a line to the moderation log.
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be written.
    fn log(&self, entry: &LogEntry) -> Result<(), AccountError>;

    /// The newest `limit` lines of the moderation log, oldest first.
    ///
    /// # Errors
    /// [`AccountError`] when the store cannot be read.
    fn read_log(&self, limit: usize) -> Result<Vec<LogEntry>, AccountError>;
}
