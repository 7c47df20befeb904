//! The cluster's shared history: [`StreamStore`] reads a room's page
//! straight from the room's stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::time::timeout;

use crate::history::{HistoryError, HistoryStore, Page, PageQuery, Retention, StoreOutage};
use crate::protocol::{HistoryEntry, MessageId, RoomName, Timestamp};

use super::lock::lock;
use super::wire::{Wire, stream_name, stream_not_found};

/// A history store that reads the rooms' streams: the cluster's shared
/// history. `append` does nothing (the stream has the message already),
/// `sweep` does nothing (the stream's limits apply retention), `last_id`
/// answers from what this node has seen of each room.
pub struct StreamStore {
    js: jetstream::Context,
    runtime: tokio::runtime::Handle,
    request_timeout: Duration,
    /// Room key → the last id this node knows of.
    last: Mutex<HashMap<String, MessageId>>,
}

impl fmt::Debug for StreamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamStore").finish_non_exhaustive()
    }
}

impl StreamStore {
    /// A store reading through `js`, answering within `request_timeout`.
    /// Must be made inside the Tokio runtime it blocks on.
    pub(super) fn new(js: jetstream::Context, request_timeout: Duration) -> Self {
        Self {
            js,
            runtime: tokio::runtime::Handle::current(),
            request_timeout,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Raises the room's last known id to `id`.
    pub(super) fn note(&self, key: &str, id: MessageId) {
        let mut last = lock(&self.last);
        let known = last.entry(key.to_owned()).or_insert(0);
        *known = (*known).max(id);
    }

    async fn read(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError> {
        let key = room.key();
        let stream = match self.js.get_stream(stream_name(&key)).await {
            Ok(stream) => stream,
            Err(e) if stream_not_found(&e) => return Ok(Page::default()),
            Err(e) => return Err(StoreOutage::Open(e.into()).into()),
        };
        let state = stream.cached_info().state.clone();
        if state.messages == 0 {
            return Ok(Page::default());
        }
        let (first, last) = (state.first_sequence, state.last_sequence);
        let (from, to, more) = match query {
            PageQuery::After { after, limit } => {
                let from = (after + 1).max(first);
                let to = from.saturating_add(limit as u64 - 1).min(last);
                (from, to, to < last)
            }
            PageQuery::Before { before, limit } => {
                let to = before.map_or(last, |b| b.saturating_sub(1)).min(last);
                let from = to.saturating_sub(limit as u64 - 1).max(first);
                (from, to, from > first)
            }
        };
        let mut messages = Vec::new();
        for seq in from..=to {
            match stream.get_raw_message(seq).await {
                Ok(raw) => {
                    if let Ok(wire) = serde_json::from_slice::<Wire>(&raw.payload) {
                        messages.push(wire.into_entry(seq));
                    }
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(StoreOutage::Read(e.into()).into()),
            }
        }
        Ok(Page { messages, more })
    }
}

impl HistoryStore for StreamStore {
    fn last_id(&self, room: &RoomName) -> Option<MessageId> {
        lock(&self.last).get(&room.key()).copied()
    }

    fn append(&self, _room: &RoomName, _entry: HistoryEntry) {}

    fn page(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError> {
        // Called on a blocking thread, never on the runtime's own.
        self.runtime
            .block_on(timeout(self.request_timeout, self.read(room, query)))
            .unwrap_or_else(|_| Err(StoreOutage::TimedOut.into()))
    }

    fn sweep(&self, _retention: Retention, _now: Timestamp) -> Result<u64, HistoryError> {
        Ok(0)
    }

    fn flush(&self) -> Result<(), HistoryError> {
        Ok(())
    }
}
