//! One room: its members' queues, its message counter, and fanout.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::history::HistoryStore;
use crate::protocol::{HistoryEntry, MessageId, Nickname, RoomName, ServerMessage, Timestamp};

use super::error::RegistryError;
use super::outbox::{JoinedRun, Outbound, Outbox, PushError};
use super::session_id::SessionId;

/// Milliseconds since the Unix epoch, the server's clock for `ts`.
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

/// Most messages a join or a catch-up hands over under the locks; a longer
/// backlog is streamed first (see `RoomRegistry::join`, [`Room::catch_up`]).
pub(crate) const MAX_ATOMIC_BACKLOG: MessageId = 64;

/// Most messages a room holds for one run (see [`Room::publish_held`]).
const MAX_HELD: usize = 64;

/// What publishing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The id the message was given.
    pub id: MessageId,
    /// The server time it was given.
    pub ts: Timestamp,
    /// How many members were handed the message (and, when it ended a
    /// run of held messages or came after one was handed over, theirs:
    /// see [`Room::publish_held`]).
    pub delivered: usize,
    /// How many members it was held back from: their queue was full, so
    /// they are behind in this room until their session catches them up
    /// from the room's memory and history.
    pub slow: usize,
}

pub(super) struct Member {
    pub(super) session: SessionId,
    pub(super) outbox: Outbox,
    /// Set while the room holds its traffic back from this member: its
    /// queue was full. The id is the last message it was given; its
    /// session streams it everything after that, then
    /// [`Room::catch_up`] lets it back in.
    pub(super) behind: Option<MessageId>,
}

impl Member {
    pub(super) fn new(session: SessionId, outbox: Outbox) -> Self {
        Self {
            session,
            outbox,
            behind: None,
        }
    }

