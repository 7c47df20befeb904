//! The rooms as a session sees them: one handle over the registry, the
//! broker and the backlog.
//!
//! A session never pairs the [`RoomRegistry`] and the [`Broker`] by hand:
//! every request that must agree with other nodes (a nick claim, a join, a
//! `say`, a rename, a private message, a member list) is one call here, and
//! this module decides which of the two is asked first and how a refusal by
//! the second undoes the first.

mod backlog;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::broker::{Broker, BrokerError, Pending};
use crate::history::{HistoryStore, Page, PageQuery};
use crate::protocol::{
    ErrorCode, MessageId, Nickname, RoomInfo, RoomName, ServerFrame, ServerMessage,
};
use crate::registry::{
    Backlog, CutReason, Outbound, Outbox, Published, QueueDepth, RegistryError, Room, RoomRegistry,
    SessionId, now_ms,
};

use backlog::BacklogError;

/// Why a request on the rooms was refused. Each is answered with an
/// `error` frame carrying [`RoomsError::code`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum RoomsError {
    /// The registry refused it (not in the room, nick taken here…).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The broker refused it (nick taken on another node, cluster away).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A backlog could not be delivered.
    #[error(transparent)]
    Backlog(#[from] BacklogError),
    /// A cursor names a message the room has not had yet.
    #[error("id {id} is in the future: the room's last id is {last}")]
    FutureCursor {
        /// The cursor given.
        id: MessageId,
        /// The room's last id.
        last: MessageId,
    },
    /// A member that fell behind could not be caught up in time: these
    /// messages were skipped (a `history` request reads them).
    #[error(
        "you fell too far behind in #{room}: messages {first} to {last} were skipped; ask for them with history"
    )]
    Skipped {
        /// The room.
        room: RoomName,
        /// The first message skipped.
        first: MessageId,
        /// The last message skipped.
        last: MessageId,
    },
    /// A `history` request's cursors or limit make no sense.
    #[error("{0}")]
    BadQuery(&'static str),
}

impl RoomsError {
    /// Whether someone, here or on another node, holds the nick asked for.
    fn is_nick_taken(&self) -> bool {
        matches!(
            self,
            Self::Registry(RegistryError::NickTaken(_))
                | Self::Broker(
                    BrokerError::NickTaken(_) | BrokerError::Registry(RegistryError::NickTaken(_))
                )
        )
    }

    /// The wire code a client is told.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Registry(e) => e.code(),
            Self::Broker(e) => e.code(),
            Self::Backlog(BacklogError::Registry(e)) => e.code(),
            Self::Backlog(_) => ErrorCode::Internal,
            Self::FutureCursor { .. } | Self::BadQuery(_) => ErrorCode::BadCursor,
            Self::Skipped { .. } => ErrorCode::SlowConsumer,
        }
    }
}

/// Where a join's backlog starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Since {
    /// The room's recent messages: at most this many, or the server's
    /// `history_on_join` when `None` (and never more than it).
    Recent(Option<u32>),
    /// Every message after this id (a `join` with `after`); a room that
    /// does not exist yet is created.
    After(MessageId),
    /// Every message after this id of a room that must already exist (a
    /// `hello`'s resume cursor).
    Resume(MessageId),
}

/// A member as the rooms know it: its session, nick and queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    pub(crate) id: SessionId,
    pub(crate) nick: &'a Nickname,
    pub(crate) outbox: &'a Outbox,
}

/// The limits the rooms enforce themselves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomLimits {
    /// Most rooms one session may be in.
    pub(crate) max_rooms: usize,
    /// Most messages a join hands over by default.
    pub(crate) history_on_join: u64,
    /// Most messages one `history` page holds.
    pub(crate) history_page_max: usize,
}

/// The registry, the broker and the backlog behind one handle.
#[derive(Debug)]
pub(crate) struct Rooms {
    registry: RoomRegistry,
    broker: Arc<dyn Broker>,
    limits: RoomLimits,
}

