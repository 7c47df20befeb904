//! A registered session's state, and what handling one frame asks of the
//! connection's loop. Every other file of the session adds behaviour to
//! [`Session`]; this one only holds it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;

use crate::protocol::{MAX_TEXT_LEN, Nickname, PROTOCOL_VERSION, RoomName, ServerMessage};
use crate::registry::{Outbox, Room, SessionId};

pub(super) use super::super::end::End;
use super::super::moderation::Seen;
use super::super::rate::TokenBucket;
use super::super::rooms::Member;
use super::super::shared::Shared;
use super::super::writer::Dialect;
use super::reply::push;
use super::says::Says;

/// What handling one frame asks of the loop.
pub(super) enum Flow {
    Continue,
    Close(End),
}

/// A registered session: the state one connection needs after its dialect
/// is known and its nick is registered.
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) id: SessionId,
    pub(super) nick: Nickname,
    pub(super) dialect: Dialect,
    pub(super) outbox: Outbox,
    /// The rooms joined, by folded name. Holding the room lets `say` take
    /// only the room's lock, never the registry's.
    pub(super) rooms: HashMap<String, Arc<Room>>,
    /// The text dialect's current room, where plain lines go.
    pub(super) current: Option<RoomName>,
    pub(super) rate: TokenBucket,
    pub(super) errors: TokenBucket,
    /// The reload generation `rate` and `errors` were last tuned to.
    pub(super) tuned: u64,
    pub(super) last_heard: Instant,
    pub(super) pinged: bool,
    pub(super) says: Says,
    /// The room holding a run of this session's `say`s not yet handed to
    /// its members (`Room::publish_held`); the run ends before anything
    /// else this session does, and once no whole line is left to read.
    pub(super) held: Option<Arc<Room>>,
    /// Another whole line from the peer is already read: a `say` now may
    /// be held for the run.
    pub(super) more_read: bool,
    /// How many `say`s this session has held for runs, ever: the session
    /// loop tells by it whether a line added one.
    pub(super) held_says: u64,
    /// The account the session is logged in as, if any.
    pub(super) account: Option<Nickname>,
    /// The peer's address, for login throttling and bans.
    pub(super) peer_ip: Option<IpAddr>,
    /// The moderation evictions count this session last looked at.
    pub(super) evictions_seen: u64,
}

impl Session {
    pub(super) fn new(
        shared: &Arc<Shared>,
        id: SessionId,
        nick: Nickname,
        dialect: Dialect,
        outbox: Outbox,
        peer_ip: Option<IpAddr>,
    ) -> Self {
        let tuned = shared.tuning.generation();
        let rates = shared.tuning.rates();
        let now = Instant::now();
        Self {
            shared: shared.clone(),
            id,
            nick,
            dialect,
            outbox,
            rooms: HashMap::new(),
            current: None,
            rate: TokenBucket::new(rates.rate_per_sec, rates.rate_burst, now),
            errors: TokenBucket::refilling_every(rates.error_refill, rates.max_errors, now),
            tuned,
            last_heard: now,
            pinged: false,
            says: Says::default(),
            held: None,
            more_read: false,
            held_says: 0,
            account: None,
            peer_ip,
            evictions_seen: shared.moderation.evictions(),
        }
    }

    /// Tells moderation this session's account and address, for bans by
    /// nick.
    pub(super) fn note_seen(&self) {
        self.shared.moderation.saw(
            self.id,
            Seen {
                account: self.account.clone(),
                ip: self.peer_ip,
            },
        );
    }

    /// Hands this session's run of held `say`s to their room's members.
    pub(super) fn end_run(&mut self) {
        if let Some(room) = self.held.take() {
            let (delivered, held_back) = room.flush_held();
            self.shared.metrics.delivered(delivered, held_back);
        }
    }

    /// This session as the rooms know it.
    pub(super) fn member(&self) -> Member<'_> {
        Member {
            id: self.id,
            nick: &self.nick,
            outbox: &self.outbox,
        }
    }

    /// Takes up the rates of the last reload, if one happened since this
    /// session last looked: one relaxed load when none did.
    pub(super) fn retune(&mut self) {
        let generation = self.shared.tuning.generation();
        if generation == self.tuned {
            return;
        }
        self.tuned = generation;
        let rates = self.shared.tuning.rates();
        self.rate.retune(rates.rate_per_sec, rates.rate_burst);
        self.errors
            .retune(1.0 / rates.error_refill.as_secs_f64(), rates.max_errors);
    }

    pub(super) fn welcome(&self, reference: Option<String>) {
        let limits = &self.shared.limits;
        push(
            &self.outbox,
            ServerMessage::Welcome {
                version: PROTOCOL_VERSION,
                nick: self.nick.clone(),
                server: limits.server_name.clone(),
                max_line_len: limits.max_line_len,
                max_text_len: MAX_TEXT_LEN,
            },
            reference,
        );
    }
}