    /// Queues room traffic for this member, or holds it back when the
    /// member is behind or its queue is full; `given` is the last message
    /// id the member has had once this frame is counted out. Returns
    /// whether the frame was queued.
    pub(super) fn offer(&mut self, frame: &Arc<Outbound>, given: MessageId) -> bool {
        if self.behind.is_some() {
            return false;
        }
        match self.outbox.offer(frame) {
            Ok(()) => true,
            Err(PushError::Full) => {
                self.behind = Some(given);
                self.outbox.fell_behind();
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Queues the held messages that are this member's and that it has not
    /// been given yet, in one run, or holds them back as [`Member::offer`]
    /// does: `(queued, held back)`. A member that takes the whole run
    /// queues `joined`, the run's lines in one buffer, when there is one.
    fn offer_held(&mut self, held: &HeldRun, joined: Option<&Arc<JoinedRun>>) -> (usize, usize) {
        let Some(from) = held.given(self.session) else {
            // The usual member: it sent none of the run, so every message
            // is its own to get, and it takes the run whole.
            if self.behind.is_some() {
                return (0, held.frames.len());
            }
            let (queued, stopped) =
                self.outbox
                    .offer_slice(&held.frames, held.bytes, held.bye, joined);
            self.fell_behind_at(stopped, held.ids.get(queued).map(|&(id, _)| id));
            return (queued, held.frames.len() - queued);
        };
        // A sender in the run: the others' messages from where it was
        // given them, frame by frame.
        let mine = |&(_, except): &(MessageId, Option<SessionId>)| except != Some(self.session);
        let total = held.ids[from..].iter().filter(|h| mine(h)).count();
        if self.behind.is_some() {
            return (0, total);
        }
        let (queued, stopped) = self.outbox.offer_run(
            held.frames[from..]
                .iter()
                .zip(&held.ids[from..])
                .filter(|(_, h)| mine(h))
                .map(|(frame, _)| frame),
        );
        let missed = held.ids[from..].iter().filter(|h| mine(h)).nth(queued);
        self.fell_behind_at(stopped, missed.map(|&(id, _)| id));
        (queued, total - queued)
    }

    /// After a run stopped at message `missed` because the queue was full,
    /// holds the room's traffic back from this member from there.
    fn fell_behind_at(&mut self, stopped: Option<PushError>, missed: Option<MessageId>) {
        if stopped == Some(PushError::Full)
            && let Some(id) = missed
        {
            self.behind = Some(id - 1);
            self.outbox.fell_behind();
        }
    }
}

/// Messages published with [`Room::publish_held`], waiting in the room
/// for the rest of their publishers' runs, oldest first.
#[derive(Default)]
pub(super) struct HeldRun {
    frames: Vec<Arc<Outbound>>,
    /// Each frame's message id, and the member that does not get it (its
    /// sender).
    ids: Vec<(MessageId, Option<SessionId>)>,
    /// The frames' JSON bytes.
    bytes: usize,
    /// A `bye` is among them (never, for messages; kept for the queue's
    /// accounting).
    bye: bool,
    /// The sessions whose messages are in the run, each with how many of
    /// the run's first frames it has been given already: a sender gets the
    /// others' held messages before its own is stamped, so that its `ok`
    /// never overtakes them (see [`Room::publish_held`]). A handful at
    /// most: the publishers talking in the room at once.
    senders: Vec<(SessionId, usize)>,
}

impl HeldRun {
    fn push(&mut self, frame: Arc<Outbound>, id: MessageId, except: Option<SessionId>) {
        // Its sender takes its share frame by frame (without this one).
        if let Some(sender) = except
            && self.given(sender).is_none()
        {
            self.senders.push((sender, 0));
        }
        self.bytes += frame.json().len();
        self.bye |= frame.is_bye();
        self.frames.push(frame);
        self.ids.push((id, except));
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How many of the run's first frames `session` has been given, when
    /// it is one of the run's senders.
    fn given(&self, session: SessionId) -> Option<usize> {
        self.senders
            .iter()
            .find(|(sender, _)| *sender == session)
            .map(|&(_, given)| given)
    }

    /// Notes that `session` has been given the whole run so far.
    fn give_all(&mut self, session: SessionId) {
        let len = self.frames.len();
        match self
            .senders
            .iter_mut()
            .find(|(sender, _)| *sender == session)
        {
            Some((_, given)) => *given = len,
            None => self.senders.push((session, len)),
        }
    }

    /// Empties the run, keeping its lists' buffers.
    fn clear(&mut self) {
        self.frames.clear();
        self.ids.clear();
        self.bytes = 0;
        self.bye = false;
        self.senders.clear();
    }
}

pub(super) struct RoomState {
    pub(super) last_id: MessageId,
    pub(super) members: Vec<Member>,
    /// The room's latest message frames, oldest first, already encoded: a
    /// joiner or a resuming client is sent these without any encoding.
    pub(super) recent: VecDeque<Arc<Outbound>>,
    /// Messages published but not yet handed to the members, oldest first
    /// (see [`Room::publish_held`]). Whoever takes the room's lock next
    /// hands them over first, so nothing else the room does can overtake
    /// them.
    held: HeldRun,
    /// Deliveries and hold-backs made since a publisher was last told, for
    /// the metrics (held messages are delivered by whoever flushes them).
    unreported: (usize, usize),
}

impl RoomState {
    /// Hands every held message to the members, each member's run under
    /// one lock of its queue.
    fn deliver_held(&mut self) {
        // The run's lines joined once for every member that takes it whole
        // (all but its senders, usually): one slice per member for the run.
        // Only when at least two members may share it: the joined buffer is
        // a second copy of the run's bytes, and a queue's byte bound counts
        // them once, so shared by two queues it stays within what they count.
        let joined = (self.held.len() > 1 && self.members.len() > self.held.senders.len() + 1)
            .then(|| JoinedRun::new(&self.held.frames, self.held.bytes));
        for member in &mut self.members {
            let (delivered, slow) = member.offer_held(&self.held, joined.as_ref());
            self.unreported.0 += delivered;
            self.unreported.1 += slow;
        }
        self.held.clear();
    }

    /// Gives member `session` the held messages it is to get and has not
    /// had yet.
    fn give_held_to(&mut self, session: SessionId) {
        // Usually the run is the sender's own so far: nothing to give.
        let from = self.held.given(session).unwrap_or(0);
        if self.held.ids[from..]
            .iter()
            .all(|&(_, except)| except == Some(session))
        {
            return;
        }
        let Some(member) = self.members.iter_mut().find(|m| m.session == session) else {
            return;
        };
        // A sender is given the others' messages frame by frame.
        let (delivered, slow) = member.offer_held(&self.held, None);
        self.unreported.0 += delivered;
        self.unreported.1 += slow;
        self.held.give_all(session);
    }

    /// The id of the oldest message in `recent`, or `last_id + 1` when it
    /// is empty: every message from this id on is in memory.
    pub(super) fn recent_from(&self) -> MessageId {
        self.last_id + 1 - self.recent.len() as MessageId
    }

    /// Queues a frame that is not a message (presence) for every member
    /// but `except`, as [`Member::offer`] does.
    pub(super) fn offer_all(&mut self, frame: &Arc<Outbound>, except: Option<SessionId>) {
        let given = self.last_id;
        for member in &mut self.members {
            if Some(member.session) != except {
                member.offer(frame, given);
            }
        }
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
                held: HeldRun::default(),
                unreported: (0, 0),
            }),
            recent_cap,
            history,
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// The room's state, with any held messages handed to the members
    /// first: every change to the room (a join, a leave, presence, another
    /// message) comes after them.
    pub(super) fn lock(&self) -> MutexGuard<'_, RoomState> {
        let mut state = self.lock_as_is();
        if !state.held.is_empty() {
            state.deliver_held();
        }
        state
    }

    /// The room's state, held messages still held.
    fn lock_as_is(&self) -> MutexGuard<'_, RoomState> {
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
        self.publish_run(sender, from, text, action, echo, false)
    }

    /// Publishes as [`Room::publish`] does, without echo, but leaves the
    /// message held in the room, stamped, stored and among the recent
    /// frames but not yet handed to the members, for a publisher with more
    /// `say`s already read: the run is handed over at once by its last
    /// message (published with [`Room::publish`]), by [`Room::flush_held`], or
    /// by whatever next takes the room's lock, whichever comes first. Each
    /// member then takes the whole run under one lock of its queue and
    /// with at most one wake-up of its writer, and its writer finds the
    /// run in one batch (the cost a delivery paid per message was mostly
    /// that lock and that wake-up; docs/benchmarks.md).
    ///
    /// Several senders may add to one run: each is given the others' held
    /// messages before its own is stamped, so that the `ok` it sends its
    /// client next never overtakes a message the client is to get.
    ///
    /// The caller must see that the run ends: a held message waits for
    /// the room's next use otherwise.
    ///
    /// # Errors
    /// As [`Room::publish`].
    pub fn publish_held(
        &self,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Result<Published, RegistryError> {
        self.publish_run(sender, from, text, action, false, true)
    }

    /// Hands any held messages to the members now: `(queued, held back)`
    /// counts of the deliveries made since a publisher was last told.
    pub fn flush_held(&self) -> (usize, usize) {
        std::mem::take(&mut self.lock().unreported)
    }

    fn publish_run(
        &self,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
        echo: bool,
        hold: bool,
    ) -> Result<Published, RegistryError> {
        // As it is: this message joins the held run, which goes out with
        // it (or after it).
        let mut state = self.lock_as_is();
        if !state.members.iter().any(|m| m.session == sender) {
            return Err(RegistryError::NotInRoom(self.name.clone()));
        }
        // The held messages the sender is to get go to it first, so that
        // its `ok` for this message never overtakes them; the rest of the
        // room gets them with the run.
        if hold && !state.held.is_empty() {
            state.give_held_to(sender);
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
        if self.recent_cap > 0 {
            if state.recent.len() == self.recent_cap {
                state.recent.pop_front();
            }
            state.recent.push_back(frame.clone());
        }
        state.held.push(frame, id, (!echo).then_some(sender));
        // A run is handed over whole, and never grows past a bound.
        if !hold || state.held.len() >= MAX_HELD {
            state.deliver_held();
        }
        let (delivered, slow) = std::mem::take(&mut state.unreported);
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
        let (delivered, slow) = fan_out(&mut state, &frame, Some(id), except);
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
        fan_out(&mut self.lock(), frame, None, except).1
    }

    /// The last message id given to `session` before the room began
    /// holding its traffic back, or `None` while it is not behind.
    pub(crate) fn behind(&self, session: SessionId) -> Option<MessageId> {
        let state = self.lock();
        let member = state.members.iter().find(|m| m.session == session)?;
        member.behind
    }

    /// Holds the room's traffic back from `session` as if it had had only
    /// the messages up to `after`, so that its session streams it the rest
    /// again (a text client's `/resume`).
    ///
    /// # Errors
    /// [`RegistryError::NotInRoom`] when `session` is not a member.
    pub(crate) fn hold_back(
        &self,
        session: SessionId,
        after: MessageId,
    ) -> Result<(), RegistryError> {
        let mut state = self.lock();
        let last = state.last_id;
        let member = state
            .members
            .iter_mut()
            .find(|m| m.session == session)
            .ok_or_else(|| RegistryError::NotInRoom(self.name.clone()))?;
        let after = after.min(last);
        member.behind = Some(member.behind.map_or(after, |b| b.min(after)));
        Ok(())
    }

    /// Lets a member that is behind back in: under the room's lock, the
    /// messages after `after` still to come are few enough to queue at
    /// once and all in memory, so they are queued and the live traffic
    /// follows them with nothing missed or repeated. Should its queue fill
    /// up on the way, the member stays behind from the last message it
    /// took, and its session is woken to go on later.
    ///
    /// # Errors
    /// [`RegistryError::Behind`] when more than that is left: stream the
    /// messages after `after` first, then call again.
    /// [`RegistryError::NotInRoom`] when `session` is not a member.
    pub(crate) fn catch_up(
        &self,
        session: SessionId,
        after: MessageId,
    ) -> Result<(), RegistryError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.last_id - after.min(state.last_id) > MAX_ATOMIC_BACKLOG
            || after + 1 < state.recent_from()
        {
            return Err(RegistryError::Behind { after });
        }
        // Every message after `after` is in `recent` (checked above).
        let skip = after + 1 - state.recent_from();
        let Some(member) = state.members.iter_mut().find(|m| m.session == session) else {
            return Err(RegistryError::NotInRoom(self.name.clone()));
        };
        member.behind = None;
        let missed = state
            .recent
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX));
        for (given, frame) in (after..).zip(missed) {
            if !member.offer(frame, given) {
                break;
            }
        }
        Ok(())
    }
}

/// Queues `frame` (message `id`, or presence when `None`) for every member
/// but `except`: `(queued, held back)`.
fn fan_out(
    state: &mut RoomState,
    frame: &Arc<Outbound>,
    id: Option<MessageId>,
    except: Option<SessionId>,
) -> (usize, usize) {
    // What a member that cannot take this frame has had: everything before
    // it.
    let given = id.map_or(state.last_id, |id| id - 1);
    let mut delivered = 0;
    let mut held = 0;
    for member in &mut state.members {
        if Some(member.session) == except {
            continue;
        }
        if member.offer(frame, given) {
            delivered += 1;
        } else {
            held += 1;
        }
    }
    (delivered, held)
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
