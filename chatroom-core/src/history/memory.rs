//! A bounded in-memory history: the last messages of each room, lost on
//! restart. For embedders and tests, and for `--history memory`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::protocol::{HistoryEntry, MessageId, RoomName, Timestamp};

use super::{HistoryError, HistoryStore, Page, PageQuery, Retention, page_of};

/// Keeps at most `per_room` messages per room in memory.
#[derive(Debug)]
pub struct MemoryStore {
    per_room: usize,
    rooms: Mutex<HashMap<String, RoomLog>>,
}

#[derive(Debug, Default)]
struct RoomLog {
    last_id: MessageId,
    entries: VecDeque<HistoryEntry>,
}

impl MemoryStore {
    /// A store that keeps the last `per_room` messages of every room.
    pub fn new(per_room: usize) -> Self {
        Self {
            per_room,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, RoomLog>> {
        // Every update is a single push or pop; a panic cannot leave a log
        // half-changed, so a poisoned lock is still consistent.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl HistoryStore for MemoryStore {
    fn last_id(&self, room: &RoomName) -> Option<MessageId> {
        self.lock().get(&room.key()).map(|log| log.last_id)
    }

    fn append(&self, room: &RoomName, entry: HistoryEntry) {
        let mut rooms = self.lock();
        let log = rooms.entry(room.key()).or_default();
        log.last_id = log.last_id.max(entry.id);
        log.entries.push_back(entry);
        while log.entries.len() > self.per_room {
            log.entries.pop_front();
        }
    }

    fn page(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError> {
        let mut rooms = self.lock();
        let Some(log) = rooms.get_mut(&room.key()) else {
            return Ok(Page::default());
        };
        Ok(page_of(log.entries.make_contiguous(), query))
    }

    fn sweep(&self, retention: Retention, now: Timestamp) -> Result<u64, HistoryError> {
        let mut removed = 0;
        let cutoff = retention.max_age_ms.map(|age| now.saturating_sub(age));
        for log in self.lock().values_mut() {
            let keep = usize::try_from(retention.max_messages).unwrap_or(usize::MAX);
            while log.entries.len() > keep
                || log
                    .entries
                    .front()
                    .is_some_and(|e| cutoff.is_some_and(|c| e.ts < c))
            {
                log.entries.pop_front();
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn flush(&self) -> Result<(), HistoryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Nickname;

    fn entry(id: MessageId, ts: Timestamp) -> HistoryEntry {
        HistoryEntry {
            id,
            from: Nickname::new("a").unwrap(),
            text: format!("m{id}"),
            ts,
            action: false,
        }
    }

    fn ids(page: &Page) -> Vec<MessageId> {
        page.messages.iter().map(|e| e.id).collect()
    }

    #[test]
    fn pages_go_both_ways_and_say_when_more_exist() {
        let store = MemoryStore::new(100);
        let room = RoomName::new("r").unwrap();
        for id in 1..=10 {
            store.append(&room, entry(id, 0));
        }
        let latest = store
            .page(
                &room,
                PageQuery::Before {
                    before: None,
                    limit: 3,
                },
            )
            .unwrap();
        assert_eq!((ids(&latest), latest.more), (vec![8, 9, 10], true));
        let older = store
            .page(
                &room,
                PageQuery::Before {
                    before: Some(8),
                    limit: 10,
                },
            )
            .unwrap();
        assert_eq!((ids(&older), older.more), ((1..=7).collect(), false));
        let after = store
            .page(&room, PageQuery::After { after: 7, limit: 2 })
            .unwrap();
        assert_eq!((ids(&after), after.more), (vec![8, 9], true));
        let upper = RoomName::new("R").unwrap();
        assert_eq!(store.last_id(&upper), Some(10));
    }

    #[test]
    fn the_bound_and_retention_drop_the_oldest() {
        let store = MemoryStore::new(5);
        let room = RoomName::new("r").unwrap();
        for id in 1..=8 {
            store.append(&room, entry(id, id * 1000));
        }
        let all = |s: &MemoryStore| {
            ids(&s
                .page(
                    &room,
                    PageQuery::After {
                        after: 0,
                        limit: 100,
                    },
                )
                .unwrap())
        };
        assert_eq!(all(&store), vec![4, 5, 6, 7, 8]);
        let removed = store
            .sweep(
                Retention {
                    max_messages: 4,
                    max_age_ms: Some(2500),
                },
                8000,
            )
            .unwrap();
        // Ids 4 and 5 are older than 2.5 s at t = 8 s.
        assert_eq!((removed, all(&store)), (2, vec![6, 7, 8]));
        assert_eq!(store.last_id(&room), Some(8));
    }
}
