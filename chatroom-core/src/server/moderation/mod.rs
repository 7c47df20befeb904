//! Room ownership and moderation: each room's rules (owner, operators,
//! bans, key, modes, topic), the server's own bans, and who may do what.
//!
//! The rules are held in memory behind one lock and written through to
//! the account store as one JSON document per room; a join or a `say`
//! only reads them. A `say` in a room that is not moderated does not take
//! the lock at all: a count of moderated rooms is checked first.
//!
//! Sessions learn that they were kicked from a room through a small
//! mailbox here, checked (one atomic load) before each request, as they
//! learn of reloads: the room itself drops the member at once.

mod rules;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::accounts::{AccountError, AccountStore};
use crate::protocol::{ErrorCode, Nickname, RoomName, Timestamp};
use crate::registry::SessionId;

pub(crate) use rules::{Actor, Ban, RoomRules, canonical_mask, mask_of};

/// The key of the server's own rules (its bans).
pub(crate) const SERVER: &str = "*";

/// Why a join is refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn banned(place: &str, ban: &Ban) -> Self {
        let mut message = format!("you are banned from {place}");
        if let Some(reason) = &ban.reason {
            message.push_str(&format!(": {reason}"));
        }
        Self {
            code: ErrorCode::Banned,
            message,
        }
    }
}

/// A connected session as moderators find it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub(crate) account: Option<Nickname>,
    pub(crate) ip: Option<IpAddr>,
}

impl Seen {
    /// The session holding `nick`, as bans see it.
    pub(crate) fn actor<'a>(&'a self, nick: &'a Nickname) -> Actor<'a> {
        Actor {
            nick,
            account: self.account.as_ref(),
            ip: self.ip,
        }
    }
}

