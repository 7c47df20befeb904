//! Moderation requests: kick, ban, unban, topic, op/deop, voice/devoice,
//! room modes, invite, and the server operators' kill and log. Each is
//! checked against the requester's role, applied, written through to the
//! store with a line of the moderation log, and shown to the room.

use crate::accounts::LogEntry;
use crate::protocol::{
    self, ClientMessage, ErrorCode, ModAction, ModEvent, Nickname, RoomName, ServerMessage,
};
use crate::registry::now_ms;

use super::super::bulletin::{self, Bulletin, tell_everywhere};
use super::super::moderation::{Actor, Ban, SERVER, canonical_mask};
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
    /// rules go to the other nodes of a cluster at once, before the future
    /// is awaited: call this before telling the room, so that another
    /// node holds the rules before its members see the line. The future
    /// owns what it needs: a session is not shared across threads.
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
        if let Some(encoded) = &encoded {
            bulletin::send(
                &self.shared,
                &Bulletin::Rules {
                    key: key.clone(),
                    encoded: encoded.clone(),
                },
            );
        }
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
        let stored = self.record(&room.key(), Some(encoded), room.as_str(), line);
        tell_everywhere(&self.shared, room, ServerMessage::Moderated(event));
        stored
    }

    /// Removes every member of `room` its bans now name, except its
    /// operators, on every node, telling the room why.
    fn remove_banned(&self, room: &RoomName) {
        let why = format!("banned by {}", self.nick);
        bulletin::remove_banned(&self.shared, room, &why);
        bulletin::send(
            &self.shared,
            &Bulletin::RemoveBanned {
                room: room.clone(),
                why,
            },
        );
    }

    /// Disconnects the session holding `nick`: here, or else on whichever
    /// node of a cluster holds it. Whether it was held here.
    pub(super) fn kill_anywhere(&self, nick: &Nickname, reason: Option<String>) -> bool {
        if self.shared.rooms.kill(nick, reason.clone()) {
            return true;
        }
        bulletin::send(
            &self.shared,
            &Bulletin::Kill {
                nick: nick.clone(),
                reason,
            },
        );
        false
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
                tell_everywhere(&self.shared, &room, ServerMessage::Moderated(event));
                let why = match &reason {
                    Some(r) => format!("kicked by {}: {r}", self.nick),
                    None => format!("kicked by {}", self.nick),
                };
                // The member may be held by another node of a cluster.
                if !bulletin::remove_member(&self.shared, &room, &nick, &why) {
                    bulletin::send(
                        &self.shared,
                        &Bulletin::Remove {
                            room: room.clone(),
                            nick: nick.clone(),
                            why,
                        },
                    );
                }
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
                let place = room.as_ref().map_or(SERVER, RoomName::as_str);
                let stored = self.record(
                    &key,
                    Some(encoded),
                    place,
                    format!("unban {}", wanted.join(" ")),
                );
                if let Some(room) = &room {
                    tell_everywhere(&self.shared, room, ServerMessage::Moderated(event));
                }
                stored.await;
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
                let stored = self.record(
                    &room.key(),
                    Some(encoded),
                    room.as_str(),
                    format!("topic {topic}"),
                );
                tell_everywhere(
                    &self.shared,
                    &room,
                    ServerMessage::Topic {
                        room: room.clone(),
                        topic: topic.clone(),
                        by: Some(by),
                    },
                );
                stored.await;
            }
            other => return self.moderate_more(other, reference).await,
        }
        self.ok(reference);
        Ok(Flow::Continue)
    }

    /// The mask that bans whoever holds `nick` best (its account, else its
    /// address, else the nick), asking the node that holds it in a
    /// cluster. When that node cannot be asked, the nick alone is banned
    /// and the operator is told so, before the ban is shown.
    async fn mask_for(&mut self, nick: &Nickname) -> String {
        if let Some(mask) = bulletin::mask_here(&self.shared, nick) {
            return mask;
        }
        let only_nick = format!("nick:{}", nick.key());
        let trouble = match self.shared.broker.ban_mask(nick).await {
            // The holder's engine made it; checked all the same, since it
            // is stored and matched as it is.
            Ok(Some(mask)) if canonical_mask(&mask).as_deref() == Some(mask.as_str()) => {
                return mask;
            }
            Ok(Some(mask)) => format!("unusable mask {mask:?}"),
            // Held by no one: the nick is all there is to ban.
            Ok(None) => return only_nick,
            Err(e) => e.to_string(),
        };
        tracing::warn!(%nick, error = %trouble, "banning only the nick held on another node");
        self.reply(
            ServerMessage::Notice {
                text: format!(
                    "* only {only_nick} could be banned: the server holding {nick} did not say \
                     whom to ban; ban an account:NAME or address:IP mask for more"
                ),
            },
            None,
        );
        only_nick
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
        let (canonical, target) = match canonical_mask(&mask) {
            Some(m) => (m, None),
            None => {
                let nick = Nickname::new(mask.as_str())?;
                (self.mask_for(&nick).await, Some(nick))
            }
        };
        let moderation = &self.shared.moderation;
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
        let place = room.as_ref().map_or(SERVER, RoomName::as_str);
        let action = format!("ban {shown} {}", reason.clone().unwrap_or_default());
        let stored = self.record(&key, Some(encoded), place, action);
        match (&room, &target) {
            (Some(room), _) => {
                tell_everywhere(&self.shared, room, ServerMessage::Moderated(event));
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
                    self.kill_anywhere(nick, Some(why));
                }
            }
        }
        stored.await;
        Ok(())
    }
}
