//! The durable store: SQLite in WAL mode, written by one thread of its own
//! that commits whatever has queued up in one transaction (group commit).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};

use crate::protocol::{HistoryEntry, MessageId, Nickname, RoomName, Timestamp};

use super::{
    CommitSnapshot, CommitTimes, HistoryError, HistoryStore, Page, PageQuery, Retention, SyncMode,
};

/// Messages that may wait for the writer. Past this the store refuses new
/// appends (and logs it) rather than grow without bound behind a stalled disk.
const QUEUE_CAPACITY: usize = 64 * 1024;
/// Most appends committed in one transaction.
const MAX_BATCH: usize = 4096;
/// The database file inside the data directory.
pub(super) const FILE_NAME: &str = "history.sqlite3";

enum Command {
    Append(String, RoomName, HistoryEntry),
    Flush(mpsc::Sender<Result<(), HistoryError>>),
    Sweep(
        Retention,
        Timestamp,
        mpsc::Sender<Result<u64, HistoryError>>,
    ),
}

/// History in an SQLite file under a data directory.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    queue: Mutex<Option<SyncSender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    /// Folded room name → last id appended, kept in memory for `last_id`.
    last_ids: Mutex<HashMap<String, MessageId>>,
    /// Whether the writer thread's last commit succeeded; the writer sets
    /// it, readiness checks read it.
    writable: Arc<AtomicBool>,
    /// How long the writer thread's commits take; it records, metrics read.
    commit_times: Arc<CommitTimes>,
    /// Appends queued and not yet committed: one relaxed add per message
    /// appended, one subtraction per commit by the writer.
    pending: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each guarded value is changed in single steps; poisoning leaves it whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection, HistoryError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let level = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", level)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the store in `dir`, creating the directory too.
    ///
    /// # Errors
    /// [`HistoryError::Open`] when the directory cannot be made, or
    /// [`HistoryError::Database`] when the file is not a usable database.
    pub fn open(dir: &Path, sync: SyncMode) -> Result<Self, HistoryError> {
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let writer_conn = open_connection(&path, sync)?;
        writer_conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                room_key TEXT NOT NULL,
                id INTEGER NOT NULL,
                sender TEXT NOT NULL,
                body TEXT NOT NULL,
                ts INTEGER NOT NULL,
                action INTEGER NOT NULL,
                PRIMARY KEY (room_key, id)
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);
            CREATE TABLE IF NOT EXISTS rooms (
                room_key TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                last_id INTEGER NOT NULL
            ) WITHOUT ROWID;",
        )?;
        let reader = open_connection(&path, sync)?;
        let last_ids = {
            let mut stmt = reader.prepare("SELECT room_key, last_id FROM rooms")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            let mut map = HashMap::new();
            for row in rows {
                let (key, id) = row?;
                map.insert(key, id.max(0) as MessageId);
            }
            map
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writable = Arc::new(AtomicBool::new(true));
        let commit_times = Arc::new(CommitTimes::default());
        let pending = Arc::new(AtomicUsize::new(0));
        let health = Health {
            writable: writable.clone(),
            times: commit_times.clone(),
            pending: pending.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("chatroom-history".to_owned())
            .spawn(move || write_loop(writer_conn, rx, &health))
            .map_err(|source| HistoryError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            path,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
            last_ids: Mutex::new(last_ids),
            writable,
            commit_times,
            pending,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, command: Command) -> Result<(), HistoryError> {
        let queue = lock(&self.queue);
        let tx = queue.as_ref().ok_or(HistoryError::WriterGone)?;
        tx.send(command).map_err(|_| HistoryError::WriterGone)
    }

    /// Stops the writer after it has committed everything queued.
    pub fn close(&self) {
        lock(&self.queue).take();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the writer thread tells the store about its commits.
struct Health {
    writable: Arc<AtomicBool>,
    times: Arc<CommitTimes>,
    pending: Arc<AtomicUsize>,
}

fn write_loop(mut conn: Connection, rx: Receiver<Command>, health: &Health) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        // Group commit: everything that queued up while the last commit ran
        // goes into this one.
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append(key, room, entry) => {
                    batch.push((key, room, entry));
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                other => {
                    commit_or_log(&mut conn, &mut batch, health);
                    run_command(&mut conn, other);
                    next = rx.try_recv().ok();
                }
            }
        }
        commit_or_log(&mut conn, &mut batch, health);
    }
    commit_or_log(&mut conn, &mut batch, health);
}

