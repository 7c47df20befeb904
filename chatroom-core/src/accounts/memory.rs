//! The store that forgets at exit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{Account, AccountError, AccountStore, LogEntry};

/// How many moderation log lines the memory store keeps.
const LOG_CAPACITY: usize = 10_000;

/// Accounts, rules and log in memory only: for tests, and for servers that
/// keep history in memory too.
#[derive(Debug, Default)]
pub struct MemoryAccounts {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: BTreeMap<String, Account>,
    rules: BTreeMap<String, String>,
    log: VecDeque<LogEntry>,
}

impl MemoryAccounts {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each change is one step; a poisoned lock still holds whole values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AccountStore for MemoryAccounts {
    fn accounts(&self) -> Result<Vec<Account>, AccountError> {
        Ok(self.lock().accounts.values().cloned().collect())
    }

    fn put_account(&self, account: &Account) -> Result<(), AccountError> {
        self.lock()
            .accounts
            .insert(account.name.key(), account.clone());
        Ok(())
    }

    fn remove_account(&self, key: &str) -> Result<(), AccountError> {
        self.lock().accounts.remove(key);
        Ok(())
    }

    fn rules(&self) -> Result<Vec<(String, String)>, AccountError> {
        let state = self.lock();
        Ok(state
            .rules
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put_rules(&self, key: &str, encoded: &str) -> Result<(), AccountError> {
        let mut state = self.lock();
        if encoded.is_empty() {
            state.rules.remove(key);
        } else {
            state.rules.insert(key.to_owned(), encoded.to_owned());
        }
        Ok(())
    }

    fn log(&self, entry: &LogEntry) -> Result<(), AccountError> {
        let mut state = self.lock();
        if state.log.len() == LOG_CAPACITY {
            state.log.pop_front();
        }
        state.log.push_back(entry.clone());
        Ok(())
    }

    fn read_log(&self, limit: usize) -> Result<Vec<LogEntry>, AccountError> {
        let state = self.lock();
        let skip = state.log.len().saturating_sub(limit);
        Ok(state.log.iter().skip(skip).cloned().collect())
    }
}
