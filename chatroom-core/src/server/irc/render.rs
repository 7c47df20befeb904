//! The IRC lines a queued frame shows one client. Shared room frames are
//! rendered here, per connection, because what a line looks like depends
//! on the capabilities that connection enabled (tags) and on who it is
//! (its own whispers come back only with `echo-message`).

use crate::protocol::irc::{Line, MAX_LINE_LEN, server_time, split_text};
use crate::protocol::{MessageId, Nickname, RoomName, ServerMessage, Timestamp};
use crate::registry::Outbound;

use super::modes::{Removal, Removals, event_lines};
use super::names::{Caps, Names};
use super::reply::{Mark, own_lines};

/// A CTCP ACTION's wrapping, for `/me` lines.
const ACTION_START: &str = "\u{1}ACTION ";
const ACTION_END: &str = "\u{1}";

/// One connection's view: who it is and what it enabled.
#[derive(Debug)]
pub(super) struct Render {
    me: Nickname,
    names: Names,
    caps: Caps,
    /// The last nick shown quitting: a user who leaves several shared
    /// rooms at once is shown one `QUIT`, not one per room.
    last_quit: Option<String>,
    /// The history batch a join opened: the room's key and the batch id.
    /// The room's messages are tagged with it until the session closes it.
    batch: Option<(String, String)>,
    /// Kicks and bans shown, so that the `left` they cause is shown as
    /// part of them rather than as a `QUIT`.
    removals: Removals,
}

/// A message line's parts.
pub(super) struct Said<'a> {
    pub(super) from: &'a Nickname,
    /// `#room` or a nick.
    pub(super) target: &'a str,
    pub(super) text: &'a str,
    pub(super) action: bool,
    pub(super) ts: Timestamp,
    /// The room message's id, for `msgid`.
    pub(super) id: Option<(&'a RoomName, MessageId)>,
    /// The batch the line belongs to, if any.
    pub(super) batch: Option<&'a str>,
}

impl Render {
    pub(super) fn new(me: Nickname, names: Names, caps: Caps) -> Self {
        Self {
            me,
            names,
            caps,
            last_quit: None,
            batch: None,
            removals: Removals::default(),
        }
    }

    /// Appends the lines `frame` shows this client to `out`. True for
    /// `bye`, after which nothing more is written.
    pub(super) fn render(&mut self, frame: &Outbound, out: &mut Vec<u8>) -> bool {
        if let Some((lines, mark)) = own_lines(frame) {
            match mark {
                Mark::None => {}
                Mark::Open { room, id } => self.batch = Some((room.to_owned(), id.to_owned())),
                Mark::Close => self.batch = None,
            }
            out.extend_from_slice(lines.as_bytes());
            return false;
        }
        let line = match &frame.frame().message {
            ServerMessage::Message {
                room,
                id,
                from,
                text,
                ts,
                action,
            } => {
                let target = format!("#{room}");
                let batch = self
                    .batch
                    .as_ref()
                    .filter(|(key, _)| *key == room.key())
                    .map(|(_, id)| id.as_str());
                let said = Said {
                    from,
                    target: &target,
                    text,
                    action: *action,
                    ts: *ts,
                    id: Some((room, *id)),
                    batch,
                };
                self.privmsg(&said, out);
                return false;
            }
            ServerMessage::Private { from, to, text, ts } => {
                if from.key() == self.me.key() && !self.caps.echo_message {
                    return false;
                }
                let said = Said {
                    from,
                    target: to.as_str(),
                    text,
                    action: false,
                    ts: *ts,
                    id: None,
                    batch: None,
                };
                self.privmsg(&said, out);
                return false;
            }
            ServerMessage::Joined { room, nick } => {
                // The session echoes its own joins, ahead of any backlog.
                if nick.key() == self.me.key() {
                    return false;
                }
                if self.last_quit.as_deref() == Some(nick.key().as_str()) {
                    self.last_quit = None;
                }
                self.by_user(nick, "JOIN").param(&format!("#{room}")).end()
            }
            ServerMessage::Left {
                room,
                nick,
                reason: None,
            } => self.by_user(nick, "PART").param(&format!("#{room}")).end(),
            ServerMessage::Left {
                room,
                nick,
                reason: Some(reason),
            } => {
                // A moderator's removal was shown as a `KICK`.
                match self.removals.of(&room.key(), nick, reason) {
                    Removal::Shown => return false,
                    Removal::Banned(by) => {
                        let line = self
                            .by_user(&by, "KICK")
                            .param(&format!("#{room}"))
                            .param(nick.as_str())
                            .trailing(reason);
                        out.extend_from_slice(line.as_bytes());
                        return false;
                    }
                    Removal::None => {}
                }
                // Any other `left` with a reason is a session that ended,
                // which is what IRC calls a quit.
                let key = nick.key();
                if self.last_quit.as_deref() == Some(key.as_str()) {
                    return false;
                }
                self.last_quit = Some(key);
                self.by_user(nick, "QUIT").trailing(reason)
            }
            ServerMessage::NickChanged { old, new } => {
                if old.key() == self.me.key() {
                    self.me = new.clone();
                }
                self.by_user(old, "NICK").trailing(new.as_str())
            }
            ServerMessage::Error { message, .. } => self.notice(message),
            ServerMessage::Moderated(event) => match event_lines(&self.names, event) {
                Some(lines) => {
                    self.removals.saw(event);
                    lines
                }
                None => self.notice(&event.render()),
            },
            // A change of topic, as IRC shows one; the topic shown on
            // joining (no setter known) as a notice.
            ServerMessage::Topic {
                room,
                topic,
                by: Some(by),
            } => self
                .by_user(by, "TOPIC")
                .param(&format!("#{room}"))
                .trailing(topic),
            ServerMessage::Topic { room, topic, .. } => {
                self.notice(&format!("topic of #{room}: {topic}"))
            }
            ServerMessage::LoggedIn { account } => {
                self.notice(&format!("you are logged in as {account}"))
            }
            ServerMessage::Notice { text } => {
                for line in text.lines() {
                    out.extend_from_slice(self.notice(line).as_bytes());
                }
                return false;
            }
            ServerMessage::Lagged { room, first, last } => self.notice(&format!(
                "#{room}: you fell behind; messages {first} to {last} follow"
            )),
            ServerMessage::Bye { reason } => {
                let line = self.closing(reason);
                out.extend_from_slice(line.as_bytes());
                return true;
            }
            // Answers to the other dialects' requests; an IRC session
            // renders its own answers.
            ServerMessage::Welcome { .. }
            | ServerMessage::Rooms { .. }
            | ServerMessage::Members { .. }
            | ServerMessage::History { .. }
            | ServerMessage::Ok { .. }
            | ServerMessage::Ping
            | ServerMessage::Pong => return false,
        };
        out.extend_from_slice(line.as_bytes());
        false
    }

