//! Who is in which room: sessions, nicknames, rooms, presence and fanout.
//!
//! Pure state behind synchronous methods: no I/O, no `.await`, no lock held
//! across a suspension point. It may use `protocol` types and non-blocking
//! queue pushes; it never touches a socket, so a slow peer can never slow it.
//!
//! Locks: one registry-wide mutex for membership and nicknames (join, leave,
//! rename, listings), and one per room for publishing. Publishing, the hot
//! path, takes only its room's lock. When both are taken, the registry's
//! comes first.

mod error;
mod joined;
mod outbox;
#[cfg(feature = "test-util")]
pub(crate) mod rig;
mod room;
mod session_id;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::history::HistoryStore;
use crate::protocol::{MessageId, Nickname, RoomInfo, RoomName, ServerMessage, Timestamp};

pub use error::RegistryError;
pub use outbox::{CutReason, Outbound};
pub(crate) use outbox::{Entry, Outbox, OutboxReceiver, QueueBudget, outbox};
pub use room::{Published, Room, now_ms};
pub use session_id::SessionId;

use joined::Joined;
use room::{MAX_ATOMIC_BACKLOG, Member};

#[cfg(any(test, feature = "test-util"))]
/// How many of a room's latest messages a room keeps in memory by default.
pub(crate) const DEFAULT_RECENT_PER_ROOM: usize = 256;

/// Which past messages a joiner is sent before the live ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backlog {
    /// The last N messages of the room.
    Last(MessageId),
    /// Every message with an id above this one (a resume cursor).
    After(MessageId),
}

/// What the sessions' outbound queues hold at one moment, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueDepth {
    /// In all the queues together.
    pub(crate) total: usize,
    /// In the fullest one.
    pub(crate) largest: usize,
}

/// The room registry. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct RoomRegistry {
    shared: Arc<Shared>,
}

struct Shared {
    next_session: AtomicU64,
    state: Mutex<State>,
    recent_per_room: usize,
    history: Option<Arc<dyn HistoryStore>>,
}

#[derive(Default)]
struct State {
    /// Folded nickname → holder.
    nicks: HashMap<String, SessionId>,
    sessions: HashMap<SessionId, SessionEntry>,
    /// Folded room name → room. A room exists while it has members.
    rooms: HashMap<String, Arc<Room>>,
}

struct SessionEntry {
    nick: Nickname,
    outbox: Outbox,
    /// Folded names of the rooms joined.
    rooms: Joined,
}

impl RoomRegistry {
    #[cfg(any(test, feature = "test-util"))]
    /// An empty registry without a history store; each room keeps its
    /// last [`DEFAULT_RECENT_PER_ROOM`] messages in memory.
    pub(crate) fn new() -> Self {
        Self::with_history(None, DEFAULT_RECENT_PER_ROOM)
    }

