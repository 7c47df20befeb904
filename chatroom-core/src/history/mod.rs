//! Where room messages are kept after they are broadcast: the history seam.
//!
//! A [`HistoryStore`] is told every message a room publishes, in id order,
//! and answers pages of a room's past. Two stores come with the crate: the
//! bounded in-memory [`MemoryStore`], and (with the `sqlite` feature) the
//! durable [`SqliteStore`] the server binary uses by default.
//!
//! Rules every store keeps:
//! - [`HistoryStore::append`] is called on the fanout path, under the room's
//!   lock: it must never wait (no I/O, no blocking lock held by slow work).
//!   A durable store queues the message for a writer of its own.
//! - [`HistoryStore::last_id`] is answered from memory, so the registry can
//!   continue a room's ids (after a restart, or after the room emptied)
//!   without I/O under its lock.
//! - [`HistoryStore::page`] may block on disk; the engine calls it from a
//!   blocking-friendly thread.
//!
//! This module may use `protocol` and nothing else from the crate.

mod error;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
mod timing;

use std::fmt;

use crate::protocol::{HistoryEntry, MessageId, RoomName, Timestamp};

pub use error::{HistoryError, StoreOutage};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use timing::{COMMIT_BUCKETS, CommitSnapshot, CommitTimes};

/// How hard SQLite works to keep a commit through a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SyncMode {
    /// `synchronous=NORMAL`: a commit survives the server process being
    /// killed; a power loss may undo the last commits.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on stable storage before it
    /// counts (an fsync per commit).
    Full,
}

/// Which part of a room's history a page covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageQuery {
    /// The newest messages with an id below `before` (`None`: the newest of
    /// all), at most `limit` of them.
    Before {
        /// Only ids below this one.
        before: Option<MessageId>,
        /// The most messages in the page.
        limit: usize,
    },
    /// The oldest messages with an id above `after`, at most `limit`.
    After {
        /// Only ids above this one.
        after: MessageId,
        /// The most messages in the page.
        limit: usize,
    },
}

/// A page of history, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The messages, in id order.
    pub messages: Vec<HistoryEntry>,
    /// True when more messages exist beyond the page in the direction asked.
    pub more: bool,
}

/// How long messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The most messages kept per room (older ones are removed first).
    pub max_messages: u64,
    /// The oldest message kept, in milliseconds of age; `None` keeps all.
    pub max_age_ms: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_messages: 100_000,
            max_age_ms: Some(30 * 24 * 3600 * 1000),
        }
    }
}

/// Where room messages are kept. See the module docs for the rules.
pub trait HistoryStore: Send + Sync + fmt::Debug + 'static {
    /// The last id ever appended for `room` (ignoring case), from memory.
    fn last_id(&self, room: &RoomName) -> Option<MessageId>;

    /// Takes a message the room just published. Must not wait.
    fn append(&self, room: &RoomName, entry: HistoryEntry);

    /// Reads a page of `room`'s history. May block on I/O.
    ///
    /// # Errors
    /// [`HistoryError`] when the store cannot be read.
    fn page(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError>;

    /// Removes what the retention policy no longer keeps, as of `now`.
    /// May block on I/O.
    ///
    /// # Errors
    /// [`HistoryError`] when the store cannot be written.
    fn sweep(&self, retention: Retention, now: Timestamp) -> Result<u64, HistoryError>;

    /// Waits until everything appended so far is as durable as this store
    /// makes it. May block on I/O.
    ///
    /// # Errors
    /// [`HistoryError`] when the store cannot be written.
    fn flush(&self) -> Result<(), HistoryError>;

    /// Whether the store takes writes now, for readiness checks: false
    /// once a commit has failed, until one succeeds again. Must not wait.
    /// The default, for stores that cannot fail to write, is true.
    fn is_writable(&self) -> bool {
        true
    }

    /// How long its commits have taken, for a store that commits in the
    /// background; `None` (the default) for one that does not.
    fn commit_times(&self) -> Option<CommitSnapshot> {
        None
    }

    /// Appends waiting to be committed, for a store that commits in the
    /// background; `None` (the default) for one that does not. Must not
    /// wait.
    fn queued(&self) -> Option<usize> {
        None
    }
}

/// Picks the page out of entries sorted by id; shared by the stores that
/// hold a sorted list.
pub(crate) fn page_of(entries: &[HistoryEntry], query: PageQuery) -> Page {
    match query {
        PageQuery::Before { before, limit } => {
            let end = match before {
                Some(b) => entries.partition_point(|e| e.id < b),
                None => entries.len(),
            };
            let start = end.saturating_sub(limit);
            Page {
                messages: entries[start..end].to_vec(),
                more: start > 0,
            }
        }
        PageQuery::After { after, limit } => {
            let start = entries.partition_point(|e| e.id <= after);
            let end = (start + limit).min(entries.len());
            Page {
                messages: entries[start..end].to_vec(),
                more: end < entries.len(),
            }
        }
    }
}