    /// `:server ERROR :Closing link: why`, the last line of a connection.
    pub(super) fn closing(&self, why: &str) -> String {
        Line::new(self.names.server(), "ERROR").trailing(&format!("Closing link: {why}"))
    }

    fn by_user(&self, nick: &Nickname, command: &str) -> Line {
        Line::new(&self.names.user(nick.as_str()), command)
    }

    fn notice(&self, text: &str) -> String {
        Line::new(self.names.server(), "NOTICE")
            .param(self.me.as_str())
            .trailing(text)
    }

    fn privmsg(&self, said: &Said<'_>, out: &mut Vec<u8>) {
        privmsg(&self.names, self.caps, said, out);
    }
}

/// Appends one `PRIVMSG` per piece of the text that fits IRC's line limit.
pub(super) fn privmsg(names: &Names, caps: Caps, said: &Said<'_>, out: &mut Vec<u8>) {
    let tags = tags(caps, said);
    let source = names.user(said.from.as_str());
    // `:source PRIVMSG target :` and `\r\n`, tags not counted.
    let mut budget = MAX_LINE_LEN.saturating_sub(source.len() + said.target.len() + 14);
    if said.action {
        budget = budget.saturating_sub(ACTION_START.len() + ACTION_END.len());
    }
    for piece in split_text(said.text, budget) {
        let line = Line::tagged(&tags, &source, "PRIVMSG").param(said.target);
        let line = if said.action {
            line.trailing(&format!("{ACTION_START}{piece}{ACTION_END}"))
        } else {
            line.trailing(piece)
        };
        out.extend_from_slice(line.as_bytes());
    }
}