    /// An empty registry whose rooms keep their last `recent_per_room`
    /// messages in memory and tell `history` every message.
    pub(crate) fn with_history(
        history: Option<Arc<dyn HistoryStore>>,
        recent_per_room: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                next_session: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                recent_per_room,
                history,
            }),
        }
    }

    /// The history store, if the registry has one.
    pub(crate) fn history(&self) -> Option<&Arc<dyn HistoryStore>> {
        self.shared.history.as_ref()
    }

    /// The last message id of `room`: from the live room, else from the
    /// history store. `None` for a room that never had a message or member.
    pub fn last_id(&self, room: &RoomName) -> Option<MessageId> {
        if let Some(live) = self.room(room) {
            return Some(live.last_id());
        }
        self.shared.history.as_ref().and_then(|h| h.last_id(room))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the maps consistent between statements
        // that can panic, so a poisoned lock is safe to keep using.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session under `nick`.
    ///
    /// # Errors
    /// [`RegistryError::NickTaken`] when another session holds the nick.
    pub(crate) fn register(
        &self,
        nick: Nickname,
        outbox: Outbox,
    ) -> Result<SessionId, RegistryError> {
        let mut state = self.lock();
        let key = nick.key();
        if state.nicks.contains_key(&key) {
            return Err(RegistryError::NickTaken(nick));
        }
        let id = SessionId(self.shared.next_session.fetch_add(1, Ordering::Relaxed));
        state.nicks.insert(key, id);
        state.sessions.insert(
            id,
            SessionEntry {
                nick,
                outbox,
                rooms: Joined::default(),
            },
        );
        Ok(id)
    }

    /// Cuts off the session holding `nick`, if any, with `reason`.
    pub fn cut_off_holder(&self, nick: &Nickname, reason: CutReason) {
        if let Some(holder) = self.lock().holder(nick) {
            holder.outbox.cut_off(reason);
        }
    }

    /// The session holding `nick`, if any.
    pub(crate) fn session_of(&self, nick: &Nickname) -> Option<SessionId> {
        self.lock().nicks.get(&nick.key()).copied()
    }

    /// Whether a session of this registry holds `nick`.
    pub fn holds(&self, nick: &Nickname) -> bool {
        self.lock().nicks.contains_key(&nick.key())
    }

    #[cfg(test)]
    /// The session's current nickname.
    pub(crate) fn nick_of(&self, id: SessionId) -> Option<Nickname> {
        self.lock().sessions.get(&id).map(|s| s.nick.clone())
    }

    /// Changes a session's nickname and tells everyone who shares a room
    /// with it (once each) and the session itself. Returns the old nick.
    ///
    /// # Errors
    /// [`RegistryError::NickTaken`] when another session holds `new`.
    pub(crate) fn rename(&self, id: SessionId, new: Nickname) -> Result<Nickname, RegistryError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let new_key = new.key();
        match state.nicks.get(&new_key) {
            Some(holder) if *holder != id => return Err(RegistryError::NickTaken(new)),
            _ => {}
        }
        let entry = state
            .sessions
            .get_mut(&id)
            .ok_or(RegistryError::UnknownSession)?;
        let old = std::mem::replace(&mut entry.nick, new.clone());
        state.nicks.remove(&old.key());
        state.nicks.insert(new_key, id);

        let frame = Outbound::message(ServerMessage::NickChanged {
            old: old.clone(),
            new,
        });
        let mut told = BTreeSet::from([id]);
        let _ = entry.outbox.push(&frame);
        let rooms = entry.rooms.iter().map(String::as_str);
        tell_members_once(&state.rooms, rooms, &frame, &mut told);
        Ok(old)
    }

    /// Adds the session to `room` (created if needed), hands it the
    /// `backlog` it asked for, and tells the room, the joiner included.
    /// Joining a room one is in already changes nothing and tells no one.
    ///
    /// Under the locks the joiner is sent `joined`, then the backlog, and is
    /// then a member: no message can fall between the backlog and the live
    /// ones, and none can come twice. Only a backlog of at most
    /// [`MAX_ATOMIC_BACKLOG`] messages, all still in memory, is handed over
    /// this way; for a longer one the join is refused with
    /// [`RegistryError::Behind`], and the caller streams the older messages
    /// itself (paced by its queue) and joins again with a later cursor.
    ///
    /// # Errors
    /// [`RegistryError::TooManyRooms`] when the session is in `max_rooms`
    /// rooms already; [`RegistryError::Behind`] as above.
    pub(crate) fn join(
        &self,
        id: SessionId,
        room: &RoomName,
        max_rooms: usize,
        backlog: Backlog,
    ) -> Result<Arc<Room>, RegistryError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let entry = state
            .sessions
            .get_mut(&id)
            .ok_or(RegistryError::UnknownSession)?;
        let key = room.key();
        if entry.rooms.contains(&key)
            && let Some(existing) = state.rooms.get(&key)
        {
            return Ok(existing.clone());
        }
        if entry.rooms.len() >= max_rooms {
            return Err(RegistryError::TooManyRooms { max: max_rooms });
        }
        let handle = match state.rooms.get(&key) {
            Some(live) => live.clone(),
            None => Arc::new(Room::new(
                room.clone(),
                self.shared.recent_per_room,
                self.shared.history.clone(),
            )),
        };
        let mut room_state = handle.lock();
        let after = match backlog {
            Backlog::Last(n) => room_state.last_id.saturating_sub(n),
            Backlog::After(cursor) => cursor.min(room_state.last_id),
        };
        if room_state.last_id - after > MAX_ATOMIC_BACKLOG || after + 1 < room_state.recent_from() {
            return Err(RegistryError::Behind { after });
        }
        let frame = Outbound::message(ServerMessage::Joined {
            room: handle.name().clone(),
            nick: entry.nick.clone(),
        });
        room_state.offer_all(&frame, None);
        let _ = entry.outbox.push(&frame);
        for missed in room_state.recent_after(after) {
            let _ = entry.outbox.push(missed);
        }
        room_state
            .members
            .push(Member::new(id, entry.outbox.clone()));
        drop(room_state);
        entry.rooms.insert(key.clone());
        state.rooms.entry(key).or_insert_with(|| handle.clone());
        Ok(handle)
    }

    /// Removes the session from `room`, tells the remaining members and the
    /// leaver, and reclaims the room when it is empty.
    ///
    /// # Errors
    /// [`RegistryError::NotInRoom`] when the session is not a member.
    pub(crate) fn leave(
        &self,
        id: SessionId,
        room: &RoomName,
        reason: Option<String>,
    ) -> Result<(), RegistryError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let entry = state
            .sessions
            .get_mut(&id)
            .ok_or(RegistryError::UnknownSession)?;
        if !entry.rooms.remove(&room.key()) {
            return Err(RegistryError::NotInRoom(room.clone()));
        }
        let nick = entry.nick.clone();
        let outbox = entry.outbox.clone();
        let frame = remove_member(state, id, &room.key(), nick, reason);
        if let Some(frame) = frame {
            let _ = outbox.push(&frame);
        }
        Ok(())
    }

    /// Removes a session entirely: leaves every room (telling the others)
    /// and frees its nickname. Unknown sessions are ignored.
    pub(crate) fn unregister(&self, id: SessionId, reason: Option<String>) {
        self.remove_session(id, Some(reason));
    }

    /// Removes a session without telling its rooms. For a server shutting
    /// down: every member is leaving at once, and announcing each departure
    /// to every other member would cost the square of the room size.
    pub(crate) fn unregister_silently(&self, id: SessionId) {
        self.remove_session(id, None);
    }

    /// `announce` is `None` for a silent removal, else the `left` reason.
    fn remove_session(&self, id: SessionId, announce: Option<Option<String>>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = state.sessions.remove(&id) else {
            return;
        };
        state.nicks.remove(&entry.nick.key());
        for key in &entry.rooms {
            match &announce {
                Some(reason) => {
                    remove_member(state, id, key, entry.nick.clone(), reason.clone());
                }
                None => drop_member(state, id, key),
            }
        }
    }

    /// Sends a private message to the holder of `to`, and echoes it to the
    /// sender.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchNick`] when no one holds `to`.
    pub(crate) fn whisper(
        &self,
        id: SessionId,
        to: &Nickname,
        text: String,
    ) -> Result<(), RegistryError> {
        let state = self.lock();
        let sender = state
            .sessions
            .get(&id)
            .ok_or(RegistryError::UnknownSession)?;
        let target = state
            .holder(to)
            .ok_or_else(|| RegistryError::NoSuchNick(to.clone()))?;
        let frame = Outbound::message(ServerMessage::Private {
            from: sender.nick.clone(),
            to: target.nick.clone(),
            text,
            ts: now_ms(),
        });
        let _ = target.outbox.push(&frame);
        // Whispering to oneself shows the message once, not twice.
        if sender.nick != target.nick {
            let _ = sender.outbox.push(&frame);
        }
        Ok(())
    }

    /// Hands the holder of `to` a private message that `from`, on another
    /// node, sent at `ts`; returns the holder's nick as it is spelt.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchNick`] when no session here holds `to`.
    pub fn deliver_private(
        &self,
        from: Nickname,
        to: &Nickname,
        text: String,
        ts: Timestamp,
    ) -> Result<Nickname, RegistryError> {
        let state = self.lock();
        let target = state
            .holder(to)
            .ok_or_else(|| RegistryError::NoSuchNick(to.clone()))?;
        let _ = target
            .outbox
            .push(&Outbound::message(ServerMessage::Private {
                from,
                to: target.nick.clone(),
                text,
                ts,
            }));
        Ok(target.nick.clone())
    }

    /// The rooms that exist, sorted by name, with their member counts.
    pub(crate) fn rooms(&self) -> Vec<RoomInfo> {
        let state = self.lock();
        let mut rooms: Vec<RoomInfo> = state
            .rooms
            .values()
            .map(|r| RoomInfo {
                name: r.name().clone(),
                members: r.len(),
            })
            .collect();
        drop(state);
        rooms.sort_by_cached_key(|r| r.name.key());
        rooms
    }

    /// The members of `room`, sorted ignoring case.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchRoom`] when the room does not exist.
    pub(crate) fn members(&self, room: &RoomName) -> Result<Vec<Nickname>, RegistryError> {
        let state = self.lock();
        let handle = state
            .rooms
            .get(&room.key())
            .ok_or_else(|| RegistryError::NoSuchRoom(room.clone()))?;
        let mut nicks: Vec<Nickname> = handle
            .lock()
            .members
            .iter()
            .filter_map(|m| state.sessions.get(&m.session).map(|s| s.nick.clone()))
            .collect();
        // Sorted after the lock is let go, one folded copy per member (a
        // join into a big room sorts its whole member list; under the
        // registry's lock that held every other join and close up).
        drop(state);
        nicks.sort_by_cached_key(Nickname::key);
        Ok(nicks)
    }

    /// The room named `room`, if it exists.
    pub fn room(&self, room: &RoomName) -> Option<Arc<Room>> {
        self.lock().rooms.get(&room.key()).cloned()
    }

    /// What the sessions' queues hold now: the bytes in all of them and in
    /// the fullest one. Read for metrics, at scrape time, so the delivery
    /// path keeps no shared count: one short lock of each session's queue,
    /// under the registry lock.
    pub(crate) fn queued_bytes(&self) -> QueueDepth {
        let state = self.lock();
        let mut depth = QueueDepth::default();
        for session in state.sessions.values() {
            let bytes = session.outbox.queued_bytes();
            depth.total += bytes;
            depth.largest = depth.largest.max(bytes);
        }
        depth
    }

    #[cfg(test)]
    /// How many sessions are registered.
    pub(crate) fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Pushes `frame` once to every member of any of `rooms` (a rename
    /// heard from another node, say).
    pub fn tell_members(&self, rooms: &[RoomName], frame: &Arc<Outbound>) {
        let keys: Vec<String> = rooms.iter().map(RoomName::key).collect();
        let state = self.lock();
        let keys = keys.iter().map(String::as_str);
        tell_members_once(&state.rooms, keys, frame, &mut BTreeSet::new());
    }

    /// Pushes `frame` to every registered session (for server notices such
    /// as shutdown). Returns how many could not take it.
    pub fn broadcast_all(&self, frame: &Arc<Outbound>) -> usize {
        let state = self.lock();
        state
            .sessions
            .values()
            .filter(|s| s.outbox.push(frame).is_err())
            .count()
    }
}

