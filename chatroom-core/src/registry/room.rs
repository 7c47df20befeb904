//! One room: its members' queues, its message counter, and fanout.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::history::HistoryStore;
use crate::protocol::{HistoryEntry, MessageId, Nickname, RoomName, ServerMessage, Timestamp};

use super::error::RegistryError;
use super::outbox::{Outbound, Outbox};
use super::session_id::SessionId;

/// Milliseconds since the Unix epoch, the server's clock for `ts`.
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

/// What publishing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The id the message was given.
    pub id: MessageId,
    /// The server time it was given.
    pub ts: Timestamp,
    /// How many members were handed the message.
    pub delivered: usize,
    /// How many members could not take it (their queue was full, so they
    /// are being cut off as slow consumers).
    pub slow: usize,
}

pub(super) struct Member {
    pub(super) session: SessionId,
    pub(super) outbox: Outbox,
}

pub(super) struct RoomState {
    pub(super) last_id: MessageId,
    pub(super) members: Vec<Member>,
    /// The room's latest message frames, oldest first, already encoded: a
    /// joiner or a resuming client is sent these without any encoding.
    pub(super) recent: VecDeque<Arc<Outbound>>,
}

impl RoomState {
    /// The id of the oldest message in `recent`, or `last_id + 1` when it
    /// is empty: every message from this id on is in memory.
    pub(super) fn recent_from(&self) -> MessageId {
        self.last_id + 1 - self.recent.len() as MessageId
    }

    /// The recent frames with an id above `after`.
    pub(super) fn recent_after(&self, after: MessageId) -> impl Iterator<Item = &Arc<Outbound>> {
        let skip = after.saturating_sub(self.recent_from() - 1);
        self.recent
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }
}

/// A room. Sessions hold an `Arc<Room>` for each room they joined, so
/// publishing touches only this room's lock, never the registry's.
pub struct Room {
    name: RoomName,
    // A std mutex: it is never held across an .await, and every critical
    // section is a bounded loop of non-blocking queue pushes.
    state: Mutex<RoomState>,
    /// How many frames `recent` keeps.
    recent_cap: usize,
    /// Told every message, in id order (appends happen under the lock).
    history: Option<Arc<dyn HistoryStore>>,
}

impl Room {
    pub(super) fn new(
        name: RoomName,
        recent_cap: usize,
        history: Option<Arc<dyn HistoryStore>>,
    ) -> Self {
        // Ids continue after the last one stored, across restarts and
        // across the room emptying and being created again.
        let last_id = history.as_ref().and_then(|h| h.last_id(&name)).unwrap_or(0);
        Self {
            name,
            state: Mutex::new(RoomState {
                last_id,
                members: Vec::new(),
                recent: VecDeque::new(),
            }),
            recent_cap,
            history,
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding this lock cannot leave the member list
        // half-updated (every update is a single push or swap_remove), so a
        // poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many members the room has.
    pub(crate) fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// The id of the last message published here (0 before the first).
    pub fn last_id(&self) -> MessageId {
        self.lock().last_id
    }

    /// Publishes a message from `sender`: stamps the next id and the server
    /// time, encodes the frame once, and pushes the same bytes to every
    /// member's queue without waiting. The sender receives its own message
    /// only when `echo` is true; the server engine passes false, as the
    /// seed did, and tells the sender the id in its `ok` reply.
    ///
    /// Ids are assigned and queued under the room's lock, so every member
    /// receives the room's messages in id order.
    ///
    /// # Errors
    /// [`RegistryError::NotInRoom`] when `sender` is not a member.
    pub fn publish(
        &self,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
        echo: bool,
    ) -> Result<Published, RegistryError> {
        let mut state = self.lock();
        if !state.members.iter().any(|m| m.session == sender) {
            return Err(RegistryError::NotInRoom(self.name.clone()));
        }
        state.last_id += 1;
        let id = state.last_id;
        let ts = now_ms();
        if let Some(history) = &self.history {
            history.append(
                &self.name,
                HistoryEntry {
                    id,
                    from: from.clone(),
                    text: text.clone(),
                    ts,
                    action,
                },
            );
        }
        let frame = Outbound::message(ServerMessage::Message {
            room: self.name.clone(),
            id,
            from: from.clone(),
            text,
            ts,
            action,
        });
        let (delivered, slow) = fan_out(&state, &frame, (!echo).then_some(sender));
        if self.recent_cap > 0 {
            if state.recent.len() == self.recent_cap {
                state.recent.pop_front();
            }
            state.recent.push_back(frame);
        }
        Ok(Published {
            id,
            ts,
            delivered,
            slow,
        })
    }

    /// Copies out up to `limit` recent frames with an id above `after`,
    /// with the id of the oldest frame held in memory (every later message
    /// is held too).
    pub(crate) fn recent_after(
        &self,
        after: MessageId,
        limit: usize,
    ) -> (Vec<Arc<Outbound>>, MessageId) {
        let state = self.lock();
        let frames = state.recent_after(after).take(limit).cloned().collect();
        (frames, state.recent_from())
    }

    /// Delivers a message whose id and time were agreed elsewhere (by a
    /// cluster broker, in the room's one order): under the lock it becomes
    /// the room's last message, is encoded once, goes to every member but
    /// `except`, and is kept among the recent frames. A message at or below
    /// the room's last id was delivered already and is skipped (`None`).
    /// The history store is not told: the broker's log is the history.
    pub fn deliver_message(
        &self,
        id: MessageId,
        entry: HistoryEntry,
        except: Option<SessionId>,
    ) -> Option<Published> {
        let mut state = self.lock();
        if id <= state.last_id {
            return None;
        }
        if id != state.last_id + 1 {
            // `recent` holds consecutive ids up to `last_id`; after a gap
            // (messages removed before this node saw them) the older
            // frames no longer line up, and joiners read the store instead.
            state.recent.clear();
        }
        state.last_id = id;
        let ts = entry.ts;
        let frame = Outbound::message(ServerMessage::Message {
            room: self.name.clone(),
            id,
            from: entry.from,
            text: entry.text,
            ts,
            action: entry.action,
        });
        let (delivered, slow) = fan_out(&state, &frame, except);
        if self.recent_cap > 0 {
            if state.recent.len() == self.recent_cap {
                state.recent.pop_front();
            }
            state.recent.push_back(frame);
        }
        Some(Published {
            id,
            ts,
            delivered,
            slow,
        })
    }

    /// Pushes an already-stamped frame to every member but `except`.
    /// Returns how many members could not take it.
    ///
    /// This is the seam between "a room publishes" and "members receive":
    /// a broker that carries messages between server nodes delivers through
    /// here on each node.
    pub fn deliver(&self, frame: &Arc<Outbound>, except: Option<SessionId>) -> usize {
        fan_out(&self.lock(), frame, except).1
    }
}

fn fan_out(state: &RoomState, frame: &Arc<Outbound>, except: Option<SessionId>) -> (usize, usize) {
    let mut delivered = 0;
    let mut slow = 0;
    for member in &state.members {
        if Some(member.session) == except {
            continue;
        }
        match member.outbox.push(frame) {
            Ok(()) => delivered += 1,
            Err(_) => slow += 1,
        }
    }
    (delivered, slow)
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