/// The tag section for a message: `batch=` with `batch`, `time=` with
/// `server-time`, `msgid=` with `message-tags` (batch ids, room names and
/// message ids need no escaping).
fn tags(caps: Caps, said: &Said<'_>) -> String {
    let mut tags = Vec::new();
    if caps.batch
        && let Some(batch) = said.batch
    {
        tags.push(format!("batch={batch}"));
    }
    if caps.server_time {
        tags.push(format!("time={}", server_time(said.ts)));
    }
    if caps.message_tags
        && let Some((room, id)) = said.id
    {
        tags.push(format!("msgid={}/{id}", room.key()));
    }
    tags.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nickname {
        Nickname::new(s).unwrap()
    }

    fn shown(render: &mut Render, message: ServerMessage) -> String {
        let mut out = Vec::new();
        render.render(&Outbound::message(message), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn alice() -> Render {
        Render::new(nick("alice"), Names::new("srv"), Caps::default())
    }

    #[test]
    fn room_messages_and_actions() {
        let mut r = alice();
        let message = ServerMessage::Message {
            room: RoomName::new("lobby").unwrap(),
            id: 7,
            from: nick("bob"),
            text: "waves".into(),
            ts: 0,
            action: true,
        };
        assert_eq!(
            shown(&mut r, message),
            ":bob!bob@srv PRIVMSG #lobby :\u{1}ACTION waves\u{1}\r\n"
        );
    }

    #[test]
    fn tags_follow_the_caps() {
        let caps = Caps {
            server_time: true,
            message_tags: true,
            ..Caps::default()
        };
        let mut r = Render::new(nick("alice"), Names::new("srv"), caps);
        let message = ServerMessage::Message {
            room: RoomName::new("Lobby").unwrap(),
            id: 7,
            from: nick("bob"),
            text: "hi".into(),
            ts: 0,
            action: false,
        };
        assert_eq!(
            shown(&mut r, message),
            "@time=1970-01-01T00:00:00.000Z;msgid=lobby/7 :bob!bob@srv PRIVMSG #Lobby :hi\r\n"
        );
    }

    #[test]
    fn a_join_batch_tags_its_rooms_messages_until_it_closes() {
        use super::super::reply::marked;
        let caps = Caps {
            batch: true,
            ..Caps::default()
        };
        let mut r = Render::new(nick("alice"), Names::new("srv"), caps);
        let said = |room: &str, text: &str| ServerMessage::Message {
            room: RoomName::new(room).unwrap(),
            id: 1,
            from: nick("bob"),
            text: text.into(),
            ts: 0,
            action: false,
        };
        let mut out = Vec::new();
        let open = marked(
            "OPEN\r\n".into(),
            Mark::Open {
                room: "lobby",
                id: "h1",
            },
        );
        r.render(&open, &mut out);
        assert_eq!(out, b"OPEN\r\n");
        assert_eq!(
            shown(&mut r, said("Lobby", "old")),
            "@batch=h1 :bob!bob@srv PRIVMSG #Lobby :old\r\n"
        );
        assert_eq!(
            shown(&mut r, said("rust", "elsewhere")),
            ":bob!bob@srv PRIVMSG #rust :elsewhere\r\n"
        );
        out.clear();
        r.render(&marked(String::new(), Mark::Close), &mut out);
        assert!(out.is_empty());
        assert_eq!(
            shown(&mut r, said("lobby", "live")),
            ":bob!bob@srv PRIVMSG #lobby :live\r\n"
        );
    }

    #[test]
    fn long_messages_are_split_to_fit() {
        let mut r = alice();
        let message = ServerMessage::Message {
            room: RoomName::new("lobby").unwrap(),
            id: 1,
            from: nick("bob"),
            text: "word ".repeat(400).trim_end().to_owned(),
            ts: 0,
            action: false,
        };
        let out = shown(&mut r, message);
        let lines: Vec<&str> = out.split_inclusive("\r\n").collect();
        assert!(lines.len() >= 4, "{}", lines.len());
        for line in lines {
            assert!(line.len() <= MAX_LINE_LEN, "{}", line.len());
            assert!(line.starts_with(":bob!bob@srv PRIVMSG #lobby :"));
        }
    }

    #[test]
    fn own_whispers_come_back_only_with_echo() {
        let mut r = alice();
        let whisper = ServerMessage::Private {
            from: nick("alice"),
            to: nick("bob"),
            text: "psst".into(),
            ts: 0,
        };
        assert_eq!(shown(&mut r, whisper.clone()), "");
        let mut r = Render::new(
            nick("alice"),
            Names::new("srv"),
            Caps {
                echo_message: true,
                ..Caps::default()
            },
        );
        assert_eq!(
            shown(&mut r, whisper),
            ":alice!alice@srv PRIVMSG bob :psst\r\n"
        );
    }

    #[test]
    fn a_quit_is_shown_once_and_a_leave_is_a_part() {
        let mut r = alice();
        let room = |n: &str| RoomName::new(n).unwrap();
        let quit = |n: &str| ServerMessage::Left {
            room: room(n),
            nick: nick("bob"),
            reason: Some("bye now".into()),
        };
        assert_eq!(shown(&mut r, quit("a")), ":bob!bob@srv QUIT :bye now\r\n");
        assert_eq!(shown(&mut r, quit("b")), "");
        let part = ServerMessage::Left {
            room: room("a"),
            nick: nick("carol"),
            reason: None,
        };
        assert_eq!(shown(&mut r, part), ":carol!carol@srv PART #a\r\n");
    }

    #[test]
    fn own_joins_are_left_to_the_session() {
        let mut r = alice();
        let joined = |n: &str| ServerMessage::Joined {
            room: RoomName::new("lobby").unwrap(),
            nick: nick(n),
        };
        assert_eq!(shown(&mut r, joined("alice")), "");
        assert_eq!(shown(&mut r, joined("bob")), ":bob!bob@srv JOIN #lobby\r\n");
    }

    #[test]
    fn own_nick_changes_are_followed() {
        let mut r = alice();
        let renamed = ServerMessage::NickChanged {
            old: nick("alice"),
            new: nick("alicia"),
        };
        assert_eq!(shown(&mut r, renamed), ":alice!alice@srv NICK :alicia\r\n");
        let notice = ServerMessage::Notice {
            text: "one\ntwo".into(),
        };
        assert_eq!(
            shown(&mut r, notice),
            ":srv NOTICE alicia :one\r\n:srv NOTICE alicia :two\r\n"
        );
    }
}