impl Rooms {
    /// Puts `registry` behind `broker` (which is attached to it).
    pub(crate) fn new(registry: RoomRegistry, broker: Arc<dyn Broker>, limits: RoomLimits) -> Self {
        broker.attach(&registry);
        Self {
            registry,
            broker,
            limits,
        }
    }

    /// The history store the rooms write to, if any.
    pub(crate) fn history(&self) -> Option<&Arc<dyn HistoryStore>> {
        self.registry.history()
    }

    /// What the sessions' outbound queues hold now, for metrics.
    pub(crate) fn queued_bytes(&self) -> QueueDepth {
        self.registry.queued_bytes()
    }

    /// Registers a session under `nick`: claimed through the broker, then
    /// taken in the registry (the claim is given back if the registry
    /// refuses).
    pub(crate) async fn register(
        &self,
        nick: &Nickname,
        outbox: &Outbox,
    ) -> Result<SessionId, RoomsError> {
        self.broker.claim(nick).await?;
        self.registry
            .register(nick.clone(), outbox.clone())
            .map_err(|e| {
                self.broker.release(nick);
                e.into()
            })
    }

    /// Registers a session under `base`, or `base-2`, `base-3`, … when that
    /// is taken here or on another node, or `reserved` (a registered
    /// account's nick).
    pub(crate) async fn register_unique(
        &self,
        base: &Nickname,
        outbox: &Outbox,
        reserved: impl Fn(&Nickname) -> bool,
    ) -> Result<(SessionId, Nickname), RoomsError> {
        let mut candidate = base.clone();
        let mut n = 2u64;
        loop {
            if reserved(&candidate) {
                candidate = Nickname::numbered(base, n);
                n += 1;
                continue;
            }
            match self.register(&candidate, outbox).await {
                Ok(id) => return Ok((id, candidate)),
                Err(e) if e.is_nick_taken() => {
                    candidate = Nickname::numbered(base, n);
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Joins `room` with the backlog `since` asks for, and tells the other
    /// nodes. The returned handle lets the session publish under the room's
    /// own lock.
    pub(crate) async fn join(
        &self,
        member: Member<'_>,
        room: &RoomName,
        since: Since,
    ) -> Result<Arc<Room>, RoomsError> {
        let backlog = match since {
            Since::Recent(asked) => {
                self.broker.open(room).await?;
                let on_join = self.limits.history_on_join;
                Backlog::Last(asked.map_or(on_join, |h| u64::from(h).min(on_join)))
            }
            Since::After(cursor) => {
                self.broker.open(room).await?;
                let last = self.last_id_for(room, cursor).await.unwrap_or(0);
                Self::check_cursor(cursor, last)?;
                Backlog::After(cursor)
            }
            Since::Resume(cursor) => {
                self.broker.open_existing(room).await?;
                let last = self
                    .last_id_for(room, cursor)
                    .await
                    .ok_or_else(|| RegistryError::NoSuchRoom(room.clone()))?;
                Self::check_cursor(cursor, last)?;
                Backlog::After(cursor)
            }
        };
        let handle = backlog::join(
            &self.registry,
            member.id,
            member.outbox,
            room,
            self.limits.max_rooms,
            backlog,
        )
        .await?;
        self.broker.joined(handle.name(), member.nick);
        Ok(handle)
    }

    fn check_cursor(cursor: MessageId, last: MessageId) -> Result<(), RoomsError> {
        if cursor > last {
            return Err(RoomsError::FutureCursor { id: cursor, last });
        }
        Ok(())
    }

    /// Catches a member that fell behind in `room` up: the messages after
    /// `after` are streamed at the pace its queue drains, then the live
    /// traffic follows. When the room outruns it for longer than a catch-up
    /// may take, it is let back in at the live end and the error says what
    /// it skipped.
    pub(crate) async fn catch_up(
        &self,
        member: Member<'_>,
        room: &Arc<Room>,
        after: MessageId,
    ) -> Result<(), RoomsError> {
        let caught = backlog::catch_up(&self.registry, member.id, member.outbox, room, after).await;
        match caught {
            Err(BacklogError::TooSlow) => {
                let last = room.last_id();
                // Nothing is left to stream once the cursor is the last id.
                room.catch_up(member.id, last)?;
                Err(RoomsError::Skipped {
                    room: room.name().clone(),
                    first: after + 1,
                    last,
                })
            }
            other => Ok(other?),
        }
    }

    /// Leaves `room` (the others are told) and tells the other nodes.
    pub(crate) fn leave(&self, member: Member<'_>, room: &Arc<Room>) -> Result<(), RoomsError> {
        self.registry.leave(member.id, room.name(), None)?;
        self.broker.left(room.name(), member.nick, None);
        Ok(())
    }

    /// The session of this node holding `nick`, if any.
    pub(crate) fn session_of(&self, nick: &Nickname) -> Option<SessionId> {
        self.registry.session_of(nick)
    }

    /// Takes session `id` (holding `nick`) out of `room` on a moderator's
    /// word; the room and the session are told why.
    pub(crate) fn remove(
        &self,
        id: SessionId,
        nick: &Nickname,
        room: &RoomName,
        reason: &str,
    ) -> Result<(), RoomsError> {
        self.registry.leave(id, room, Some(reason.to_owned()))?;
        self.broker.left(room, nick, Some(reason));
        Ok(())
    }

    /// Sends `message` to every member of `room` on this node.
    pub(crate) fn tell(&self, room: &RoomName, message: ServerMessage) {
        self.registry
            .tell_members(std::slice::from_ref(room), &Outbound::message(message));
    }

    /// Disconnects the session of this node holding `nick`, if any,
    /// telling it `reason`.
    pub(crate) fn kill(&self, nick: &Nickname, reason: Option<String>) -> bool {
        if !self.registry.holds(nick) {
            return false;
        }
        self.registry
            .cut_off_holder(nick, CutReason::Killed(reason));
        true
    }

    /// Publishes a line in `room`: on one node answered at once, in a
    /// cluster once the broker has committed it. With `hold`, the broker
    /// may hold it for a run ([`Broker::publish_held`]).
    pub(crate) fn say(
        &self,
        room: &Arc<Room>,
        member: Member<'_>,
        text: String,
        action: bool,
        hold: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        if hold {
            self.broker
                .publish_held(room, member.id, member.nick, text, action)
        } else {
            self.broker
                .publish(room, member.id, member.nick, text, action)
        }
    }

    /// Renames a session: the new nick is claimed first (unless only its
    /// case changes), then the registry renames, then the old claim is
    /// given back and the other nodes are told.
    pub(crate) async fn rename(
        &self,
        id: SessionId,
        old: &Nickname,
        new: &Nickname,
    ) -> Result<(), RoomsError> {
        let same_key = old.key() == new.key();
        if !same_key {
            self.broker.claim(new).await?;
        }
        if let Err(e) = self.registry.rename(id, new.clone()) {
            if !same_key {
                self.broker.release(new);
            }
            return Err(e.into());
        }
        if !same_key {
            self.broker.release(old);
        }
        self.broker.renamed(old, new);
        Ok(())
    }

    /// A private message: to a session of this node through the registry,
    /// else through the broker to another node, echoed to the sender.
    pub(crate) async fn whisper(
        &self,
        from: Member<'_>,
        to: &Nickname,
        text: String,
    ) -> Result<(), RoomsError> {
        if self.registry.holds(to) {
            return Ok(self.registry.whisper(from.id, to, text)?);
        }
        let ts = now_ms();
        let to = self.broker.whisper(from.nick, to, text.clone(), ts).await?;
        let echo = ServerMessage::Private {
            from: from.nick.clone(),
            to,
            text,
            ts,
        };
        // A failed push means the sender's queue overflowed; its cut-off
        // ends that session.
        let _ = from.outbox.push(&Outbound::new(ServerFrame::new(echo)));
        Ok(())
    }

    /// The members of `room` on every node, sorted ignoring case.
    pub(crate) fn members(&self, room: &RoomName) -> Result<Vec<Nickname>, RoomsError> {
        let remote = self.broker.remote_members(room);
        let mut nicks = match self.registry.members(room) {
            Ok(local) => local,
            Err(RegistryError::NoSuchRoom(_)) if !remote.is_empty() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if !remote.is_empty() {
            nicks.extend(remote);
            nicks.sort_by_cached_key(Nickname::key);
            // A nick is held once in the cluster; a rename heard from
            // another node a moment late must not show someone twice.
            nicks.dedup_by(|a, b| a.as_str().eq_ignore_ascii_case(b.as_str()));
        }
        Ok(nicks)
    }

    /// The rooms with members on any node, sorted by name, with the count
    /// of their members on every node.
    pub(crate) fn list(&self) -> Vec<RoomInfo> {
        let local = self.registry.rooms();
        let remote = self.broker.remote_rooms();
        if remote.is_empty() {
            return local;
        }
        let mut merged: BTreeMap<String, RoomInfo> = BTreeMap::new();
        for info in local.into_iter().chain(remote) {
            merged
                .entry(info.name.key())
                .and_modify(|known| known.members += info.members)
                .or_insert(info);
        }
        merged.into_values().collect()
    }

    /// Checks a `history` request and reads its page.
    pub(crate) async fn history_page(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        after: Option<MessageId>,
        limit: Option<u32>,
    ) -> Result<Page, RoomsError> {
        self.broker.open_existing(room).await?;
        let last = self
            .registry
            .last_id(room)
            .ok_or_else(|| RegistryError::NoSuchRoom(room.clone()))?;
        let max = self.limits.history_page_max;
        let limit = match limit {
            None => max.min(50),
            Some(0) => return Err(RoomsError::BadQuery("limit must be at least 1")),
            Some(n) => (n as usize).min(max),
        };
        let query = match (before, after) {
            (Some(_), Some(_)) => {
                return Err(RoomsError::BadQuery("give before or after, not both"));
            }
            (Some(b), None) if b > last + 1 => {
                return Err(RoomsError::FutureCursor { id: b, last });
            }
            (None, Some(a)) if a > last => return Err(RoomsError::FutureCursor { id: a, last }),
            (before, None) => PageQuery::Before { before, limit },
            (None, Some(after)) => PageQuery::After { after, limit },
        };
        Ok(backlog::page(&self.registry, room, query).await?)
    }

    /// The last id of `room`, to check `cursor` against: when the cursor
    /// is ahead (handed out by another node whose messages this node is
    /// still receiving), after the broker let this node catch up.
    async fn last_id_for(&self, room: &RoomName, cursor: MessageId) -> Option<MessageId> {
        match self.registry.last_id(room) {
            Some(last) if cursor > last => {
                self.broker.catch_up(room, cursor).await;
                self.registry.last_id(room)
            }
            last => last,
        }
    }

    /// Ends a session: its nick is given back, every room it was in is told
    /// it left (with `reason`), here and on the other nodes. At shutdown
    /// (`silently`) this node's members are not told, since they are
    /// leaving too; the other nodes still are.
    pub(crate) fn depart<'r>(
        &self,
        id: SessionId,
        nick: &Nickname,
        rooms: impl IntoIterator<Item = &'r Arc<Room>>,
        reason: Option<String>,
        silently: bool,
    ) {
        self.broker.release(nick);
        for room in rooms {
            self.broker.left(room.name(), nick, reason.as_deref());
        }
        if silently {
            self.registry.unregister_silently(id);
        } else {
            self.registry.unregister(id, reason);
        }
    }

    /// Flushes what the broker still has to tell other nodes.
    pub(crate) async fn shutdown(&self) {
        self.broker.shutdown().await;
    }
}
