//! IRC's moderation commands, `KICK`, `MODE` on a channel, `TOPIC` with a
//! text and `INVITE`, each turned into the moderation request every other
//! dialect sends and run by the same engine (`session::foreign`): the
//! rights, the store, the log and what the room is shown are the same.
//! Refusals come back as the numerics IRC clients know.

use crate::protocol::{ClientMessage, ErrorCode, Nickname, RoomName};

use super::super::session::foreign::{self, Requester};
use super::channels::room_of;
use super::modes::{mask_in, mask_out};
use super::session::IrcSession;

/// One change a `MODE` line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Ban(String),
    Unban(String),
    Role {
        on: bool,
        letter: char,
        nick: String,
    },
    Key(Option<String>),
    Moderated(bool),
    InviteOnly(bool),
    Limit(Option<u32>),
}

/// Why a `MODE` line cannot be read.
#[derive(Debug, PartialEq, Eq)]
enum ModeError {
    /// `472`: a letter not known.
    Unknown(char),
    /// `461`: a letter without its parameter.
    Missing,
    /// A limit that is not a positive number.
    BadLimit(String),
}

/// Reads `+b mask -o nick +kl key 10`: the mode string and its
/// parameters, in order (RFC 2811 section 4).
fn parse_modes(modes: &str, args: &[&str]) -> Result<Vec<Change>, ModeError> {
    let mut args = args.iter().copied();
    let mut on = true;
    let mut changes = Vec::new();
    for letter in modes.chars() {
        match letter {
            '+' => on = true,
            '-' => on = false,
            'b' => {
                let mask = args.next().ok_or(ModeError::Missing)?.to_owned();
                changes.push(if on {
                    Change::Ban(mask)
                } else {
                    Change::Unban(mask)
                });
            }
            'o' | 'v' => {
                let nick = args.next().ok_or(ModeError::Missing)?.to_owned();
                changes.push(Change::Role { on, letter, nick });
            }
            'k' if on => {
                let key = args.next().ok_or(ModeError::Missing)?;
                changes.push(Change::Key(Some(key.to_owned())));
            }
            'k' => {
                // `-k` names the key by custom; it is not needed.
                let _ = args.next();
                changes.push(Change::Key(None));
            }
            'l' if on => {
                let limit = args.next().ok_or(ModeError::Missing)?;
                match limit.parse::<u32>() {
                    Ok(n) if n > 0 => changes.push(Change::Limit(Some(n))),
                    _ => return Err(ModeError::BadLimit(limit.to_owned())),
                }
            }
            'l' => changes.push(Change::Limit(None)),
            'm' => changes.push(Change::Moderated(on)),
            'i' => changes.push(Change::InviteOnly(on)),
            other => return Err(ModeError::Unknown(other)),
        }
    }
    Ok(changes)
}

