//! User queries: `WHO` and `WHOIS`. Users are found through the rooms they
//! are in, on every node of a cluster; a user of another dialect who is in
//! no room is not found (the rooms are all this server lists).

use crate::protocol::{Nickname, RoomName};

use super::channels::room_of;
use super::session::IrcSession;

impl IrcSession {
    pub(super) fn on_who(&mut self, params: &[&str]) {
        let n = self.numerics();
        let mask = params.first().copied().unwrap_or("*");
        let server = self.names.server();
        let mut lines = String::new();
        let away = &self.shared.irc_away;
        let who = |channel: &str, nick: &Nickname| {
            // `G`one for an IRC user of this node who is away, else `H`ere.
            let here = if away.away_of(nick).is_some() {
                "G"
            } else {
                "H"
            };
            n.start("352")
                .param(channel)
                .param(nick.as_str())
                .param(server)
                .param(server)
                .param(nick.as_str())
                .param(here)
                .trailing(&format!("0 {nick}"))
        };
        if let Some(room) = room_of(mask) {
            for nick in self.shared.rooms.members(&room).unwrap_or_default() {
                lines += &who(mask, &nick);
            }
        } else if let Some((nick, rooms)) = self.find(mask) {
            let channel = rooms.first().map_or("*".to_owned(), |r| format!("#{r}"));
            lines += &who(&channel, &nick);
        }
        lines += &n.about("315", mask, "End of /WHO list");
        self.send(lines);
    }

    pub(super) fn on_whois(&mut self, params: &[&str]) {
        // `WHOIS server nick` names the nick last.
        let Some(target) = params.last().filter(|t| !t.is_empty()) else {
            return self.send(self.numerics().text("431", "No nickname given"));
        };
        let n = self.numerics();
        let server = self.names.server();
        let mut lines = String::new();
        match self.find(target) {
            Some((nick, rooms)) => {
                lines += &n
                    .start("311")
                    .param(nick.as_str())
                    .param(nick.as_str())
                    .param(server)
                    .param("*")
                    .trailing(nick.as_str());
                if !rooms.is_empty() {
                    let channels: Vec<String> = rooms.iter().map(|r| format!("#{r}")).collect();
                    lines += &n
                        .start("319")
                        .param(nick.as_str())
                        .trailing(&channels.join(" "));
                }
                lines += &n
                    .start("312")
                    .param(nick.as_str())
                    .param(server)
                    .trailing("chatroom");
                if let Some(away) = self.shared.irc_away.away_of(&nick) {
                    lines += &n.start("301").param(nick.as_str()).trailing(&away);
                }
            }
            None => lines += &n.about("401", target, "No such nick/channel"),
        }
        lines += &n.about("318", target, "End of /WHOIS list");
        self.send(lines);
    }

    /// `302`: `nick=+nick@server` (`-` for an away user) for each of up
    /// to five nicks that are here.
    pub(super) fn on_userhost(&mut self, params: &[&str]) {
        if params.is_empty() {
            return self.not_enough("USERHOST");
        }
        let server = self.names.server();
        let found: Vec<String> = params
            .iter()
            .take(5)
            .filter_map(|target| self.find(target))
            .map(|(nick, _)| {
                let here = if self.shared.irc_away.away_of(&nick).is_some() {
                    '-'
                } else {
                    '+'
                };
                format!("{nick}={here}{nick}@{server}")
            })
            .collect();
        self.send(self.numerics().text("302", &found.join(" ")));
    }

    /// `303`: which of the nicks asked about are here.
    pub(super) fn on_ison(&mut self, params: &[&str]) {
        if params.is_empty() {
            return self.not_enough("ISON");
        }
        let found: Vec<String> = params
            .iter()
            .flat_map(|p| p.split(' '))
            .filter(|t| !t.is_empty())
            .take(32)
            .filter_map(|target| self.find(target))
            .map(|(nick, _)| nick.to_string())
            .collect();
        self.send(self.numerics().text("303", &found.join(" ")));
    }

    /// `406` and `369`: the server keeps no record of nicks that left.
    pub(super) fn on_whowas(&mut self, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.send(self.numerics().text("431", "No nickname given"));
        };
        let n = self.numerics();
        let mut lines = n.about("406", target, "There was no such nickname");
        lines += &n.about("369", target, "End of WHOWAS");
        self.send(lines);
    }

    /// The user `target` names, as spelled, and the rooms it is in. This
    /// client is always found, even in no room.
    fn find(&self, target: &str) -> Option<(Nickname, Vec<RoomName>)> {
        let wanted = Nickname::new(target).ok()?;
        let key = wanted.key();
        let mut found = (key == self.nick.key()).then(|| self.nick.clone());
        let mut rooms = Vec::new();
        for info in self.shared.rooms.list() {
            let members = self.shared.rooms.members(&info.name).unwrap_or_default();
            if let Some(nick) = members.into_iter().find(|m| m.key() == key) {
                found = Some(nick);
                rooms.push(info.name);
            }
        }
        found.map(|nick| (nick, rooms))
    }
}
