//! Away state of this node's IRC users, for `away-notify`, `WHOIS` (`301`),
//! `WHO` (`H`/`G`) and the `301` a `PRIVMSG` to an away user gets.
//!
//! Away is an IRC notion: the other dialects have no way to set it and no
//! frame that shows it, so it lives here, beside the IRC sessions, rather
//! than in the rooms. An `AWAY` change is sent to the IRC users of this
//! node who share a room with the user and enabled `away-notify`, as lines
//! of their own queue (see `reply`). Users on other nodes of a cluster are
//! neither told nor known to be away.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use crate::protocol::Nickname;
use crate::registry::{Outbox, SessionId};

use super::reply;

/// The IRC users of this node, by folded nick.
#[derive(Debug, Default)]
pub(crate) struct AwayBoard {
    users: Mutex<HashMap<String, Peer>>,
}

/// One IRC user as the board knows it.
#[derive(Debug)]
struct Peer {
    id: SessionId,
    /// Its queue; the session holds the other end. A push into it after
    /// the session ended fails and is ignored.
    outbox: Outbox,
    /// Whether it enabled `away-notify`.
    notify: bool,
    away: Option<String>,
}

impl AwayBoard {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Peer>> {
        // Every update is one map operation: a poisoned lock holds a
        // consistent map.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a registered IRC session.
    pub(super) fn enter(&self, nick: &Nickname, id: SessionId, outbox: &Outbox, notify: bool) {
        let peer = Peer {
            id,
            outbox: outbox.clone(),
            notify,
            away: None,
        };
        self.lock().insert(nick.key(), peer);
    }

    /// Follows a session's nick change.
    pub(super) fn rename(&self, old: &Nickname, new: &Nickname, id: SessionId) {
        let mut users = self.lock();
        if let Some(peer) = users.remove(&old.key()) {
            if peer.id == id {
                users.insert(new.key(), peer);
            } else {
                users.insert(old.key(), peer);
            }
        }
    }

    /// Removes a session that ended.
    pub(super) fn leave(&self, nick: &Nickname, id: SessionId) {
        let mut users = self.lock();
        if users.get(&nick.key()).is_some_and(|p| p.id == id) {
            users.remove(&nick.key());
        }
    }

    /// Sets (or, with `None`, clears) a session's away message.
    pub(super) fn set(&self, nick: &Nickname, id: SessionId, away: Option<String>) {
        if let Some(peer) = self.lock().get_mut(&nick.key())
            && peer.id == id
        {
            peer.away = away;
        }
    }

    /// The away message of the IRC user `nick` of this node, if away.
    pub(super) fn away_of(&self, nick: &Nickname) -> Option<String> {
        self.lock().get(&nick.key()).and_then(|p| p.away.clone())
    }

    /// Queues `lines` for the IRC user `nick` of this node, if there is
    /// one (an `INVITE` addressed to it).
    pub(super) fn send_to(&self, nick: &Nickname, lines: &str) {
        let outbox = self.lock().get(&nick.key()).map(|p| p.outbox.clone());
        if let Some(outbox) = outbox {
            reply::send(&outbox, lines.to_owned());
        }
    }

    /// Queues `lines` for each of `nicks` (once each) that is an IRC user
    /// of this node with `away-notify`, other than the session `except`.
    pub(super) fn notify<'n>(
        &self,
        nicks: impl IntoIterator<Item = &'n Nickname>,
        except: SessionId,
        lines: &str,
    ) {
        let mut seen = HashSet::new();
        let outboxes: Vec<Outbox> = {
            let users = self.lock();
            nicks
                .into_iter()
                .filter(|nick| seen.insert(nick.key()))
                .filter_map(|nick| users.get(&nick.key()))
                .filter(|peer| peer.notify && peer.id != except)
                .map(|peer| peer.outbox.clone())
                .collect()
        };
        // Pushed outside the lock; a full queue is that session's cut-off.
        for outbox in outboxes {
            reply::send(&outbox, lines.to_owned());
        }
    }
}
