//! Accounts, room rules and the moderation log in tables next to the
//! history, in the same SQLite file (its own connection: these writes are
//! rare and small, and never wait behind the history's group commit).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, params};

use crate::protocol::Nickname;

use super::{Account, AccountError, AccountStore, LogEntry};

/// The database file inside the data directory, shared with the history.
const FILE_NAME: &str = "history.sqlite3";

/// Accounts and rules in the history's SQLite file.
#[derive(Debug)]
pub struct SqliteAccounts {
    conn: Mutex<Connection>,
}

impl SqliteAccounts {
    /// Opens (or creates) the tables in `dir`'s database.
    ///
    /// # Errors
    /// [`AccountError::Open`] when the directory cannot be made, or
    /// [`AccountError::Database`] when the file is not a usable database.
    pub fn open(dir: &Path) -> Result<Self, AccountError> {
        std::fs::create_dir_all(dir).map_err(|source| AccountError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(dir.join(FILE_NAME))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every change is committed on its own and is rare; FULL costs one
        // fsync per ban or registration and keeps it through a power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (
                name_key TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                hash TEXT NOT NULL,
                created INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS room_rules (
                room_key TEXT PRIMARY KEY,
                rules TEXT NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS moderation_log (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                ts INTEGER NOT NULL,
                actor TEXT NOT NULL,
                room TEXT NOT NULL,
                action TEXT NOT NULL
            );",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AccountStore for SqliteAccounts {
    fn accounts(&self) -> Result<Vec<Account>, AccountError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT name, hash, created FROM accounts")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, hash, created) = row?;
            let name = Nickname::new(name).map_err(|e| AccountError::Damaged(e.to_string()))?;
            out.push(Account {
                name,
                hash,
                created: created.max(0) as u64,
            });
        }
        Ok(out)
    }

    fn put_account(&self, account: &Account) -> Result<(), AccountError> {
        self.lock().execute(
            "INSERT INTO accounts (name_key, name, hash, created) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name_key) DO UPDATE SET name = ?2, hash = ?3, created = ?4",
            params![
                account.name.key(),
                account.name.as_str(),
                account.hash,
                account.created.min(i64::MAX as u64) as i64
            ],
        )?;
        Ok(())
    }

    fn remove_account(&self, key: &str) -> Result<(), AccountError> {
        self.lock()
            .execute("DELETE FROM accounts WHERE name_key = ?1", params![key])?;
        Ok(())
    }

    fn rules(&self) -> Result<Vec<(String, String)>, AccountError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT room_key, rules FROM room_rules")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_rules(&self, key: &str, encoded: &str) -> Result<(), AccountError> {
        let conn = self.lock();
        if encoded.is_empty() {
            conn.execute("DELETE FROM room_rules WHERE room_key = ?1", params![key])?;
        } else {
            conn.execute(
                "INSERT INTO room_rules (room_key, rules) VALUES (?1, ?2)
                 ON CONFLICT (room_key) DO UPDATE SET rules = ?2",
                params![key, encoded],
            )?;
        }
        Ok(())
    }

    fn log(&self, entry: &LogEntry) -> Result<(), AccountError> {
        self.lock().execute(
            "INSERT INTO moderation_log (ts, actor, room, action) VALUES (?1, ?2, ?3, ?4)",
            params![
                entry.ts.min(i64::MAX as u64) as i64,
                entry.by,
                entry.room,
                entry.action
            ],
        )?;
        Ok(())
    }

    fn read_log(&self, limit: usize) -> Result<Vec<LogEntry>, AccountError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT ts, actor, room, action FROM moderation_log ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit.min(i64::MAX as usize) as i64], |row| {
            Ok(LogEntry {
                ts: row.get::<_, i64>(0)?.max(0) as u64,
                by: row.get(1)?,
                room: row.get(2)?,
                action: row.get(3)?,
            })
        })?;
        let mut out: Vec<LogEntry> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("chatroom-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ann = Account {
            name: Nickname::new("Ann").unwrap(),
            hash: "$argon2id$fake".into(),
            created: 7,
        };
        {
            let store = SqliteAccounts::open(&dir).unwrap();
            store.put_account(&ann).unwrap();
            store
                .put_account(&Account {
                    name: Nickname::new("bob").unwrap(),
                    ..ann.clone()
                })
                .unwrap();
            store.remove_account("bob").unwrap();
            store.put_rules("class", "{\"owner\":\"ann\"}").unwrap();
            for i in 0..3 {
                store
                    .log(&LogEntry {
                        ts: i,
                        by: "ann".into(),
                        room: "class".into(),
                        action: format!("kick {i}"),
                    })
                    .unwrap();
            }
        }
        let store = SqliteAccounts::open(&dir).unwrap();
        assert_eq!(store.accounts().unwrap(), vec![ann]);
        assert_eq!(
            store.rules().unwrap(),
            vec![("class".to_owned(), "{\"owner\":\"ann\"}".to_owned())]
        );
        let log = store.read_log(2).unwrap();
        assert_eq!(
            log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["kick 1", "kick 2"]
        );
        store.put_rules("class", "").unwrap();
        assert!(store.rules().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