impl State {
    /// The session holding `nick`.
    fn holder(&self, nick: &Nickname) -> Option<&SessionEntry> {
        self.nicks
            .get(&nick.key())
            .and_then(|id| self.sessions.get(id))
    }
}

/// Pushes `frame` to every member of the rooms `keys` not in `told`, and
/// adds them to it: each session is told once, however many rooms it shares.
fn tell_members_once<'a>(
    rooms: &HashMap<String, Arc<Room>>,
    keys: impl Iterator<Item = &'a str>,
    frame: &Arc<Outbound>,
    told: &mut BTreeSet<SessionId>,
) {
    for key in keys {
        if let Some(room) = rooms.get(key) {
            let mut state = room.lock();
            let given = state.last_id;
            for member in &mut state.members {
                if told.insert(member.session) {
                    member.offer(frame, given);
                }
            }
        }
    }
}

/// Takes `id` out of the room `key`, tells the remaining members, and drops
/// the room when it is empty. Returns the `left` frame so the caller can
/// also give it to the leaver.
fn remove_member(
    state: &mut State,
    id: SessionId,
    key: &str,
    nick: Nickname,
    reason: Option<String>,
) -> Option<Arc<Outbound>> {
    let room = state.rooms.get(key)?.clone();
    let mut room_state = room.lock();
    if let Some(pos) = room_state.members.iter().position(|m| m.session == id) {
        room_state.members.swap_remove(pos);
    }
    let frame = Outbound::message(ServerMessage::Left {
        room: room.name().clone(),
        nick,
        reason,
    });
    room_state.offer_all(&frame, None);
    let empty = room_state.members.is_empty();
    drop(room_state);
    if empty {
        state.rooms.remove(key);
    }
    Some(frame)
}

/// Takes `id` out of the room `key` without telling anyone, and drops the
/// room when it is empty.
fn drop_member(state: &mut State, id: SessionId, key: &str) {
    let Some(room) = state.rooms.get(key) else {
        return;
    };
    let mut room_state = room.lock();
    if let Some(pos) = room_state.members.iter().position(|m| m.session == id) {
        room_state.members.swap_remove(pos);
    }
    let empty = room_state.members.is_empty();
    drop(room_state);
    if empty {
        state.rooms.remove(key);
    }
}

impl fmt::Debug for RoomRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("RoomRegistry")
            .field("sessions", &state.sessions.len())
            .field("rooms", &state.rooms.len())
            .finish()
    }
}
