//! Channel commands: `JOIN`, `PART`, `NAMES`, `TOPIC`, `LIST` and the
//! channel side of `MODE`. A channel `#name` is the room `name`.

use crate::protocol::irc::{Line, MAX_LINE_LEN};
use crate::protocol::{ErrorCode, Nickname, RoomName};

use super::super::rooms::Since;
use super::reply::{self, Mark};
use super::session::IrcSession;

/// The room a channel name stands for, if it is one: `#` and a valid room
/// name.
pub(super) fn room_of(channel: &str) -> Option<RoomName> {
    RoomName::new(channel.strip_prefix('#')?).ok()
}

impl IrcSession {
    pub(super) async fn on_join(&mut self, params: &[&str]) {
        let Some(list) = params.first() else {
            return self.not_enough("JOIN");
        };
        // `JOIN 0` leaves every channel (RFC 2812 section 3.2.1).
        if *list == "0" {
            let joined: Vec<RoomName> = self.rooms.values().map(|r| r.name().clone()).collect();
            for room in joined {
                self.part(&room);
            }
            return;
        }
        self.collect_evictions();
        let mut keys = params.get(1).map(|k| k.split(',')).into_iter().flatten();
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            let key = keys.next();
            let Some(room) = room_of(channel) else {
                self.send(self.numerics().about("403", channel, "No such channel"));
                continue;
            };
            if self.rooms.contains_key(&room.key()) {
                continue;
            }
            let members = self.shared.rooms.members(&room).map_or(0, |m| m.len());
            if let Err(refused) = self
                .shared
                .moderation
                .admit(&room, &self.actor(), key, members)
            {
                let numeric = match refused.code {
                    ErrorCode::Banned => "474",
                    ErrorCode::BadKey => "475",
                    ErrorCode::InviteOnly => "473",
                    _ => "471",
                };
                self.send(self.numerics().about(numeric, channel, &refused.message));
                continue;
            }
            if self.rooms.len() >= self.shared.limits.max_rooms {
                let text = format!("You are in {} channels already", self.rooms.len());
                self.send(self.numerics().about("405", channel, &text));
                continue;
            }
            // The echo goes first, from here: a backlog longer than a join
            // hands over at once is streamed before the registry's own
            // `joined` (which the writer does not show to the joiner), and
            // a client must see `JOIN` before the channel's `PRIVMSG`s.
            let me = self.names.user(self.nick.as_str());
            let channel = format!("#{room}");
            let echo = Line::new(&me, "JOIN").param(&channel).end();
            // With `batch`, the backlog comes in a `chathistory` batch: the
            // writer tags the room's messages queued between the two marks
            // (the backlog, and what the room said while the join was
            // handed over, which is history by the time the batch closes).
            let batch = self.caps.batch.then(|| self.next_batch());
            match &batch {
                Some(id) => {
                    let open = self.batch_line(id, &channel, true);
                    let mark = Mark::Open {
                        room: &room.key(),
                        id,
                    };
                    reply::send_marked(&self.outbox, echo + &open, mark);
                }
                None => self.send(echo),
            }
            let joined = self
                .shared
                .rooms
                .join(self.member(), &room, Since::Recent(None))
                .await;
            if let Some(id) = &batch {
                let close = self.batch_line(id, &channel, false);
                reply::send_marked(&self.outbox, close, Mark::Close);
            }
            match joined {
                Ok(handle) => {
                    self.rooms.insert(room.key(), handle);
                    self.after_join(&room, members).await;
                    self.names_of(&room);
                    // `away-notify`: the room learns at once that the
                    // joiner is away, after its `JOIN`.
                    if self.away.is_some() {
                        let members = self.shared.rooms.members(&room).unwrap_or_default();
                        self.shared
                            .irc_away
                            .notify(&members, self.id, &self.away_line());
                    }
                }
                Err(e) => {
                    let code = if e.code() == ErrorCode::TooManyRooms {
                        "405"
                    } else {
                        "403"
                    };
                    let mut lines = Line::new(&me, "PART").param(&channel).end();
                    lines += &self.numerics().about(code, &channel, &e.to_string());
                    self.send(lines);
                }
            }
        }
    }

    pub(super) fn on_part(&mut self, params: &[&str]) {
        let Some(list) = params.first() else {
            return self.not_enough("PART");
        };
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            match room_of(channel) {
                Some(room) if self.rooms.contains_key(&room.key()) => self.part(&room),
                Some(_) => {
                    let line = self
                        .numerics()
                        .about("442", channel, "You're not on that channel");
                    self.send(line);
                }
                None => self.send(self.numerics().about("403", channel, "No such channel")),
            }
        }
    }

    /// Leaves `room`; the registry tells this client and the room with a
    /// `left` frame, which the writer shows as `PART`.
    fn part(&mut self, room: &RoomName) {
        let Some(handle) = self.rooms.remove(&room.key()) else {
            return;
        };
        if let Err(e) = self.shared.rooms.leave(self.member(), &handle) {
            self.send(self.notice(&e.to_string()));
        }
    }

    pub(super) fn on_names(&mut self, params: &[&str]) {
        let Some(list) = params.first() else {
            let line = self.numerics().about("366", "*", "End of /NAMES list");
            return self.send(line);
        };
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            match room_of(channel) {
                Some(room) => self.names_of(&room),
                None => {
                    let line = self.numerics().about("366", channel, "End of /NAMES list");
                    self.send(line);
                }
            }
        }
    }

    /// `353` lines (as many as the names need) and `366` for `room`.
    pub(super) fn names_of(&self, room: &RoomName) {
        let n = self.numerics();
        let channel = format!("#{room}");
        let members = self.shared.rooms.members(room).unwrap_or_default();
        let members = self.prefixed(room, &members);
        let mut lines = String::new();
        let fixed = n.start("353").param("=").param(&channel).end().len();
        for chunk in name_chunks(&members, fixed)
            .iter()
            .filter(|c| !c.is_empty())
        {
            lines += &n.start("353").param("=").param(&channel).trailing(chunk);
        }
        lines += &n.about("366", &channel, "End of /NAMES list");
        self.send(lines);
    }

    pub(super) fn on_topic(&mut self, params: &[&str]) {
        let Some(channel) = params.first() else {
            return self.not_enough("TOPIC");
        };
        let n = self.numerics();
        let line = match room_of(channel) {
            None => n.about("403", channel, "No such channel"),
            Some(room) if !self.rooms.contains_key(&room.key()) => {
                n.about("442", channel, "You're not on that channel")
            }
            Some(room) => match self.shared.moderation.rules(&room.key()).topic {
                Some(topic) => n.about("332", channel, &topic),
                None => n.about("331", channel, "No topic is set"),
            },
        };
        self.send(line);
    }

    pub(super) fn on_list(&mut self) {
        let n = self.numerics();
        let mut lines = n.start("321").param("Channel").trailing("Users Name");
        for info in self.shared.rooms.list() {
            lines += &n
                .start("322")
                .param(&format!("#{}", info.name))
                .param(&info.members.to_string())
                .trailing("");
        }
        lines += &n.text("323", "End of /LIST");
        self.send(lines);
    }

    /// `MODE`: a channel's in `moderate`; user modes are not kept.
    pub(super) async fn on_mode(&mut self, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.not_enough("MODE");
        };
        if target.starts_with('#') {
            return self.channel_mode(target, &params[1..]).await;
        }
        let n = self.numerics();
        let line = if Nickname::new(*target).is_ok_and(|t| t.key() == self.nick.key()) {
            // User modes are not kept; asking or setting one shows none.
            n.start("221").param("+").end()
        } else {
            n.text("502", "Can't change mode for other users")
        };
        self.send(line);
    }
}

/// The members' nicks, space-separated, in pieces that fit a `353` line
/// whose fixed part is `fixed` bytes long.
fn name_chunks(members: &[String], fixed: usize) -> Vec<String> {
    let budget = MAX_LINE_LEN.saturating_sub(fixed + 2);
    let mut chunks = vec![String::new()];
    for nick in members {
        let last = chunks.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + 1 + nick.len() > budget {
            chunks.push(String::new());
        }
        let last = chunks.last_mut().expect("never empty");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(nick);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_rooms() {
        assert_eq!(room_of("#lobby").unwrap().as_str(), "lobby");
        assert!(room_of("lobby").is_none());
        assert!(room_of("#").is_none());
        assert!(room_of("#a b").is_none());
    }

    #[test]
    fn names_fit_the_line() {
        let members: Vec<String> = (0..100).map(|i| format!("user{i:028}")).collect();
        let chunks = name_chunks(&members, 40);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            assert!(chunk.len() + 40 + 2 <= MAX_LINE_LEN);
        }
        assert_eq!(chunks.join(" ").split(' ').count(), 100);
    }
}