impl IrcSession {
    /// This session as the moderation engine takes it.
    fn requester(&self) -> Requester<'_> {
        Requester {
            id: self.id,
            nick: &self.nick,
            account: self.account.as_ref(),
            ip: self.peer_ip,
            outbox: &self.outbox,
        }
    }

    /// Runs one moderation request as this session.
    async fn request(&self, request: ClientMessage) -> Result<(), (ErrorCode, String)> {
        foreign::moderate(&self.shared, &self.requester(), request).await
    }

    /// What joining `room`, which had `before` members, brings besides
    /// the names: ownership of an empty ownerless room (a logged-in user's),
    /// and the topic (`332`, `333`).
    pub(super) async fn after_join(&self, room: &RoomName, before: usize) {
        foreign::claim(&self.shared, &self.requester(), room, before).await;
        let rules = self.shared.moderation.rules(&room.key());
        if let Some(topic) = rules.topic {
            let n = self.numerics();
            let channel = format!("#{room}");
            let mut lines = n.about("332", &channel, &topic);
            if let Some(by) = rules.topic_by {
                lines += &n.start("333").param(&channel).param(by.as_str()).end();
            }
            self.send(lines);
        }
    }

    /// The numeric for a refused request about `channel` (and `target`).
    fn refused(&self, channel: &str, target: &str, code: ErrorCode, message: &str) -> String {
        let n = self.numerics();
        match code {
            ErrorCode::NotPermitted => n.about(
                "482",
                channel,
                &format!("You're not channel operator ({message})"),
            ),
            ErrorCode::NoSuchNick | ErrorCode::InvalidName => n.about("401", target, message),
            ErrorCode::NotInRoom => n
                .start("441")
                .param(target)
                .param(channel)
                .trailing("They aren't on that channel"),
            _ => self.notice(message),
        }
    }

    /// The channel a command names, if it is a room this session is in;
    /// else the numeric that says why not.
    fn joined_room(&self, channel: &str) -> Result<RoomName, String> {
        let n = self.numerics();
        match room_of(channel) {
            None => Err(n.about("403", channel, "No such channel")),
            Some(room) if !self.rooms.contains_key(&room.key()) => {
                Err(n.about("442", channel, "You're not on that channel"))
            }
            Some(room) => Ok(room),
        }
    }

    /// `KICK #room nick[,nick] [:reason]`.
    pub(super) async fn on_kick(&mut self, params: &[&str]) {
        let (Some(channel), Some(list)) = (params.first(), params.get(1)) else {
            return self.not_enough("KICK");
        };
        self.collect_evictions();
        let room = match self.joined_room(channel) {
            Ok(room) => room,
            Err(line) => return self.send(line),
        };
        let reason = params
            .get(2)
            .map(|r| crate::protocol::irc::strip_formatting(r))
            .filter(|r| !r.trim().is_empty());
        for target in list.split(',').filter(|t| !t.is_empty()) {
            let Ok(nick) = Nickname::new(target) else {
                let line = self.numerics().about("401", target, "No such nick");
                self.send(line);
                continue;
            };
            let request = ClientMessage::Kick {
                room: room.clone(),
                nick,
                reason: reason.clone(),
            };
            if let Err((code, message)) = self.request(request).await {
                self.send(self.refused(channel, target, code, &message));
                if code == ErrorCode::NotPermitted {
                    return;
                }
            }
        }
    }

    /// `KILL nick [:reason]`: a server operator disconnects a user of
    /// this node, who is shown the reason.
    pub(super) async fn on_kill(&mut self, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.not_enough("KILL");
        };
        let Ok(nick) = Nickname::new(*target) else {
            return self.send(self.numerics().about("401", target, "No such nick"));
        };
        let reason = params
            .get(1)
            .map(|r| crate::protocol::irc::strip_formatting(r))
            .filter(|r| !r.trim().is_empty());
        match self.request(ClientMessage::Kill { nick, reason }).await {
            Ok(()) => {}
            Err((ErrorCode::NotPermitted, _)) => {
                let line = self
                    .numerics()
                    .text("481", "Permission Denied- You're not an IRC operator");
                self.send(line);
            }
            Err((code, message)) => self.send(self.refused(target, target, code, &message)),
        }
    }

    /// `TOPIC #room :text`: sets (an empty text clears) the topic.
    pub(super) async fn set_topic(&mut self, channel: &str, text: &str) {
        let room = match self.joined_room(channel) {
            Ok(room) => room,
            Err(line) => return self.send(line),
        };
        let topic = crate::protocol::irc::strip_formatting(text);
        let request = ClientMessage::Topic {
            room,
            topic: Some(topic),
        };
        if let Err((code, message)) = self.request(request).await {
            self.send(self.refused(channel, channel, code, &message));
        }
    }

    /// `INVITE nick #room`: the invitation is kept in the room's rules;
    /// the inviter gets `341`, an IRC invitee of this node an `INVITE`.
    pub(super) async fn on_invite(&mut self, params: &[&str]) {
        let (Some(target), Some(channel)) = (params.first(), params.get(1)) else {
            return self.not_enough("INVITE");
        };
        let room = match self.joined_room(channel) {
            Ok(room) => room,
            Err(line) => return self.send(line),
        };
        let n = self.numerics();
        let Ok(nick) = Nickname::new(*target) else {
            return self.send(n.about("401", target, "No such nick"));
        };
        let request = ClientMessage::Invite {
            room: room.clone(),
            nick: nick.clone(),
        };
        if let Err((code, message)) = self.request(request).await {
            return self.send(self.refused(channel, target, code, &message));
        }
        let channel = format!("#{room}");
        let invite =
            crate::protocol::irc::Line::new(&self.names.user(self.nick.as_str()), "INVITE")
                .param(nick.as_str())
                .param(&channel)
                .end();
        self.shared.irc_away.send_to(&nick, &invite);
        self.send(n.start("341").param(nick.as_str()).param(&channel).end());
    }

    /// `MODE #room ...`: the query (`324`), the ban list (`367`, `368`),
    /// or changes, each run as its moderation request.
    pub(super) async fn channel_mode(&mut self, channel: &str, params: &[&str]) {
        let n = self.numerics();
        let Some(room) = room_of(channel) else {
            return self.send(n.about("403", channel, "No such channel"));
        };
        let Some(modes) = params.first() else {
            return self.mode_query(&room, channel);
        };
        let args = &params[1..];
        if args.is_empty() && matches!(*modes, "b" | "+b") {
            return self.ban_list(&room, channel);
        }
        let changes = match parse_modes(modes, args) {
            Ok(changes) => changes,
            Err(ModeError::Unknown(letter)) => {
                let line = n.about("472", &letter.to_string(), "is unknown mode char to me");
                return self.send(line);
            }
            Err(ModeError::Missing) => return self.not_enough("MODE"),
            Err(ModeError::BadLimit(limit)) => {
                let text = format!("not a member limit: {limit}");
                return self.send(n.about("696", channel, &text));
            }
        };
        // The room's own modes go in one request; bans and roles one each.
        let (mut key, mut moderated, mut invite_only, mut limit) = (None, None, None, None);
        let mut requests = Vec::new();
        for change in changes {
            let room = room.clone();
            match change {
                Change::Ban(mask) => {
                    let request = ClientMessage::Ban {
                        room: Some(room),
                        mask: mask_in(&mask),
                        duration_secs: None,
                        reason: None,
                    };
                    requests.push((mask, request));
                }
                Change::Unban(mask) => {
                    let request = ClientMessage::Unban {
                        room: Some(room),
                        mask: mask_in(&mask),
                    };
                    requests.push((mask, request));
                }
                Change::Role { on, letter, nick } => {
                    let Ok(who) = Nickname::new(nick.as_str()) else {
                        self.send(n.about("401", &nick, "No such nick"));
                        continue;
                    };
                    let request = match (letter, on) {
                        ('o', true) => ClientMessage::Op { room, nick: who },
                        ('o', false) => ClientMessage::Deop { room, nick: who },
                        (_, true) => ClientMessage::Voice { room, nick: who },
                        (_, false) => ClientMessage::Devoice { room, nick: who },
                    };
                    requests.push((nick, request));
                }
                Change::Key(k) => key = Some(k.unwrap_or_default()),
                Change::Moderated(on) => moderated = Some(on),
                Change::InviteOnly(on) => invite_only = Some(on),
                Change::Limit(l) => limit = Some(l.unwrap_or(0)),
            }
        }
        if key.is_some() || moderated.is_some() || invite_only.is_some() || limit.is_some() {
            let request = ClientMessage::Mode {
                room: room.clone(),
                key,
                moderated,
                invite_only,
                limit,
            };
            requests.push((channel.to_owned(), request));
        }
        for (target, request) in requests {
            if let Err((code, message)) = self.request(request).await {
                self.send(self.refused(channel, &target, code, &message));
                if code == ErrorCode::NotPermitted {
                    return;
                }
            }
        }
    }

    /// `members` of `room` as `NAMES` shows them: `@` before an operator,
    /// `+` before a voiced member. Roles belong to accounts, which are
    /// known for the sessions of this node; a member of another node of a
    /// cluster shows no prefix.
    pub(super) fn prefixed(&self, room: &RoomName, members: &[Nickname]) -> Vec<String> {
        let moderation = &self.shared.moderation;
        let rules = moderation.rules(&room.key());
        members
            .iter()
            .map(|nick| {
                let seen = self
                    .shared
                    .rooms
                    .session_of(nick)
                    .and_then(|id| moderation.seen(id))
                    .unwrap_or_default();
                let actor = seen.actor(nick);
                let prefix = if rules.is_operator(actor.account)
                    || moderation.is_server_operator(actor.account)
                {
                    "@"
                } else if rules.is_voiced(&actor) {
                    "+"
                } else {
                    ""
                };
                format!("{prefix}{nick}")
            })
            .collect()
    }

    /// `324`: the room's modes; the key itself only to its operators.
    fn mode_query(&self, room: &RoomName, channel: &str) {
        let rules = self.shared.moderation.rules(&room.key());
        let operator = self.shared.moderation.is_operator(room, &self.actor());
        let mut letters = String::from("+");
        let mut args = Vec::new();
        if rules.invite_only {
            letters.push('i');
        }
        if let Some(key) = &rules.key {
            letters.push('k');
            args.push(if operator {
                key.clone()
            } else {
                "*".to_owned()
            });
        }
        if let Some(limit) = rules.limit {
            letters.push('l');
            args.push(limit.to_string());
        }
        if rules.moderated {
            letters.push('m');
        }
        let mut line = self.numerics().start("324").param(channel).param(&letters);
        for arg in &args {
            line = line.param(arg);
        }
        self.send(line.end());
    }

    /// `367` for each ban in force, then `368`.
    fn ban_list(&self, room: &RoomName, channel: &str) {
        let n = self.numerics();
        let rules = self.shared.moderation.rules(&room.key());
        let now = crate::registry::now_ms();
        let mut lines = String::new();
        for ban in rules
            .bans
            .iter()
            .filter(|b| b.until.is_none_or(|t| t > now))
        {
            lines += &n
                .start("367")
                .param(channel)
                .param(&mask_out(&ban.mask))
                .param(&ban.by)
                .end();
        }
        lines += &n.about("368", channel, "End of channel ban list");
        self.send(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_mode_line_parses_or_is_refused(
            modes in "[-+biklmovx]{0,12}",
            args in proptest::collection::vec("[a-z0-9!*@.]{1,8}", 0..6),
        ) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Never a panic, and never more parameters used than given.
            if let Ok(changes) = parse_modes(&modes, &args) {
                let used = changes
                    .iter()
                    .filter(|c| !matches!(
                        c,
                        Change::Moderated(_) | Change::InviteOnly(_) | Change::Limit(None) | Change::Key(None)
                    ))
                    .count();
                proptest::prop_assert!(used <= args.len());
                let letters = modes.chars().filter(|c| *c != '+' && *c != '-').count();
                proptest::prop_assert_eq!(changes.len(), letters);
            }
        }
    }

    #[test]
    fn mode_strings_take_their_parameters_in_order() {
        let changes =
            parse_modes("+bo-v+kl", &["*!*@10.0.0.1", "ann", "bob", "sesame", "10"]).unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Ban("*!*@10.0.0.1".into()),
                Change::Role {
                    on: true,
                    letter: 'o',
                    nick: "ann".into()
                },
                Change::Role {
                    on: false,
                    letter: 'v',
                    nick: "bob".into()
                },
                Change::Key(Some("sesame".into())),
                Change::Limit(Some(10)),
            ]
        );
        assert_eq!(
            parse_modes("-klmi", &[]).unwrap(),
            vec![
                Change::Key(None),
                Change::Limit(None),
                Change::Moderated(false),
                Change::InviteOnly(false),
            ]
        );
        assert_eq!(parse_modes("+x", &[]), Err(ModeError::Unknown('x')));
        assert_eq!(parse_modes("+b", &[]), Err(ModeError::Missing));
        assert_eq!(
            parse_modes("+l", &["0"]),
            Err(ModeError::BadLimit("0".into()))
        );
    }
}