fn commit_or_log(
    conn: &mut Connection,
    batch: &mut Vec<(String, RoomName, HistoryEntry)>,
    health: &Health,
) {
    if batch.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let committed = commit(conn, batch);
    health.times.record(started.elapsed());
    health.writable.store(committed.is_ok(), Relaxed);
    health.pending.fetch_sub(batch.len(), Relaxed);
    if let Err(e) = committed {
        tracing::error!(error = %e, lost = batch.len(), "history commit failed");
    }
    batch.clear();
}

fn commit(
    conn: &mut Connection,
    batch: &[(String, RoomName, HistoryEntry)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO messages (room_key, id, sender, body, ts, action)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut room = tx.prepare_cached(
            "INSERT INTO rooms (room_key, name, last_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (room_key) DO UPDATE SET name = ?2, last_id = max(last_id, ?3)",
        )?;
        // Each room's row once per batch, with its last id, not once per
        // message: a busy room's batch is hundreds of messages.
        let mut last_ids: Vec<(&str, &RoomName, MessageId)> = Vec::new();
        for (key, name, e) in batch {
            insert.execute(params![
                key,
                e.id as i64,
                e.from.as_str(),
                e.text,
                e.ts as i64,
                e.action
            ])?;
            match last_ids.iter_mut().find(|(k, _, _)| *k == key.as_str()) {
                Some((_, named, last)) => {
                    *named = name;
                    *last = (*last).max(e.id);
                }
                None => last_ids.push((key, name, e.id)),
            }
        }
        for (key, name, last) in last_ids {
            room.execute(params![key, name.as_str(), last as i64])?;
        }
    }
    tx.commit()
}

fn run_command(conn: &mut Connection, command: Command) {
    match command {
        Command::Append(..) => unreachable!("appends are batched by the caller"),
        Command::Flush(reply) => {
            let _ = reply.send(Ok(()));
        }
        Command::Sweep(retention, now, reply) => {
            let _ = reply.send(sweep(conn, retention, now).map_err(HistoryError::from));
        }
    }
}

fn sweep(conn: &mut Connection, retention: Retention, now: Timestamp) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    let mut removed = 0;
    if let Some(age) = retention.max_age_ms {
        let cutoff = now.saturating_sub(age) as i64;
        removed += tx.execute("DELETE FROM messages WHERE ts < ?1", params![cutoff])? as u64;
    }
    let keep = retention.max_messages.min(i64::MAX as u64) as i64;
    removed += tx.execute(
        "DELETE FROM messages WHERE EXISTS (
             SELECT 1 FROM rooms r
             WHERE r.room_key = messages.room_key AND messages.id <= r.last_id - ?1
         )",
        params![keep],
    )? as u64;
    tx.commit()?;
    Ok(removed)
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let sender: String = row.get(1)?;
    let from = Nickname::new(sender).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(HistoryEntry {
        id: row.get::<_, i64>(0)? as MessageId,
        from,
        text: row.get(2)?,
        ts: row.get::<_, i64>(3)? as Timestamp,
        action: row.get(4)?,
    })
}

impl HistoryStore for SqliteStore {
    fn last_id(&self, room: &RoomName) -> Option<MessageId> {
        lock(&self.last_ids).get(&room.key()).copied()
    }

    fn append(&self, room: &RoomName, entry: HistoryEntry) {
        let key = room.key();
        {
            let mut ids = lock(&self.last_ids);
            let last = ids.entry(key.clone()).or_insert(0);
            *last = (*last).max(entry.id);
        }
        let queue = lock(&self.queue);
        let Some(tx) = queue.as_ref() else {
            tracing::error!(room = %room, id = entry.id, "history store closed; message not stored");
            return;
        };
        // Counted before it is sent, so the writer never subtracts first.
        self.pending.fetch_add(1, Relaxed);
        match tx.try_send(Command::Append(key, room.clone(), entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(Command::Append(_, room, entry))) => {
                self.pending.fetch_sub(1, Relaxed);
                tracing::error!(room = %room, id = entry.id, "history queue full; message not stored");
            }
            Err(_) => {
                self.pending.fetch_sub(1, Relaxed);
                tracing::error!(room = %room, "history writer stopped; message not stored");
            }
        }
    }

