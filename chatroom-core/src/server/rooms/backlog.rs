//! Past messages for a session: the backlog of a join or a resume, and
//! `history` pages.
//!
//! A join hands over at most a short backlog atomically (see
//! [`RoomRegistry::join`]). A longer one, such as a client resuming after a
//! minute away from a busy room, is streamed here first: pages from the
//! room's memory or from the history store are pushed into the session's
//! queue at the pace its writer drains it, the cursor advances, and the join
//! is tried again until what is left fits. The client sees every message
//! after its cursor once, in id order, and then the live ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::history::{HistoryError, HistoryStore, Page, PageQuery};
use crate::protocol::{HistoryEntry, MessageId, RoomName, ServerMessage};
use crate::registry::{Backlog, Outbound, Outbox, RegistryError, Room, RoomRegistry, SessionId};

/// Messages streamed per step from the room's memory (frames shared with
/// the room, so a long page costs nothing).
const PAGE: usize = 256;
/// Messages read per step from the history store. Each is this session's
/// own copy until it is written, so a step stays small: a thousand members
/// catching up at once each hold one such page (docs/operations.md,
/// "Memory").
const STORE_PAGE: usize = 32;
/// The longest a catch-up may take before it is given up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// Why a backlog could not be delivered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BacklogError {
    /// The registry refused the join.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The history store failed.
    #[error("history is unavailable")]
    History(#[from] HistoryError),
    /// The session was cut off while its backlog was streamed.
    #[error("the connection was cut off")]
    Cut,
    /// The room outran the client for longer than a catch-up may take.
    #[error("could not catch up with the room")]
    TooSlow,
}

/// Joins `room`, first streaming whatever part of `backlog` is too long to
/// hand over atomically.
pub(crate) async fn join(
    registry: &RoomRegistry,
    id: SessionId,
    outbox: &Outbox,
    room: &RoomName,
    max_rooms: usize,
    mut backlog: Backlog,
) -> Result<Arc<Room>, BacklogError> {
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        let after = match registry.join(id, room, max_rooms, backlog) {
            Ok(handle) => return Ok(handle),
            Err(RegistryError::Behind { after }) => after,
            Err(e) => return Err(e.into()),
        };
        if Instant::now() > deadline {
            return Err(BacklogError::TooSlow);
        }
        let next = stream_step(registry, outbox, room, after).await?;
        backlog = Backlog::After(next);
    }
}

/// Catches up a member that is behind in `room` (see [`Room::catch_up`]):
/// streams the messages after `after` at the pace its queue drains, then
/// lets it back into the live traffic under the room's lock.
pub(crate) async fn catch_up(
    registry: &RoomRegistry,
    id: SessionId,
    outbox: &Outbox,
    room: &Arc<Room>,
    mut after: MessageId,
) -> Result<(), BacklogError> {
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        match room.catch_up(id, after) {
            Ok(()) => return Ok(()),
            Err(RegistryError::Behind { after: from }) => after = from,
            Err(e) => return Err(e.into()),
        }
        if Instant::now() > deadline {
            return Err(BacklogError::TooSlow);
        }
        after = stream_step(registry, outbox, room.name(), after).await?;
    }
}

/// Pushes the next page of messages after `after` and returns the new
/// cursor.
async fn stream_step(
    registry: &RoomRegistry,
    outbox: &Outbox,
    room: &RoomName,
    after: MessageId,
) -> Result<MessageId, BacklogError> {
    let (frames, recent_from) = match registry.room(room) {
        Some(live) => live.recent_after(after, PAGE),
        None => (Vec::new(), MessageId::MAX),
    };
    if after + 1 >= recent_from && !frames.is_empty() {
        let last = push_paced(outbox, frames).await?;
        return Ok(last.unwrap_or(after));
    }
    let Some(store) = registry.history().cloned() else {
        // Nothing older is kept anywhere: skip to what memory holds.
        return Ok(recent_from.saturating_sub(1).max(after));
    };
    let query = PageQuery::After {
        after,
        limit: STORE_PAGE,
    };
    let page = read_page(store, room, query).await?;
    if page.messages.is_empty() {
        // Retention removed them, or they never reached the store: what is
        // gone cannot be sent; continue from the oldest still held.
        let last = registry.last_id(room).unwrap_or(after);
        return Ok(recent_from.saturating_sub(1).clamp(after, last.max(after)));
    }
    // Encoded one at a time as the queue takes them.
    let frames = page
        .messages
        .into_iter()
        .map(|entry| message_frame(room, entry));
    let last = push_paced(outbox, frames).await?;
    Ok(last.unwrap_or(after))
}

fn message_frame(room: &RoomName, entry: HistoryEntry) -> Arc<Outbound> {
    Outbound::message(ServerMessage::Message {
        room: room.clone(),
        id: entry.id,
        from: entry.from,
        text: entry.text,
        ts: entry.ts,
        action: entry.action,
    })
}

/// Pushes `frames` in order, waiting whenever the queue is half full so a
/// long backlog never overflows it. Returns the id of the last one.
async fn push_paced(
    outbox: &Outbox,
    frames: impl IntoIterator<Item = Arc<Outbound>>,
) -> Result<Option<MessageId>, BacklogError> {
    let mut last = None;
    for frame in frames {
        outbox
            .push_paced(&frame)
            .await
            .map_err(|_| BacklogError::Cut)?;
        if let ServerMessage::Message { id, .. } = frame.frame().message {
            last = Some(id);
        }
    }
    Ok(last)
}

/// Reads a page from the store on a blocking thread, after the store has
/// taken everything already appended, so the page has no hole at its end.
async fn read_page(
    store: Arc<dyn HistoryStore>,
    room: &RoomName,
    query: PageQuery,
) -> Result<Page, BacklogError> {
    let room = room.clone();
    tokio::task::spawn_blocking(move || {
        store.flush()?;
        store.page(&room, query)
    })
    .await
    .map_err(|_| BacklogError::History(HistoryError::WriterGone))?
    .map_err(BacklogError::from)
}

/// A page of `room`'s history for a `history` request: from the store when
/// there is one, else from the room's memory.
pub(crate) async fn page(
    registry: &RoomRegistry,
    room: &RoomName,
    query: PageQuery,
) -> Result<Page, BacklogError> {
    if let Some(store) = registry.history().cloned() {
        return read_page(store, room, query).await;
    }
    let Some(live) = registry.room(room) else {
        return Ok(Page::default());
    };
    let (frames, _) = live.recent_after(0, usize::MAX);
    let entries: Vec<HistoryEntry> = frames
        .iter()
        .filter_map(|f| match &f.frame().message {
            ServerMessage::Message {
                id,
                from,
                text,
                ts,
                action,
                ..
            } => Some(HistoryEntry {
                id: *id,
                from: from.clone(),
                text: text.clone(),
                ts: *ts,
                action: *action,
            }),
            _ => None,
        })
        .collect();
    Ok(crate::history::page_of(&entries, query))
}