/// Every room's rules and the sessions' mailboxes.
#[derive(Debug, Default)]
pub(crate) struct Moderation {
    rules: RwLock<HashMap<String, RoomRules>>,
    /// How many rooms are moderated now: zero lets `say` skip the lock.
    moderated: AtomicUsize,
    /// Rooms each session was removed from and has not yet noticed.
    evicted: Mutex<HashMap<SessionId, Vec<String>>>,
    evictions: AtomicU64,
    /// The account and address of every session, for bans by nick.
    seen: Mutex<HashMap<SessionId, Seen>>,
    /// Server operators' folded account names; replaced by a reload.
    operators: RwLock<Vec<String>>,
    /// The owners the settings declare (`room_owners`), by folded room
    /// name: they hold over whatever another node stores.
    declared: Vec<(String, String)>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Moderation {
    /// Reads every room's rules from `store`, then applies the owners the
    /// settings declare (`room_owners`). Blocks briefly, at startup only.
    pub(crate) fn load(
        store: &dyn AccountStore,
        operators: Vec<String>,
        owners: &[(String, String)],
    ) -> Result<Self, AccountError> {
        let mut rules = HashMap::new();
        for (key, encoded) in store.rules()? {
            let parsed: RoomRules = serde_json::from_str(&encoded)
                .map_err(|e| AccountError::Damaged(format!("rules of {key}: {e}")))?;
            rules.insert(key, parsed);
        }
        for (room, owner) in owners {
            rules
                .entry(room.clone())
                .or_insert_with(RoomRules::default)
                .owner = Some(owner.clone());
        }
        let moderated = rules.values().filter(|r| r.moderated).count();
        Ok(Self {
            rules: RwLock::new(rules),
            moderated: AtomicUsize::new(moderated),
            operators: RwLock::new(operators),
            declared: owners.to_vec(),
            ..Self::default()
        })
    }

    /// Whether `account` is a server operator.
    pub(crate) fn is_server_operator(&self, account: Option<&Nickname>) -> bool {
        account.is_some_and(|a| read(&self.operators).contains(&a.key()))
    }

    /// Makes `operators` (folded account names) the server operators, from
    /// the next request on (a reload of `operators`).
    pub(crate) fn set_operators(&self, operators: Vec<String>) {
        *self.operators.write().unwrap_or_else(|p| p.into_inner()) = operators;
    }

    /// A copy of `room`'s rules (server-wide: [`SERVER`]).
    pub(crate) fn rules(&self, key: &str) -> RoomRules {
        read(&self.rules).get(key).cloned().unwrap_or_default()
    }

    /// Whether `actor` operates `room` (a server operator operates all).
    pub(crate) fn is_operator(&self, room: &RoomName, actor: &Actor<'_>) -> bool {
        self.is_server_operator(actor.account)
            || read(&self.rules)
                .get(&room.key())
                .is_some_and(|r| r.is_operator(actor.account))
    }

    /// Whether `actor` owns `room` (a server operator owns all).
    pub(crate) fn is_owner(&self, room: &RoomName, actor: &Actor<'_>) -> bool {
        self.is_server_operator(actor.account)
            || read(&self.rules)
                .get(&room.key())
                .is_some_and(|r| r.is_owner(actor.account))
    }

    /// Changes `key`'s rules and returns them encoded for the store (empty
    /// when nothing is left to store).
    pub(crate) fn update(&self, key: &str, change: impl FnOnce(&mut RoomRules)) -> String {
        let mut all = write(&self.rules);
        let rules = all.entry(key.to_owned()).or_default();
        let was = rules.moderated;
        change(rules);
        match (was, rules.moderated) {
            (false, true) => {
                self.moderated.fetch_add(1, Relaxed);
            }
            (true, false) => {
                self.moderated.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
        if rules.is_empty() {
            all.remove(key);
            return String::new();
        }
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(rules).unwrap_or_default()
    }

    /// Takes up `key`'s rules as another node stored them (`encoded`;
    /// empty when none are left). Damaged rules are logged and left out.
    pub(crate) fn replace(&self, key: &str, encoded: &str) {
        let mut rules = if encoded.is_empty() {
            RoomRules::default()
        } else {
            match serde_json::from_str::<RoomRules>(encoded) {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::error!(room = key, error = %e, "rules from the cluster cannot be read");
                    return;
                }
            }
        };
        if let Some((_, owner)) = self.declared.iter().find(|(room, _)| room == key) {
            rules.owner = Some(owner.clone());
        }
        self.update(key, |stored| *stored = rules);
    }

    /// The server-wide ban on `actor`, if any.
    pub(crate) fn server_ban(&self, actor: &Actor<'_>, now: Timestamp) -> Option<Ban> {
        read(&self.rules)
            .get(SERVER)
            .and_then(|r| r.ban_on(actor, now).cloned())
    }

    /// Whether `actor` may speak in `room`.
    pub(crate) fn may_speak(&self, room: &RoomName, actor: &Actor<'_>) -> bool {
        if self.moderated.load(Relaxed) == 0 {
            return true;
        }
        let all = read(&self.rules);
        let Some(rules) = all.get(&room.key()) else {
            return true;
        };
        !rules.moderated
            || rules.is_voiced(actor)
            || rules.is_operator(actor.account)
            || self.is_server_operator(actor.account)
    }

    /// Whether `actor` may join `room`, which has `members` now, giving
    /// `key`: the server's and the room's bans, then (for all but the
    /// room's operators) its key, invitations and limit.
    pub(crate) fn admit(
        &self,
        room: &RoomName,
        actor: &Actor<'_>,
        key: Option<&str>,
        members: usize,
    ) -> Result<(), Refusal> {
        let now = crate::registry::now_ms();
        if let Some(ban) = self.server_ban(actor, now) {
            return Err(Refusal::banned("this server", &ban));
        }
        if self.is_server_operator(actor.account) {
            return Ok(());
        }
        let rules = self.rules(&room.key());
        // A room's operators are never locked out of it by its own rules.
        if rules.is_operator(actor.account) {
            return Ok(());
        }
        if let Some(ban) = rules.ban_on(actor, now) {
            return Err(Refusal::banned(&format!("#{room}"), ban));
        }
        if let Some(wanted) = &rules.key
            && key != Some(wanted.as_str())
        {
            return Err(Refusal {
                code: ErrorCode::BadKey,
                message: format!("#{room} needs its key: /join {room} KEY"),
            });
        }
        if rules.invite_only && !rules.is_invited(actor) {
            return Err(Refusal {
                code: ErrorCode::InviteOnly,
                message: format!("#{room} is invite-only"),
            });
        }
        if let Some(limit) = rules.limit
            && members >= limit as usize
        {
            return Err(Refusal {
                code: ErrorCode::RoomFull,
                message: format!("#{room} is full ({limit} members)"),
            });
        }
        Ok(())
    }

    /// Notes a session's account and address.
    pub(crate) fn saw(&self, id: SessionId, seen: Seen) {
        lock(&self.seen).insert(id, seen);
    }

    /// What is known of a session.
    pub(crate) fn seen(&self, id: SessionId) -> Option<Seen> {
        lock(&self.seen).get(&id).cloned()
    }

    /// Forgets a session that ended.
    pub(crate) fn gone(&self, id: SessionId) {
        lock(&self.seen).remove(&id);
        lock(&self.evicted).remove(&id);
    }

    /// Tells session `id` it is no longer in `room`.
    pub(crate) fn evict(&self, id: SessionId, room: &RoomName) {
        lock(&self.evicted).entry(id).or_default().push(room.key());
        self.evictions.fetch_add(1, Relaxed);
    }

    /// How many evictions there have been; a session that saw this number
    /// last has nothing to collect.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    /// The rooms session `id` was removed from since it last asked.
    pub(crate) fn take_evictions(&self, id: SessionId) -> Vec<String> {
        lock(&self.evicted).remove(&id).unwrap_or_default()
    }
}