    fn page(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError> {
        let conn = lock(&self.reader);
        let key = room.key();
        let (sql, bound, limit, newest_first) = match query {
            PageQuery::Before { before, limit } => (
                "SELECT id, sender, body, ts, action FROM messages
                 WHERE room_key = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64),
                limit,
                true,
            ),
            PageQuery::After { after, limit } => (
                "SELECT id, sender, body, ts, action FROM messages
                 WHERE room_key = ?1 AND id > ?2 ORDER BY id ASC LIMIT ?3",
                after.min(i64::MAX as u64) as i64,
                limit,
                false,
            ),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        // One row more than asked tells whether more exist.
        let fetch = limit.saturating_add(1).min(i64::MAX as usize) as i64;
        let mut messages = stmt
            .query_map(params![key, bound, fetch], row_to_entry)?
            .collect::<Result<Vec<_>, _>>()?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        if newest_first {
            messages.reverse();
        }
        Ok(Page { messages, more })
    }

    fn sweep(&self, retention: Retention, now: Timestamp) -> Result<u64, HistoryError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Sweep(retention, now, tx))?;
        rx.recv().map_err(|_| HistoryError::WriterGone)?
    }

    fn flush(&self) -> Result<(), HistoryError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Flush(tx))?;
        rx.recv().map_err(|_| HistoryError::WriterGone)?
    }

    fn is_writable(&self) -> bool {
        self.writable.load(Relaxed) && lock(&self.queue).is_some()
    }

    fn commit_times(&self) -> Option<CommitSnapshot> {
        Some(self.commit_times.snapshot())
    }

    fn queued(&self) -> Option<usize> {
        Some(self.pending.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: MessageId, ts: Timestamp) -> HistoryEntry {
        HistoryEntry {
            id,
            from: Nickname::new("ann").unwrap(),
            text: format!("message {id}"),
            ts,
            action: id.is_multiple_of(2),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chatroom-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn each_rooms_last_id_survives_a_reopen_when_rooms_share_a_batch() {
        let dir = temp_dir("rooms");
        let (lobby, dev) = (
            RoomName::new("lobby").unwrap(),
            RoomName::new("dev").unwrap(),
        );
        {
            let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
            // Interleaved, so one batch holds both rooms.
            for id in 1..=30 {
                store.append(&lobby, entry(id, 1000 + id));
                if id <= 12 {
                    store.append(&dev, entry(id, 2000 + id));
                }
            }
            store.flush().unwrap();
        }
        let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
        assert_eq!(store.last_id(&lobby), Some(30));
        assert_eq!(store.last_id(&dev), Some(12));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn appends_survive_a_reopen_and_ids_continue() {
        let dir = temp_dir("reopen");
        let room = RoomName::new("Lobby").unwrap();
        {
            let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
            for id in 1..=50 {
                store.append(&room, entry(id, 1000 + id));
            }
            store.flush().unwrap();
            let page = store
                .page(
                    &room,
                    PageQuery::Before {
                        before: None,
                        limit: 10,
                    },
                )
                .unwrap();
            let ids: Vec<_> = page.messages.iter().map(|e| e.id).collect();
            assert_eq!((ids, page.more), ((41..=50).collect(), true));
        }
        let store = SqliteStore::open(&dir, SyncMode::Full).unwrap();
        assert_eq!(store.last_id(&RoomName::new("lobby").unwrap()), Some(50));
        let page = store
            .page(
                &room,
                PageQuery::After {
                    after: 45,
                    limit: 10,
                },
            )
            .unwrap();
        assert_eq!(
            page.messages,
            (46..=50).map(|i| entry(i, 1000 + i)).collect::<Vec<_>>()
        );
        assert!(!page.more);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sweep_applies_count_and_age_but_keeps_the_last_id() {
        let dir = temp_dir("sweep");
        let room = RoomName::new("r").unwrap();
        let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
        for id in 1..=20 {
            store.append(&room, entry(id, id * 100));
        }
        let removed = store
            .sweep(
                Retention {
                    max_messages: 10,
                    max_age_ms: Some(500),
                },
                2000,
            )
            .unwrap();
        // Count keeps 11..=20; age (older than t = 1500) removes 11..=14.
        assert_eq!(removed, 14);
        let page = store
            .page(
                &room,
                PageQuery::After {
                    after: 0,
                    limit: 100,
                },
            )
            .unwrap();
        let ids: Vec<_> = page.messages.iter().map(|e| e.id).collect();
        assert_eq!(ids, (15..=20).collect::<Vec<_>>());
        drop(store);
        let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
        assert_eq!(store.last_id(&room), Some(20));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
