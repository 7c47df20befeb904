//! Moderation requests: kick, ban, unban, topic, op/deop, voice/devoice,
//! room modes, invite, and the server operators' kill and log. Each is
//! checked against the requester's role, applied, written through to the
//! store with a line of the moderation log, and shown to the room.

use crate::accounts::LogEntry;
use crate::protocol::{
    self, ClientMessage, ErrorCode, ModAction, ModEvent, Nickname, RoomName, ServerMessage,
};
use crate::registry::now_ms;

use super::super::moderation::{Actor, Ban, SERVER, canonical_mask, mask_of};
use super::reply::Failure;
use super::state::{Flow, Session};

fn not_permitted(what: &str) -> Failure {
    Failure::new(ErrorCode::NotPermitted, format!("only {what} may do that"))
}

/// A ban's length in words, for the room.
fn span(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Session {
    /// This session as bans and permissions see it.
    pub(super) fn actor(&self) -> Actor<'_> {
        Actor {
            nick: &self.nick,
            account: self.account.as_ref(),
            ip: self.peer_ip,
        }
    }

    pub(super) fn require_operator(&self, room: &RoomName) -> Result<(), Failure> {
        if self.shared.moderation.is_operator(room, &self.actor()) {
            Ok(())
        } else {
            Err(not_permitted(&format!("operators of #{room}")))
        }
    }

    pub(super) fn require_server_operator(&self) -> Result<(), Failure> {
        if self
            .shared
            .moderation
            .is_server_operator(self.account.as_ref())
        {
            Ok(())
        } else {
            Err(not_permitted("server operators"))
        }
    }

    /// Takes up the rooms a moderator removed this session from: one
    /// atomic load when there were none.
    pub(super) fn collect_evictions(&mut self) {
        let moderation = &self.shared.moderation;
        let seen = moderation.evictions();
        if seen == self.evictions_seen {
            return;
        }
        self.evictions_seen = seen;
        for key in moderation.take_evictions(self.id) {
            if self.rooms.remove(&key).is_some() {
                self.shared.metrics.left(1);
            }
            if self.current.as_ref().is_some_and(|c| c.key() == key) {
                self.current = None;
            }
        }
    }

    /// Writes `key`'s rules (when `encoded` is given) and a log line. The
    /// future owns what it needs: a session is not shared across threads.
    pub(super) fn record(
        &self,
        key: &str,
        encoded: Option<String>,
        room: &str,
        action: String,
    ) -> impl Future<Output = ()> + Send + use<> {
        let key = key.to_owned();
        let entry = LogEntry {
            ts: now_ms(),
            by: self
                .account
                .as_ref()
                .map_or_else(|| self.nick.to_string(), ToString::to_string),
            room: room.to_owned(),
            action: action.trim().to_owned(),
        };
        tracing::info!(by = %entry.by, room = %entry.room, action = %entry.action, "moderation");
        let shared = self.shared.clone();
        async move {
            // A failed write is logged by `write`; the change holds in memory.
            let _ = shared
                .accounts
                .write(move |store| {
                    if let Some(encoded) = encoded {
                        store.put_rules(&key, &encoded)?;
                    }
                    store.log(&entry)
                })
                .await;
        }
    }

    pub(super) fn event(
        &self,
        room: Option<&RoomName>,
        action: ModAction,
        target: String,
    ) -> ModEvent {
        ModEvent {
            room: room.cloned(),
            by: self.nick.clone(),
            action,
            target: Some(target),
            reason: None,
        }
    }

    /// Shows a change of `room`'s rules to the room, and stores the rules
    /// (`encoded`) with a log line `action target`.
    pub(super) fn announce(
        &self,
        room: &RoomName,
        action: ModAction,
        target: String,
        encoded: String,
    ) -> impl Future<Output = ()> + Send + use<> {
        let word = format!("{action:?}").to_ascii_lowercase();
        let line = format!("{word} {target}");
        let event = self.event(Some(room), action, target);
        self.shared
            .rooms
            .tell(room, ServerMessage::Moderated(event));
        self.record(&room.key(), Some(encoded), room.as_str(), line)
    }

    /// Removes every member of `room` its bans now name, except its
    /// operators, telling the room why.
    fn remove_banned(&self, room: &RoomName) {
        let moderation = &self.shared.moderation;
        let rules = moderation.rules(&room.key());
        let now = now_ms();
        let why = format!("banned by {}", self.nick);
        for nick in self.shared.rooms.members(room).unwrap_or_default() {
            let Some(id) = self.shared.rooms.session_of(&nick) else {
                continue;
            };
            let seen = moderation.seen(id).unwrap_or_default();
            let actor = seen.actor(&nick);
            if rules.ban_on(&actor, now).is_some()
                && !rules.is_operator(actor.account)
                && !moderation.is_server_operator(actor.account)
            {
                self.remove_member(room, &nick, &why);
            }
        }
    }

    /// Removes `nick` from `room` if it is there, telling the room `why`.
    fn remove_member(&self, room: &RoomName, nick: &Nickname, why: &str) -> bool {
        let Some(id) = self.shared.rooms.session_of(nick) else {
            return false;
        };
        self.shared.moderation.evict(id, room);
        self.shared.rooms.remove(id, nick, room, why).is_ok()
    }

    pub(super) async fn moderate(
        &mut self,
        message: ClientMessage,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        match message {
            ClientMessage::Kick { room, nick, reason } => {
                self.require_operator(&room)?;
                let members = self.shared.rooms.members(&room)?;
                if !members.iter().any(|m| m.key() == nick.key()) {
                    return Err(Failure::new(
                        ErrorCode::NotInRoom,
                        format!("{nick} is not in #{room}"),
                    ));
                }
                let mut event = self.event(Some(&room), ModAction::Kick, nick.to_string());
                event.reason.clone_from(&reason);
                self.shared
                    .rooms
                    .tell(&room, ServerMessage::Moderated(event));
                let why = match &reason {
                    Some(r) => format!("kicked by {}: {r}", self.nick),
                    None => format!("kicked by {}", self.nick),
                };
                self.remove_member(&room, &nick, &why);
                self.record(
                    &room.key(),
                    None,
                    room.as_str(),
                    format!("kick {nick} {}", reason.unwrap_or_default()),
                )
                .await;
            }
            ClientMessage::Ban {
                room,
                mask,
                duration_secs,
                reason,
            } => self.on_ban(room, mask, duration_secs, reason).await?,
            ClientMessage::Unban { room, mask } => {
                match &room {
                    Some(r) => self.require_operator(r)?,
                    None => self.require_server_operator()?,
                }
                let wanted: Vec<String> = match canonical_mask(&mask) {
                    Some(m) => vec![m],
                    None => {
                        let key = Nickname::new(mask.as_str())?.key();
                        vec![format!("account:{key}"), format!("nick:{key}")]
                    }
                };
                let key = room.as_ref().map_or(SERVER.to_owned(), RoomName::key);
                let mut lifted = false;
                let encoded = self.shared.moderation.update(&key, |rules| {
                    let before = rules.bans.len();
                    rules.bans.retain(|b| !wanted.contains(&b.mask));
                    lifted = rules.bans.len() < before;
                });
                if !lifted {
                    return Err(Failure::new(
                        ErrorCode::NoSuchNick,
                        format!("no ban matches {}", protocol::text::sanitize(&mask)),
                    ));
                }
                let event = self.event(room.as_ref(), ModAction::Unban, wanted.join(" "));
                if let Some(room) = &room {
                    self.shared
                        .rooms
                        .tell(room, ServerMessage::Moderated(event));
                }
                let place = room.as_ref().map_or(SERVER, RoomName::as_str);
                self.record(
                    &key,
                    Some(encoded),
                    place,
                    format!("unban {}", wanted.join(" ")),
                )
                .await;
            }
            ClientMessage::Topic { room, topic: None } => {
                let rules = self.shared.moderation.rules(&room.key());
                self.reply(
                    ServerMessage::Topic {
                        room,
                        topic: rules.topic.unwrap_or_default(),
                        by: rules.topic_by,
                    },
                    reference,
                );
                return Ok(Flow::Continue);
            }
            ClientMessage::Topic {
                room,
                topic: Some(topic),
            } => {
                self.require_operator(&room)?;
                if !topic.is_empty() {
                    protocol::validate_text(&topic)?;
                }
                let by = self.nick.clone();
                let encoded = self.shared.moderation.update(&room.key(), |rules| {
                    rules.topic = (!topic.is_empty()).then(|| topic.clone());
                    rules.topic_by = (!topic.is_empty()).then(|| by.clone());
                });
                self.shared.rooms.tell(
                    &room,
                    ServerMessage::Topic {
                        room: room.clone(),
                        topic: topic.clone(),
                        by: Some(by),
                    },
                );
                self.record(
                    &room.key(),
                    Some(encoded),
                    room.as_str(),
                    format!("topic {topic}"),
                )
                .await;
            }
            other => return self.moderate_more(other, reference).await,
        }
        self.ok(reference);
        Ok(Flow::Continue)
    }

    async fn on_ban(
        &mut self,
        room: Option<RoomName>,
        mask: String,
        duration_secs: Option<u64>,
        reason: Option<String>,
    ) -> Result<(), Failure> {
        match &room {
            Some(r) => self.require_operator(r)?,
            None => self.require_server_operator()?,
        }
        let moderation = &self.shared.moderation;
        let (canonical, target) = match canonical_mask(&mask) {
            Some(m) => (m, None),
            None => {
                let nick = Nickname::new(mask.as_str())?;
                match self.shared.rooms.session_of(&nick) {
                    Some(id) => {
                        let seen = moderation.seen(id).unwrap_or_default();
                        (mask_of(&seen.actor(&nick)), Some(nick))
                    }
                    None => (format!("nick:{}", nick.key()), None),
                }
            }
        };
        let key = room.as_ref().map_or(SERVER.to_owned(), RoomName::key);
        let ban = Ban {
            mask: canonical.clone(),
            until: duration_secs.map(|d| now_ms().saturating_add(d.saturating_mul(1000))),
            by: self.nick.to_string(),
            reason: reason.clone(),
        };
        let encoded = moderation.update(&key, |rules| {
            rules.expire(now_ms());
            rules.bans.retain(|b| b.mask != canonical);
            rules.bans.push(ban);
        });
        let shown = match duration_secs {
            Some(secs) => format!("{canonical} for {}", span(secs)),
            None => canonical.clone(),
        };
        let mut event = self.event(room.as_ref(), ModAction::Ban, shown.clone());
        event.reason.clone_from(&reason);
        match (&room, &target) {
            (Some(room), _) => {
                self.shared
                    .rooms
                    .tell(room, ServerMessage::Moderated(event));
                self.remove_banned(room);
            }
            (None, target) => {
                // No room sees a server-wide ban; its maker is told.
                self.reply(ServerMessage::Moderated(event), None);
                if let Some(nick) = target {
                    let why = match &reason {
                        Some(r) => format!("banned from this server: {r}"),
                        None => "banned from this server".to_owned(),
                    };
                    self.shared.rooms.kill(nick, Some(why));
                }
            }
        }
        let place = room.as_ref().map_or(SERVER, RoomName::as_str);
        let action = format!("ban {shown} {}", reason.unwrap_or_default());
        self.record(&key, Some(encoded), place, action).await;
        Ok(())
    }
}
