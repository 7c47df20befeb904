//! What moderation does on the other nodes of a cluster.
//!
//! A moderator's action changes this node at once; the other nodes learn
//! it two ways. The lasting part (accounts, a room's rules) is written to
//! the shared account store, whose changes every node takes up
//! ([`take_change`]). What must happen now (the room's line, a member
//! removed, a session killed) and the new rules themselves, so that
//! another node holds them before its members see the line, go as
//! bulletins through the broker ([`Bulletin`], [`apply`]). On one node
//! both are no-ops.

use serde::{Deserialize, Serialize};

use crate::accounts::StoreChange;
use crate::protocol::{Nickname, RoomName, ServerMessage};
use crate::registry::now_ms;

use super::moderation::mask_of;
use super::shared::Shared;

/// One thing every other node is asked to do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Bulletin {
    /// `key`'s rules are now `encoded` (empty: none).
    Rules { key: String, encoded: String },
    /// A line for the members of `room`.
    Tell {
        room: RoomName,
        message: ServerMessage,
    },
    /// Takes `nick` out of `room` if a session here holds it.
    Remove {
        room: RoomName,
        nick: Nickname,
        why: String,
    },
    /// Takes out of `room` every member here its bans now name.
    RemoveBanned { room: RoomName, why: String },
    /// Disconnects the session here holding `nick`, if any, telling it
    /// `reason`.
    Kill {
        nick: Nickname,
        #[serde(default)]
        reason: Option<String>,
    },
    /// A login failed on the sending node: counts against `keys` (the
    /// account's and the address's) in this node's throttle too.
    LoginFailed { keys: Vec<String> },
}

/// Sends `bulletin` to every other node (nothing on one node).
pub(crate) fn send(shared: &Shared, bulletin: &Bulletin) {
    match serde_json::to_vec(bulletin) {
        Ok(payload) => shared.broker.bulletin(payload),
        Err(e) => tracing::error!(error = %e, "a bulletin cannot be encoded"),
    }
}

/// Sends `message` to the members of `room` on every node.
pub(crate) fn tell_everywhere(shared: &Shared, room: &RoomName, message: ServerMessage) {
    shared.rooms.tell(room, message.clone());
    send(
        shared,
        &Bulletin::Tell {
            room: room.clone(),
            message,
        },
    );
}

/// Does what another node asks in `payload`.
pub(crate) fn apply(shared: &Shared, payload: &[u8]) {
    let bulletin = match serde_json::from_slice::<Bulletin>(payload) {
        Ok(bulletin) => bulletin,
        Err(e) => {
            tracing::warn!(error = %e, "a bulletin from another node cannot be read");
            return;
        }
    };
    tracing::debug!(?bulletin, "bulletin from another node");
    match bulletin {
        Bulletin::Rules { key, encoded } => shared.moderation.replace(&key, &encoded),
        Bulletin::Tell { room, message } => shared.rooms.tell(&room, message),
        Bulletin::Remove { room, nick, why } => {
            remove_member(shared, &room, &nick, &why);
        }
        Bulletin::RemoveBanned { room, why } => remove_banned(shared, &room, &why),
        Bulletin::Kill { nick, reason } => {
            shared.rooms.kill(&nick, reason);
        }
        Bulletin::LoginFailed { keys } => shared.accounts.failed_elsewhere(&keys),
    }
}

/// Takes up a change another node made to the shared account store.
pub(crate) fn take_change(shared: &Shared, change: StoreChange) {
    match change {
        StoreChange::Rules { key, encoded } => shared.moderation.replace(&key, &encoded),
        other => shared.accounts.apply(other),
    }
}

/// The mask that bans the session of this node holding `nick`, if one
/// does: its account, else its address, else its nick. What this node
/// answers another node that bans `nick` (see `Broker::ban_mask`).
pub(crate) fn mask_here(shared: &Shared, nick: &Nickname) -> Option<String> {
    let id = shared.rooms.session_of(nick)?;
    let seen = shared.moderation.seen(id).unwrap_or_default();
    Some(mask_of(&seen.actor(nick)))
}

/// Removes `nick` from `room` if a session of this node holds it and is
/// there, telling the room `why`.
pub(crate) fn remove_member(shared: &Shared, room: &RoomName, nick: &Nickname, why: &str) -> bool {
    let Some(id) = shared.rooms.session_of(nick) else {
        return false;
    };
    shared.moderation.evict(id, room);
    shared.rooms.remove(id, nick, room, why).is_ok()
}

/// Removes every member of `room` on this node its bans now name, except
/// its operators, telling the room `why`.
pub(crate) fn remove_banned(shared: &Shared, room: &RoomName, why: &str) {
    let moderation = &shared.moderation;
    let rules = moderation.rules(&room.key());
    let now = now_ms();
    for nick in shared.rooms.members(room).unwrap_or_default() {
        let Some(id) = shared.rooms.session_of(&nick) else {
            continue;
        };
        let seen = moderation.seen(id).unwrap_or_default();
        let actor = seen.actor(&nick);
        if rules.ban_on(&actor, now).is_some()
            && !rules.is_operator(actor.account)
            && !moderation.is_server_operator(actor.account)
        {
            remove_member(shared, room, &nick, why);
        }
    }
}
